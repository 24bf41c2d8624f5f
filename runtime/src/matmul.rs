//! Weight matrix × activations, spread over threads by rows.
//!
//! Three paths, chosen per matrix by activation precision, batch size and what the format's
//! kernels offer (formats without a multi-row kernel loop over their single-row kernel):
//!
//! | precision | tokens | kernel                                                                 |
//! |-----------|--------|------------------------------------------------------------------------|
//! | f32       | 1      | `dot_rows`: rows · x straight on the quantized bytes                    |
//! | f32       | n > 1  | each task dequantizes 16-row panels once, then `gemm_f32` (all tokens)  |
//! | int8      | any    | x quantized once per call, then `gemm_q8` (weights reused across tokens) |
//!
//! Tasks own contiguous row ranges, a multiple of four rows (the kernels' row step), about
//! four per thread so the dynamic claiming of [`Parallel::run`] can balance a busy core.
//! [`matmul_many`] runs several matrices of the same input (Q, K, V; gate, up) as one
//! parallel section. Results do not depend on the thread count: every output element is
//! computed by one task with the same kernel whatever the split (`tests/tests/threads.rs`).

use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::dispatch::FormatKernels;
use tern_kernels::scalar::act_q8_bytes;
use tern_kernels::Kernels;

use crate::parallel::{Parallel, SharedOut};
use crate::weights::QMatrix;

/// How activations meet quantized weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ActivationPrecision {
    /// Weights are dequantized on the fly and multiplied with f32 activations: the
    /// accuracy-preserving default.
    #[default]
    F32,
    /// Activations are quantized to int8 per block of 32 once per matmul and meet the weights
    /// in integer dot products (ggml's scheme): faster, slightly less accurate. Formats without
    /// an int8 kernel fall back to [`ActivationPrecision::F32`].
    Int8,
}

impl ActivationPrecision {
    /// The name the CLI accepts (`f32`, `int8`).
    pub fn name(self) -> &'static str {
        match self {
            ActivationPrecision::F32 => "f32",
            ActivationPrecision::Int8 => "int8",
        }
    }

    /// Parses [`ActivationPrecision::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(ActivationPrecision::F32),
            "int8" => Some(ActivationPrecision::Int8),
            _ => None,
        }
    }
}

/// Quantized activations of one decode token live on the stack up to this many bytes (a row
/// of 3200 activations); larger or batched ones are allocated.
const STACK_ACT_BYTES: usize = 4000;

/// Weight rows the batched f32 path dequantizes at a time: a panel of 16 rows (36 KiB at
/// 576 columns) stays in L1/L2 while every token passes over it, and is cheap to allocate.
const PANEL_ROWS: usize = 16;

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
#[allow(clippy::too_many_arguments)]
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
    let mut prods: [Option<Product<'_>>; MAX_FUSED] = [None, None, None, None];
    for (slot, o) in prods.iter_mut().zip(outs.iter_mut()) {
        let (rows, fk) = (o.w.t.rows, k.format(o.w.t.format));
        assert!(o.w.t.cols == cols && o.col0 + rows <= o.y_stride);
        let int8 = want_int8 && (fk.gemm_q8.is_some() || fk.dot_q8.is_some());
        *slot = Some(Product {
            w: o.w,
            fk,
            path: match (int8, n) {
                (true, _) => Path::Int8,
                (false, 1) => Path::F32Vector,
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

    // Quantize the activations once, if any matrix takes them as int8.
    let qb = act_q8_bytes(cols);
    let mut stack = [0u8; STACK_ACT_BYTES];
    let mut heap = Vec::new();
    let xq: &[u8] = if prods.iter().flatten().any(|p| p.path == Path::Int8) {
        let xq = if n * qb <= STACK_ACT_BYTES {
            &mut stack[..n * qb]
        } else {
            heap.resize(n * qb, 0);
            &mut heap[..]
        };
        for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
            (k.quantize_act_q8.f)(xt, qt);
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

    /// Runs task `task`: rows `task·chunk..`, all tokens. `x` is `(n, cols)`, `xq` its int8
    /// blocks (when the path is [`Path::Int8`]).
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
