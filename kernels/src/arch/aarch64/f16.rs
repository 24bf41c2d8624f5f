//! F16 rows (e.g. a tied F16 output head) on every ARMv8.0 core: dot with f32 activations,
//! dequantization, and decoding's multi-row kernel, widening eight halves at a time with
//! `fcvtl`/`fcvtl2` (base Advanced SIMD; exact, subnormals included).
//!
//! Inline assembly because the `float16x4_t` conversion intrinsics are not stable. Bodies take
//! whole [`LANES`] (or [`ROWS_LANES`]) groups; the wrappers in the parent module hand the tail to
//! the scalar reference.

// Tiles index accumulators and outputs by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::aarch64::*;
use core::arch::asm;

use super::gemm::{prefetch_ahead, prefetch_head, ROWS};

/// Halves per step of [`dot_f16_f32`] and [`dequant_f16`].
pub(super) const LANES: usize = 16;

/// Halves per step of [`dot_rows_f16_f32`].
pub(super) const ROWS_LANES: usize = 16;

/// Eight halves (as raw bits) widened to two vectors of four floats: `fcvtl`, `fcvtl2`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn widen(h: uint16x8_t) -> [float32x4_t; 2] {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 (half to single) are base Advanced SIMD, which this function
    // enables; they only read and write the named registers.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    [lo, hi]
}

/// Two vectors of four floats narrowed to eight halves, rounding to nearest even (`fcvtn`,
/// `fcvtn2`: base Advanced SIMD).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn narrow(a: float32x4_t, b: float32x4_t) -> uint16x8_t {
    let h: uint16x8_t;
    // SAFETY: FCVTN/FCVTN2 are base Advanced SIMD, which this function enables; registers only.
    // `h` is an early output: `b` is read after the first write.
    unsafe {
        asm!(
            "fcvtn {h:v}.4h, {a:v}.4s",
            "fcvtn2 {h:v}.8h, {b:v}.4s",
            a = in(vreg) a,
            b = in(vreg) b,
            h = out(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    h
}

/// Eight halves starting at byte `2·i` of `row`, widened.
///
/// # Safety
/// Bytes `2i..2i + 16` of `row` are in bounds.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load8(row: &[u8], i: usize) -> [float32x4_t; 2] {
    debug_assert!(2 * i + 16 <= row.len());
    // SAFETY: the caller guarantees the 16 bytes. Byte loads, as the row may sit at an odd
    // address (`vld1q_u16` needs `u16` alignment).
    widen(unsafe { vreinterpretq_u16_u8(vld1q_u8(row.as_ptr().add(2 * i))) })
}

/// `Σ row[i]·x[i]` for `x.len()` a multiple of [`LANES`] and `row` its f16 bytes.
///
/// # Safety
/// `row.len() == 2·x.len()`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_f16_f32(row: &[u8], x: &[f32]) -> f32 {
    debug_assert!(row.len() == 2 * x.len() && x.len().is_multiple_of(LANES));
    let mut acc = [vdupq_n_f32(0.0); 4];
    for (i, x) in x.chunks_exact(LANES).enumerate() {
        // SAFETY: halves 16i..16i + 16 are in the row (the caller's length contract).
        let (w0, w1) = unsafe { (load8(row, LANES * i), load8(row, LANES * i + 8)) };
        let xv = super::neon::load16(x);
        acc[0] = vfmaq_f32(acc[0], w0[0], xv[0]);
        acc[1] = vfmaq_f32(acc[1], w0[1], xv[1]);
        acc[2] = vfmaq_f32(acc[2], w1[0], xv[2]);
        acc[3] = vfmaq_f32(acc[3], w1[1], xv[3]);
    }
    vaddvq_f32(super::neon::sum4(acc))
}

/// `out[i] = row[i]` for `out.len()` a multiple of [`LANES`]: bit-identical to the reference
/// (widening is exact).
///
/// # Safety
/// `row.len() == 2·out.len()`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequant_f16(row: &[u8], out: &mut [f32]) {
    debug_assert!(row.len() == 2 * out.len() && out.len().is_multiple_of(LANES));
    for (i, o) in out.chunks_exact_mut(LANES).enumerate() {
        // SAFETY: halves 16i..16i + 16 are in the row (the caller's length contract).
        let (w0, w1) = unsafe { (load8(row, LANES * i), load8(row, LANES * i + 8)) };
        super::neon::store16(o, [w0[0], w0[1], w1[0], w1[1]]);
    }
}

dot_rows_f16!(
    /// NEON (`fcvtl` on every ARMv8.0 core), [`ROWS_LANES`] halves per step.
    dot_rows_f16_f32,
    rows_f16,
    ROWS_LANES,
    "neon"
);

/// `R` rows at `p`, `stride` bytes apart, · `x`, 16 halves per step in four accumulators per
/// row.
///
/// # Safety
/// `R` rows of `2·x.len()` readable bytes at `p + r·stride`; `x.len()` a multiple of 16.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn rows_f16<const R: usize>(p: *const u8, stride: usize, x: &[f32]) -> [f32; R] {
    let mut acc = [[vdupq_n_f32(0.0); 4]; R];
    for (i, xs) in x.chunks_exact(ROWS_LANES).enumerate() {
        let xv = super::neon::load16(xs);
        for r in 0..R {
            // SAFETY: halves 16i..16i + 16 of row r, bytes 2·16i..2·16i + 32 ≤ 2·x.len()
            // (caller); byte loads, which need no alignment.
            let (w0, w1) = unsafe {
                let q = p.add(r * stride + 2 * ROWS_LANES * i);
                (
                    widen(vreinterpretq_u16_u8(vld1q_u8(q))),
                    widen(vreinterpretq_u16_u8(vld1q_u8(q.add(16)))),
                )
            };
            acc[r][0] = vfmaq_f32(acc[r][0], w0[0], xv[0]);
            acc[r][1] = vfmaq_f32(acc[r][1], w0[1], xv[1]);
            acc[r][2] = vfmaq_f32(acc[r][2], w1[0], xv[2]);
            acc[r][3] = vfmaq_f32(acc[r][3], w1[1], xv[3]);
        }
    }
    core::array::from_fn(|r| vaddvq_f32(super::neon::sum4(acc[r])))
}
