//! A reader closing the pipe ends `tern` quietly and at once (issue 17): `tern inspect … |
//! head -1` used to panic ("failed printing to stdout: Broken pipe"), and `tern run … | head -3`
//! kept generating.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_tests::smollm2_path;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// Starts `tern args…`, reads `n` bytes of its stdout, closes the pipe and returns the child.
fn read_then_close(args: &[&str], n: usize) -> Child {
    let mut child = Command::new(TERN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; n];
    stdout.read_exact(&mut buf).expect("tern printed something");
    drop(stdout);
    child
}

/// Waits for `child` at most `limit`, then checks it ended by SIGPIPE (or succeeded) without a
/// panic message.
fn ends_quietly(mut child: Child, limit: Duration, what: &str) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running {limit:?} after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    assert!(
        status.success() || status.signal() == Some(13),
        "{what}: {status:?}, stderr: {err}"
    );
}

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let model = smollm2_path();
    let child = read_then_close(&["inspect", "-m", model.to_str().unwrap()], 10);
    ends_quietly(child, Duration::from_secs(30), "tern inspect");
}

/// Generation asked for 4,000 tokens (minutes at test speed) stops within seconds of the
/// reader leaving.
#[test]
fn run_into_a_closed_pipe_stops_generating() {
    let model = smollm2_path();
    let args = [
        "run",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "Once upon a time",
        "-n",
        "4000",
    ];
    let child = read_then_close(&args, 8);
    ends_quietly(child, Duration::from_secs(5), "tern run");
}
