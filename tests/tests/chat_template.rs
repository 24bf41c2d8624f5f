//! Chat templates rendered by Tern against the reference renderer, Python's jinja2 in the
//! environment transformers' `apply_chat_template` builds: SmolLM2's own template on the
//! fixture conversations (`tests/reference/make_fixtures.py`), Qwen2.5-Coder's template with
//! tools and tool calls (the template and tokenizer read from the file, whose architecture need
//! not be loadable), and a template exercising the Hugging Face environment (tools, `tojson`,
//! Python methods, loop controls, whitespace control, `raise_exception`).

use tern_runtime::chat::{ChatTemplate, JsonValue, Message, RenderOptions, TemplateError};
use tern_tests::json::Json;
use tern_tests::{fixture, model_path, smollm2, tokenizer_from_file};

#[test]
fn smollm2_renderings_match_jinja2_byte_for_byte() {
    let model = smollm2();
    let tok = model.tokenizer();
    let f = fixture("smollm2_chat_template.json");
    let template = ChatTemplate::from_model(&model).expect("SmolLM2 has a chat template");
    assert_eq!(
        template.source(),
        f.get("template").str(),
        "GGUF template differs from the fixture's"
    );
    assert_eq!(
        template.special_token("bos_token"),
        Some(f.get("bos_token").str())
    );
    assert_eq!(
        template.special_token("eos_token"),
        Some(f.get("eos_token").str())
    );
    let cases = f.get("cases").arr();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let label = case.get("label").str();
        let messages: Vec<Message> = case
            .get("messages")
            .arr()
            .iter()
            .map(|m| Message::new(m.get("role").str(), m.get("content").str()))
            .collect();
        let opts = RenderOptions {
            add_generation_prompt: case.get("add_generation_prompt").bool(),
            ..RenderOptions::default()
        };
        let rendered = template
            .render(&messages, &opts)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            rendered,
            case.get("rendered").str(),
            "{label}: rendering differs"
        );
        assert_eq!(
            tok.encode(&rendered, false, true),
            case.get("rendered_ids").ids(),
            "{label}: token ids differ"
        );
    }
}

/// A fixture JSON value as a template value (objects keep the fixture's key order, which the
/// generator sorted, so it is the order jinja2 saw).
fn to_value(j: &Json) -> JsonValue {
    match j {
        Json::Null => JsonValue::Null,
        Json::Bool(b) => JsonValue::Bool(*b),
        Json::Num(n) if n.fract() == 0.0 && n.abs() < 9e15 => JsonValue::Int(*n as i64),
        Json::Num(n) => JsonValue::Float(*n),
        Json::Str(s) => JsonValue::String(s.clone()),
        Json::Arr(a) => JsonValue::Array(a.iter().map(to_value).collect()),
        Json::Obj(m) => {
            JsonValue::Object(m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

#[test]
fn qwen25_renderings_with_tools_match_jinja2_byte_for_byte() {
    let f = fixture("qwen25_05b_chat_template.json");
    let tok = tokenizer_from_file(&model_path(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "scripts/fetch-models.sh",
    ));
    let template = ChatTemplate::new(f.get("template").str())
        .expect("Qwen2.5's template compiles")
        .with_tokenizer(&tok);
    assert_eq!(
        template.special_token("eos_token"),
        Some(f.get("eos_token").str())
    );
    let cases = f.get("cases").arr();
    assert!(cases.iter().filter(|c| c.opt("tools").is_some()).count() >= 4);
    for case in cases {
        let label = case.get("label").str();
        let messages: Vec<Message> = case
            .get("messages")
            .arr()
            .iter()
            .map(|m| {
                let Json::Obj(fields) = m else {
                    panic!("{label}: message is not an object")
                };
                let mut msg = Message::new(m.get("role").str(), m.get("content").str());
                for (k, v) in fields
                    .iter()
                    .filter(|(k, _)| *k != "role" && *k != "content")
                {
                    msg = msg.with_field(k, to_value(v));
                }
                msg
            })
            .collect();
        let opts = RenderOptions {
            add_generation_prompt: case.get("add_generation_prompt").bool(),
            tools: case
                .opt("tools")
                .map(|t| t.arr().iter().map(to_value).collect()),
            ..RenderOptions::default()
        };
        let rendered = template
            .render(&messages, &opts)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            rendered,
            case.get("rendered").str(),
            "{label}: rendering differs"
        );
        assert_eq!(
            tok.encode(&rendered, false, true),
            case.get("rendered_ids").ids(),
            "{label}: token ids differ"
        );
    }
}

#[test]
fn smollm2_turns_end_with_im_end() {
    let model = smollm2();
    let template = ChatTemplate::from_model(&model).unwrap();
    assert_eq!(template.end_of_turn_text().as_deref(), Some("<|im_end|>\n"));
}

/// Template exercising the transformers environment. The expected texts were rendered by
/// jinja2 3.1.6 with transformers' setup:
///
/// ```python
/// env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
///                                     extensions=["jinja2.ext.loopcontrols"])
/// env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, \
///     sort_keys=False: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
///                                 separators=separators, sort_keys=sort_keys)
/// env.globals["raise_exception"] = raise_exception  # raises jinja2 TemplateError
/// env.from_string(FEATURES).render(messages=..., tools=..., documents=None,
///     add_generation_prompt=..., bos_token="<s>", eos_token="</s>")
/// ```
const FEATURES: &str = r#"{{- bos_token }}
{%- set ns = namespace(sys='none') -%}
{% if messages[0].role == 'system' %}
    {% set ns.sys = messages[0].content.strip() %}
{% endif %}
<sys>{{ ns.sys }}</sys>
{% if tools is not none %}
  {% for t in tools %}
TOOL {{ t | tojson }}
TOOL2 {{ t | tojson(indent=2) }}
SORTED {{ t.function.parameters | tojson(sort_keys=true, separators=(',', ':')) }}
  {% endfor %}
{% endif %}
{% for m in messages %}
    {% if loop.index0 == 0 and m.role == 'system' %}{% continue %}{% endif %}
    {% if m.role not in ['user', 'assistant', 'tool'] %}{{ raise_exception('bad role: ' + m.role) }}{% endif %}
[{{ m.role | upper }}|{{ loop.index }}/{{ loop.length }}] {{ m.content }}
    {% if 'tool_calls' in m and m.tool_calls is defined %}
        {% for c in m.tool_calls %}
CALL {{ c.name }} {{ c.arguments | tojson }} keys={{ c.arguments.keys() | list }}
ITEMS {% for k, v in c.arguments.items() %}{{ k }}={{ v }};{% endfor %}

        {% endfor %}
    {% endif %}
    {% if m.content.startswith('stop') %}{% break %}{% endif %}
{% endfor %}
flags: {{ add_generation_prompt }} {{ none }} {{ 1.5 }} {{ [1, 'a', true, none] }} {{ messages | length }}
words: {{ 'a b  c'.split() | join(',') }} {{ 'x'.upper() }} {{ 'a-b'.replace('-', '+') }} {{ '  pad '.rstrip() }}|{{ 'Title case'.title() }}
{% if add_generation_prompt %}<assistant>{{ eos_token if false else '' }}{% endif %}
"#;

/// jinja2's rendering of [`conversation`] with [`tools`] and `add_generation_prompt=True`.
const FEATURES_FULL: &str = "<s><sys>Be brief.</sys>\nTOOL {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather <now> & 'later'\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\nTOOL2 {\n  \"type\": \"function\",\n  \"function\": {\n    \"name\": \"get_weather\",\n    \"description\": \"Weather <now> & 'later'\",\n    \"parameters\": {\n      \"type\": \"object\",\n      \"properties\": {\n        \"city\": {\n          \"type\": \"string\"\n        }\n      },\n      \"required\": [\n        \"city\"\n      ]\n    }\n  }\n}\nSORTED {\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"],\"type\":\"object\"}\n[USER|2/6] Weather in Paris? café 日本\n[ASSISTANT|3/6] \nCALL get_weather {\"city\": \"Paris\", \"days\": 3, \"metric\": true, \"ratio\": 0.5, \"note\": null, \"tags\": [\"a\", \"é\\\"\\n\"]} keys=['city', 'days', 'metric', 'ratio', 'note', 'tags']\nITEMS city=Paris;days=3;metric=True;ratio=0.5;note=None;tags=['a', 'é\"\\n'];\n[TOOL|4/6] sunny\n[USER|5/6] stop here\nflags: True None 1.5 [1, 'a', True, None] 6\nwords: a,b,c X a+b   pad|Title Case\n<assistant>";

/// jinja2's rendering of the second message alone, `tools=None`, `add_generation_prompt=False`.
const FEATURES_ONE: &str = "<s><sys>none</sys>\n[USER|1/1] Weather in Paris? café 日本\nflags: False None 1.5 [1, 'a', True, None] 1\nwords: a,b,c X a+b   pad|Title Case\n";

fn obj(fields: &[(&str, JsonValue)]) -> JsonValue {
    JsonValue::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn conversation() -> Vec<Message> {
    let args = obj(&[
        ("city", "Paris".into()),
        ("days", JsonValue::Int(3)),
        ("metric", JsonValue::Bool(true)),
        ("ratio", JsonValue::Float(0.5)),
        ("note", JsonValue::Null),
        ("tags", JsonValue::Array(vec!["a".into(), "é\"\n".into()])),
    ]);
    vec![
        Message::system("  Be brief.  \n"),
        Message::user("Weather in Paris? café 日本"),
        Message::assistant("").with_field(
            "tool_calls",
            JsonValue::Array(vec![obj(&[
                ("name", "get_weather".into()),
                ("arguments", args),
            ])]),
        ),
        Message::new("tool", "sunny"),
        Message::user("stop here"),
        Message::assistant("never shown"),
    ]
}

fn tools() -> Vec<JsonValue> {
    let params = obj(&[
        ("type", "object".into()),
        (
            "properties",
            obj(&[("city", obj(&[("type", "string".into())]))]),
        ),
        ("required", JsonValue::Array(vec!["city".into()])),
    ]);
    vec![obj(&[
        ("type", "function".into()),
        (
            "function",
            obj(&[
                ("name", "get_weather".into()),
                ("description", "Weather <now> & 'later'".into()),
                ("parameters", params),
            ]),
        ),
    ])]
}

fn features() -> ChatTemplate {
    ChatTemplate::new(FEATURES).unwrap().with_special_tokens(&[
        ("bos_token", Some("<s>".into())),
        ("eos_token", Some("</s>".into())),
    ])
}

#[test]
fn hugging_face_environment_matches_jinja2() {
    let t = features();
    let opts = RenderOptions {
        add_generation_prompt: true,
        tools: Some(tools()),
        vars: vec![],
    };
    assert_eq!(t.render(&conversation(), &opts).unwrap(), FEATURES_FULL);
    let one = &conversation()[1..2];
    assert_eq!(
        t.render(one, &RenderOptions::default()).unwrap(),
        FEATURES_ONE
    );
}

#[test]
fn raise_exception_is_a_typed_error() {
    let err = features()
        .render(&[Message::new("robot", "x")], &RenderOptions::default())
        .unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised {
            message: "bad role: robot".into()
        }
    );
}

#[test]
fn bad_templates_are_typed_errors_not_panics() {
    assert!(matches!(
        ChatTemplate::new("{% for m in messages %}"),
        Err(TemplateError::Syntax { .. })
    ));
    let render = |src: &str| {
        ChatTemplate::new(src)
            .unwrap()
            .render(&[Message::user("hi")], &RenderOptions::default())
    };
    assert!(matches!(
        render("{{ messages | no_such_filter }}"),
        Err(TemplateError::Render { .. })
    ));
    assert!(matches!(
        render("{{ 1 + 'a' }}"),
        Err(TemplateError::Render { .. })
    ));
    // Unbounded recursion hits the engine's limit instead of the stack's.
    assert!(matches!(
        render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
        Err(TemplateError::Render { .. })
    ));
    // A value nested deeper than `tojson` follows.
    let mut deep = JsonValue::Null;
    for _ in 0..500 {
        deep = JsonValue::Array(vec![deep]);
    }
    let m = Message::user("x").with_field("deep", deep);
    let t = ChatTemplate::new("{{ messages[0].deep | tojson }}").unwrap();
    assert!(matches!(
        t.render(&[m], &RenderOptions::default()),
        Err(TemplateError::Render { .. })
    ));
}

#[test]
fn extra_variables_and_field_overrides() {
    let t = ChatTemplate::new(
        "{{ messages[0].content is none }} {{ enable_thinking }} {{ tools }} {{ bos_token is defined }}",
    )
    .unwrap();
    let m = Message::assistant("ignored").with_field("content", JsonValue::Null);
    let opts = RenderOptions {
        vars: vec![("enable_thinking".into(), JsonValue::Bool(false))],
        ..Default::default()
    };
    assert_eq!(t.render(&[m], &opts).unwrap(), "True False None False");
}

#[test]
fn strftime_now_formats_the_current_date() {
    let t =
        ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}").unwrap();
    let s = t.render(&[], &RenderOptions::default()).unwrap();
    let (iso, human) = s.split_once('|').unwrap();
    let year: u32 = iso[..4].parse().unwrap();
    assert!(year >= 2024, "{s}");
    assert_eq!(iso.len(), 10, "{s}");
    assert!(human.ends_with(&iso[..4]), "{s}");
}
