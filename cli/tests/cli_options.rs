//! The command line as users of llama.cpp's tools expect it (issue 21): `--opt=value`,
//! `--version`, "did you mean", per-command help with defaults, llama.cpp's short aliases,
//! exit status 2 for usage errors and 1 for failures with the error chain printed once, and
//! the output formats of `bench` (`-o md|csv|json|jsonl`), `perplexity` (llama.cpp's closing
//! line) and `--json` of inspect and plan. Everything runs SmolLM2 briefly (tiny `-p`, `-n`,
//! one repetition).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tern_tests::smollm2_path;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&str]) -> Output {
    Command::new(TERN).args(args).output().expect("tern runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` succeeded and returns its stdout.
fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}", stderr(&out));
    stdout(&out)
}

fn model() -> String {
    smollm2_path().to_str().unwrap().to_string()
}

#[test]
fn version_help_and_usage_errors() {
    let out = tern(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("tern "), "{}", stdout(&out));

    // Per-command help lists every option with its default.
    let help = ok(tern(&["bench", "--help"]));
    for needle in [
        "--n-prompt",
        "[default: 512]",
        "[default: 128]",
        "[default: 5]",
        "--output",
    ] {
        assert!(help.contains(needle), "bench --help lacks {needle}: {help}");
    }
    let help = ok(tern(&["chat", "--help"]));
    for needle in [
        "--reverse-prompt",
        "--stop",
        "--chat-template-file",
        "--seed",
    ] {
        assert!(help.contains(needle), "chat --help lacks {needle}: {help}");
    }

    // Usage errors: status 2, a suggestion for a misspelt option.
    let out = tern(&["run", "-m", "x.gguf", "-p", "hi", "--thread", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("'--threads'"), "{}", stderr(&out));
    let out = tern(&["run", "-p", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--model"), "{}", stderr(&out));
    let out = tern(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tern(&["run", "-m", &model(), "-p", "hi", "--temp", "NaN"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = tern(&["run", "-m", &model(), "-p", "hi", "--precision", "int4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("int4"), "{}", stderr(&out));

    // A failure: status 1, the file named once.
    let out = tern(&["run", "-m", "no-such-model.gguf", "-p", "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("no-such-model.gguf").count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn equals_syntax_and_llama_aliases() {
    let m = model();
    let spaced = ok(tern(&[
        "run",
        "-m",
        &m,
        "-p",
        "The sky is",
        "-n",
        "3",
        "--temp",
        "0",
        "-t",
        "2",
    ]));
    let mut equals = format!("--model={m}");
    let joined = ok(tern(&[
        "run",
        &equals,
        "--prompt=The sky is",
        "--n-predict=3",
        "--temp=0",
        "--threads=2",
    ]));
    assert_eq!(spaced, joined);
    // -s is --seed: the same seed samples the same text, and -ctk is --kv-type.
    equals = format!("-m={m}");
    let a = ok(tern(&[
        "run", &equals, "-p", "Once", "-n", "4", "-s", "7", "-t", "2", "-ctk", "f32",
    ]));
    let b = ok(tern(&[
        "run",
        &equals,
        "-p",
        "Once",
        "-n",
        "4",
        "--seed=7",
        "-t",
        "2",
        "--kv-type=f32",
    ]));
    assert_eq!(a, b);

    // -sys is the system prompt, -r a stop string (repeatable), --chat-template-file the
    // template.
    let mut child = Command::new(TERN)
        .args([
            "chat", "-m", &m, "--temp", "0", "-n", "24", "-t", "2", "--stdin",
        ])
        .args([
            "--print-prompt",
            "-sys",
            "Answer in French.",
            "-r",
            "never",
            "-r",
            "\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Write a short poem about the sea.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Answer in French."), "{err}");
    // The reply stopped at its first line break: one line of text.
    assert_eq!(
        stdout(&out).trim_end_matches('\n').lines().count(),
        1,
        "{}",
        stdout(&out)
    );
    assert!(err.contains("stop: StopString(1)"), "{err}");
}

#[test]
fn bench_prints_llama_bench_formats() {
    let m = model();
    let base = [
        "bench", "-m", &m, "-t", "1,2", "-p", "8", "-n", "4", "-r", "1",
    ];
    let md = ok(tern(&base));
    let lines: Vec<&str> = md.lines().collect();
    let header: Vec<&str> = lines[0].split('|').map(str::trim).collect();
    assert_eq!(
        header,
        ["", "model", "size", "params", "backend", "threads", "test", "t/s", ""]
    );
    assert!(lines[1].starts_with("| ---"), "{md}");
    // Two thread counts × (pp8, tg4).
    let rows: Vec<Vec<&str>> = lines[2..6]
        .iter()
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let tests: Vec<(&str, &str)> = rows.iter().map(|r| (r[5], r[6])).collect();
    assert_eq!(
        tests,
        [("1", "pp8"), ("1", "tg4"), ("2", "pp8"), ("2", "tg4")]
    );
    for r in &rows {
        assert!(r[2].ends_with(" MiB") && r[3].ends_with(" M"), "{r:?}");
        let (mean, sd) = r[7].split_once(" ± ").expect("mean ± sd");
        assert!(mean.parse::<f64>().unwrap() > 0.0 && sd.parse::<f64>().unwrap() >= 0.0);
    }

    let mut one = base.to_vec();
    one[4] = "2";
    let csv = ok(tern(&[&one[..], &["-o", "csv"]].concat()));
    let mut csv_lines = csv.lines();
    let fields: Vec<&str> = csv_lines.next().unwrap().split(',').collect();
    assert!(
        fields.contains(&"avg_ts") && fields.contains(&"n_threads"),
        "{csv}"
    );
    assert_eq!(csv_lines.count(), 2, "{csv}");

    let json: Value =
        serde_json::from_str(&ok(tern(&[&one[..], &["-o", "json"]].concat()))).unwrap();
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["n_prompt"], 8);
    assert_eq!(rows[1]["n_gen"], 4);
    assert!(rows[1]["avg_ts"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["samples_ts"].as_array().unwrap().len(), 1);

    let jsonl = ok(tern(&[&one[..], &["-o", "jsonl"]].concat()));
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["n_threads"], 2);
    }
    assert_eq!(jsonl.lines().count(), 2);

    // --json: Tern's one summary object; a missing figure is null, never NaN.
    let summary = ok(tern(&[
        "bench", "-m", &m, "-t", "2", "-p", "0", "-n", "4", "-r", "1", "--json",
    ]));
    let v: Value = serde_json::from_str(summary.trim()).expect("valid JSON");
    assert!(v["pp_tok_s"].is_null(), "{v}");
    assert!(v["tg_tok_s"].as_f64().unwrap() > 0.0, "{v}");
    // It reports one configuration.
    let out = tern(&[&base[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn perplexity_inspect_and_plan_formats() {
    let m = model();
    let dir = std::env::temp_dir().join(format!("tern-cli-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    let t = text.to_str().unwrap();
    let out = ok(tern(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        t,
        "-c",
        "32",
        "--chunks",
        "2",
        "-t",
        "2",
    ]));
    let last = out.lines().last().unwrap_or("");
    let rest = last.strip_prefix("Final estimate: PPL = ").expect(&out);
    let (ppl, err) = rest.split_once(" +/- ").expect(last);
    assert!(ppl.parse::<f64>().unwrap() >= 1.0, "{last}");
    assert_eq!(err.split_once('.').unwrap().1.len(), 5, "{last}");
    let json: Value = serde_json::from_str(&ok(tern(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        t,
        "-c",
        "32",
        "--chunks",
        "2",
        "-t",
        "2",
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["running_ppl"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();

    let inspect: Value = serde_json::from_str(&ok(tern(&["inspect", "-m", &m, "--json"]))).unwrap();
    assert_eq!(inspect["model"]["architecture"], "llama");
    assert_eq!(inspect["metadata"]["general.architecture"], "llama");
    assert_eq!(inspect["tensors"].as_array().unwrap().len(), 272);

    let plan: Value = serde_json::from_str(&ok(tern(&[
        "plan",
        "-m",
        &m,
        "--budget",
        "60",
        "--target-tok-s",
        "20",
        "--json",
    ])))
    .unwrap();
    assert_eq!(plan["candidates"].as_array().unwrap().len(), 14);
    assert_eq!(plan["pick"], "F16");
}

#[test]
fn a_prompt_after_double_dash_may_start_with_a_dash() {
    let m = model();
    let common = ["run", "-m", &m, "-n", "3", "--temp", "0", "-t", "2"];
    let flagged = ok(tern(&[&common[..], &["--prompt=-5 is less than"]].concat()));
    let trailing = ok(tern(
        &[&common[..], &["--", "-5", "is", "less", "than"]].concat(),
    ));
    assert_eq!(flagged, trailing);
    let out = tern(&[&common[..], &["-p", "x", "--", "y"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let bash = ok(tern(&["completions", "bash"]));
    // The bash script defines its completion function and registers it for `tern`, and knows
    // the subcommands and their options.
    assert!(bash.contains("_tern()"), "{bash}");
    assert!(bash.contains("complete -F _tern"), "{bash}");
    for word in ["run", "chat", "quantize", "--json-schema", "--stop"] {
        assert!(bash.contains(word), "no {word} in the bash script");
    }
    assert!(ok(tern(&["completions", "zsh"])).starts_with("#compdef tern"));
    assert!(ok(tern(&["completions", "fish"])).contains("complete -c tern"));
    // An unknown shell is a usage error.
    assert_eq!(tern(&["completions", "tcsh"]).status.code(), Some(2));
}
