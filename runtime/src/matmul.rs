//! Weight matrix × activations, spread over threads by rows.
//!
//! Three paths, chosen per matrix by activation precision, batch size and what the format's
//! kernels offer (formats without a multi-row kernel loop over their single-row kernel):
//!
//! | precision | tokens | kernel                                                                 |
//! |-----------|--------|------------------------------------------------------------------------|
//! | f32       | 1      | `dot_rows`: rows · x straight on the quantized bytes                    |
//! | f32       | n > 1  | each task dequantizes 16-row panels once, then `gemm_f32` (all tokens)  |
//! | int8      | 1–3    | x quantized once per call, then `gemm_q8` (weights reused across tokens) |
//! | int8      | ≥ 4    | x quantized once per call, then `gemm_i8` (formats it takes; else above) |
//! | f16       | any    | x converted to f16 blocks once per call, then `dot_f16` per row and token |
//!
//! Tasks own contiguous row ranges, a multiple of four rows (the kernels' row step), about
//! four per thread so the dynamic claiming of [`Parallel::run`] can balance a busy core.
//! [`matmul_many`] runs several matrices of the same input (Q, K, V; gate, up) as one
//! parallel section. Results do not depend on the thread count: every output element is
//! computed by one task with the same kernel whatever the split (`tests/tests/threads.rs`).

use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::dispatch::FormatKernels;
use tern_kernels::scalar::{act_f16_bytes, act_q8_bytes};
use tern_kernels::Kernels;

use crate::parallel::{Parallel, SharedOut};
use crate::weights::QMatrix;

/// How activations meet quantized weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ActivationPrecision {
    /// The default: [`ActivationPrecision::Int8`] where the kernels have fast int8 dot
    /// products ([`tern_kernels::Backend::has_fast_int8_dot`]: aarch64 `sdot`, x86 AVX2 and
    /// up), else [`ActivationPrecision::F32`]. A session resolves it once, when it is made
    /// ([`ActivationPrecision::resolve`]); the kernels never see it.
    #[default]
    Auto,
    /// Weights are dequantized on the fly and multiplied with f32 activations: the
    /// accuracy-preserving choice.
    F32,
    /// Activations are quantized to int8 per block of 32 once per matmul and meet the weights
    /// in integer dot products (ggml's scheme): faster, slightly less accurate. Formats without
    /// an int8 kernel fall back to [`ActivationPrecision::F32`].
    Int8,
    /// Activations are converted to f16 (per block of 32, scaled by a power of two) once per
    /// matmul and meet the weights, decoded to f16 through a 16-entry table, in f16 arithmetic
    /// per block, widened to f32 across blocks (see `tern_kernels::scalar::act_f16` for the
    /// arithmetic and its error bound). Runs natively where the CPU has half-precision
    /// arithmetic (aarch64 FEAT_FP16, Cortex-A55/A75 and later); with SIMD kernels on other CPUs,
    /// and for formats without an f16 kernel, it falls back to [`ActivationPrecision::F32`].
    /// The scalar kernels emulate it exactly, slowly, on any CPU.
    F16,
}

impl ActivationPrecision {
    /// The name the CLI accepts (`auto`, `f32`, `int8`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            ActivationPrecision::Auto => "auto",
            ActivationPrecision::F32 => "f32",
            ActivationPrecision::Int8 => "int8",
            ActivationPrecision::F16 => "f16",
        }
    }

    /// Parses [`ActivationPrecision::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ActivationPrecision::Auto),
            "f32" => Some(ActivationPrecision::F32),
            "int8" => Some(ActivationPrecision::Int8),
            "f16" => Some(ActivationPrecision::F16),
            _ => None,
        }
    }

    /// What this precision runs as with `kernels`: [`ActivationPrecision::Auto`] becomes
    /// int8 where the backend's int8 dot products are fast (measured per backend, see
    /// [`tern_kernels::Backend::has_fast_int8_dot`]), f32 elsewhere; the others stay as asked.
    pub fn resolve(self, kernels: &Kernels) -> ActivationPrecision {
        match self {
            ActivationPrecision::Auto if kernels.backend().has_fast_int8_dot() => {
                ActivationPrecision::Int8
            }
            ActivationPrecision::Auto => ActivationPrecision::F32,
            p => p,
        }
    }
}

/// Quantized activations of one decode token live on the stack up to this many bytes (a row
/// of 3200 activations as int8, 1760 as f16); larger or batched ones are allocated.
const STACK_ACT_BYTES: usize = 4000;

/// Weight rows the batched f32 path dequantizes at a time: a panel of 16 rows (36 KiB at
/// 576 columns) stays in L1/L2 while every token passes over it, and is cheap to allocate.
const PANEL_ROWS: usize = 16;

/// Tokens from which the int8 path takes `Kernels::gemm_i8` (its panels cost one unpacking of
/// the weights per call) rather than the format's `gemm_q8`.
const INT8_GEMM_MIN_TOKENS: usize = 4;

/// Most rows per task: a large matrix (the 49152-row output head) gets many tasks rather than
/// four per thread, so a thread that falls behind (a busy core) leaves less for the others to
/// wait for at the end.
const MAX_TASK_ROWS: usize = 512;

/// Rows per task: about four tasks per thread for balance, never fewer than 16 rows so the
/// cost of claiming a task stays small, at most [`MAX_TASK_ROWS`], and a multiple of 4 (the
/// kernels' row step).
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads)
        .clamp(16, MAX_TASK_ROWS)
        .next_multiple_of(4)
}

/// `y[t][col0 + r] = W[r] · x[t]` for the `n` activation rows `x` `(n, cols)` and the rows `r`
/// of `w`, writing into `y` `(n, y_stride)`: `w` may be a slice of a larger matrix's rows,
/// whose outputs start at column `col0`.
#[expect(
    clippy::too_many_arguments,
    reason = "the matrix, the activations and the output window a partitioned matmul needs"
)]
pub(crate) fn matmul(
    k: &Kernels,
    par: &dyn Parallel,
    precision: ActivationPrecision,
    w: QMatrix<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    y_stride: usize,
    col0: usize,
) {
    matmul_many(
        k,
        par,
        precision,
        x,
        n,
        &mut [Output {
            w,
            y,
            y_stride,
            col0,
        }],
    );
}

/// One matrix of a [`matmul_many`]: its rows, and where their outputs go.
pub(crate) struct Output<'a> {
    /// The weights (possibly a slice of a larger matrix's rows).
    pub w: QMatrix<'a>,
    /// `(n, y_stride)`; row `r` of `w` fills column `col0 + r`.
    pub y: &'a mut [f32],
    /// Floats per output row.
    pub y_stride: usize,
    /// Column of the first output.
    pub col0: usize,
}

/// Most matrices [`matmul_many`] takes at once (Q, K and V; gate and up).
pub(crate) const MAX_FUSED: usize = 4;

/// The products of several matrices with the same activations as one parallel section: the
/// activations are quantized once (int8), and the tasks of every matrix are claimed from one
/// counter, so small matrices (K, V) share the section of a large one instead of paying for
/// their own, and threads go idle once per group rather than once per matrix.
pub(crate) fn matmul_many(
    k: &Kernels,
    par: &dyn Parallel,
    precision: ActivationPrecision,
    x: &[f32],
    n: usize,
    outs: &mut [Output<'_>],
) {
    assert!(n >= 1 && !outs.is_empty() && outs.len() <= MAX_FUSED);
    let cols = outs[0].w.t.cols;
    let x = &x[..n * cols];
    let want_int8 = precision == ActivationPrecision::Int8 && cols.is_multiple_of(32);
    let want_f16 = precision == ActivationPrecision::F16 && cols.is_multiple_of(32);
    let mut prods: [Option<Product<'_>>; MAX_FUSED] = [None, None, None, None];
    for (slot, o) in prods.iter_mut().zip(outs.iter_mut()) {
        let (rows, fk) = (o.w.t.rows, k.format(o.w.t.format));
        assert!(o.w.t.cols == cols && o.col0 + rows <= o.y_stride);
        let int8 = want_int8 && (fk.gemm_q8.is_some() || fk.dot_q8.is_some());
        let f16 = want_f16 && fk.dot_f16.is_some();
        *slot = Some(Product {
            w: o.w,
            fk,
            path: match (int8, f16, n) {
                (true, _, _) => Path::Int8,
                (_, true, _) => Path::F16,
                (false, false, 1) => Path::F32Vector,
                _ => Path::F32Batch,
            },
            n,
            out: SharedOut::new(&mut o.y[..n * o.y_stride]),
            y_stride: o.y_stride,
            col0: o.col0,
            chunk: rows_per_task(rows, par.threads()),
        });
    }
    let prods = &prods[..outs.len()];

    // Quantize (int8) or convert (f16) the activations once, if any matrix takes them so; one
    // precision per call, so at most one of the two.
    let (qb, quantize) = if prods.iter().flatten().any(|p| p.path == Path::F16) {
        (act_f16_bytes(cols), Some(k.quantize_act_f16.f))
    } else if prods.iter().flatten().any(|p| p.path == Path::Int8) {
        (act_q8_bytes(cols), Some(k.quantize_act_q8.f))
    } else {
        (0, None)
    };
    let mut stack = [0u8; STACK_ACT_BYTES];
    let mut heap = Vec::new();
    let xq: &[u8] = if let Some(quantize) = quantize {
        let xq = if n * qb <= STACK_ACT_BYTES {
            &mut stack[..n * qb]
        } else {
            heap.resize(n * qb, 0);
            &mut heap[..]
        };
        for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
            quantize(xt, qt);
        }
        xq
    } else {
        &[]
    };

    let mut starts = [0usize; MAX_FUSED + 1];
    for (i, p) in prods.iter().enumerate() {
        starts[i + 1] = starts[i] + p.as_ref().map_or(0, Product::tasks);
    }
    par.run(starts[prods.len()], &|task| {
        let i = (1..=prods.len()).find(|&i| task < starts[i]).unwrap_or(1) - 1;
        if let Some(p) = &prods[i] {
            p.run_task(task - starts[i], k, x, xq);
        }
    });
}

/// How one matrix of a product is computed (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// int8 activations: the format's GEMM, or its single-row int8 dot.
    Int8,
    /// f16 activations: the format's single-row f16 dot, per row and token.
    F16,
    /// One f32 token: the format's multi-row kernel, or its row dot.
    F32Vector,
    /// A batch of f32 tokens: dequantized panels, then `gemm_f32`.
    F32Batch,
}

/// One matrix product's shape and output, shared by its tasks.
struct Product<'a> {
    w: QMatrix<'a>,
    fk: &'a FormatKernels,
    path: Path,
    /// Tokens.
    n: usize,
    /// `y` `(n, y_stride)`, written at columns `col0..col0 + rows`.
    out: SharedOut,
    y_stride: usize,
    col0: usize,
    /// Rows per task.
    chunk: usize,
}

impl Product<'_> {
    fn tasks(&self) -> usize {
        self.w.t.rows.div_ceil(self.chunk)
    }

    /// Runs task `task`: rows `task·chunk..`, all tokens. `x` is `(n, cols)`, `xq` its int8 or
    /// f16 blocks (when the path is [`Path::Int8`] or [`Path::F16`]).
    fn run_task(&self, task: usize, k: &Kernels, x: &[f32], xq: &[u8]) {
        let r = task * self.chunk..((task + 1) * self.chunk).min(self.w.t.rows);
        let (m, n, rb) = (r.len(), self.n, self.w.t.row_bytes());
        let w = &self.w.data[r.start * rb..r.end * rb];
        if n == 1 {
            // SAFETY: tasks own disjoint column ranges col0 + r of the one output row, which
            // lie inside `y` (col0 + rows ≤ y_stride); `y` outlives the parallel section.
            let y = unsafe { self.out.slice(self.col0 + r.start, m) };
            self.compute(k, w, m, x, xq, y);
        } else {
            let mut buf = vec![0.0f32; n * m];
            self.compute(k, w, m, x, xq, &mut buf);
            for (t, yt) in buf.chunks_exact(m).enumerate() {
                // SAFETY: (token t, columns col0 + r) belongs to this task only and lies inside
                // `y` (t < n, col0 + r.end ≤ y_stride); `y` outlives the parallel section.
                let dst = unsafe { self.out.slice(t * self.y_stride + self.col0 + r.start, m) };
                dst.copy_from_slice(yt);
            }
        }
    }

    /// `y[t·m + i] = row i of w · token t` for the `m` rows in `w`.
    fn compute(&self, k: &Kernels, w: &[u8], m: usize, x: &[f32], xq: &[u8], y: &mut [f32]) {
        let (fk, n, rb, cols) = (self.fk, self.n, self.w.t.row_bytes(), self.w.t.cols);
        match self.path {
            // Prompts: the batched int8 GEMM, each weight unpacked once for all the tokens.
            Path::Int8 if n >= INT8_GEMM_MIN_TOKENS && k.has_gemm_i8(self.w.t.format) => {
                k.gemm_i8(self.w.t.format, w, m, xq, n, y, m)
            }
            Path::Int8 => match (fk.gemm_q8, fk.dot_q8) {
                (Some(gemm), _) => (gemm.f)(w, m, xq, n, y, m),
                (None, Some(dot)) => {
                    let qb = xq.len() / n;
                    for (i, row) in w.chunks_exact(rb).enumerate() {
                        for (t, xt) in xq.chunks_exact(qb).enumerate() {
                            y[t * m + i] = (dot.f)(row, xt);
                        }
                    }
                }
                (None, None) => unreachable!("the int8 path needs an int8 kernel"),
            },
            Path::F16 => {
                let dot = fk.dot_f16.expect("the f16 path needs an f16 kernel");
                let hb = xq.len() / n;
                for (i, row) in w.chunks_exact(rb).enumerate() {
                    for (t, xt) in xq.chunks_exact(hb).enumerate() {
                        y[t * m + i] = (dot.f)(row, xt);
                    }
                }
            }
            Path::F32Vector => match fk.dot_rows {
                Some(rows) => (rows.f)(w, x, y),
                None => {
                    for (yr, row) in y.iter_mut().zip(w.chunks_exact(rb)) {
                        *yr = (fk.dot.f)(row, x);
                    }
                }
            },
            Path::F32Batch => {
                // Dequantize PANEL_ROWS rows at a time, each weight once per batch, and multiply
                // the panel by every token.
                let mut panel = vec![0.0f32; PANEL_ROWS.min(m) * cols];
                for (i, rows) in w.chunks(PANEL_ROWS * rb).enumerate() {
                    let p = rows.len() / rb;
                    for (row, out) in rows.chunks_exact(rb).zip(panel.chunks_exact_mut(cols)) {
                        (fk.dequant.f)(row, out);
                    }
                    let y = &mut y[i * PANEL_ROWS..];
                    (k.gemm_f32.f)(&panel[..p * cols], p, x, n, y, m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use tern_kernels::scalar;
    use tern_kernels::{Format, Kernels};

    use super::*;
    use crate::parallel::Serial;
    use crate::weights::TensorRef;

    #[test]
    fn precision_names_round_trip() {
        for p in [
            ActivationPrecision::Auto,
            ActivationPrecision::F32,
            ActivationPrecision::Int8,
            ActivationPrecision::F16,
        ] {
            assert_eq!(ActivationPrecision::from_name(p.name()), Some(p));
        }
        assert_eq!(ActivationPrecision::from_name("fp16"), None);
    }

    #[test]
    fn auto_resolves_per_backend() {
        // Every backend this CPU runs: auto is int8 exactly where the int8 dots are native,
        // and an explicit precision is never overridden.
        for b in tern_kernels::Backend::ALL {
            let Some(k) = Kernels::with_backend(b) else {
                continue;
            };
            let want = if b.has_fast_int8_dot() {
                ActivationPrecision::Int8
            } else {
                ActivationPrecision::F32
            };
            assert_eq!(ActivationPrecision::Auto.resolve(&k), want, "{}", b.name());
            for p in [
                ActivationPrecision::F32,
                ActivationPrecision::Int8,
                ActivationPrecision::F16,
            ] {
                assert_eq!(p.resolve(&k), p);
            }
        }
        assert_eq!(
            ActivationPrecision::Auto.resolve(&Kernels::scalar()),
            ActivationPrecision::F32
        );
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn matrix(format: Format, rows: usize, cols: usize, data: &[u8]) -> QMatrix<'_> {
        QMatrix {
            t: TensorRef {
                format,
                cols,
                rows,
                offset: 0,
                len: data.len(),
                scale: 1.0,
            },
            data,
        }
    }

    /// `Int8` sends batches of at least `INT8_GEMM_MIN_TOKENS` tokens of a format the int8
    /// GEMM takes (Q5_0) through `gemm_i8`, smaller ones through the format's `gemm_q8`, bit for
    /// bit as the kernels compute them directly, on every backend this CPU has.
    #[test]
    fn int8_routes_batches_to_gemm_i8() {
        use tern_kernels::Backend;
        let (rows, cols) = (40, 64);
        let mut q5 = vec![0u8; rows * cols / 32 * 22];
        scalar::quantize_q5_0(&values(rows * cols, 11), &mut q5);
        for k in Backend::ALL.into_iter().filter_map(Kernels::with_backend) {
            for n in [1usize, 3, 4, 9] {
                let x = values(n * cols, 13 + n as u32);
                let mut y = vec![0.0f32; n * rows];
                let w = matrix(Format::Q5_0, rows, cols, &q5);
                matmul(
                    &k,
                    &Serial,
                    ActivationPrecision::Int8,
                    w,
                    &x,
                    n,
                    &mut y,
                    rows,
                    0,
                );
                let qb = act_q8_bytes(cols);
                let mut xq = vec![0u8; n * qb];
                for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
                    (k.quantize_act_q8.f)(xt, qt);
                }
                let mut by_q8 = vec![0.0f32; n * rows];
                let gemm = k.format(Format::Q5_0).gemm_q8.expect("Q5_0 has gemm_q8");
                (gemm.f)(&q5, rows, &xq, n, &mut by_q8, rows);
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a == b);
                if n >= INT8_GEMM_MIN_TOKENS && k.has_gemm_i8(Format::Q5_0) {
                    let mut by_i8 = vec![0.0f32; n * rows];
                    k.gemm_i8(Format::Q5_0, &q5, rows, &xq, n, &mut by_i8, rows);
                    // The two kernels round differently, so the comparison tells them apart.
                    assert!(
                        !same(&by_i8, &by_q8),
                        "{:?} n={n}: no rounding difference",
                        k.backend()
                    );
                    assert!(same(&y, &by_i8), "{:?} n={n}: not gemm_i8", k.backend());
                } else {
                    assert!(same(&y, &by_q8), "{:?} n={n}: not gemm_q8", k.backend());
                }
            }
        }
    }

    /// `F16` sends a format with an f16 kernel (Q4_1) through the converted activations and
    /// that kernel, one token or several, and a format without one (BF16) through the f32
    /// kernels: both bit for bit as the kernels compute them directly.
    #[test]
    fn f16_routes_to_dot_f16_or_falls_back_to_f32() {
        let k = Kernels::scalar();
        let (rows, cols) = (40, 64);
        let mut q4 = vec![0u8; rows * cols / 32 * 20];
        scalar::quantize_q4_1(&values(rows * cols, 3), &mut q4);
        let bf16: Vec<u8> = values(rows * cols, 5)
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        for n in [1usize, 3] {
            let x = values(n * cols, 7 + n as u32);
            let (mut y_q4, mut y_bf) = (vec![0.0f32; n * rows], vec![0.0f32; n * rows]);
            matmul_many(
                &k,
                &Serial,
                ActivationPrecision::F16,
                &x,
                n,
                &mut [
                    Output {
                        w: matrix(Format::Q4_1, rows, cols, &q4),
                        y: &mut y_q4,
                        y_stride: rows,
                        col0: 0,
                    },
                    Output {
                        w: matrix(Format::BF16, rows, cols, &bf16),
                        y: &mut y_bf,
                        y_stride: rows,
                        col0: 0,
                    },
                ],
            );
            for t in 0..n {
                let xt = &x[t * cols..(t + 1) * cols];
                let mut xh = vec![0u8; act_f16_bytes(cols)];
                scalar::quantize_act_f16(xt, &mut xh);
                for r in 0..rows {
                    let want = scalar::dot_q4_1_f16(&q4[r * 40..(r + 1) * 40], &xh);
                    assert_eq!(y_q4[t * rows + r].to_bits(), want.to_bits(), "Q4_1 n={n}");
                    if n == 1 {
                        let want = scalar::dot_bf16_f32(&bf16[r * 128..(r + 1) * 128], xt);
                        assert_eq!(y_bf[r].to_bits(), want.to_bits(), "BF16 row {r}");
                    }
                }
            }
        }
    }
}
