//! Weight matrix × activations, spread over threads by rows.

use alloc::vec;
use alloc::vec::Vec;

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

/// Rows per task: about four tasks per thread for balance, never fewer than 16 rows so the
/// cost of claiming a task stays small.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads).max(16)
}

/// `y[t][col0 + r] = W[r] · x[t]` for the `n` activation rows `x` `(n, cols)` and the rows `r`
/// of `w`, writing into `y` `(n, y_stride)`: `w` may be a slice of a larger matrix's rows,
/// whose outputs start at column `col0`.
///
/// With f32 activations, one token uses the format's dot kernel straight on the quantized row,
/// and a batch dequantizes each row once and reuses it for every token, which is what makes
/// prompt processing cheaper per token than decoding. With int8 activations, the activations
/// are quantized once and every row meets them in integer arithmetic.
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
    assert!(col0 + rows <= y_stride);
    let x = &x[..n * cols];
    let y = &mut y[..n * y_stride];
    let fk = *k.format(w.t.format);
    let chunk = rows_per_task(rows, par.threads());
    let out = SharedOut::new(y);

    if let (ActivationPrecision::Int8, Some(dot_q8), true) = (precision, fk.dot_q8, cols % 32 == 0)
    {
        let qb = act_q8_bytes(cols);
        let mut xq: Vec<u8> = vec![0; n * qb];
        for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
            (k.quantize_act_q8.f)(xt, qt);
        }
        par.run(rows.div_ceil(chunk), &|task| {
            let (r0, r1) = (task * chunk, ((task + 1) * chunk).min(rows));
            for r in r0..r1 {
                let row = w.row(r);
                for t in 0..n {
                    // SAFETY: element (t, col0 + r) belongs to this task's rows only and lies
                    // inside `y` (t < n, col0 + r < y_stride); `y` outlives `run`.
                    let yr = unsafe { out.slice(t * y_stride + col0 + r, 1) };
                    yr[0] = (dot_q8.f)(row, &xq[t * qb..(t + 1) * qb]);
                }
            }
        });
        return;
    }

    par.run(rows.div_ceil(chunk), &|task| {
        let (r0, r1) = (task * chunk, ((task + 1) * chunk).min(rows));
        if n == 1 {
            // SAFETY: tasks own disjoint column ranges col0 + r0..col0 + r1 of the one output
            // row, which lie inside `y`; `y` outlives `run`.
            let ys = unsafe { out.slice(col0 + r0, r1 - r0) };
            for (r, yr) in (r0..r1).zip(ys) {
                *yr = (fk.dot.f)(w.row(r), x);
            }
        } else {
            let mut row = vec![0.0f32; cols];
            for r in r0..r1 {
                (fk.dequant.f)(w.row(r), &mut row);
                for t in 0..n {
                    // SAFETY: element (t, col0 + r) belongs to this task's rows only and lies
                    // inside `y` (t < n, col0 + r < y_stride); `y` outlives `run`.
                    let yr = unsafe { out.slice(t * y_stride + col0 + r, 1) };
                    yr[0] = (k.dot_f32.f)(&row, &x[t * cols..(t + 1) * cols]);
                }
            }
        }
    });
}
