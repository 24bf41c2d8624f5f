//! NEON bodies for the k-quants, Q4_K and Q6_K, against f32 activations, and their
//! dequantization.
//!
//! Every function enables `neon` and is reached only through the wrappers in the parent
//! module, installed after detection. Bodies take whole 256-weight blocks.
//!
//! The per-sub-block steps (`d·sc`, `dmin·m`, `d·scale`) are the scalar reference's own f32
//! products, computed once per block; the codes are unpacked with shifts and masks, widened to
//! f32 and multiplied (dequant) or fused into the dot with `x` (dot).
//!
//! The multi-row kernels (`dot_rows_*`, decoding's matrix-vector product) take [`ROWS`] rows
//! per step: each run of `x` is loaded once for all of them (and, for Q4_K, summed once for
//! the min term), and the rows ahead are prefetched as in `gemm.rs`.

use core::arch::aarch64::*;

use super::gemm::{prefetch_ahead, prefetch_head, store_rows, ROWS};
use super::neon::{dot16, i8x16_to_f32, load16, store16, sum4};
use crate::blocks::{BlockQ4_K, BlockQ6_K};
use crate::scalar::scales_mins_k4;

/// The first 16 bytes of `b` as a vector.
#[inline]
#[target_feature(enable = "neon")]
fn load_u8x16(b: &[u8]) -> uint8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: b holds at least 16 bytes; the load reads b[0..16].
    unsafe { vld1q_u8(b.as_ptr()) }
}

// ---- Q4_K --------------------------------------------------------------------------------

/// Per sub-block `d·sc` and `dmin·m`: the same f32 products as the scalar reference.
#[inline]
#[target_feature(enable = "neon")]
fn q4_k_steps(b: &BlockQ4_K) -> ([f32; 8], [f32; 8]) {
    let (sc, m) = scales_mins_k4(&b.scales);
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    (sc.map(|s| d * s as f32), m.map(|m| dmin * m as f32))
}

/// One 32-byte chunk of Q4_K codes as (low nibbles, high nibbles), each 32 codes in two
/// vectors: elements `64c..64c+32` and `64c+32..64c+64` of the block. Nibbles are below 16,
/// so the bytes read the same as signed.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q4_k_nibbles(qs: &[u8]) -> ([int8x16_t; 2], [int8x16_t; 2]) {
    let q = [load_u8x16(qs), load_u8x16(&qs[16..])];
    let lo = q.map(|q| vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))));
    let hi = q.map(|q| vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)));
    (lo, hi)
}

/// Q4_K row · f32: per sub-block `(d·sc)·(Σ q·x)` and `(dmin·m)·(Σ x)` into separate
/// accumulators (two of each, low and high nibbles, to halve the FMA dependency chains),
/// subtracted once at the end.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q4_k_f32(blocks: &[BlockQ4_K], x: &[f32]) -> f32 {
    let mut acc_d = [vdupq_n_f32(0.0); 2];
    let mut acc_m = [vdupq_n_f32(0.0); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let (steps, mins) = q4_k_steps(b);
        for (c, (qs, x)) in b.qs.chunks_exact(32).zip(x.chunks_exact(64)).enumerate() {
            let (lo, hi) = q4_k_nibbles(qs);
            for (s, (q, x)) in [(lo, x), (hi, &x[32..])].into_iter().enumerate() {
                let j = 2 * c + s;
                let (x0, x1) = (load16(x), load16(&x[16..]));
                let qx = vaddq_f32(dot16(i8x16_to_f32(q[0]), x0), dot16(i8x16_to_f32(q[1]), x1));
                acc_d[s] = vfmaq_n_f32(acc_d[s], qx, steps[j]);
                acc_m[s] = vfmaq_n_f32(acc_m[s], vaddq_f32(sum4(x0), sum4(x1)), mins[j]);
            }
        }
    }
    vaddvq_f32(vaddq_f32(acc_d[0], acc_d[1])) - vaddvq_f32(vaddq_f32(acc_m[0], acc_m[1]))
}

/// Q4_K row → f32, bit-identical to the reference: `step·q`, then `− min`, the reference's two
/// operations unfused.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q4_k(blocks: &[BlockQ4_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let (steps, mins) = q4_k_steps(b);
        for (c, (qs, o)) in
            b.qs.chunks_exact(32)
                .zip(o.chunks_exact_mut(64))
                .enumerate()
        {
            let (lo, hi) = q4_k_nibbles(qs);
            for (s, q) in [lo, hi].into_iter().enumerate() {
                let (step, min) = (steps[2 * c + s], vdupq_n_f32(mins[2 * c + s]));
                for (h, q) in q.into_iter().enumerate() {
                    let w = i8x16_to_f32(q).map(|q| vsubq_f32(vmulq_n_f32(q, step), min));
                    store16(&mut o[32 * s + 16 * h..], w);
                }
            }
        }
    }
}

// ---- Q6_K --------------------------------------------------------------------------------

/// Per sub-block `d·scale`: the same f32 products as the scalar reference.
#[inline]
#[target_feature(enable = "neon")]
fn q6_k_steps(b: &BlockQ6_K) -> [f32; 16] {
    let d = b.d.to_f32();
    b.scales.map(|s| d * s as f32)
}

/// 64 codes of a Q6_K half, minus 32, as signed bytes in −32..=31: `ql` starts at the half's
/// low bits plus `o` (0 or 16) and `qh` at its high bits plus `o`; vector k holds elements
/// `32k + o..32k + o + 16` of the half (low nibbles of `ql[0..16]`, of `ql[32..48]`, their
/// high nibbles, each with two bits of `qh`, pair k), which is one whole 16-element sub-block.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q6_k_codes(ql: &[u8], qh: &[u8]) -> [int8x16_t; 4] {
    let (a, b, h) = (load_u8x16(ql), load_u8x16(&ql[32..]), load_u8x16(qh));
    let low = vdupq_n_u8(0x0F);
    // Pair k of `qh` moved to bits 4..6.
    let top = |v: uint8x16_t| vandq_u8(v, vdupq_n_u8(0x30));
    let q = [
        vorrq_u8(vandq_u8(a, low), top(vshlq_n_u8::<4>(h))),
        vorrq_u8(vandq_u8(b, low), top(vshlq_n_u8::<2>(h))),
        vorrq_u8(vshrq_n_u8::<4>(a), top(h)),
        vorrq_u8(vshrq_n_u8::<4>(b), top(vshrq_n_u8::<2>(h))),
    ];
    q.map(|q| vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32)))
}

/// Q6_K row · f32: per 16-element sub-block `(d·scale)·(Σ (q − 32)·x)`, four accumulators
/// (one per `qh` bit pair) so consecutive FMAs do not wait on each other.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q6_k_f32(blocks: &[BlockQ6_K], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let steps = q6_k_steps(b);
        for (h, x) in x.chunks_exact(128).enumerate() {
            for o in [0, 16] {
                let q = q6_k_codes(&b.ql[64 * h + o..], &b.qh[32 * h + o..]);
                for (k, q) in q.into_iter().enumerate() {
                    let j = 8 * h + 2 * k + o / 16;
                    let p = dot16(i8x16_to_f32(q), load16(&x[32 * k + o..]));
                    acc[k] = vfmaq_n_f32(acc[k], p, steps[j]);
                }
            }
        }
    }
    vaddvq_f32(sum4(acc))
}

/// Q6_K row → f32, bit-identical to the reference: `(d·scale)·(q − 32)`, the same two products
/// (both exact: an f16 times an int8 fits 18 bits, times a 6-bit code 24).
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q6_k(blocks: &[BlockQ6_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = q6_k_steps(b);
        for (h, o) in o.chunks_exact_mut(128).enumerate() {
            for off in [0, 16] {
                let q = q6_k_codes(&b.ql[64 * h + off..], &b.qh[32 * h + off..]);
                for (k, q) in q.into_iter().enumerate() {
                    let step = steps[8 * h + 2 * k + off / 16];
                    let w = i8x16_to_f32(q).map(|q| vmulq_n_f32(q, step));
                    store16(&mut o[32 * k + off..], w);
                }
            }
        }
    }
}

// ---- several rows · f32 --------------------------------------------------------------------

/// `R` Q4_K rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q4_k<const R: usize>(w: &[BlockQ4_K], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q4_k_steps(&w[r * kb + b]));
        for c in 0..4 {
            for s in 0..2 {
                let j = 2 * c + s;
                let xb = &x[256 * b + 32 * j..];
                let (x0, x1) = (load16(xb), load16(&xb[16..]));
                let sx = vaddq_f32(sum4(x0), sum4(x1));
                for r in 0..R {
                    let qs = &w[r * kb + b].qs[32 * c..];
                    let q = [load_u8x16(qs), load_u8x16(&qs[16..])].map(|q| {
                        let q = if s == 0 {
                            vandq_u8(q, vdupq_n_u8(0x0F))
                        } else {
                            vshrq_n_u8::<4>(q)
                        };
                        vreinterpretq_s8_u8(q)
                    });
                    let qx =
                        vaddq_f32(dot16(i8x16_to_f32(q[0]), x0), dot16(i8x16_to_f32(q[1]), x1));
                    acc[r] = vfmaq_n_f32(acc[r], qx, steps[r].0[j]);
                    acc[r] = vfmsq_n_f32(acc[r], sx, steps[r].1[j]);
                }
            }
        }
    }
    acc
}

/// Vector `k` of [`q6_k_codes`] alone: elements `32k + o..32k + o + 16` of a Q6_K half,
/// minus 32, with `ql` and `qh` starting at the half's bytes plus `o`.
#[inline]
#[target_feature(enable = "neon")]
fn q6_k_vec(ql: &[u8], qh: &[u8], k: usize) -> int8x16_t {
    let (l, h) = (load_u8x16(&ql[32 * (k % 2)..]), load_u8x16(qh));
    let l = if k < 2 {
        vandq_u8(l, vdupq_n_u8(0x0F))
    } else {
        vshrq_n_u8::<4>(l)
    };
    let h = match k {
        0 => vshlq_n_u8::<4>(h),
        1 => vshlq_n_u8::<2>(h),
        2 => h,
        _ => vshrq_n_u8::<2>(h),
    };
    let q = vorrq_u8(l, vandq_u8(h, vdupq_n_u8(0x30)));
    vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32))
}

/// `R` Q6_K rows (`kb` blocks each, back to back in `w`) · `x`: per 16-element sub-block and
/// row `acc += (d·scale)·(Σ (q − 32)·x)`.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q6_k<const R: usize>(w: &[BlockQ6_K], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [[f32; 16]; R] = core::array::from_fn(|r| q6_k_steps(&w[r * kb + b]));
        for h in 0..2 {
            for k in 0..4 {
                for o in [0, 16] {
                    let xv = load16(&x[256 * b + 128 * h + 32 * k + o..]);
                    let j = 8 * h + 2 * k + o / 16;
                    for r in 0..R {
                        let blk = &w[r * kb + b];
                        let q = q6_k_vec(&blk.ql[64 * h + o..], &blk.qh[32 * h + o..], k);
                        acc[r] = vfmaq_n_f32(acc[r], dot16(i8x16_to_f32(q), xv), steps[r][j]);
                    }
                }
            }
        }
    }
    acc
}

dot_rows_driver!("neon", pub(crate) dot_rows_q4_k_f32, BlockQ4_K, rows_q4_k, store_rows);
dot_rows_driver!("neon", pub(crate) dot_rows_q6_k_f32, BlockQ6_K, rows_q6_k, store_rows);
