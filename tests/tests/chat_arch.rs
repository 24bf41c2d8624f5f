//! [`Chat`] with the chat template of every architecture Tern runs (Llama 3.x, Phi-3.5,
//! Qwen2.5, Qwen3, SmolLM3, Gemma 2, Gemma 3; `tests/reference/templates/`), on the small
//! random-weight models whose tokenizers hold those templates' special tokens
//! (`tests/reference/make_arch_models.py`; SmolLM3's ChatML tokens are in the Qwen vocabulary).
//!
//! Checked per template: the turn ends at the template's own end-of-turn token
//! (`<|eot_id|>`, `<|end|>`, `<|im_end|>`, `<end_of_turn>`), which is a control token of the
//! vocabulary; two turns render, generate and reuse the first turn's prompt from the KV cache;
//! a conversation the template rejects (a system prompt for Gemma 2) is a typed error that
//! leaves the conversation as it was; the chat's render options reach the template
//! (`enable_thinking: false` for Qwen3 and SmolLM3, a fixed `now` for Llama 3.2's date).

use std::sync::Arc;

use tern_kernels::Kernels;
use tern_runtime::chat::{
    Chat, ChatError, ChatOptions, ChatTemplate, JsonValue, RenderOptions, ReplyOptions,
    TemplateError,
};
use tern_runtime::constrain::tools::{parse_tools, ToolCallFormat, ToolChat, ToolEvent, ToolStop};
use tern_runtime::constrain::ConstraintVocab;
use tern_runtime::{Flow, Model, SamplerOptions, Session, SessionOptions};
use tern_tests::{generated_model, root};

fn model(name: &str) -> Arc<Model> {
    let p = generated_model(name);
    Arc::new(Model::open(&p, Kernels::best()).expect("model loads"))
}

fn template(file: &str, model: &Model) -> ChatTemplate {
    let path = root().join("tests/reference/templates").join(file);
    let source =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ChatTemplate::new(&source)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .with_tokenizer(model.tokenizer())
}

fn chat(model: &Arc<Model>, file: &str) -> Chat {
    let session = Session::new(
        model.clone(),
        &SessionOptions {
            context: 512,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let opts = ChatOptions {
        sampling: SamplerOptions::greedy(),
        ..Default::default()
    };
    Chat::new(session, template(file, model), opts)
}

/// Two turns with `file`'s template on `model`: the end-of-turn token is `eot`, and the second
/// turn reuses the first turn's prompt.
fn two_turns(model: &Arc<Model>, file: &str, eot: &str) {
    let tok = model.tokenizer();
    let mut c = chat(model, file);
    let id = tok
        .token_id(eot)
        .unwrap_or_else(|| panic!("{file}: {eot} is not in the vocabulary"));
    assert!(tok.is_control(id), "{file}: {eot} is not a control token");
    assert_eq!(
        tok.encode(&c.template().end_of_turn_text().unwrap(), false, true)
            .first(),
        Some(&id),
        "{file}: the template's end of turn does not start with {eot}"
    );
    assert!(
        c.end_tokens().contains(&id),
        "{file}: {eot} ({id}) does not end a turn: {:?}",
        c.end_tokens()
    );

    let opts = ReplyOptions {
        max_tokens: 6,
        ..Default::default()
    };
    let mut ignore = |_: &str| Flow::Continue;
    let r1 = c.send("What is 2+2?", &opts, &mut ignore).unwrap();
    assert_eq!(
        r1.prompt,
        c.template().render(&c.messages()[..1], &gen()).unwrap()
    );
    let prompt1 = tok.encode(&r1.prompt, false, true);
    assert_eq!(r1.prefill.new, prompt1.len(), "{file}");
    let r2 = c.send("And times 3?", &opts, &mut ignore).unwrap();
    let prompt2 = tok.encode(&r2.prompt, false, true);
    assert!(
        r2.prompt.starts_with(r1.prompt.trim_end()),
        "{file}: the second prompt does not extend the first:\n{:?}\n{:?}",
        r1.prompt,
        r2.prompt
    );
    // The last token of the first prompt may merge with the reply's first characters.
    assert!(
        r2.prefill.reused + 1 >= prompt1.len(),
        "{file}: reused {} of the first prompt's {} tokens",
        r2.prefill.reused,
        prompt1.len()
    );
    assert_eq!(r2.prefill.reused + r2.prefill.new, prompt2.len(), "{file}");
    assert_eq!(c.messages().len(), 4, "{file}");
}

fn gen() -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        ..Default::default()
    }
}

fn short() -> ReplyOptions {
    ReplyOptions {
        max_tokens: 2,
        ..Default::default()
    }
}

#[test]
fn llama3_templates() {
    let m = model("llama3_small");
    for file in [
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "meta-llama-Llama-3.3-70B-Instruct.jinja",
    ] {
        two_turns(&m, file, "<|eot_id|>");
    }

    // Llama 3.2's template dates the system prompt with strftime_now: a fixed time.
    let mut c = chat(&m, "meta-llama-Llama-3.2-3B-Instruct.jinja");
    c.set_render_options(RenderOptions {
        // 2024-02-29T13:05:09Z.
        now: Some(1_709_211_909),
        ..Default::default()
    });
    let r = c.send("Hi", &short(), &mut |_| Flow::Continue).unwrap();
    assert!(
        r.prompt.contains("\nToday Date: 29 Feb 2024\n"),
        "{:?}",
        r.prompt
    );
}

/// The Llama 3.x JSON call syntax end to end, through the generation path: Llama 3.1's
/// template teaches it, the reply (forced into a call: the weights are random) is recognised
/// as a call event with its parsed arguments, recorded in the assistant message, and rendered
/// back by the template with its result on the next turn.
#[test]
fn llama3_json_tool_calls_are_recognised_end_to_end() {
    let m = model("llama3_small");
    let vocab = ConstraintVocab::new(m.tokenizer(), m.config().vocab).unwrap();
    let tools = parse_tools(
        r#"[{"name": "get_weather", "description": "The weather in a city.",
             "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Paris"]}},
                            "required": ["city"], "additionalProperties": false}},
            {"name": "set_timer", "parameters": {"type": "object", "properties": {}}}]"#,
    )
    .unwrap();
    let mut tc = ToolChat::new(
        chat(&m, "meta-llama-Llama-3.1-8B-Instruct.jinja"),
        tools,
        &vocab,
    )
    .unwrap();
    assert_eq!(tc.format(), ToolCallFormat::Llama3Json);
    tc.set_call_required(true);
    let mut seen = Vec::new();
    let reply = tc
        .send("Weather in Oslo?", 200, &mut |e| {
            match e {
                ToolEvent::ToolCall(c) => seen.push((c.name.clone(), c.arguments.clone())),
                ToolEvent::Text(_) => {}
                other => panic!("{other:?}"),
            }
            Flow::Continue
        })
        .unwrap();
    assert_ne!(reply.stop, ToolStop::Cancelled);
    assert!(reply.incomplete.is_none(), "{reply:?}");
    assert_eq!(reply.calls.len(), 1, "{reply:?}");
    let call = &reply.calls[0];
    assert_eq!(seen, [(call.name.clone(), call.arguments.clone())]);
    // The call as written is Llama 3's: one JSON object with "name" and "parameters".
    let written: serde_json::Value = serde_json::from_str(call.raw.trim()).unwrap();
    assert_eq!(written["name"], call.name.as_str());
    assert_eq!(written["parameters"], call.arguments);
    match call.name.as_str() {
        "get_weather" => assert!(
            matches!(call.arguments["city"].as_str(), Some("Oslo" | "Paris")),
            "{call:?}"
        ),
        "set_timer" => assert!(call.arguments.is_object(), "{call:?}"),
        other => panic!("no tool {other}"),
    }

    tc.push_tool_result(call, r#"{"temperature_c": 3}"#);
    let prompt = tc.chat().render(true).unwrap();
    let rendered_call = format!("{{\"name\": \"{}\", \"parameters\": ", call.name);
    assert!(prompt.contains(&rendered_call), "{prompt}");
    let result = prompt
        .split("<|start_header_id|>ipython<|end_header_id|>\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no tool result in {prompt}"));
    assert!(result.contains("temperature_c"), "{prompt}");
}

#[test]
fn phi35_template() {
    two_turns(
        &model("phi3_small"),
        "microsoft-Phi-3.5-mini-instruct.jinja",
        "<|end|>",
    );
}

#[test]
fn qwen_and_smollm3_templates() {
    two_turns(
        &model("qwen2_small"),
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        "<|im_end|>",
    );
    let m = model("qwen3_small");
    two_turns(&m, "Qwen-Qwen3-0.6B.jinja", "<|im_end|>");
    two_turns(&m, "HuggingFaceTB-SmolLM3-3B.jinja", "<|im_end|>");

    // The non-thinking mode, through the chat's render options.
    for (file, header) in [
        (
            "Qwen-Qwen3-0.6B.jinja",
            "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        (
            "HuggingFaceTB-SmolLM3-3B.jinja",
            "<|im_start|>assistant\n<think>\n\n</think>\n",
        ),
    ] {
        let mut c = chat(&m, file);
        c.set_render_options(RenderOptions {
            vars: vec![("enable_thinking".into(), JsonValue::Bool(false))],
            ..Default::default()
        });
        let r = c.send("Hi", &short(), &mut |_| Flow::Continue).unwrap();
        assert!(r.prompt.ends_with(header), "{file}: {:?}", r.prompt);
        assert!(c.render(true).unwrap().ends_with(header), "{file}");
    }
}

#[test]
fn gemma_templates() {
    let m = model("gemma3_small");
    two_turns(&m, "google-gemma-2-2b-it.jinja", "<end_of_turn>");
    two_turns(&m, "google-gemma-3-it.jinja", "<end_of_turn>");

    // Gemma 2's template refuses a system prompt: a typed error, the conversation unchanged.
    let mut c = chat(&m, "google-gemma-2-2b-it.jinja");
    c.set_system(Some("Be brief."));
    let err = c
        .send("Hi", &ReplyOptions::default(), &mut |_| Flow::Continue)
        .unwrap_err();
    assert_eq!(
        err,
        ChatError::Template(TemplateError::Raised {
            message: "System role not supported".into()
        })
    );
    assert_eq!(c.messages().len(), 1);
    assert!(c.session().tokens().is_empty());
    // Gemma 3's folds it into the first user turn.
    let mut c = chat(&m, "google-gemma-3-it.jinja");
    c.set_system(Some("Be brief."));
    let r = c.send("Hi", &short(), &mut |_| Flow::Continue).unwrap();
    assert_eq!(
        r.prompt,
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}
