//! Issue 17 at the command line: options that aborted, panicked or sampled nonsense are
//! refused with a message, and Ctrl-C stops `tern chat` within one prompt batch.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tern_tests::smollm2_path;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn run(extra: &[&str]) -> Output {
    let model = smollm2_path();
    let mut args = vec![
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Hello",
        "-n",
        "4",
    ];
    args.extend_from_slice(extra);
    Command::new(TERN).args(&args).output().expect("tern runs")
}

/// Fails with a message containing `needle` (and no panic).
fn refused(extra: &[&str], needle: &str) {
    let out = run(extra);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{extra:?} was accepted");
    assert!(err.contains(needle), "{extra:?}: {err}");
    assert!(!err.contains("panicked"), "{extra:?}: {err}");
}

#[test]
fn bad_options_are_refused_with_a_message() {
    refused(&["--temp", "NaN"], "temperature");
    refused(&["--temp", "inf"], "temperature");
    refused(&["--repeat-penalty", "0"], "repeat_penalty");
    refused(&["--repeat-penalty", "NaN"], "repeat_penalty");
    refused(&["--threads", "30000"], "threads");
    refused(&["--stream-arena", "inf"], "stream arena");
    refused(&["--stream-arena", "0.000001"], "stream arena");
    refused(&["--max-resident", "0.1"], "resident cap");
}

#[test]
fn a_tiny_temperature_is_greedy_and_a_huge_arena_is_the_model() {
    let text = |extra: &[&str]| {
        let out = run(extra);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // 1e-45 divided log-probabilities by a subnormal: the least likely token.
    assert_eq!(text(&["--temp", "1e-45"]), text(&["--temp", "0"]));
    // 100000 MB aborted on allocation; it is cut to the model's size.
    assert_eq!(
        text(&["--temp", "0", "--stream-arena", "100000"]),
        text(&["--temp", "0"])
    );
}

#[test]
fn ctrl_c_stops_a_chat_answer_within_a_batch() {
    let model = smollm2_path();
    let mut child = Command::new(TERN)
        .args([
            "chat",
            "-m",
            model.to_str().unwrap(),
            "--stdin",
            "-c",
            "4096",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern chat runs");
    // About 3,000 tokens: a prefill of many seconds.
    let message = "lorem ipsum dolor sit amet ".repeat(300);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{message}").unwrap();
    drop(stdin);
    std::thread::sleep(Duration::from_millis(3000));
    let at = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let took = at.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    // One 64-token batch of SmolLM2 takes well under a second; the whole prompt took 25 s.
    assert!(took < Duration::from_secs(8), "Ctrl-C took {took:?}");
}
