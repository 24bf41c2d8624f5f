//! NEON bodies for Q3_K and Q2_K against f32 activations, and their dequantization.
//!
//! Every function enables `neon` and is reached only through the wrappers in the parent
//! module, installed after detection. Bodies take whole 256-weight blocks.
//!
//! Both formats keep their codes in 2-bit planes: pair k of byte `32h + l` of `qs` is element
//! `128h + 32k + l`, so a 16-byte load and a shift by `2k` give 16 codes in element order, one
//! whole 16-element sub-block. Q3_K's high bits are bit `e / 32` of `hmask[e % 32]`. The
//! per-sub-block steps (`d·(sc − 32)`; `d·sc`, `dmin·m`) are the scalar reference's own f32
//! products, computed once per block; the codes are widened to f32 and multiplied (dequant)
//! or fused into the dot with `x`. The row kernels take [`ROWS`] rows per step, sharing each
//! run of `x` (and, for Q2_K, its sum), and prefetch the rows ahead as `gemm.rs` does.

use core::arch::aarch64::*;

use super::gemm::{prefetch_ahead, prefetch_head, store_rows, ROWS};
use super::kquants::load_u8x16;
use super::neon::{dot16, i8x16_to_f32, load16, store16, sum4};
use crate::blocks::{BlockQ2_K, BlockQ3_K};
use crate::scalar::q3_k_scale_codes;

/// Pair `k` (bits `2k..2k + 2`) of each byte of `plane`, one code 0..=3 per byte.
#[inline]
#[target_feature(enable = "neon")]
fn pair(plane: uint8x16_t, k: usize) -> uint8x16_t {
    let shifted = match k {
        0 => plane,
        1 => vshrq_n_u8::<2>(plane),
        2 => vshrq_n_u8::<4>(plane),
        _ => vshrq_n_u8::<6>(plane),
    };
    vandq_u8(shifted, vdupq_n_u8(3))
}

/// Sub-block `s` (elements `16s..16s + 16`) of a Q2_K block: codes 0..=3, one byte each.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q2_k_codes(b: &BlockQ2_K, s: usize) -> uint8x16_t {
    // Sub-block s = 8h + 2k + o: half h, pair k, bytes 16·o.. of the half's 32.
    let (h, k, o) = (s / 8, (s / 2) % 4, s % 2);
    pair(load_u8x16(&b.qs[32 * h + 16 * o..]), k)
}

/// Sub-block `s` of a Q3_K block as signed bytes in −4..=3: the low pair minus 4 where bit
/// `s / 2` of `hmask` is clear.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q3_k_codes(b: &BlockQ3_K, s: usize) -> int8x16_t {
    let (h, k, o) = (s / 8, (s / 2) % 4, s % 2);
    let low = pair(load_u8x16(&b.qs[32 * h + 16 * o..]), k);
    let set = vtstq_u8(load_u8x16(&b.hmask[16 * o..]), vdupq_n_u8(1 << (s / 2)));
    let minus = vbicq_u8(vdupq_n_u8(4), set);
    vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(minus))
}

/// The sixteen Q3_K sub-block scales `sc − 32` as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q3_k_scales_i8(b: &BlockQ3_K) -> int8x16_t {
    let codes = q3_k_scale_codes(&b.scales);
    // SAFETY: `codes` is 16 bytes.
    let codes = unsafe { vld1q_u8(codes.as_ptr()) };
    vsubq_s8(vreinterpretq_s8_u8(codes), vdupq_n_s8(32))
}

/// Per sub-block `d·(sc − 32)`: the scalar reference's f32 products.
#[inline]
#[target_feature(enable = "neon")]
fn q3_k_steps(b: &BlockQ3_K) -> [f32; 16] {
    let d = b.d.to_f32();
    let mut out = [0.0f32; 16];
    let v = i8x16_to_f32(q3_k_scales_i8(b)).map(|s| vmulq_n_f32(s, d));
    store16(&mut out, v);
    out
}

/// Per sub-block `(d·sc, dmin·m)`: the scalar reference's f32 products.
#[inline]
#[target_feature(enable = "neon")]
fn q2_k_steps(b: &BlockQ2_K) -> ([f32; 16], [f32; 16]) {
    let s = load_u8x16(&b.scales);
    let (sc, m) = (vandq_u8(s, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(s));
    let (mut steps, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    for (out, codes, scale) in [(&mut steps, sc, b.d), (&mut mins, m, b.dmin)] {
        let scale = scale.to_f32();
        // Codes below 16 read the same as signed bytes.
        let v = i8x16_to_f32(vreinterpretq_s8_u8(codes)).map(|c| vmulq_n_f32(c, scale));
        store16(out, v);
    }
    (steps, mins)
}

/// Q3_K row → f32, bit-identical to the reference: `step·q`, one (exact) product.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q3_k(blocks: &[BlockQ3_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = q3_k_steps(b);
        for (s, o) in o.chunks_exact_mut(16).enumerate() {
            let w = i8x16_to_f32(q3_k_codes(b, s)).map(|q| vmulq_n_f32(q, steps[s]));
            store16(o, w);
        }
    }
}

/// Q2_K row → f32, bit-identical to the reference: `step·q`, then `− min`, unfused.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q2_k(blocks: &[BlockQ2_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let (steps, mins) = q2_k_steps(b);
        for (s, o) in o.chunks_exact_mut(16).enumerate() {
            let q = vreinterpretq_s8_u8(q2_k_codes(b, s));
            let w =
                i8x16_to_f32(q).map(|q| vsubq_f32(vmulq_n_f32(q, steps[s]), vdupq_n_f32(mins[s])));
            store16(o, w);
        }
    }
}

/// `R` Q3_K rows (`kb` blocks each, back to back in `w`) · `x`: per 16-element sub-block and
/// row `acc += (d·(sc − 32))·(Σ q·x)`.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q3_k<const R: usize>(w: &[BlockQ3_K], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [[f32; 16]; R] = core::array::from_fn(|r| q3_k_steps(&w[r * kb + b]));
        for s in 0..16 {
            let xv = load16(&x[256 * b + 16 * s..]);
            for r in 0..R {
                let q = i8x16_to_f32(q3_k_codes(&w[r * kb + b], s));
                acc[r] = vfmaq_n_f32(acc[r], dot16(q, xv), steps[r][s]);
            }
        }
    }
    acc
}

/// `R` Q2_K rows · `x`: per 16-element sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q2_k<const R: usize>(w: &[BlockQ2_K], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [([f32; 16], [f32; 16]); R] =
            core::array::from_fn(|r| q2_k_steps(&w[r * kb + b]));
        for s in 0..16 {
            let xv = load16(&x[256 * b + 16 * s..]);
            let sx = sum4(xv);
            for r in 0..R {
                let q = i8x16_to_f32(vreinterpretq_s8_u8(q2_k_codes(&w[r * kb + b], s)));
                acc[r] = vfmaq_n_f32(acc[r], dot16(q, xv), steps[r].0[s]);
                acc[r] = vfmsq_n_f32(acc[r], sx, steps[r].1[s]);
            }
        }
    }
    acc
}

/// Q3_K row · f32: the one-row case of the row kernel.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q3_k_f32(blocks: &[BlockQ3_K], x: &[f32]) -> f32 {
    vaddvq_f32(rows_q3_k::<1>(blocks, blocks.len(), x)[0])
}

/// Q2_K row · f32: the one-row case of the row kernel.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q2_k_f32(blocks: &[BlockQ2_K], x: &[f32]) -> f32 {
    vaddvq_f32(rows_q2_k::<1>(blocks, blocks.len(), x)[0])
}

dot_rows_driver!("neon", pub(crate) dot_rows_q3_k_f32, BlockQ3_K, rows_q3_k, store_rows);
dot_rows_driver!("neon", pub(crate) dot_rows_q2_k_f32, BlockQ2_K, rows_q2_k, store_rows);
