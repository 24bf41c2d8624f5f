//! Chat templates rendered by Tern against the reference renderer, Python's jinja2 in the
//! environment transformers' `apply_chat_template` builds: SmolLM2's own template on the
//! fixture conversations (`tests/reference/make_fixtures.py`); the templates of Llama 3.1,
//! 3.2 and 3.3, Phi-3.5, Qwen2.5, Qwen3, SmolLM3, Gemma 2 and Gemma 3
//! (`tests/reference/templates/`, rendered by `tests/reference/make_template_fixtures.py`);
//! and a template exercising the Hugging Face environment (tools, `tojson`, Python methods,
//! loop controls, whitespace control, `raise_exception`).

use tern_runtime::chat::{ChatTemplate, JsonValue, Message, RenderOptions, TemplateError};
use tern_tests::json::Json;
use tern_tests::reference::json_value;
use tern_tests::sha256::sha256_hex;
use tern_tests::{fixture, root, smollm2};

#[test]
fn smollm2_renderings_match_jinja2_byte_for_byte() {
    assert_eq!(
        tern_tests::reference::chat_template(&smollm2(), "smollm2"),
        9
    );
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
        ..Default::default()
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

/// A fixture's `null` or string.
fn opt_str(j: &Json) -> Option<&str> {
    match j {
        Json::Null => None,
        j => Some(j.str()),
    }
}

/// A fixture message: `role`, `content` (a string, or any value as an extra field that
/// replaces it), then the other fields.
fn fixture_message(m: &Json) -> Message {
    let content = m.get("content");
    let mut msg = match content {
        Json::Str(s) => Message::new(m.get("role").str(), s),
        other => Message::new(m.get("role").str(), "").with_field("content", json_value(other)),
    };
    for (k, v) in m
        .entries()
        .filter(|(k, _)| !matches!(*k, "role" | "content"))
    {
        msg = msg.with_field(k, json_value(v));
    }
    msg
}

/// The first byte where `a` and `b` differ, with some context of each, for failure messages.
fn first_difference(a: &str, b: &str) -> String {
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let around = |s: &str| {
        let mut start = at.saturating_sub(40).min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 40).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &s[start..end])
    };
    format!(
        "first difference at byte {at}: got {} / want {}",
        around(a),
        around(b)
    )
}

/// The models' own templates (Llama 3.x, Phi-3.5, Qwen2.5, Qwen3, SmolLM3, Gemma 2, Gemma 3)
/// render every case of `chat_templates.json` byte for byte as jinja2 did, with
/// `strftime_now` fixed at the fixture's time; cases jinja2 rejected are typed errors (the
/// template's own message for `raise_exception`); and `end_of_turn_text` is what the template
/// writes after an assistant message.
#[test]
fn model_templates_render_as_jinja2() {
    let f = fixture("chat_templates.json");
    let now = f.get("now_unix").num() as i64;
    let templates = f.get("templates").arr();
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for t in templates {
        let name = t.get("name").str();
        let path = root().join("tests/reference").join(t.get("file").str());
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            sha256_hex(source.as_bytes()),
            t.get("template_sha256").str(),
            "{name}: the template is not the one the fixture was rendered from \
             (rerun tests/reference/make_template_fixtures.sh)"
        );
        let template = ChatTemplate::new(&source)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .with_special_tokens(&[
                ("bos_token", opt_str(t.get("bos_token")).map(String::from)),
                ("eos_token", opt_str(t.get("eos_token")).map(String::from)),
            ]);
        for case in t.get("cases").arr() {
            n_cases += 1;
            let label = case.get("label").str();
            let messages: Vec<Message> = case
                .get("messages")
                .arr()
                .iter()
                .map(fixture_message)
                .collect();
            let opts = RenderOptions {
                add_generation_prompt: case.get("add_generation_prompt").bool(),
                tools: case
                    .opt("tools")
                    .map(|t| t.arr().iter().map(json_value).collect()),
                vars: case
                    .opt("vars")
                    .map(|v| {
                        v.entries()
                            .map(|(k, v)| (k.to_string(), json_value(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
                now: Some(now),
            };
            let got = template.render(&messages, &opts);
            let problem = match (case.opt("rendered"), got) {
                (Some(want), Ok(text)) if text == want.str() => None,
                (Some(want), Ok(text)) => Some(first_difference(&text, want.str())),
                (Some(_), Err(e)) => Some(format!("jinja2 rendered it, Tern failed: {e}")),
                (None, got) => {
                    let err = case.get("error");
                    let want_raised = err.get("kind").str() == "raised";
                    match got {
                        Err(TemplateError::Raised { message })
                            if want_raised && message == err.get("message").str() =>
                        {
                            None
                        }
                        Err(TemplateError::Render { .. }) if !want_raised => None,
                        other => Some(format!(
                            "jinja2 failed with {} {:?}, Tern gave {other:?}",
                            err.get("kind").str(),
                            err.get("message").str()
                        )),
                    }
                }
            };
            if let Some(p) = problem {
                failures.push(format!("{name} {label}: {p}"));
            }
        }
        let eot = template.end_of_turn_text();
        if eot.as_deref() != opt_str(t.get("end_of_turn_text")) {
            failures.push(format!(
                "{name}: end_of_turn_text {eot:?}, jinja2 {:?}",
                opt_str(t.get("end_of_turn_text"))
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases differ from jinja2:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(templates.len(), 9);
    assert!(n_cases >= 150, "only {n_cases} cases");
}
