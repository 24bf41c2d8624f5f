//! Bad input at the command line gets a one-line error and a failing exit code, never a panic:
//! a prompt that is not UTF-8, a text file that is not UTF-8, a file that is not GGUF, a
//! truncated GGUF, a context larger than the model's, an unknown option.

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

use tern_tests::smollm2_path;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(TERN).args(args).output().expect("tern runs")
}

/// Asserts `out` failed cleanly with an error mentioning `what`.
fn fails_with(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(what), "expected '{what}' in: {err}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let model = smollm2_path();
    let m = model.as_os_str();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let bytes = |b: &'static [u8]| std::ffi::OsStr::from_bytes(b);

    let out = tern(&[
        os("run"),
        os("-m"),
        m,
        os("-p"),
        bytes(b"\xff\xfe bad"),
        os("-n"),
        os("2"),
    ]);
    fails_with(&out, "not valid UTF-8");

    let dir = std::env::temp_dir().join(format!("tern-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("latin1.txt");
    std::fs::write(&text, b"caf\xe9 au lait").unwrap();
    let out = tern(&[os("perplexity"), os("-m"), m, os("-f"), text.as_os_str()]);
    fails_with(&out, "not UTF-8");

    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, b"certainly not a model").unwrap();
    let out = tern(&[
        os("run"),
        os("-m"),
        not_gguf.as_os_str(),
        os("-p"),
        os("hi"),
    ]);
    fails_with(&out, "GGUF");

    let truncated = dir.join("truncated.gguf");
    let full = std::fs::read(&model).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 3]).unwrap();
    let out = tern(&[os("inspect"), os("-m"), truncated.as_os_str()]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("panicked"), "{all}");
    let out = tern(&[
        os("run"),
        os("-m"),
        truncated.as_os_str(),
        os("-p"),
        os("hi"),
    ]);
    fails_with(&out, "offset");

    let out = tern(&[
        os("run"),
        os("-m"),
        m,
        os("-p"),
        os("hi"),
        os("-c"),
        os("99999999"),
    ]);
    fails_with(&out, "trained context");

    let out = tern(&[os("run"), os("--no-such-option")]);
    fails_with(&out, "no-such-option");
    std::fs::remove_dir_all(&dir).unwrap();
}
