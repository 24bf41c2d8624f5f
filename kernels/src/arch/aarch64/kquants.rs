//! NEON bodies for the 256-weight formats (the k-quants Q4_K, Q5_K and Q6_K, and IQ4_XS)
//! against f32 activations, and their dequantization.
//!
//! Every function enables `neon` and is reached only through the wrappers in the parent
//! module, installed after detection. Bodies take whole 256-weight blocks.
//!
//! The per-sub-block steps (`d·sc`, `dmin·m`, `d·scale`, `d·(sc − 32)`) are the scalar
//! reference's own f32 products, computed once per block; the codes are unpacked with shifts
//! and masks (Q5_K's fifth bit by `cmtst`, IQ4_XS's codebook by one `tbl` per 16 codes, as
//! Q4_0's int8 kernels look codes up), widened to f32 and multiplied (dequant) or fused into
//! the dot with `x` (dot). Q4_K and Q5_K share one dot and one dequant body over their code
//! unpacking.
//!
//! The multi-row kernels (`dot_rows_*`, decoding's matrix-vector product) take [`ROWS`] rows
//! per step: each run of `x` is loaded once for all of them (and, for Q4_K, summed once for
//! the min term), and the rows ahead are prefetched as in `gemm.rs`.

use core::arch::aarch64::*;

use super::gemm::{prefetch_ahead, prefetch_head, store_rows, ROWS};
use super::neon::{dot16, i8x16_to_f32, load16, lut16, lut4, store16, sum4};
use crate::blocks::{BlockIQ4_XS, BlockQ4_K, BlockQ5_K, BlockQ6_K, F16Le};
use crate::scalar::{iq4_xs_steps, scales_mins_k4, IQ4_NL_VALUES};

/// The first 16 bytes of `b` as a vector.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_u8x16(b: &[u8]) -> uint8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: b holds at least 16 bytes; the load reads b[0..16].
    unsafe { vld1q_u8(b.as_ptr()) }
}

// ---- Q4_K --------------------------------------------------------------------------------

/// Per sub-block `d·sc` and `dmin·m`: the same f32 products as the scalar reference.
#[inline]
#[target_feature(enable = "neon")]
fn q4_k_steps(b: &BlockQ4_K) -> ([f32; 8], [f32; 8]) {
    k4_steps(b.d, b.dmin, &b.scales)
}

/// [`q4_k_steps`] of a Q5_K block (the same scale fields).
#[inline]
#[target_feature(enable = "neon")]
fn q5_k_steps(b: &BlockQ5_K) -> ([f32; 8], [f32; 8]) {
    k4_steps(b.d, b.dmin, &b.scales)
}

/// Per sub-block `d·sc` and `dmin·m` from Q4_K's scale fields.
#[inline]
#[target_feature(enable = "neon")]
fn k4_steps(d: F16Le, dmin: F16Le, scales: &[u8; 12]) -> ([f32; 8], [f32; 8]) {
    let (sc, m) = scales_mins_k4(scales);
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
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

/// Codes of one chunk `c` of a Q5_K block, as [`q4_k_nibbles`]: the chunk's `qs` nibbles with
/// bit `2c` (`2c + 1`) of the 32 `qh` bytes (`qh`, two vectors) as the fifth bit, set by
/// `cmtst` (all ones where the bit is set) masked to 16.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q5_k_codes(
    qs: &[u8],
    qh: [uint8x16_t; 2],
    c: usize,
) -> ([int8x16_t; 2], [int8x16_t; 2]) {
    let (lo, hi) = q4_k_nibbles(qs);
    let with_fifth = |q: [int8x16_t; 2], k: usize| -> [int8x16_t; 2] {
        let bit = vdupq_n_u8(1 << k);
        core::array::from_fn(|i| {
            let fifth = vandq_u8(vtstq_u8(qh[i], bit), vdupq_n_u8(16));
            vorrq_s8(q[i], vreinterpretq_s8_u8(fifth))
        })
    };
    (with_fifth(lo, 2 * c), with_fifth(hi, 2 * c + 1))
}

/// A Q5_K block's 32 `qh` bytes as two vectors.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q5_k_qh(b: &BlockQ5_K) -> [uint8x16_t; 2] {
    [load_u8x16(&b.qh), load_u8x16(&b.qh[16..])]
}

/// Q4_K row · f32: see [`dot_k4`].
#[target_feature(enable = "neon")]
pub(crate) fn dot_q4_k_f32(blocks: &[BlockQ4_K], x: &[f32]) -> f32 {
    dot_k4(
        blocks,
        x,
        |b| q4_k_steps(b),
        |b, c| q4_k_nibbles(&b.qs[32 * c..]),
    )
}

/// Q5_K row · f32: see [`dot_k4`].
#[target_feature(enable = "neon")]
pub(crate) fn dot_q5_k_f32(blocks: &[BlockQ5_K], x: &[f32]) -> f32 {
    dot_k4(
        blocks,
        x,
        |b| q5_k_steps(b),
        |b, c| q5_k_codes(&b.qs[32 * c..], q5_k_qh(b), c),
    )
}

/// Codes of chunk `c` of a block: (sub-block 2c, sub-block 2c + 1), 32 bytes each.
type ChunkCodes = ([int8x16_t; 2], [int8x16_t; 2]);

/// Q4_K / Q5_K row · f32, with `steps(b)` the per-sub-block `(d·sc, dmin·m)` and `codes(b, c)`
/// chunk `c`'s codes: per sub-block `(d·sc)·(Σ q·x)` and `(dmin·m)·(Σ x)` into separate
/// accumulators (two of each, low and high nibbles, to halve the FMA dependency chains),
/// subtracted once at the end.
#[inline]
#[target_feature(enable = "neon")]
fn dot_k4<B>(
    blocks: &[B],
    x: &[f32],
    steps: impl Fn(&B) -> ([f32; 8], [f32; 8]),
    codes: impl Fn(&B, usize) -> ChunkCodes,
) -> f32 {
    let mut acc_d = [vdupq_n_f32(0.0); 2];
    let mut acc_m = [vdupq_n_f32(0.0); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let (steps, mins) = steps(b);
        for (c, x) in x.chunks_exact(64).enumerate() {
            let (lo, hi) = codes(b, c);
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

/// Q4_K row → f32: see [`dequant_k4`].
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q4_k(blocks: &[BlockQ4_K], out: &mut [f32]) {
    dequant_k4(
        blocks,
        out,
        |b| q4_k_steps(b),
        |b, c| q4_k_nibbles(&b.qs[32 * c..]),
    )
}

/// Q5_K row → f32: see [`dequant_k4`].
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q5_k(blocks: &[BlockQ5_K], out: &mut [f32]) {
    dequant_k4(
        blocks,
        out,
        |b| q5_k_steps(b),
        |b, c| q5_k_codes(&b.qs[32 * c..], q5_k_qh(b), c),
    )
}

/// Q4_K / Q5_K row → f32 (`steps` and `codes` as in [`dot_k4`]), bit-identical to the
/// reference: `step·q`, then `− min`, the reference's two operations unfused.
#[inline]
#[target_feature(enable = "neon")]
fn dequant_k4<B>(
    blocks: &[B],
    out: &mut [f32],
    steps: impl Fn(&B) -> ([f32; 8], [f32; 8]),
    codes: impl Fn(&B, usize) -> ChunkCodes,
) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let (steps, mins) = steps(b);
        for (c, o) in o.chunks_exact_mut(64).enumerate() {
            let (lo, hi) = codes(b, c);
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

// ---- IQ4_XS -------------------------------------------------------------------------------

/// Sub-block `j` of an IQ4_XS block as two vectors of 16 signed bytes in element order: its 16
/// code bytes' nibbles looked up in IQ4_NL's codebook by `tbl` (`lut4`, Q4_0's order).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn iq4_xs_values(lut: int8x16_t, b: &BlockIQ4_XS, j: usize) -> [int8x16_t; 2] {
    let (lo, hi) = lut4(lut, &b.qs.as_chunks::<16>().0[j]);
    [lo, hi]
}

/// IQ4_XS row · f32: per sub-block `(d·(sc − 32))·(Σ T[q]·x)`, even and odd sub-blocks in
/// separate accumulators.
#[target_feature(enable = "neon")]
pub(crate) fn dot_iq4_xs_f32(blocks: &[BlockIQ4_XS], x: &[f32]) -> f32 {
    let lut = lut16(&IQ4_NL_VALUES);
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let steps = iq4_xs_steps(b);
        for (j, x) in x.chunks_exact(32).enumerate() {
            let [lo, hi] = iq4_xs_values(lut, b, j);
            let qx = vaddq_f32(
                dot16(i8x16_to_f32(lo), load16(x)),
                dot16(i8x16_to_f32(hi), load16(&x[16..])),
            );
            acc[j % 2] = vfmaq_n_f32(acc[j % 2], qx, steps[j]);
        }
    }
    vaddvq_f32(vaddq_f32(acc[0], acc[1]))
}

/// IQ4_XS row → f32, bit-identical to the reference: `(d·(sc − 32))·T[q]`, the same two
/// products.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_iq4_xs(blocks: &[BlockIQ4_XS], out: &mut [f32]) {
    let lut = lut16(&IQ4_NL_VALUES);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = iq4_xs_steps(b);
        for (j, o) in o.chunks_exact_mut(32).enumerate() {
            for (h, v) in iq4_xs_values(lut, b, j).into_iter().enumerate() {
                let w = i8x16_to_f32(v).map(|v| vmulq_n_f32(v, steps[j]));
                store16(&mut o[16 * h..], w);
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

/// `R` Q5_K rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q5_k<const R: usize>(w: &[BlockQ5_K], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q5_k_steps(&w[r * kb + b]));
        for c in 0..4 {
            let xc = &x[256 * b + 64 * c..];
            let xv: [[float32x4_t; 4]; 4] = core::array::from_fn(|i| load16(&xc[16 * i..]));
            let sx = [
                vaddq_f32(sum4(xv[0]), sum4(xv[1])),
                vaddq_f32(sum4(xv[2]), sum4(xv[3])),
            ];
            for r in 0..R {
                let blk = &w[r * kb + b];
                let (lo, hi) = q5_k_codes(&blk.qs[32 * c..], q5_k_qh(blk), c);
                for (s, q) in [lo, hi].into_iter().enumerate() {
                    let j = 2 * c + s;
                    let qx = vaddq_f32(
                        dot16(i8x16_to_f32(q[0]), xv[2 * s]),
                        dot16(i8x16_to_f32(q[1]), xv[2 * s + 1]),
                    );
                    acc[r] = vfmaq_n_f32(acc[r], qx, steps[r].0[j]);
                    acc[r] = vfmsq_n_f32(acc[r], sx[s], steps[r].1[j]);
                }
            }
        }
    }
    acc
}

/// `R` IQ4_XS rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·(sc − 32))·(Σ T[q]·x)`.
#[inline]
#[target_feature(enable = "neon")]
fn rows_iq4_xs<const R: usize>(w: &[BlockIQ4_XS], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let lut = lut16(&IQ4_NL_VALUES);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let steps: [[f32; 8]; R] = core::array::from_fn(|r| iq4_xs_steps(&w[r * kb + b]));
        for j in 0..8 {
            let xj = &x[256 * b + 32 * j..];
            let (x0, x1) = (load16(xj), load16(&xj[16..]));
            for r in 0..R {
                let [lo, hi] = iq4_xs_values(lut, &w[r * kb + b], j);
                let qx = vaddq_f32(dot16(i8x16_to_f32(lo), x0), dot16(i8x16_to_f32(hi), x1));
                acc[r] = vfmaq_n_f32(acc[r], qx, steps[r][j]);
            }
        }
    }
    acc
}

dot_rows_driver!("neon", pub(crate) dot_rows_q4_k_f32, BlockQ4_K, rows_q4_k, store_rows);
dot_rows_driver!("neon", pub(crate) dot_rows_q5_k_f32, BlockQ5_K, rows_q5_k, store_rows);
dot_rows_driver!(
    "neon",
    pub(crate) dot_rows_iq4_xs_f32,
    BlockIQ4_XS,
    rows_iq4_xs,
    store_rows
);
dot_rows_driver!("neon", pub(crate) dot_rows_q6_k_f32, BlockQ6_K, rows_q6_k, store_rows);
