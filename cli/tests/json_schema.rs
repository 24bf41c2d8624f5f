//! `tern run --json-schema` / `--grammar` on the real Qwen2.5-Coder-0.5B-Instruct: every
//! document it prints validates under its schema (checked by an independent validator, the
//! `jsonschema` crate), under greedy and sampled decoding; invalid or unenforceable inputs
//! fail with the position or the keyword.
//!
//! The normal suite runs three of the ten schemas of `tests/reference/tools/schemas.json`;
//! `--features heavy` (scripts/test-heavy.sh step `constrain`) runs all 10 × 3 prompts.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use tern_tests::root;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn qwen() -> PathBuf {
    let p = root().join("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

fn schemas() -> Vec<Value> {
    let p = root().join("tests/reference/tools/schemas.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A file holding `text` in the test's scratch directory.
fn scratch(name: &str, text: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The sampler settings of prompt `i`: greedy, llama.cpp's defaults, hot with a penalty.
fn sampling(i: usize) -> &'static [&'static str] {
    match i % 3 {
        0 => &["--temp", "0"],
        1 => &[
            "--temp", "0.8", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05",
        ],
        _ => &[
            "--temp",
            "1.2",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
            "--repeat-penalty",
            "1.1",
        ],
    }
}

fn run(prompt: &str, extra: &[&str]) -> Output {
    let chat = format!(
        "<|im_start|>system\nAnswer with JSON only.<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    );
    Command::new(TERN)
        .args([
            "run",
            "-m",
            qwen().to_str().unwrap(),
            "-p",
            &chat,
            "-n",
            "160",
            "--json",
        ])
        .args(["--threads", "2", "--seed", "11"])
        .args(extra)
        .output()
        .expect("tern runs")
}

/// Runs schema `case` on prompt `i` and checks the document validates.
fn check(case: &Value, i: usize) {
    let name = case["name"].as_str().unwrap();
    let schema = &case["schema"];
    let path = scratch(&format!("{name}.schema.json"), &schema.to_string());
    let prompt = case["prompts"][i].as_str().unwrap();
    let mut args = vec!["--json-schema", path.to_str().unwrap()];
    args.extend_from_slice(sampling(i));
    let out = run(prompt, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("--json output");
    let text = result["text"].as_str().unwrap();
    assert_eq!(
        result["stop"], "EndOfGeneration",
        "{name}/{i}: unfinished: {text}"
    );
    let doc: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}/{i}: not JSON ({e}): {text}"));
    let validator = jsonschema::validator_for(schema).expect("schema compiles");
    if let Err(e) = validator.validate(&doc) {
        panic!("{name}/{i}: {text} does not validate: {e}");
    }
    eprintln!("{name}/{i}: {text}");
}

#[test]
fn three_schemas_validate() {
    let all = schemas();
    assert_eq!(all.len(), 10);
    for (case, prompt) in [(0, 0), (6, 1), (7, 2)] {
        check(&all[case], prompt);
    }
}

#[cfg(feature = "heavy")]
#[test]
fn ten_schemas_three_prompts_validate() {
    for case in schemas() {
        for i in 0..3 {
            check(&case, i);
        }
    }
}

#[test]
fn gbnf_grammar_output_matches() {
    let g = scratch(
        "list.gbnf",
        "root ::= item (\", \" item){2}\nitem ::= [a-z]{3,8}\n",
    );
    let out = run(
        "Name three fruits.",
        &["--grammar", g.to_str().unwrap(), "--temp", "0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = result["text"].as_str().unwrap();
    let items: Vec<&str> = text.split(", ").collect();
    assert_eq!(items.len(), 3, "{text:?}");
    assert!(
        items
            .iter()
            .all(|w| (3..=8).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase())),
        "{text:?}"
    );
}

#[test]
fn invalid_inputs_name_the_position_or_the_keyword() {
    let bad_json = scratch(
        "bad.schema.json",
        "{\"type\": \"object\",\n  \"properties\": [}",
    );
    let out = run(
        "x",
        &["--json-schema", bad_json.to_str().unwrap(), "-n", "1"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 2"), "{err}");

    let unsupported = scratch(
        "unsupported.schema.json",
        "{\"type\": \"object\", \"dependentSchemas\": {\"a\": {\"required\": [\"b\"]}}}",
    );
    let out = run(
        "x",
        &["--json-schema", unsupported.to_str().unwrap(), "-n", "1"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("dependentSchemas"), "{err}");

    let bad_gbnf = scratch("bad.gbnf", "root ::= \"a\"\nnext ::= [z-a]\n");
    let out = run("x", &["--grammar", bad_gbnf.to_str().unwrap(), "-n", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 2, column 10"), "{err}");
}
