//! `tern chat` driven from stdin with SmolLM2-135M-Instruct: prompts formatted as the reference
//! renderer (jinja2) formats them, answers that stop at `<|im_end|>`, a second turn that
//! prefills only its new tokens, a saved session that restores to the same continuation, and
//! Ctrl-C stopping an answer without ending the chat.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tern_tests::json::Json;
use tern_tests::{fixture, smollm2, smollm2_path};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// The system prompt SmolLM2's template inserts when the conversation has none.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Runs `tern chat` greedily with SmolLM2 on `input`, with `extra` arguments.
fn chat(input: &str, extra: &[&str]) -> Output {
    chat_with(&smollm2_path(), input, extra)
}

/// Runs `tern chat` greedily with the model at `model` on `input`, with `extra` arguments.
fn chat_with(model: &std::path::Path, input: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(TERN)
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "96",
            "-c",
            "1024",
        ])
        .args(["--threads", "2", "--stdin", "--print-prompt"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tern chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One turn as reported on stderr.
#[derive(Debug)]
struct Turn {
    prompt: String,
    new: usize,
    reused: usize,
    stop: String,
}

/// Parses the `[prompt] "…"` and `[prefill: N new tokens, M reused, …]` lines.
fn turns(stderr: &[u8]) -> Vec<Turn> {
    let stderr = String::from_utf8_lossy(stderr);
    let mut turns = Vec::new();
    let mut prompt = None;
    for line in stderr.lines() {
        if let Some(json) = line.strip_prefix("[prompt] ") {
            prompt = Some(Json::parse(json).unwrap().str().to_string());
        } else if let Some(stats) = line.strip_prefix("[prefill: ") {
            let num = |after: &str| -> usize {
                let s = &stats[..stats
                    .find(after)
                    .unwrap_or_else(|| panic!("{after:?} in {line}"))];
                s.rsplit([' ', ','])
                    .find(|w| !w.is_empty())
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let stop = stats
                .rsplit("stop: ")
                .next()
                .unwrap()
                .trim_end_matches(']')
                .to_string();
            turns.push(Turn {
                prompt: prompt.take().expect("prompt before stats"),
                new: num(" new tokens"),
                reused: num(" reused"),
                stop,
            });
        }
    }
    turns
}

/// The ChatML text SmolLM2's template renders for `(role, content)` messages plus the
/// assistant header (the fixture test checks this construction against jinja2).
fn chatml(messages: &[(&str, &str)]) -> String {
    let mut s = String::new();
    if messages.first().is_none_or(|m| m.0 != "system") {
        s += &format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n");
    }
    for (role, content) in messages {
        s += &format!("<|im_start|>{role}\n{content}<|im_end|>\n");
    }
    s + "<|im_start|>assistant\n"
}

/// The reply of turn `i`, recovered from turn `i + 1`'s prompt.
fn reply(turns: &[Turn], i: usize) -> &str {
    let rest = turns[i + 1]
        .prompt
        .strip_prefix(turns[i].prompt.as_str())
        .expect("prompt grows");
    &rest[..rest
        .find("<|im_end|>\n")
        .expect("turn closed with <|im_end|>")]
}

#[test]
fn three_turns_from_stdin() {
    let questions = ["Hello! How are you?", "What is 2+2?", "Thanks!"];
    let out = chat(&format!("{}\n", questions.join("\n")), &[]);
    let t = turns(&out.stderr);
    assert_eq!(
        t.len(),
        3,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Turn 1 is the fixture's `user_only_gen` conversation: jinja2's rendering, byte for byte.
    let f = fixture("smollm2_chat_template.json");
    let case = f
        .get("cases")
        .arr()
        .iter()
        .find(|c| c.get("label").str() == "user_only_gen")
        .unwrap();
    assert_eq!(
        case.get("messages").arr()[0].get("content").str(),
        questions[0]
    );
    assert_eq!(t[0].prompt, case.get("rendered").str());

    // Every later prompt is the whole conversation, formatted as the template formats it.
    let r = [reply(&t, 0), reply(&t, 1)];
    let conv = [
        ("user", questions[0]),
        ("assistant", r[0]),
        ("user", questions[1]),
        ("assistant", r[1]),
        ("user", questions[2]),
    ];
    assert_eq!(t[1].prompt, chatml(&conv[..3]));
    assert_eq!(t[2].prompt, chatml(&conv));

    // Answers end at <|im_end|>, which never reaches the output; stdout is one reply per turn.
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("<|im_end|>") && !stdout.contains("<|im_start|>"),
        "{stdout}"
    );
    assert!(
        stdout.starts_with(&format!("{}\n{}\n", r[0], r[1])),
        "{stdout:?}"
    );
    assert!(stdout.ends_with('\n'));
    for turn in &t {
        assert_eq!(turn.stop, "EndOfTurn", "{turn:?}");
    }

    // Turn 2 reuses turn 1's prompt and reply from the cache and processes only the rest.
    let model = smollm2();
    let tok = model.tokenizer();
    let n = |s: &str| tok.encode(s, false, true).len();
    assert_eq!(t[0].reused, 0);
    assert_eq!(t[0].new, n(&t[0].prompt));
    for i in 1..3 {
        assert_eq!(t[i].reused + t[i].new, n(&t[i].prompt), "turn {}", i + 1);
        assert!(
            t[i].reused >= n(&t[i - 1].prompt),
            "turn {}: {:?}",
            i + 1,
            t[i]
        );
        let tail = n(&format!(
            "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            questions[i]
        ));
        assert!(
            t[i].new <= tail + 1,
            "turn {}: {} new tokens, the new text is {tail}",
            i + 1,
            t[i].new
        );
    }
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-chat-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn saved_session_restores_to_the_same_continuation() {
    let file = temp_file("session.tern");
    let path = file.to_str().unwrap();
    let a = chat(
        &format!("What is the capital of France?\n/save {path}\nAnd of Spain?\n"),
        &[],
    );
    let b = chat(&format!("/load {path}\nAnd of Spain?\n"), &[]);
    let (ta, tb) = (turns(&a.stderr), turns(&b.stderr));
    assert_eq!(
        (ta.len(), tb.len()),
        (2, 1),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(String::from_utf8_lossy(&b.stderr).contains("[loaded 2 messages"));
    // Same conversation, same cache: everything before the new turn is reused, and greedy
    // decoding continues with the same tokens.
    assert_eq!(tb[0].prompt, ta[1].prompt);
    assert_eq!((tb[0].reused, tb[0].new), (ta[1].reused, ta[1].new));
    let last_line = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(last_line(&b), last_line(&a));

    // A damaged file is refused with a message; the chat goes on.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let c = chat(&format!("/load {path}\nHi\n"), &[]);
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(turns(&c.stderr).len(), 1);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn stop_strings_and_commands() {
    // Greedy SmolLM2 answers "1. 1\n2. 2\n3. 3\n4. 4\n…"; the stop string spans tokens.
    let q = "Count from 1 to 20, separated by commas.";
    let out = chat(
        &format!("{q}\n/reset\n{q}\n"),
        &["--stop", "never", "--stop", "\n4."],
    );
    let t = turns(&out.stderr);
    assert_eq!(t.len(), 2);
    // After /reset the conversation starts over: the same prompt, all but one token reused.
    assert_eq!(t[0].prompt, t[1].prompt);
    assert_eq!((t[1].reused, t[1].new), (t[0].new - 1, 1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for turn in &t {
        assert_eq!(turn.stop, "StopString(1)", "{stdout:?}");
    }
    assert_eq!(stdout, "1. 1\n2. 2\n3. 3\n1. 1\n2. 2\n3. 3\n");
}

/// Ctrl-C during an answer stops that answer; the chat reads the next turn.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_answer_not_the_chat() {
    let model = smollm2_path();
    let mut child = Command::new(TERN)
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "400",
            "-c",
            "1024",
            "--stdin",
        ])
        .args(["--threads", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"Write a long story about a lighthouse keeper.\n")
        .unwrap();
    stdin.flush().unwrap();
    // Wait for the answer to start streaming, then interrupt it.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    stdin.write_all(b"Thanks!\n").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    let stops: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            l.rsplit("stop: ")
                .next()
                .filter(|_| l.starts_with("[prefill"))
        })
        .collect();
    assert_eq!(stops.len(), 2, "{stderr}");
    assert_eq!(stops[0], "Cancelled]", "{stderr}");
}

/// Qwen2.5-Coder-0.5B-Instruct (architecture `qwen2`) through the same CLI, unchanged: two
/// turns formatted by its own template, the second reusing the first's cache, both ending at
/// `<|im_end|>` with the right answers.
#[test]
fn qwen2_two_turns_from_stdin() {
    let model = tern_tests::model_path(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "scripts/fetch-models.sh",
    );
    let out = chat_with(
        &model,
        "What is 2+2? Answer with the number only.\nAnd 3+3?\n",
        &[],
    );
    let t = turns(&out.stderr);
    assert_eq!(
        t.len(),
        2,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t[0].prompt.starts_with("<|im_start|>system\nYou are Qwen"),
        "{}",
        t[0].prompt
    );
    assert!(t.iter().all(|t| t.stop == "EndOfTurn"), "{t:?}");
    assert!(
        t[1].reused > t[0].new / 2,
        "turn 2 reused only {} tokens",
        t[1].reused
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(replies[0].contains('4'), "{stdout}");
    assert!(replies.last().is_some_and(|r| r.contains('6')), "{stdout}");
}

/// `--var` reaches the template: Qwen3's template (SmolLM2's vocabulary has its ChatML tokens)
/// with `enable_thinking=false` opens the assistant's turn with an empty thought, and a bad
/// `--var` is refused.
#[test]
fn template_variables_reach_the_template() {
    let template = tern_tests::root().join("tests/reference/templates/Qwen-Qwen3-0.6B.jinja");
    let template = template.to_str().unwrap();
    let out = chat(
        "Hi\n",
        &[
            "--template",
            template,
            "--var",
            "enable_thinking=false",
            "-n",
            "2",
        ],
    );
    let t = turns(&out.stderr);
    assert_eq!(
        t[0].prompt,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    let out = chat("Hi\n", &["--template", template, "-n", "2"]);
    assert_eq!(
        turns(&out.stderr)[0].prompt,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );

    let out = Command::new(TERN)
        .args([
            "chat",
            "-m",
            smollm2_path().to_str().unwrap(),
            "--var",
            "=x",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected NAME=VALUE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
