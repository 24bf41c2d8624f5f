//! Weight matrix × activations, spread over threads by rows.

use alloc::vec;

use tern_kernels::{scalar, Kernels};

use crate::parallel::{Parallel, SharedOut};
use crate::weights::QMatrix;

/// Rows per task: about four tasks per thread for balance, never fewer than 16 rows so the
/// cost of claiming a task stays small.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads).max(16)
}

/// `y[t] = W · x[t]` for the `n` activation rows `x` `(n, cols)`, giving `y` `(n, rows)`.
///
/// One token uses the format's dot kernel straight on the quantized row; a batch dequantizes
/// each row once and reuses it for every token, which is what makes prompt processing cheaper
/// per token than decoding.
pub(crate) fn matmul(
    k: &Kernels,
    par: &dyn Parallel,
    w: QMatrix<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let (rows, cols) = (w.t.rows, w.t.cols);
    let x = &x[..n * cols];
    let y = &mut y[..n * rows];
    let fk = *k.format(w.t.format);
    let chunk = rows_per_task(rows, par.threads());
    let out = SharedOut::new(y);
    par.run(rows.div_ceil(chunk), &|task| {
        let (r0, r1) = (task * chunk, ((task + 1) * chunk).min(rows));
        if n == 1 {
            // SAFETY: tasks own disjoint row ranges r0..r1 of the one output row, which lies
            // inside `y`; `y` outlives `run`.
            let ys = unsafe { out.slice(r0, r1 - r0) };
            for (r, yr) in (r0..r1).zip(ys) {
                *yr = (fk.dot.f)(w.row(r), x);
            }
        } else {
            let mut row = vec![0.0f32; cols];
            for r in r0..r1 {
                (fk.dequant.f)(w.row(r), &mut row);
                for t in 0..n {
                    // SAFETY: element (t, r) belongs to this task's rows only and lies inside
                    // `y` (t < n, r < rows); `y` outlives `run`.
                    let yr = unsafe { out.slice(t * rows + r, 1) };
                    yr[0] = scalar::dot_f32(&row, &x[t * cols..(t + 1) * cols]);
                }
            }
        }
    });
}
