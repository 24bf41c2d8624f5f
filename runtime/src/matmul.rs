//! Weight matrix × activations, spread over threads by rows.
//!
//! Four paths, chosen per call by activation precision, batch size and what the format's
//! kernels offer (formats without a multi-row kernel loop over their single-row kernel):
//!
//! | precision | tokens | kernel                                                          |
//! |-----------|--------|-----------------------------------------------------------------|
//! | f32       | 1      | `dot_rows`: rows · x straight on the quantized bytes             |
//! | f32       | n > 1  | each task dequantizes its rows once, then `gemm_f32` (all tokens) |
//! | int8      | any    | x quantized once per call, then `gemm_q8` (weights reused across tokens) |
//!
//! Tasks own contiguous row ranges, a multiple of four rows (the kernels' row step), about
//! four per thread so the dynamic claiming of [`Parallel::run`] can balance a busy core.

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

/// Rows per task: about four tasks per thread for balance, never fewer than 16 rows so the
/// cost of claiming a task stays small, and a multiple of 4 (the kernels' row step).
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads).max(16).next_multiple_of(4)
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
    let (rows, cols) = (w.t.rows, w.t.cols);
    assert!(col0 + rows <= y_stride && n >= 1);
    let x = &x[..n * cols];
    let y = &mut y[..n * y_stride];
    let fk = k.format(w.t.format);
    let p = Product {
        w,
        n,
        out: SharedOut::new(y),
        y_stride,
        col0,
        chunk: rows_per_task(rows, par.threads()),
    };
    let int8 = precision == ActivationPrecision::Int8 && cols % 32 == 0;
    match (int8, fk.gemm_q8.is_some() || fk.dot_q8.is_some()) {
        (true, true) => {
            let qb = act_q8_bytes(cols);
            let mut stack = [0u8; STACK_ACT_BYTES];
            let mut heap = Vec::new();
            let xq = if n * qb <= STACK_ACT_BYTES {
                &mut stack[..n * qb]
            } else {
                heap.resize(n * qb, 0);
                &mut heap[..]
            };
            for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
                (k.quantize_act_q8.f)(xt, qt);
            }
            p.run_int8(fk, par, xq);
        }
        _ if n == 1 => p.run_f32_vector(fk, par, x),
        _ => p.run_f32_batch(k, fk, par, x),
    }
}

/// One matrix product's shape and output, shared by its tasks.
struct Product<'a> {
    w: QMatrix<'a>,
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

    /// Rows of task `task`.
    fn rows(&self, task: usize) -> core::ops::Range<usize> {
        task * self.chunk..((task + 1) * self.chunk).min(self.w.t.rows)
    }

    /// The bytes of rows `r`, back to back.
    fn bytes(&self, r: &core::ops::Range<usize>) -> &[u8] {
        let rb = self.w.t.row_bytes();
        &self.w.data[r.start * rb..r.end * rb]
    }

    /// Runs `task_fn(rows, y)` per task, with `y` the task's outputs `(n, rows.len())`: for one
    /// token the outputs themselves, for a batch a buffer copied out afterwards.
    fn for_each_task(
        &self,
        par: &dyn Parallel,
        task_fn: &(dyn Fn(core::ops::Range<usize>, &mut [f32]) + Sync),
    ) {
        par.run(self.tasks(), &|task| {
            let r = self.rows(task);
            let m = r.len();
            if self.n == 1 {
                // SAFETY: tasks own disjoint column ranges col0 + r of the one output row,
                // which lie inside `y` (col0 + rows ≤ y_stride); `y` outlives `run`.
                let y = unsafe { self.out.slice(self.col0 + r.start, m) };
                task_fn(r, y);
            } else {
                let mut buf = vec![0.0f32; self.n * m];
                task_fn(r.clone(), &mut buf);
                for (t, yt) in buf.chunks_exact(m).enumerate() {
                    // SAFETY: (token t, columns col0 + r) belongs to this task only and lies
                    // inside `y` (t < n, col0 + r.end ≤ y_stride); `y` outlives `run`.
                    let dst = unsafe { self.out.slice(t * self.y_stride + self.col0 + r.start, m) };
                    dst.copy_from_slice(yt);
                }
            }
        });
    }

    /// int8 activations `xq` `(n, act_q8_bytes(cols))`: the format's GEMM, or its single-row
    /// int8 dot per (row, token).
    fn run_int8(&self, fk: &FormatKernels, par: &dyn Parallel, xq: &[u8]) {
        let n = self.n;
        let qb = xq.len() / n;
        self.for_each_task(par, &|r, y| {
            let m = r.len();
            let w = self.bytes(&r);
            match (fk.gemm_q8, fk.dot_q8) {
                (Some(gemm), _) => (gemm.f)(w, m, xq, n, y, m),
                (None, Some(dot)) => {
                    for (i, row) in w.chunks_exact(w.len() / m).enumerate() {
                        for (t, xt) in xq.chunks_exact(qb).enumerate() {
                            y[t * m + i] = (dot.f)(row, xt);
                        }
                    }
                }
                (None, None) => unreachable!("matmul checked for an int8 kernel"),
            }
        });
    }

    /// One f32 token: the format's multi-row kernel, or its row dot per row.
    fn run_f32_vector(&self, fk: &FormatKernels, par: &dyn Parallel, x: &[f32]) {
        self.for_each_task(par, &|r, y| {
            let w = self.bytes(&r);
            match fk.dot_rows {
                Some(rows) => (rows.f)(w, x, y),
                None => {
                    for (yr, row) in y.iter_mut().zip(w.chunks_exact(w.len() / r.len())) {
                        *yr = (fk.dot.f)(row, x);
                    }
                }
            }
        });
    }

    /// A batch of f32 tokens: each task dequantizes its rows once into a panel and multiplies
    /// the panel by every token (`gemm_f32`), so each weight is decoded once per batch.
    fn run_f32_batch(&self, k: &Kernels, fk: &FormatKernels, par: &dyn Parallel, x: &[f32]) {
        let (cols, n) = (self.w.t.cols, self.n);
        self.for_each_task(par, &|r, y| {
            let m = r.len();
            let w = self.bytes(&r);
            let mut panel = vec![0.0f32; m * cols];
            for (row, out) in w.chunks_exact(w.len() / m).zip(panel.chunks_exact_mut(cols)) {
                (fk.dequant.f)(row, out);
            }
            (k.gemm_f32.f)(&panel, m, x, n, y, m);
        });
    }
}
