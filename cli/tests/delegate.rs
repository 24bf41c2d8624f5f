//! `--delegate` (issue 20) from the command line. Always: its usage errors (exit status 2) and a
//! missing ONNX Runtime library (exit status 1, naming the path). With the libraries
//! (`scripts/test-npu.sh` sets `ORT_DYLIB_PATH`, `TERN_QNN_PROVIDER`, `TERN_QNN_BACKEND` and
//! `TERN_REQUIRE_NPU_TESTS=1`, which turns a missing library into a failure): `tern inspect
//! --delegate ort-cpu` lists every matrix's decision, `tern run --delegate ort-cpu` generates
//! the CPU's greedy tokens, and `tern run --delegate qnn` runs on the emulated HTP.

use std::process::{Command, Output};

use tern_tests::model_path;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&str]) -> Output {
    Command::new(TERN).args(args).output().expect("tern runs")
}

fn model() -> String {
    let hint = "tests/reference/make_bitnet_models.sh --no-fixture";
    let p = model_path("bitnet_small_tq2_0.gguf", hint);
    p.to_str().unwrap().to_string()
}

/// The environment variable `name`, or `None` when the NPU libraries are not required here.
fn library(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if std::env::var_os("TERN_REQUIRE_NPU_TESTS").is_some() => {
            panic!("TERN_REQUIRE_NPU_TESTS is set but {name} is not")
        }
        Err(_) => {
            eprintln!("{name} unset: run scripts/test-npu.sh for this check");
            None
        }
    }
}

#[test]
fn usage_errors_and_missing_libraries() {
    let m = model();
    let out = tern(&["run", "-m", &m, "-p", "hi", "-n", "1", "--delegate", "qnn"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--qnn-backend"));

    let out = tern(&["run", "-m", &m, "-p", "hi", "-n", "1", "--delegate", "npu"]);
    assert_eq!(out.status.code(), Some(2));

    let missing = "/nonexistent/libonnxruntime.so";
    let out = tern(&[
        "inspect",
        "-m",
        &m,
        "--delegate",
        "ort-cpu",
        "--ort-library",
        missing,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--delegate") && err.contains(missing), "{err}");
}

#[test]
fn inspect_lists_the_decisions() {
    let Some(ort) = library("ORT_DYLIB_PATH") else {
        return;
    };
    let m = model();
    let out = tern(&[
        "inspect",
        "-m",
        &m,
        "--delegate",
        "ort-cpu",
        "--ort-library",
        &ort,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("blk.0.ffn block TQ2_0"), "{text}");
    assert!(
        text.contains("blk.3.attn_q TQ2_0 256×256: delegated"),
        "{text}"
    );
    assert!(
        text.contains("output F16") && text.contains(": CPU ("),
        "{text}"
    );
}

/// The generated text, without the lines ONNX Runtime's QNN libraries print to stdout.
fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(" # LIBNATIVE") && !l.starts_with("# LIBNATIVE"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// On ONNX Runtime's CPU provider the graphs round BitNet's activations exactly as Tern does,
/// so `--delegate ort-cpu` must give the CPU's greedy text token for token. On the emulated HTP
/// (FP16 throughout) an activation within FP16 error of an int8 rounding boundary may take the
/// neighbouring code, and this small random-weight model has near-tied logits, so its text may
/// part from the CPU's (it does after one token on this prompt): there the run must take the
/// matrices and generate, and the per-call error bounds are checked by delegate-qnn's
/// emulator tests.
#[test]
fn run_with_the_delegate() {
    let (Some(ort), Some(provider), Some(backend)) = (
        library("ORT_DYLIB_PATH"),
        library("TERN_QNN_PROVIDER"),
        library("TERN_QNN_BACKEND"),
    ) else {
        return;
    };
    let m = model();
    let common = [
        "run",
        "-m",
        &m,
        "-p",
        "hello world",
        "-n",
        "12",
        "--temp",
        "0",
    ];
    let cpu = tern(&common);
    assert!(cpu.status.success());

    let mut args = common.to_vec();
    args.extend(["--delegate", "ort-cpu", "--ort-library", &ort]);
    let ort_cpu = tern(&args);
    assert!(
        ort_cpu.status.success(),
        "{}",
        String::from_utf8_lossy(&ort_cpu.stderr)
    );
    assert_eq!(text(&ort_cpu), text(&cpu));

    let mut args = common.to_vec();
    args.extend([
        "--delegate",
        "qnn",
        "--ort-library",
        &ort,
        "--qnn-provider",
        &provider,
        "--qnn-backend",
        &backend,
    ]);
    let npu = tern(&args);
    let err = String::from_utf8_lossy(&npu.stderr);
    assert!(npu.status.success(), "{err}");
    assert!(err.contains("delegate: 28 of 29 matrices taken"), "{err}");
    assert!(err.contains("12 generated"), "{err}");
}
