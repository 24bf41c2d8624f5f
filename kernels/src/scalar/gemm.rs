//! Many rows at once: the shapes the runtime actually calls.
//!
//! - Decoding multiplies a block of weight rows by one activation vector: [`dot_rows_q4_0_f32`]
//!   and its siblings (f32 activations), or [`gemm_q4_0_q8`] with one token (int8).
//! - Prompt processing multiplies a block of rows by many activation rows, reusing each weight
//!   block across tokens: [`gemm_q4_0_q8`] and siblings for int8 activations, and, for f32
//!   activations, [`gemm_f32`] over rows the runtime dequantized once.
//!
//! The SIMD versions share loads and per-block work between rows and tokens (and prefetch the
//! rows ahead); these references define the results as plain loops over the single-row
//! kernels, so a multi-row kernel must agree with the single-row one up to the float budget of
//! its summation order, and exactly in its integer sums.

use super::{
    dot_f16_f32, dot_f32, dot_iq4_nl_f32, dot_iq4_nl_q8, dot_q4_0_f32, dot_q4_0_q8, dot_q4_1_f32,
    dot_q4_1_q8, dot_q4_k_f32, dot_q4_k_q8, dot_q5_0_f32, dot_q5_0_q8, dot_q5_1_f32, dot_q5_1_q8,
    dot_q6_k_f32, dot_q6_k_q8, dot_q8_0_f32, dot_q8_0_q8,
};

/// `y[r] = row r · x` for the `y.len()` rows of `w`, with `row_dot` the single-row kernel.
pub(crate) fn dot_rows(w: &[u8], x: &[f32], y: &mut [f32], row_dot: fn(&[u8], &[f32]) -> f32) {
    let rows = y.len();
    if rows == 0 {
        return;
    }
    assert_eq!(w.len() % rows, 0, "weights are whole rows");
    for (yr, row) in y.iter_mut().zip(w.chunks_exact(w.len() / rows)) {
        *yr = row_dot(row, x);
    }
}

/// `y[r] = row r · x` for the `y.len()` Q4_0 rows in `w`.
pub fn dot_rows_q4_0_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q4_0_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q4_1 rows in `w`.
pub fn dot_rows_q4_1_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q4_1_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q5_0 rows in `w`.
pub fn dot_rows_q5_0_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q5_0_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q5_1 rows in `w`.
pub fn dot_rows_q5_1_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q5_1_f32)
}

/// `y[r] = row r · x` for the `y.len()` IQ4_NL rows in `w`.
pub fn dot_rows_iq4_nl_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_iq4_nl_f32)
}

/// `y[r] = row r · x` for the `y.len()` F16 rows in `w` (decoding's F16 output head).
pub fn dot_rows_f16_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_f16_f32)
}

/// `y[i] += Σ_p a[p] · row p[i]` for the `a.len()` F16 rows of `y.len()` halves in `rows`:
/// attention's weighted sum of an f16 value cache. Each row is added in order, product then
/// sum, as [`axpy`](super::axpy) would add it after converting the row.
pub fn axpy_rows_f16(y: &mut [f32], a: &[f32], rows: &[u8]) {
    assert_eq!(rows.len(), 2 * a.len() * y.len(), "one F16 row per weight");
    axpy_rows_f16_cols(y, a, rows, 2 * y.len());
}

/// [`axpy_rows_f16`] over the first `y.len()` halves of rows `stride` bytes apart: the tail
/// columns a SIMD body leaves to the reference.
pub(crate) fn axpy_rows_f16_cols(y: &mut [f32], a: &[f32], rows: &[u8], stride: usize) {
    for (p, &ap) in a.iter().enumerate() {
        let row = &rows[p * stride..][..2 * y.len()];
        for (yi, h) in y.iter_mut().zip(row.chunks_exact(2)) {
            *yi += ap * half::f16::from_bits(u16::from_le_bytes([h[0], h[1]])).to_f32();
        }
    }
}

/// `y[r] = row r · x` for the `y.len()` Q8_0 rows in `w`.
pub fn dot_rows_q8_0_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q8_0_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q4_K rows in `w`.
pub fn dot_rows_q4_k_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q4_k_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q6_K rows in `w`.
pub fn dot_rows_q6_k_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q6_k_f32)
}

/// Checks the shapes of a [`gemm_q4_0_q8`]-style call and returns the bytes of one weight row
/// and of one activation row.
pub(crate) fn gemm_shape(
    w: &[u8],
    m: usize,
    x_len: usize,
    n: usize,
    y: &[f32],
    ldy: usize,
) -> (usize, usize) {
    assert!(m > 0 && n > 0, "at least one row and one token");
    assert_eq!(w.len() % m, 0, "weights are whole rows");
    assert_eq!(x_len % n, 0, "activations are whole rows");
    assert!(ldy >= m, "output rows hold every weight row");
    assert!(y.len() >= (n - 1) * ldy + m, "output holds n rows of ldy");
    (w.len() / m, x_len / n)
}

/// `y[t·ldy + r] = row r · token t` for `m` weight rows and `n` rows of int8 activations,
/// with `row_dot` the single-row kernel: each row meets every token while it is in L1. Also
/// the SIMD backends' GEMM for formats whose row dot already does the work (the k-quants).
#[inline(always)]
pub(crate) fn gemm_q8(
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
    row_dot: impl Fn(&[u8], &[u8]) -> f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (rb, qb) = gemm_shape(w, m, xq.len(), n, y, ldy);
    for (r, row) in w.chunks_exact(rb).enumerate() {
        for (t, xt) in xq.chunks_exact(qb).enumerate() {
            y[t * ldy + r] = row_dot(row, xt);
        }
    }
}

/// `y[t·ldy + r] = row r · token t` for `m` Q4_0 rows in `w` and `n` rows of int8 activations
/// in `xq` (each [`act_q8_bytes`](super::act_q8_bytes) of the row width, from `quantize_act_q8`).
pub fn gemm_q4_0_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q4_0_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q4_1 rows and `n` int8 activation rows.
pub fn gemm_q4_1_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q4_1_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q8_0 rows and `n` int8 activation rows.
pub fn gemm_q8_0_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q8_0_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q5_0 rows and `n` int8 activation rows.
pub fn gemm_q5_0_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q5_0_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q5_1 rows and `n` int8 activation rows.
pub fn gemm_q5_1_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q5_1_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` IQ4_NL rows and `n` int8 activation rows.
pub fn gemm_iq4_nl_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_iq4_nl_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q4_K rows and `n` int8 activation rows.
pub fn gemm_q4_k_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q4_k_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q6_K rows and `n` int8 activation rows.
pub fn gemm_q6_k_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q6_k_q8)
}

/// `y[t·ldy + r] = a[r] · b[t]` for `m` rows of `a` and `n` rows of `b`, all `k` wide
/// (`k = a.len() / m = b.len() / n`): prompt processing over dequantized weight rows.
pub fn gemm_f32(a: &[f32], m: usize, b: &[f32], n: usize, y: &mut [f32], ldy: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(a.len() % m, 0, "a is whole rows");
    let k = a.len() / m;
    assert_eq!(b.len(), n * k, "b has n rows of a's width");
    assert!(ldy >= m && y.len() >= (n - 1) * ldy + m);
    for t in 0..n {
        for r in 0..m {
            y[t * ldy + r] = dot_f32(&a[r * k..(r + 1) * k], &b[t * k..(t + 1) * k]);
        }
    }
}

/// Blocks per row of `row_bytes` in a format of `block_bytes` per block.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn row_blocks(row_bytes: usize, block_bytes: usize) -> usize {
    assert_eq!(row_bytes % block_bytes, 0, "rows are whole blocks");
    row_bytes / block_bytes
}

/// The blocks of `w` as `B`, with the activation row width they imply checked against
/// [`act_q8_bytes`](super::act_q8_bytes): shared by every backend's `gemm_*_q8` wrapper.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn gemm_q8_blocks<'a, B: crate::blocks::Pod>(
    w: &'a [u8],
    m: usize,
    xq_len: usize,
    n: usize,
    y: &[f32],
    ldy: usize,
) -> (&'a [B], usize) {
    let (rb, qb) = gemm_shape(w, m, xq_len, n, y, ldy);
    let kb = row_blocks(rb, core::mem::size_of::<B>());
    assert_eq!(
        qb,
        super::act_q8_bytes(32 * kb),
        "activation rows match the weight rows"
    );
    (
        crate::blocks::as_blocks(w).expect("weights are whole blocks"),
        kb,
    )
}
