//! NEON bodies of the f16 KV cache: attention's `y += Σ a[p]·row p`, widening the halves with
//! `fcvtl`/`fcvtl2`, and the stores' f32 → f16 narrowing with `fcvtn`/`fcvtn2` (base ARMv8
//! floating point; no FEAT_FP16 needed; both in [`super::f16`]).

use super::f16::{narrow, widen};
use core::arch::aarch64::*;

/// Floats [`axpy_rows_f16`] consumes per step; the wrapper hands the rest to the reference.
pub(super) const LANES: usize = 8;
/// Columns [`axpy_rows_f16`] takes per step (the wrappers' name).
pub(super) const AXPY_ROWS_LANES: usize = LANES;
/// Values [`quantize_f16`] takes per step.
pub(super) const QUANTIZE_F16_LANES: usize = 8;

/// Eight halves at `p` widened to two f32 vectors.
///
/// # Safety
/// NEON; 16 readable bytes at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_f16x8(p: *const u8) -> [float32x4_t; 2] {
    // SAFETY: 16 readable bytes at p (caller). Byte loads: KV rows have alignment 1.
    widen(unsafe { vreinterpretq_u16_u8(vld1q_u8(p)) })
}

axpy_rows_f16!(
    /// `y[i] += Σ_p a[p]·row p[i]` over f16 rows `stride` bytes apart, 32 columns at a time in
    /// registers while every row passes, then 8 at a time (NEON).
    "neon"
);

/// Columns `c..c + 8·V` of [`axpy_rows_f16`].
///
/// # Safety
/// As [`axpy_rows_f16`], with `c + 8·V ≤ y.len()`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn axpy_cols<const V: usize>(
    y: &mut [f32],
    c: usize,
    a: &[f32],
    rows: &[u8],
    stride: usize,
) {
    let yp = y.as_mut_ptr();
    // SAFETY: c + 8·V ≤ y.len() (caller).
    let mut acc: [[float32x4_t; 2]; V] = core::array::from_fn(|v| unsafe {
        [
            vld1q_f32(yp.add(c + 8 * v)),
            vld1q_f32(yp.add(c + 8 * v + 4)),
        ]
    });
    for (p, &ap) in a.iter().enumerate() {
        for (v, acc) in acc.iter_mut().enumerate() {
            // SAFETY: halves c+8v..c+8v+8 of row p lie inside `rows` (caller's contract).
            let [lo, hi] = unsafe { load_f16x8(rows.as_ptr().add(p * stride + 2 * (c + 8 * v))) };
            acc[0] = vfmaq_n_f32(acc[0], lo, ap);
            acc[1] = vfmaq_n_f32(acc[1], hi, ap);
        }
    }
    for (v, acc) in acc.iter().enumerate() {
        // SAFETY: as the loads above.
        unsafe {
            vst1q_f32(yp.add(c + 8 * v), acc[0]);
            vst1q_f32(yp.add(c + 8 * v + 4), acc[1]);
        }
    }
}

/// `out` = `x` as halves ([`narrow`]: rounded to nearest even), for `x.len()` a multiple of
/// [`QUANTIZE_F16_LANES`].
///
/// # Safety
/// NEON; `out.len() == 2·x.len()`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn quantize_f16(x: &[f32], out: &mut [u8]) {
    debug_assert!(out.len() == 2 * x.len() && x.len().is_multiple_of(QUANTIZE_F16_LANES));
    for i in (0..x.len()).step_by(QUANTIZE_F16_LANES) {
        // SAFETY: i + 8 ≤ x.len(): floats i..i+8 and bytes 2i..2i+16 are in bounds. Byte
        // stores: the F16 row has alignment 1.
        unsafe {
            let p = x.as_ptr().add(i);
            let h = narrow(vld1q_f32(p), vld1q_f32(p.add(4)));
            vst1q_u8(out.as_mut_ptr().add(2 * i), vreinterpretq_u8_u16(h));
        }
    }
}
