//! The f16 activation path on ARMv8.2 FEAT_FP16 (`fp16`; Cortex-A55/A75 and later): weight codes
//! decoded to halves through 16-entry `tbl` tables, eight-lane f16 FMA (`fmla v.8h`) per block of
//! 32, widened (`fcvtl`) and scaled in f32. Bit-identical to `scalar::act_f16`, whose module docs
//! state the arithmetic and its error bound; the comments here say which step is which.
//!
//! Inline assembly for the f16 arithmetic because the `float16x8_t` intrinsics are not stable;
//! halves travel as `uint16x8_t` bit patterns between the assembly blocks.

use core::arch::aarch64::*;
use core::arch::asm;

use half::f16 as Half;

use super::f16::{narrow, widen};
use super::neon::{block_codes, f16, load16, nibbles};
use crate::arch::int8_blocks::Block;
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::scalar::{act_f16_scale, BlockF16Act, IQ4_NL_F16, Q4_0_F16, Q4_1_F16};

/// A 16-entry f16 codebook as its low bytes and its high bytes: one `tbl` table each.
type SplitLut = ([u8; 16], [u8; 16]);

/// `t` split into low and high bytes at compile time.
const fn split(t: &[Half; 16]) -> SplitLut {
    let mut out = ([0u8; 16], [0u8; 16]);
    let mut i = 0;
    while i < 16 {
        let b = t[i].to_bits().to_le_bytes();
        out.0[i] = b[0];
        out.1[i] = b[1];
        i += 1;
    }
    out
}

const Q4_0_LUT: SplitLut = split(&Q4_0_F16);
const Q4_1_LUT: SplitLut = split(&Q4_1_F16);
const IQ4_NL_LUT: SplitLut = split(&IQ4_NL_F16);

/// The two tables in registers.
#[inline]
#[target_feature(enable = "neon")]
fn load_lut(t: &SplitLut) -> [uint8x16_t; 2] {
    // SAFETY: each array holds 16 readable bytes.
    unsafe { [vld1q_u8(t.0.as_ptr()), vld1q_u8(t.1.as_ptr())] }
}

/// 16 codes (0..16) through the codebook: two vectors of eight halves, codes 0..8 and 8..16.
/// Two `tbl` give each half's low and high byte; `zip1`/`zip2` interleave them.
#[inline]
#[target_feature(enable = "neon")]
fn lookup(lut: [uint8x16_t; 2], codes: uint8x16_t) -> [uint16x8_t; 2] {
    let (lo, hi) = (vqtbl1q_u8(lut[0], codes), vqtbl1q_u8(lut[1], codes));
    [
        vreinterpretq_u16_u8(vzip1q_u8(lo, hi)),
        vreinterpretq_u16_u8(vzip2q_u8(lo, hi)),
    ]
}

/// A Q4 block's 32 weights as four vectors of eight halves, in element order.
#[inline]
#[target_feature(enable = "neon")]
fn q4_weights(lut: [uint8x16_t; 2], qs: &[u8; 16]) -> [uint16x8_t; 4] {
    let (lo, hi) = nibbles(qs);
    let ([w0, w1], [w2, w3]) = (lookup(lut, lo), lookup(lut, hi));
    [w0, w1, w2, w3]
}

/// A Q8_0 block's 32 codes as four vectors of eight exact halves: `sxtl` to i16, `scvtf .8h`.
#[inline]
#[target_feature(enable = "neon,fp16")]
fn q8_weights(qs: &[i8; 32]) -> [uint16x8_t; 4] {
    // SAFETY: qs holds 32 readable bytes.
    let (a, b) = unsafe { (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))) };
    i8_weights([a, b])
}

/// A Q5 block's 32 codes (Q5_0 `q − 16`, Q5_1 `q`, through `block_codes`) as four vectors of
/// eight exact halves.
#[inline]
#[target_feature(enable = "neon,fp16")]
fn q5_weights<B: Block>(blk: &B) -> [uint16x8_t; 4] {
    // The Q5 formats have no codebook: the table is never read.
    i8_weights(block_codes(vdupq_n_s8(0), blk))
}

/// 32 signed bytes as four vectors of eight exact halves: `sxtl` to i16, `scvtf .8h`.
#[inline]
#[target_feature(enable = "neon,fp16")]
fn i8_weights([a, b]: [int8x16_t; 2]) -> [uint16x8_t; 4] {
    let wide = [
        vmovl_s8(vget_low_s8(a)),
        vmovl_high_s8(a),
        vmovl_s8(vget_low_s8(b)),
        vmovl_high_s8(b),
    ];
    wide.map(|v| {
        let h: uint16x8_t;
        // SAFETY: SCVTF (half precision) needs FEAT_FP16, which this function enables (its
        // callers run only where `fp16` was detected); registers only.
        unsafe {
            asm!(
                "scvtf {h:v}.8h, {v:v}.8h",
                v = in(vreg) v,
                h = lateout(vreg) h,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        h
    })
}

/// The 32 activation halves of a block as four vectors.
#[inline]
#[target_feature(enable = "neon")]
fn act_halves(a: &BlockF16Act) -> [uint16x8_t; 4] {
    let p = a.hs.as_ptr().cast::<u8>();
    // SAFETY: `hs` holds 32 halves (64 readable bytes). Byte loads: the block has alignment 1,
    // so a `u16` pointer into it could be misaligned, which `vld1q_u16` does not allow.
    core::array::from_fn(|g| unsafe { vreinterpretq_u16_u8(vld1q_u8(p.add(16 * g))) })
}

/// The contract's `q[0..4]`: lane j of `p` is `w[j]·h[j]` then three FMAs with lanes j + 8,
/// j + 16, j + 24, each rounded to f16; `p` widened, its halves added in f32.
#[inline]
#[target_feature(enable = "neon,fp16")]
fn block_dot(w: [uint16x8_t; 4], h: [uint16x8_t; 4]) -> float32x4_t {
    let p: uint16x8_t;
    // SAFETY: FMUL/FMLA (half precision, vector) need FEAT_FP16, which this function enables
    // (its callers run only where `fp16` was detected); registers only. `p` is an early output
    // so it never shares a register with the inputs read after its first write.
    unsafe {
        asm!(
            "fmul {p:v}.8h, {w0:v}.8h, {h0:v}.8h",
            "fmla {p:v}.8h, {w1:v}.8h, {h1:v}.8h",
            "fmla {p:v}.8h, {w2:v}.8h, {h2:v}.8h",
            "fmla {p:v}.8h, {w3:v}.8h, {h3:v}.8h",
            p = out(vreg) p,
            w0 = in(vreg) w[0],
            w1 = in(vreg) w[1],
            w2 = in(vreg) w[2],
            w3 = in(vreg) w[3],
            h0 = in(vreg) h[0],
            h1 = in(vreg) h[1],
            h2 = in(vreg) h[2],
            h3 = in(vreg) h[3],
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    let [lo, hi] = widen(p);
    vaddq_f32(lo, hi)
}

/// Folds each block's `(q, c)` into `acc = fma32(q, c, acc)` in block order; returns
/// `(acc0 + acc1) + (acc2 + acc3)` (`faddp`, pairwise).
#[inline]
#[target_feature(enable = "neon")]
fn fold(steps: impl Iterator<Item = (float32x4_t, f32)>) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (q, c) in steps {
        acc = vfmaq_n_f32(acc, q, c);
    }
    vaddvq_f32(acc)
}

/// Q4_0 row · f16 activations.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_q4_0_f16(blocks: &[BlockQ4_0], acts: &[BlockF16Act]) -> f32 {
    let lut = load_lut(&Q4_0_LUT);
    fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q4_weights(lut, &b.qs), act_halves(a));
        (q, f16(b.d) * a.d())
    }))
}

/// Q4_1 row · f16 activations: `Σ (d_w·d_a)·Σ q·h`, plus `Σ m·s` in block order.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_q4_1_f16(blocks: &[BlockQ4_1], acts: &[BlockF16Act]) -> f32 {
    let lut = load_lut(&Q4_1_LUT);
    let mut ms = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        ms += f16(b.m) * a.s();
    }
    let qa = fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q4_weights(lut, &b.qs), act_halves(a));
        (q, f16(b.d) * a.d())
    }));
    qa + ms
}

/// Q8_0 row · f16 activations.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_q8_0_f16(blocks: &[BlockQ8_0], acts: &[BlockF16Act]) -> f32 {
    fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q8_weights(&b.qs), act_halves(a));
        (q, f16(b.d) * a.d())
    }))
}

/// IQ4_NL row · f16 activations: Q4_0's kernel with IQ4_NL's codebook.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_iq4_nl_f16(blocks: &[BlockIQ4_NL], acts: &[BlockF16Act]) -> f32 {
    let lut = load_lut(&IQ4_NL_LUT);
    fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q4_weights(lut, &b.qs), act_halves(a));
        (q, f16(b.d) * a.d())
    }))
}

/// Q5_0 row · f16 activations.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_q5_0_f16(blocks: &[BlockQ5_0], acts: &[BlockF16Act]) -> f32 {
    fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q5_weights(b), act_halves(a));
        (q, f16(b.d) * a.d())
    }))
}

/// Q5_1 row · f16 activations: `Σ (d_w·d_a)·Σ q·h`, plus `Σ m·s` in block order.
#[target_feature(enable = "neon,fp16")]
pub(super) fn dot_q5_1_f16(blocks: &[BlockQ5_1], acts: &[BlockF16Act]) -> f32 {
    let mut ms = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        ms += f16(b.m) * a.s();
    }
    let qa = fold(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot(q5_weights(b), act_halves(a));
        (q, f16(b.d) * a.d())
    }));
    qa + ms
}

/// f32 → [`BlockF16Act`], byte-identical to `scalar::quantize_act_f16` for finite inputs: the
/// same `act_f16_scale` of `max|x|` (`fmaxnm` ignores NaN as `f32::max` does), the same
/// products `x·(1/d)`, rounded by `fcvtn`, and the block sum of the halves in `tree_sum`'s order.
#[target_feature(enable = "neon")]
pub(super) fn quantize_act_f16(x: &[f32], out: &mut [BlockF16Act]) {
    for (b, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let (v0, v1) = (load16(x), load16(&x[16..]));
        let m = |v: [float32x4_t; 4]| {
            let a = v.map(|v| vabsq_f32(v));
            vmaxnmq_f32(vmaxnmq_f32(a[0], a[1]), vmaxnmq_f32(a[2], a[3]))
        };
        let (d, id) = act_f16_scale(vmaxnmvq_f32(vmaxnmq_f32(m(v0), m(v1))));
        let (v0, v1) = (
            v0.map(|v| vmulq_n_f32(v, id)),
            v1.map(|v| vmulq_n_f32(v, id)),
        );
        let h = [
            narrow(v0[0], v0[1]),
            narrow(v0[2], v0[3]),
            narrow(v1[0], v1[1]),
            narrow(v1[2], v1[3]),
        ];
        let p = b.hs.as_mut_ptr().cast::<u8>();
        // SAFETY: `hs` is 32 halves (64 bytes), exclusively borrowed; byte stores, as the block
        // may sit at an odd address.
        unsafe {
            for (g, v) in h.iter().enumerate() {
                vst1q_u8(p.add(16 * g), vreinterpretq_u8_u16(*v));
            }
        }
        // The sum of the halves as `tree_sum` orders it: vectors v_k = h[4k..4k + 4].
        let [w0, w1] = widen(h[0]);
        let [w2, w3] = widen(h[1]);
        let [w4, w5] = widen(h[2]);
        let [w6, w7] = widen(h[3]);
        let t = vaddq_f32(
            vaddq_f32(vaddq_f32(w0, w1), vaddq_f32(w2, w3)),
            vaddq_f32(vaddq_f32(w4, w5), vaddq_f32(w6, w7)),
        );
        b.d = d.to_le_bytes();
        b.s = (d * vaddvq_f32(t)).to_le_bytes();
    }
}
