//! The graphs on ONNX Runtime's CPU provider (`ORT_DYLIB_PATH`: the PyPI `onnxruntime`
//! wheel's `libonnxruntime.so`; skipped when unset, see `common::env_path`).
//!
//! Bound of one product: ONNX Runtime dequantizes `MatMulNBits` weights to f32 (exactly: codes
//! are small integers and the scales f16 values, so `(q − z)·s` needs at most 8 + 11 bits) and
//! sums `K` products in f32 in some order, so `|y − y_exact| ≤ γ_K · Σ|w·x|` with
//! `γ_K = K·u / (1 − K·u)`, `u = 2⁻²⁴` (Higham, recursive summation; blocked or pairwise
//! orders only do better). The f64 reference's own error is below 2⁻⁵³·K·Σ|w·x|.

mod common;

use tern_delegate_qnn::{pack, Backend, QnnDelegate, QnnOptions};
use tern_kernels::Format;
use tern_runtime::delegate::{DelegatedMatrix, Projection};

use common::*;

fn delegate(prefill_chunk: Option<usize>) -> Option<QnnDelegate> {
    let lib = env_path("ORT_DYLIB_PATH")?;
    Some(
        QnnDelegate::new(QnnOptions {
            ort_library: Some(lib),
            backend: Backend::Cpu,
            prefill_chunk,
            ..QnnOptions::default()
        })
        .expect("ONNX Runtime loads"),
    )
}

fn gamma(k: usize) -> f64 {
    let u = f32::EPSILON as f64 / 2.0;
    k as f64 * u / (1.0 - k as f64 * u)
}

/// Every offloaded format, odd row counts, one token and batches that fill, pad and span
/// prefill chunks; all within `γ_K·Σ|w·x|` of the f64 reference.
#[test]
fn each_format_matches_the_reference_product() {
    let Some(d) = delegate(Some(4)) else {
        return;
    };
    let mut rng = Rng(7);
    for format in [
        Format::Q4_0,
        Format::Q8_0,
        Format::TQ2_0,
        Format::TQ1_0,
        Format::I2_S,
    ] {
        for (rows, cols) in [(37, 256), (5, 512)] {
            let w = random_matrix(format, rows, cols, &mut rng, true);
            let p = pack::pack(format, rows, cols, &w).expect("packs");
            let m = d.prepare(&p).expect("graph builds");
            for n in [1usize, 3, 4, 9] {
                let mut x: Vec<f32> = (0..n * cols).map(|_| rng.unit() * 4.0).collect();
                x[0] = 65504.0;
                let mut y = vec![f32::NAN; n * rows];
                m.multiply(&x, n, &mut y).expect("runs");
                for (i, (got, (want, mag))) in y
                    .iter()
                    .zip(reference(format, rows, cols, &w, &x, n))
                    .enumerate()
                {
                    let bound = gamma(cols) * mag + 1e-30;
                    assert!(
                        (*got as f64 - want).abs() <= bound,
                        "{format:?} {rows}×{cols} n={n} out {i}: {got} vs {want} ± {bound}"
                    );
                }
            }
        }
    }
}

/// Whole models with every projection on ONNX Runtime's CPU provider give the CPU's greedy
/// tokens, and logits within 1.0 of it (the bound `tern-runtime`'s delegate tests and
/// `tests/tests/bitnet_reference.rs` derive: one int8 activation code flipped by f32 summation
/// order downstream moves logits by 0.1–0.5; Q4_0 has no int8 rounding and stays far below).
#[test]
fn whole_models_match_the_cpu() {
    if delegate(Some(4)).is_none() {
        return;
    }
    for name in [
        "bitnet_small_tq2_0.gguf",
        "bitnet_small_tq1_0.gguf",
        "bitnet_small_i2_s.gguf",
        "bitnet_small_q4_0.gguf",
    ] {
        let Some(cpu) = model(name) else { continue };
        let d = delegate(Some(4)).unwrap();
        let mut m = model(name).unwrap();
        let decisions = m.set_delegate(&d).to_vec();
        assert!(decisions.iter().all(|x| x.taken()), "{name}: {decisions:?}");
        let prompt: Vec<u32> = (0..10).map(|i| (i * 37 + 5) % 500 + 3).collect();
        let (mut a, mut b) = (session(cpu), session(m));
        let mut worst = 0.0f32;
        let (mut la, mut lb) = (
            a.feed(&prompt).unwrap().to_vec(),
            b.feed(&prompt).unwrap().to_vec(),
        );
        for step in 0..8 {
            worst = la
                .iter()
                .zip(&lb)
                .fold(worst, |w, (x, y)| w.max((x - y).abs()));
            assert_eq!(argmax(&la), argmax(&lb), "{name} step {step}");
            let t = argmax(&la);
            la = a.feed(&[t]).unwrap().to_vec();
            lb = b.feed(&[t]).unwrap().to_vec();
        }
        eprintln!("{name}: largest |Δlogit| {worst:.2e}");
        assert!(worst <= 1.0, "{name}: {worst}");
    }
}

/// What is declined, and why, is listed per matrix.
#[test]
fn declines_say_why() {
    let Some(lib) = env_path("ORT_DYLIB_PATH") else {
        return;
    };
    let d = QnnDelegate::new(QnnOptions {
        ort_library: Some(lib),
        projections: vec![Projection::Gate, Projection::Up, Projection::Down],
        layers: Some(vec![1]),
        ..QnnOptions::default()
    })
    .unwrap();
    let Some(mut m) = model("bitnet_small_tq2_0.gguf") else {
        return;
    };
    for dec in m.set_delegate(&d) {
        assert_eq!(
            dec.taken(),
            dec.layer == 1 && dec.projection.is_ffn(),
            "{dec:?}"
        );
        if let Err(e) = &dec.outcome {
            assert!(e.reason.contains("not selected"), "{e:?}");
        }
    }
    let Some(mut q41) = model("smollm2-135m-instruct-q4_1.gguf") else {
        return;
    };
    let all = QnnDelegate::new(QnnOptions::default()).unwrap();
    let mut seen = 0;
    for dec in q41
        .set_delegate(&all)
        .iter()
        .filter(|d| d.format == Format::Q4_1)
    {
        let why = &dec.outcome.as_ref().unwrap_err().reason;
        assert!(why.contains("float minimums"), "{why}");
        seen += 1;
    }
    assert!(seen > 0);
}

/// A missing ONNX Runtime is a typed error, not a panic.
#[test]
fn missing_library_is_a_typed_error() {
    let err = QnnDelegate::new(QnnOptions {
        ort_library: Some("/nonexistent/libonnxruntime.so".into()),
        ..QnnOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, tern_delegate_qnn::QnnError::OrtLibrary { .. }),
        "{err}"
    );
}
