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
use tern_runtime::delegate::{Delegate, DelegatedMatrix, FfnOffer, Offer, Projection};
use tern_runtime::weights::{FfnActivation, TensorRef};

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

/// The int8 rounding of the FFN block graph (`absmax_int8_roundtrip` in ONNX operators) is
/// Tern's, bit for bit, on ONNX Runtime's CPU provider (f32 like Tern): values a hair below and
/// at half-way points, the largest float below ½ (where `|x| + 0.5` rounds up), ±65504,
/// subnormals, a largest value of 2⁻¹¹⁹, an all-zero row, a row of one value, an odd width,
/// random rows.
#[test]
fn int8_rounding_in_the_block_graph_is_tern_s_bit_for_bit() {
    let Some(d) = delegate(None) else {
        return;
    };
    let cols = 37;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    // amax 127: x·s = x, so halves are exact ties.
    let mut ties: Vec<f32> = (0..cols).map(|i| i as f32 - 18.5).collect();
    ties[0] = 127.0;
    ties[1] = 0.499_999_97;
    ties[2] = -0.499_999_97;
    ties[3] = f32::from_bits(1); // the smallest subnormal
    ties[4] = -0.0;
    ties[5] = 126.5;
    ties[6] = -127.0;
    rows.push(ties);
    let mut big: Vec<f32> = (0..cols).map(|i| (i as f32 - 18.0) * 1000.0).collect();
    big[7] = 65504.0;
    big[8] = -65504.0;
    rows.push(big);
    rows.push(vec![0.0; cols]);
    rows.push(vec![-3.25; cols]);
    // Subnormals beside a normal largest value (a row whose largest value is below 2⁻¹²⁰ is
    // the one documented difference: Tern's scale overflows there, the graph's does not).
    let mut sub: Vec<f32> = (0..cols)
        .map(|i| f32::from_bits(1 + i as u32 * 977))
        .collect();
    sub[9] = 2f32.powi(-119);
    rows.push(sub);
    let mut rng = Rng(23);
    for _ in 0..64 {
        let scale = [1e-3, 1.0, 37.0][rng.byte() as usize % 3];
        rows.push((0..cols).map(|_| rng.unit() * scale).collect());
    }
    let n = rows.len();
    let x: Vec<f32> = rows.concat();
    let got = d.int8_roundtrip(&x, n, cols).expect("graph runs");
    for (r, (row, g)) in rows.iter().zip(got.chunks_exact(cols)).enumerate() {
        let mut want = row.clone();
        tern_kernels::scalar::absmax_int8_roundtrip(&mut want);
        for (i, (w, g)) in want.iter().zip(g).enumerate() {
            // ±0 compare equal: Tern writes +0 where the graph may write −0 (`sign(−0)`).
            assert!(
                w == g,
                "row {r} col {i}: input {} → Tern {w:e}, graph {g:e}",
                row[i]
            );
        }
    }
}

/// Whole models with every projection on ONNX Runtime's CPU provider, FFNs as one block graph
/// per layer (and, for TQ2_0, as three matrix graphs), give the CPU's greedy tokens, and
/// logits within 1.0 of it (the bound `tern-runtime`'s delegate tests and
/// `tests/tests/bitnet_reference.rs` derive: one int8 activation code flipped by f32 summation
/// order downstream moves logits by 0.1–0.5; Q4_0 has no int8 rounding and stays far below).
/// `gemma3_small` (mixed formats: no layer has three packable FFN matrices) falls back to
/// per-matrix graphs, with the reason, and takes its Q8_0 output head.
#[test]
fn whole_models_match_the_cpu() {
    if delegate(Some(4)).is_none() {
        return;
    }
    for (name, blocks) in [
        ("bitnet_small_tq2_0.gguf", false),
        ("bitnet_small_tq2_0.gguf", true),
        ("bitnet_small_tq1_0.gguf", true),
        ("bitnet_small_i2_s.gguf", true),
        ("bitnet_small_q4_0.gguf", true),
        ("gemma3_small.gguf", true),
    ] {
        let Some(cpu) = model(name) else { continue };
        let lib = env_path("ORT_DYLIB_PATH").unwrap();
        let d = QnnDelegate::new(QnnOptions {
            ort_library: Some(lib),
            prefill_chunk: Some(4),
            ffn_blocks: blocks,
            ..QnnOptions::default()
        })
        .unwrap();
        let mut m = model(name).unwrap();
        let decisions = m.set_delegate(&d).to_vec();
        let gemma = name.starts_with("gemma");
        let blocks_taken = decisions
            .iter()
            .filter(|x| x.projection == Projection::FfnBlock && x.taken())
            .count();
        if gemma {
            assert_eq!(blocks_taken, 0, "{name}: {decisions:?}");
            for x in decisions
                .iter()
                .filter(|x| x.projection == Projection::FfnBlock)
            {
                let why = &x.outcome.as_ref().unwrap_err().reason;
                assert!(why.contains("MatMulNBits"), "{x}");
            }
            let head = decisions.last().unwrap();
            assert!(
                head.projection == Projection::Output && head.taken(),
                "{head}"
            );
        } else {
            assert_eq!(blocks_taken, if blocks { m.config().n_layers } else { 0 });
            for x in decisions
                .iter()
                .filter(|x| Projection::ALL.contains(&x.projection))
            {
                assert!(x.taken(), "{name}: {x}");
                assert_eq!(x.in_block, blocks && x.projection.is_ffn(), "{x}");
            }
        }
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
        eprintln!("{name} (blocks {blocks}): largest |Δlogit| {worst:.2e}");
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
        assert_eq!(
            dec.in_block,
            dec.layer == 1 && dec.projection.is_ffn() && dec.projection != Projection::FfnBlock
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

/// Every form of the FFN block graph on the CPU provider, on random Q4_0 / Q8_0 / TQ2_0
/// weights: SiLU, GELU-tanh and ReLU² gates, with and without a sub-norm and BitNet's int8
/// rounding, tensor scales ≠ 1, one token and a batch that pads a prefill chunk; every output
/// within the bound `common::Checked` derives for the HTP (FP16), which the CPU provider's f32
/// arithmetic is well inside, against the f64 reference of `FfnOffer`'s definition.
#[test]
fn every_ffn_block_form_matches_the_reference() {
    let Some(lib) = env_path("ORT_DYLIB_PATH") else {
        return;
    };
    let d = Checked::new(
        QnnDelegate::new(QnnOptions {
            ort_library: Some(lib),
            prefill_chunk: Some(4),
            ..QnnOptions::default()
        })
        .unwrap(),
    );
    let mut rng = Rng(31);
    let (dim, ffn) = (256, 512);
    let t = |format: Format, rows: usize, cols: usize, scale: f32| TensorRef {
        format,
        cols,
        rows,
        offset: 0,
        len: format.row_bytes(cols).unwrap() * rows,
        scale,
    };
    let cases = [
        (Format::Q4_0, FfnActivation::Silu, false, false),
        (Format::Q8_0, FfnActivation::GeluTanh, false, false),
        (Format::Q4_0, FfnActivation::ReluSquared, true, false),
        (Format::TQ2_0, FfnActivation::Silu, true, true),
        (Format::TQ2_0, FfnActivation::ReluSquared, true, true),
    ];
    for (format, activation, sub, int8) in cases {
        let wg = random_matrix(format, ffn, dim, &mut rng, false);
        let wu = random_matrix(format, ffn, dim, &mut rng, false);
        let wd = random_matrix(format, dim, ffn, &mut rng, false);
        let norm: Vec<f32> = (0..ffn).map(|_| 0.5 + rng.unit().abs()).collect();
        let offer = |p, t: TensorRef, bytes| Offer {
            layer: 0,
            projection: p,
            t,
            bytes,
        };
        let block = d
            .offer_ffn(&FfnOffer {
                layer: 0,
                gate: offer(Projection::Gate, t(format, ffn, dim, 1.5), &wg),
                up: offer(Projection::Up, t(format, ffn, dim, 0.75), &wu),
                down: offer(Projection::Down, t(format, dim, ffn, 2.0), &wd),
                activation,
                sub_norm: sub.then_some(&norm[..]),
                norm_eps: 1e-5,
                int8_activations: int8,
            })
            .unwrap_or_else(|e| panic!("{format:?} {activation:?}: {}", e.reason));
        for n in [1usize, 3] {
            let mut x: Vec<f32> = (0..n * dim).map(|_| rng.unit() * 2.0).collect();
            if int8 {
                x.chunks_exact_mut(dim)
                    .for_each(tern_kernels::scalar::absmax_int8_roundtrip);
            }
            // Checked panics when an output leaves its bound.
            block.run(&mut x, n).expect("runs");
            assert!(x.iter().all(|v| v.is_finite()));
        }
        eprintln!(
            "{format:?} {activation:?} sub-norm {sub} int8 {int8}: worst {:.1e} of the bound",
            *d.worst.lock().unwrap()
        );
    }
}
