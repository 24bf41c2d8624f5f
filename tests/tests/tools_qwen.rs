//! Tool calling on the real Qwen2.5-Coder-0.5B-Instruct: app-style requests over the six
//! tools of `tests/reference/tools/tools.json`, each call checked against its tool's schema
//! with an independent validator (the `jsonschema` crate).
//!
//! Built only with `--features heavy` (scripts/test-heavy.sh step `tools`; about a minute,
//! kept out of CI's time): a few requests, the tool-result turn with KV reuse, the token limit
//! inside a call, bad schemas, GBNF on the real model, and all 20 of `requests.json` with and
//! without constraints, printing how many calls validate and how many pick the right tool and
//! arguments. CI drives tool calls through the FFI and Kotlin on SmolLM2.

use std::sync::Arc;

use serde_json::Value;
use tern_runtime::chat::{Chat, ChatOptions};
use tern_runtime::constrain::tools::{parse_tools, ToolChat, ToolEvent, ToolReply};
use tern_runtime::constrain::{ConstrainError, ConstraintVocab, GrammarSource};
use tern_runtime::{Flow, Model, SamplerOptions, Session, SessionOptions};
use tern_tests::{real_model, root};

const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const SYSTEM: &str =
    "You are a phone assistant. Use a tool when the user asks for something a tool does.";

fn qwen() -> Arc<Model> {
    real_model(QWEN)
}

fn read(name: &str) -> String {
    let p = root().join("tests/reference/tools").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn vocab() -> ConstraintVocab {
    let m = qwen();
    ConstraintVocab::new(m.tokenizer(), m.config().vocab).expect("vocabulary builds")
}

fn tool_chat(constrained: bool) -> ToolChat {
    let session = Session::new(
        qwen(),
        &SessionOptions {
            context: 2048,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .expect("a 2048-token session fits");
    let opts = ChatOptions {
        sampling: SamplerOptions::greedy(),
        ..Default::default()
    };
    let mut chat = Chat::with_model_template(session, opts).expect("Qwen has a chat template");
    chat.set_system(Some(SYSTEM));
    let tools = parse_tools(&read("tools.json")).expect("tools parse");
    let mut tc = ToolChat::new(chat, tools, &vocab()).expect("tool chat");
    tc.set_constrained(constrained);
    tc
}

/// Sends one request on a fresh conversation (the system prompt's KV cache is reused),
/// checking that the streamed events agree with the reply.
fn ask(tc: &mut ToolChat, request: &str, max_tokens: usize) -> ToolReply {
    tc.chat_mut().reset();
    let mut calls = 0;
    let mut text = String::new();
    let reply = tc
        .send(request, max_tokens, &mut |ev| {
            match ev {
                ToolEvent::Text(t) => text.push_str(t),
                ToolEvent::ToolCall(_) | ToolEvent::InvalidToolCall { .. } => calls += 1,
                ToolEvent::IncompleteToolCall { .. } => {}
            }
            Flow::Continue
        })
        .expect("reply");
    assert_eq!(text, reply.text);
    assert_eq!(calls, reply.calls.len() + reply.invalid.len());
    reply
}

fn schema_of(name: &str) -> Value {
    let tools: Value = serde_json::from_str(&read("tools.json")).unwrap();
    tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name)
        .map(|t| t["function"]["parameters"].clone())
        .unwrap_or_else(|| panic!("no tool {name}"))
}

fn validates(tool: &str, args: &Value) -> bool {
    jsonschema::validator_for(&schema_of(tool))
        .expect("schema compiles")
        .is_valid(args)
}

/// Whether a call is the expected one: the tool, every expected argument (numbers equal,
/// strings containing the expected text, case-insensitively).
fn right(tool: &str, args: &Value, want: &Value) -> bool {
    tool == want["tool"]
        && want["args"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| match (args.get(k), v) {
                (Some(Value::String(a)), Value::String(w)) => {
                    a.to_lowercase().contains(&w.to_lowercase())
                }
                (Some(Value::Number(a)), Value::Number(w)) => a.as_f64() == w.as_f64(),
                _ => false,
            })
}

/// Runs `requests` and returns (replies with a call, calls valid under their schema, right
/// tool and arguments), asserting every constrained call validates.
fn evaluate(constrained: bool, requests: &[Value]) -> (usize, usize, usize) {
    let mut tc = tool_chat(constrained);
    let (mut called, mut valid, mut correct) = (0, 0, 0);
    for r in requests {
        let reply = ask(&mut tc, r["request"].as_str().unwrap(), 96);
        let Some(call) = reply.calls.first() else {
            eprintln!(
                "no call for {:?}: {:?} {:?}",
                r["request"], reply.text, reply.invalid
            );
            assert!(!constrained || reply.invalid.is_empty());
            continue;
        };
        called += 1;
        let ok = validates(&call.name, &call.arguments);
        if constrained {
            assert!(ok, "constrained call does not validate: {}", call.raw);
        }
        valid += usize::from(ok);
        let good = right(&call.name, &call.arguments, r);
        correct += usize::from(good);
        eprintln!(
            "{} {:?} -> {} {}",
            if good { "ok   " } else { "WRONG" },
            r["request"].as_str().unwrap(),
            call.name,
            call.arguments
        );
    }
    (called, valid, correct)
}

#[test]
fn constrained_calls_validate_on_a_few_requests() {
    let requests: Vec<Value> = serde_json::from_str(&read("requests.json")).unwrap();
    let few: Vec<Value> = [0, 7, 12, 15]
        .iter()
        .map(|&i| requests[i].clone())
        .collect();
    let (called, valid, correct) = evaluate(true, &few);
    eprintln!("constrained: {called}/4 called, {valid} valid, {correct} right");
    assert_eq!(called, valid);
    // The model calls a tool for these plain requests; it must not answer in prose.
    assert!(called >= 3, "only {called} of 4 requests produced a call");
}

#[test]
fn tool_result_continues_the_conversation_with_kv_reuse() {
    let mut tc = tool_chat(true);
    let first = ask(&mut tc, "What's the weather in Oslo?", 96);
    let call = first.calls.first().expect("a weather call").clone();
    assert_eq!(call.name, "get_weather");
    let cached = tc.chat().session().tokens().len();
    tc.push_tool_result(&call, "{\"temperature\": 21, \"sky\": \"sunny\"}");
    let mut text = String::new();
    let answer = tc
        .respond(64, &mut |ev| {
            if let ToolEvent::Text(t) = ev {
                text.push_str(t);
            }
            Flow::Continue
        })
        .expect("answer");
    assert!(answer.calls.is_empty(), "{answer:?}");
    // The prompt of the answer starts with everything up to the call: at least the system
    // prompt and the user's turn came from the cache.
    assert!(
        answer.reused > cached / 2,
        "reused {} of {cached} cached tokens",
        answer.reused
    );
    assert!(
        text.contains("21"),
        "the answer ignores the tool result: {text:?}"
    );
    // The conversation holds the call as `tool_calls` and the result as a `tool` message.
    let roles: Vec<&str> = tc
        .chat()
        .messages()
        .iter()
        .map(|m| m.role.as_str())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant"]);
    assert!(tc.chat().messages()[2]
        .extra
        .iter()
        .any(|(k, _)| k == "tool_calls"));
}

#[test]
fn token_limit_inside_a_call_is_an_incomplete_call() {
    let mut tc = tool_chat(true);
    let mut incomplete = None;
    tc.chat_mut().reset();
    let reply = tc
        .send(
            "Send a message to Bob saying the meeting moved to Friday.",
            6,
            &mut |ev| {
                if let ToolEvent::IncompleteToolCall { raw } = ev {
                    incomplete = Some(raw.to_string());
                }
                Flow::Continue
            },
        )
        .expect("reply");
    let raw = incomplete.expect("an incomplete-call event");
    // The call had begun (in one of the forms Qwen writes) and had not closed.
    assert!(
        raw.contains('{') && !raw.contains("</tool_call>"),
        "{raw:?}"
    );
    assert_eq!(reply.incomplete.as_deref(), Some(raw.as_str()));
    assert!(reply.calls.is_empty());
}

#[test]
fn bad_schemas_and_grammars_are_typed_errors() {
    let v = vocab();
    match v.compile(&GrammarSource::JsonSchema(
        "{\"type\": \"object\",\n \"properties\": }".into(),
    )) {
        Err(ConstrainError::Syntax {
            line: 2, column, ..
        }) => assert!(column > 1),
        other => panic!("{other:?}"),
    }
    // A keyword the engine cannot enforce is refused, not ignored.
    match v.compile(&GrammarSource::JsonSchema(
        "{\"type\": \"object\", \"dependentSchemas\": {\"a\": {\"required\": [\"b\"]}}}".into(),
    )) {
        Err(ConstrainError::Unenforceable { message }) => {
            assert!(message.contains("dependentSchemas"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match v.compile(&GrammarSource::Gbnf("root ::= \"a\" b\n".into())) {
        Err(ConstrainError::Syntax {
            what: "GBNF",
            line: 1,
            column: 14,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match v.compile(&GrammarSource::Lark("start: \"a\"\nfoo: @\n".into())) {
        Err(ConstrainError::Syntax {
            what: "Lark",
            line: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // And valid ones compile.
    v.compile(&GrammarSource::Gbnf(
        "root ::= [0-9]+ (\",\" [0-9]+)*\n".into(),
    ))
    .expect("GBNF compiles");
}

#[test]
fn gbnf_constrains_the_real_model() {
    let m = qwen();
    let v = vocab();
    let mut c = v
        .compile(&GrammarSource::Gbnf(
            "root ::= answer \".\"\nanswer ::= \"yes\" | \"no\" | \"maybe, \" [a-z ]{1,20}\n"
                .into(),
        ))
        .unwrap();
    let prompt = m.tokenizer().encode(
        "<|im_start|>user\nIs the sky green?<|im_end|>\n<|im_start|>assistant\n",
        false,
        true,
    );
    let mut s = Session::new(
        m.clone(),
        &SessionOptions {
            precision: tern_runtime::ActivationPrecision::F32,
            ..SessionOptions::default()
        },
    )
    .expect("session fits");
    let mut text = String::new();
    let mut sampler = tern_runtime::Sampler::new(SamplerOptions {
        temperature: 1.5,
        seed: 7,
        ..Default::default()
    });
    let stop =
        tern_runtime::constrain::generate(&mut s, &prompt, &mut sampler, &mut c, 40, &mut |ev| {
            if let tern_runtime::Event::Token { text: t, .. } = ev {
                text.push_str(t);
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!(stop, tern_runtime::StopReason::EndOfGeneration, "{text:?}");
    let ok = text == "yes." || text == "no." || {
        text.starts_with("maybe, ")
            && text.ends_with('.')
            && text[7..text.len() - 1]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == ' ')
    };
    assert!(ok, "{text:?}");
}

/// All 20 requests, constrained and not: prints the figures for the report.
#[cfg(feature = "heavy")]
#[test]
fn twenty_requests_with_and_without_constraints() {
    let requests: Vec<Value> = serde_json::from_str(&read("requests.json")).unwrap();
    assert!(requests.len() >= 20);
    let (c_called, c_valid, c_right) = evaluate(true, &requests);
    let (f_called, f_valid, f_right) = evaluate(false, &requests);
    let n = requests.len();
    eprintln!("constrained:   {c_called}/{n} called, {c_valid}/{c_called} valid, {c_right}/{n} right tool and arguments");
    eprintln!("unconstrained: {f_called}/{n} called, {f_valid}/{f_called} valid, {f_right}/{n} right tool and arguments");
    assert_eq!(c_called, c_valid);
}
