//! One product for every matrix of the forward pass, whatever its representation:
//! `y (n, rows) = x (n, cols) · Wᵀ · scale`.
//!
//! The forward pass calls [`Matrix::project`] (and [`project_fused`] for Q, K, V and for gate,
//! up) and never asks how a matrix is stored: products dispatch on [`Repr`] here and nowhere
//! else. Each representation's arithmetic lives beside its kernels: the GGUF bytes in
//! `crate::matmul`, the ternary forms in `crate::ternary`.
//!
//! | representation       | int8 activations¹                  | otherwise                    |
//! |----------------------|------------------------------------|------------------------------|
//! | [`Repr::Gguf`]       | —                                  | `matmul` on the feed's bytes |
//! | [`Repr::TernaryMad`] | `ternary::mad` on the feed's bytes | `matmul` on the feed's bytes |
//! | [`Repr::TernaryLut`] | `ternary::lut` on the tiles        | `matmul` on the feed's bytes |
//! | [`Repr::Delegated`]  | the delegate, on activations rounded to int8² | the delegate     |
//! | [`Repr::Repacked`]   | `repacked::project` on its groups² | `matmul` on the feed's bytes |
//!
//! ¹ [`Matrix::int8_activations`] (BitNet) or the session's [`ActivationPrecision::Int8`],
//! with every activation finite; on the `matmul` path a matrix with
//! [`Matrix::int8_activations`] gets them rounded to int8 first, in f32.
//!
//! ² For [`Repr::Delegated`]: only for [`Matrix::int8_activations`], rounded in f32 as on the
//! `matmul` path: the delegate sees the same inputs as the CPU's reference path
//! (`crate::delegate`). For [`Repr::Repacked`]: the session's [`ActivationPrecision::Int8`]
//! only (a repacked matrix never has [`Matrix::int8_activations`]).
//!
//! Bytes on the file come from the [`WeightFeed`] when the product runs, in as many slices of
//! rows as it hands out: whole from a memory map, in released slices under a resident cap,
//! through a fixed arena from a stream. A representation built at load holds its own bytes.

use alloc::vec::Vec;

use tern_kernels::{scalar, Kernels};

use crate::delegate::DelegatedMatrix;
use crate::error::GenerateError;
use crate::feed::WeightFeed;
use crate::matmul::{matmul, matmul_many, ActivationPrecision, Output, MAX_FUSED};
use crate::parallel::Parallel;
use crate::ternary::{self, GgufRows, Quantized, Weights};
use crate::weights::{Matrix, QMatrix, Repr, TensorRef};

/// What one forward call computes with: kernels, threads and activation precision.
#[derive(Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub k: &'a Kernels,
    pub par: &'a dyn Parallel,
    pub precision: ActivationPrecision,
}

impl<'a> From<QMatrix<'a>> for GgufRows<'a> {
    fn from(m: QMatrix<'a>) -> Self {
        GgufRows {
            format: m.t.format,
            cols: m.t.cols,
            row_bytes: m.t.row_bytes(),
            data: m.data,
        }
    }
}

impl Matrix {
    /// `y (n, rows) = x (n, cols) · Wᵀ · scale`, on this matrix's representation.
    pub(crate) fn project(
        &self,
        feed: &mut dyn WeightFeed,
        ex: Exec<'_>,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), GenerateError> {
        let w = &self.t;
        if let Repr::Delegated(d) = self.repr() {
            return self.project_delegated(&**d, x, n, y);
        }
        if let Repr::Repacked(r) = self.repr() {
            if ex.precision == ActivationPrecision::Int8 {
                let y = &mut y[..n * w.rows];
                crate::repacked::project(ex.k, ex.par, r, x, n, y);
                scale(y, w.scale);
                return Ok(());
            }
        }
        if let Some(q) = self.int8_input(ex, x, n) {
            let y = &mut y[..n * w.rows];
            match self.repr() {
                Repr::TernaryLut(lut) => ternary::lut(ex.k, ex.par, lut, &q, n, y),
                // MAD on the GGUF bytes.
                _ => for_row_slices(feed, w, |r0, part| {
                    let rows = GgufRows::from(QMatrix {
                        t: *w,
                        data: part.data,
                    });
                    ternary::mad(ex.k, ex.par, rows, r0, &q, n, y, w.rows);
                })?,
            }
            scale(y, w.scale);
            return Ok(());
        }
        self.project_gguf(feed, ex, x, n, y)
    }

    /// The activations quantized to int8 for a ternary representation's integer kernels, or
    /// `None` when the product runs on the GGUF path: not ternary, f32 activations, or a value
    /// that is not finite.
    fn int8_input(&self, ex: Exec<'_>, x: &[f32], n: usize) -> Option<Quantized> {
        let int8 = self.int8_activations || ex.precision == ActivationPrecision::Int8;
        match self.repr() {
            Repr::TernaryMad | Repr::TernaryLut(_) if int8 => {
                let cols = self.t.cols;
                Quantized::new(ex.k, &x[..n * cols], n, cols)
            }
            _ => None,
        }
    }

    /// The product on a delegate: BitNet's int8 rounding of the activations before (as
    /// [`Matrix::project_gguf`] emulates it) and the tensor scale after stay here.
    fn project_delegated(
        &self,
        d: &dyn DelegatedMatrix,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), GenerateError> {
        let w = &self.t;
        let rounded;
        let x = if self.int8_activations {
            let mut q = x[..n * w.cols].to_vec();
            q.chunks_exact_mut(w.cols)
                .for_each(scalar::absmax_int8_roundtrip);
            rounded = q;
            &rounded[..]
        } else {
            &x[..n * w.cols]
        };
        let y = &mut y[..n * w.rows];
        d.multiply(x, n, y).map_err(GenerateError::Delegate)?;
        scale(y, w.scale);
        Ok(())
    }

    /// The product on the GGUF bytes through the format's kernels, in as many slices of rows
    /// as the feed hands out.
    fn project_gguf(
        &self,
        feed: &mut dyn WeightFeed,
        ex: Exec<'_>,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), GenerateError> {
        let w = &self.t;
        // BitNet b1.58 feeds its matrices int8 activations (per-token absmax); emulated in f32
        // here when the integer path declined or the matrix has none.
        let quantized;
        let x = if self.int8_activations {
            let mut q = x[..n * w.cols].to_vec();
            q.chunks_exact_mut(w.cols)
                .for_each(scalar::absmax_int8_roundtrip);
            quantized = q;
            &quantized[..]
        } else {
            x
        };
        for_row_slices(feed, w, |r0, part| {
            matmul(ex.k, ex.par, ex.precision, part, x, n, y, w.rows, r0);
        })?;
        scale(&mut y[..n * w.rows], w.scale);
        Ok(())
    }
}

/// Calls `f(r0, rows r0..r1 of w)` over `w` in as many slices of rows as the feed hands out
/// at a time (the whole matrix when it is resident).
fn for_row_slices(
    feed: &mut dyn WeightFeed,
    w: &TensorRef,
    mut f: impl FnMut(usize, QMatrix<'_>),
) -> Result<(), GenerateError> {
    let step = feed.max_rows(w);
    let rb = w.row_bytes();
    let mut r0 = 0;
    while r0 < w.rows {
        let r1 = (r0 + step).min(w.rows);
        let data = feed.rows(w, r0..r1)?;
        let t = TensorRef {
            rows: r1 - r0,
            len: (r1 - r0) * rb,
            ..*w
        };
        f(r0, QMatrix { t, data });
        r0 = r1;
    }
    Ok(())
}

/// [`Matrix::project`] for several matrices of the same input (Q, K and V; gate and up), as
/// one parallel section when they allow it: the activations are quantized once and the
/// threads synchronize once per group instead of once per matrix. Two ways:
///
/// - one token through ternary representations with int8 activations, every matrix repacked
///   or whole in the feed: `ternary::gemv_many`;
/// - matrices on their GGUF bytes with nothing to apply around the product (no int8
///   emulation, no scale), every one whole in the feed: `matmul::matmul_many`.
///
/// Otherwise the matrices are projected one by one.
pub(crate) fn project_fused<const N: usize>(
    feed: &mut dyn WeightFeed,
    ex: Exec<'_>,
    x: &[f32],
    n: usize,
    mats: [(&Matrix, &mut [f32]); N],
) -> Result<(), GenerateError> {
    let mut mats = mats;
    if ternary_fused(&*feed, ex, x, n, &mut mats) || repacked_fused(ex, x, n, &mut mats) {
        return Ok(());
    }
    let plain =
        |m: &Matrix| matches!(m.repr(), Repr::Gguf) && !m.int8_activations && m.t.scale == 1.0;
    let fusable = N <= MAX_FUSED
        && mats
            .iter()
            .all(|(m, _)| plain(m) && feed.whole(&m.t).is_some());
    if !fusable {
        for (m, y) in mats {
            m.project(feed, ex, x, n, y)?;
        }
        return Ok(());
    }
    let feed = &*feed;
    let mut outs = mats.map(|(m, y)| Output {
        // Checked just above: the feed has every matrix whole.
        w: QMatrix {
            t: m.t,
            data: feed.whole(&m.t).unwrap_or_default(),
        },
        y,
        y_stride: m.t.rows,
        col0: 0,
    });
    matmul_many(ex.k, ex.par, ex.precision, x, n, &mut outs);
    Ok(())
}

/// One token through ternary representations (BitNet): one section of integer GEMVs, when
/// every matrix takes int8 activations, shares the input width and has its weights at hand
/// (repacked, or whole in the feed); `false` when the caller must go another way.
fn ternary_fused(
    feed: &dyn WeightFeed,
    ex: Exec<'_>,
    x: &[f32],
    n: usize,
    mats: &mut [(&Matrix, &mut [f32])],
) -> bool {
    let Some(cols) = mats.first().map(|(m, _)| m.t.cols) else {
        return false;
    };
    if n != 1 || mats.len() > ternary::MAX_FUSED {
        return false;
    }
    let mut weights: [Option<Weights<'_>>; ternary::MAX_FUSED] = [None; ternary::MAX_FUSED];
    for (slot, (m, _)) in weights.iter_mut().zip(mats.iter()) {
        let int8 = m.int8_activations || ex.precision == ActivationPrecision::Int8;
        if !int8 || m.t.cols != cols {
            return false;
        }
        *slot = match m.repr() {
            Repr::TernaryLut(lut) => Some(Weights::Lut(lut)),
            Repr::TernaryMad => feed
                .whole(&m.t)
                .map(|data| Weights::Mad(QMatrix { t: m.t, data }.into())),
            Repr::Gguf | Repr::Delegated(_) | Repr::Repacked(_) => None,
        };
        if slot.is_none() {
            return false;
        }
    }
    let Some(q) = Quantized::new(ex.k, &x[..cols], 1, cols) else {
        return false;
    };
    let mut it = weights.iter().flatten();
    let mut jobs: Vec<(Weights<'_>, &mut [f32])> = mats
        .iter_mut()
        .map(|(m, y)| {
            let w = *it.next().expect("one weights slot filled per matrix above");
            (w, &mut y[..m.t.rows])
        })
        .collect();
    ternary::gemv_many(ex.k, ex.par, &mut jobs, &q);
    drop(jobs);
    for (m, y) in mats.iter_mut() {
        scale(&mut y[..m.t.rows], m.t.scale);
    }
    true
}

/// Int8 activations through repacked matrices of one input width: one section
/// (`repacked::project_many`); `false` when the caller must go another way.
fn repacked_fused(ex: Exec<'_>, x: &[f32], n: usize, mats: &mut [(&Matrix, &mut [f32])]) -> bool {
    if ex.precision != ActivationPrecision::Int8 || mats.len() > MAX_FUSED {
        return false;
    }
    let cols = mats.first().map_or(0, |(m, _)| m.t.cols);
    let all = mats.iter().all(|(m, _)| {
        matches!(m.repr(), Repr::Repacked(_)) && m.t.cols == cols && m.t.scale == 1.0
    });
    if !all {
        return false;
    }
    let mut jobs: Vec<(&crate::repacked::RepackedMatrix, &mut [f32])> = mats
        .iter_mut()
        .filter_map(|(m, y)| match m.repr() {
            Repr::Repacked(r) => Some((r, &mut y[..n * m.t.rows])),
            _ => None,
        })
        .collect();
    crate::repacked::project_many(ex.k, ex.par, x, n, &mut jobs);
    true
}

/// `y *= s` unless `s` is 1.
fn scale(y: &mut [f32], s: f32) {
    if s != 1.0 {
        for v in y.iter_mut() {
            *v *= s;
        }
    }
}
#[cfg(all(test, feature = "std"))]
mod tests {
    //! The small random BitNet models of `tests/reference/make_bitnet_models.py` (a missing
    //! one fails the test): the representations `--ternary` chooses, the integer paths against the f32
    //! emulation, and MAD, LUT and their batched forms against each other, bit for bit.

    extern crate std;

    use alloc::sync::Arc;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::path::PathBuf;

    use super::*;
    use crate::model::Model;
    use crate::ternary::TernaryKernel;
    use crate::{Session, SessionOptions};

    fn model(name: &str, kernel: TernaryKernel) -> Model {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        assert!(
            path.exists(),
            "{} is missing (run tests/reference/make_bitnet_models.sh)",
            path.display()
        );
        let mut m = Model::open(&path, Kernels::best()).expect("model loads");
        m.set_ternary_kernel(kernel);
        m
    }

    /// Logits of a batched prompt, then of three tokens fed one at a time.
    fn logits(m: Model) -> Vec<Vec<f32>> {
        let prompt: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 500 + 3).collect();
        let mut s = Session::new(
            Arc::new(m),
            &SessionOptions {
                context: 64,
                precision: crate::ActivationPrecision::F32,
                ..Default::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        out.push(s.feed(&prompt).unwrap().to_vec());
        for t in [7u32, 11, 13] {
            out.push(s.feed(&[t]).unwrap().to_vec());
        }
        out
    }

    /// Whole-model logits: MAD and LUT (and their batched forms) agree bit for bit. Against
    /// the f32 emulation only loosely: both quantize every ternary input to int8, and a value
    /// within float rounding of a code boundary may round differently in the two paths; one
    /// flipped code moves logits by ~0.1–0.5 downstream (seen: 0.37 from the second decode step
    /// of the I2_S model on, while earlier steps agree to 1e-5). The exact per-product
    /// agreement is the next test; 1.0 is the bound `tests/tests/bitnet_reference.rs` derives
    /// for int8 paths.
    #[test]
    fn mad_and_lut_agree_bit_for_bit_on_whole_models() {
        for name in [
            "bitnet_small_tq2_0.gguf",
            "bitnet_small_tq1_0.gguf",
            "bitnet_small_i2_s.gguf",
        ] {
            let f32m = model(name, TernaryKernel::F32);
            let reference = logits(f32m);
            let mad = logits(model(name, TernaryKernel::Mad));
            let lut_model = model(name, TernaryKernel::Lut);
            assert!(
                lut_model.tensors().repacked_bytes() > 0,
                "{name}: LUT repacked nothing"
            );
            let lut = logits(lut_model);
            for (step, ((r, m), l)) in reference.iter().zip(&mad).zip(&lut).enumerate() {
                for (a, b) in m.iter().zip(l) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{name} step {step}: MAD vs LUT");
                }
                let worst = r
                    .iter()
                    .zip(m)
                    .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
                std::eprintln!("{name} step {step}: largest |Δ| vs emulation {worst:.2e}");
                assert!(
                    worst <= 1.0,
                    "{name} step {step}: {worst} from the f32 emulation"
                );
            }
        }
    }

    /// One projection on real model matrices, single token and batch, MAD and LUT: the integer
    /// path equals the f32 emulation (`absmax_int8_roundtrip`, then the product) evaluated in
    /// f64, within f32 rounding. Bound: the integer sums are exact, so only the per-block
    /// `d·isum` products and their sum (≤ blocks + 2 roundings), the activation step and the
    /// tensor scale round: 4·(blocks + 4)·ε·Σ|w·x|, plus ε·|x| per element for the emulation's
    /// own rounding of `q·d`.
    #[test]
    fn one_projection_equals_the_emulation_in_f64() {
        use crate::feed::SliceFeed;
        use crate::parallel::Serial;

        for name in [
            "bitnet_small_tq2_0.gguf",
            "bitnet_small_tq1_0.gguf",
            "bitnet_small_i2_s.gguf",
        ] {
            for kernel in [TernaryKernel::Mad, TernaryKernel::Lut] {
                let m = model(name, kernel);
                let l = &m.tensors().layers[0];
                for w in [&l.wq, &l.w_gate, &l.w_down] {
                    let want_lut = kernel == TernaryKernel::Lut;
                    assert_eq!(
                        matches!(w.repr(), Repr::TernaryLut(_)),
                        want_lut,
                        "{name} {kernel:?}: {:?}",
                        w.repr()
                    );
                    let w_t = w.t;
                    for n in [1usize, 3] {
                        let x: Vec<f32> = (0..n * w_t.cols)
                            .map(|i| ((i * 7919 + 13) % 1000) as f32 / 250.0 - 2.0)
                            .collect();
                        let mut y = vec![f32::NAN; n * w_t.rows];
                        let mut feed = SliceFeed::new(m.weight_bytes().unwrap(), None);
                        let ex = Exec {
                            k: m.kernels(),
                            par: &Serial,
                            precision: ActivationPrecision::F32,
                        };
                        assert!(w.int8_activations, "{name}: BitNet's matrices take int8");
                        w.project(&mut feed, ex, &x, n, &mut y).unwrap();
                        let file = m.weight_bytes().unwrap().bytes();
                        let (rb, blocks) = (w_t.row_bytes(), w_t.cols / w_t.format.block_len());
                        let mut row = vec![0.0f32; w_t.cols];
                        for t in 0..n {
                            let mut xe = x[t * w_t.cols..(t + 1) * w_t.cols].to_vec();
                            scalar::absmax_int8_roundtrip(&mut xe);
                            for r in 0..w_t.rows {
                                let bytes = &file[w_t.offset + r * rb..w_t.offset + (r + 1) * rb];
                                Kernels::scalar().dequant(w_t.format, bytes, &mut row);
                                let (mut exact, mut mag) = (0.0f64, 0.0f64);
                                for (a, b) in row.iter().zip(&xe) {
                                    exact += *a as f64 * *b as f64;
                                    mag += (*a as f64 * *b as f64).abs();
                                }
                                let exact = exact * w_t.scale as f64;
                                let mag = mag * (w_t.scale as f64).abs();
                                let eps = f32::EPSILON as f64;
                                let bound = 4.0 * (blocks as f64 + 4.0) * eps * mag
                                    + 2.0 * eps * mag
                                    + 1e-30;
                                let got = y[t * w_t.rows + r] as f64;
                                assert!(
                                    (got - exact).abs() <= bound,
                                    "{name} {kernel:?} n={n} row {r}: {got} vs {exact} ± {bound}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// What `--ternary` decides, once at load: F32 leaves every matrix on its GGUF bytes,
    /// MAD puts ternary ones on the integer kernels without repacking, LUT repacks the layer
    /// matrices and stops announcing their file bytes; a streamed model cannot repack and
    /// takes MAD.
    #[test]
    fn ternary_kernel_choice_sets_the_representations() {
        use crate::fs::FileSource;

        let name = "bitnet_small_tq2_0.gguf";
        for (kernel, want) in [
            (TernaryKernel::F32, "Gguf"),
            (TernaryKernel::Mad, "TernaryMad"),
            (TernaryKernel::Lut, "TernaryLut"),
        ] {
            let m = model(name, kernel);
            for w in m.tensors().layers.iter().flat_map(|l| l.matrices()) {
                assert!(w.t.format.is_ternary());
                let got = match w.repr() {
                    Repr::Gguf => "Gguf",
                    Repr::TernaryMad => "TernaryMad",
                    Repr::TernaryLut(_) => "TernaryLut",
                    Repr::Delegated(_) => "Delegated",
                    Repr::Repacked(_) => "Repacked",
                };
                assert_eq!(got, want, "{kernel:?}");
                assert_eq!(w.reads_file(), want != "TernaryLut", "{kernel:?}");
            }
            assert_eq!(m.tensors().repacked_bytes() > 0, want == "TernaryLut");
            assert!(m.ternary_choices().iter().all(|c| c.kernel == kernel));
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        let source = FileSource::open(&path).expect("file opens");
        let mut m = Model::from_source(&source, Kernels::best()).expect("model loads");
        m.set_ternary_kernel(TernaryKernel::Lut);
        for w in m.tensors().layers.iter().flat_map(|l| l.matrices()) {
            assert!(matches!(w.repr(), Repr::TernaryMad), "{:?}", w.repr());
        }
        assert!(m.ternary_choices().is_empty());
    }
}
