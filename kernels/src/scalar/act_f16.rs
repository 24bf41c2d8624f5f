//! The f16 activation path (ARMv8.2 FEAT_FP16): activations converted once per matmul to
//! halves, weights decoded to halves through a 16-entry table, products summed in 8-lane f16
//! FMA per block of 32, then widened and scaled in f32.
//!
//! These references define the arithmetic bit for bit, emulating each f16 rounding, so that a
//! CPU without FEAT_FP16 can run (slowly) and test the path and the NEON `fp16` kernels must
//! equal them exactly.
//!
//! # Arithmetic contract
//!
//! Activations, per block of 32 ([`quantize_act_f16`]): `d_a = 2^e`, the power of two with
//! `max|x|/d_a ∈ [1, 2)` (`d_a = 1` when `max|x|` is zero, f32-subnormal, infinite or NaN);
//! `h[i] = f16(x[i]/d_a)` rounded to nearest even (so `|h| ≤ 2`); `s = d_a · Σ h` with the sum
//! in f32 in the fixed tree of [`tree_sum`].
//!
//! Weights: `w[i]` is the code's value as an exact half: Q4_0 `q − 8` ([`Q4_0_F16`]), Q4_1 `q`
//! ([`Q4_1_F16`]), Q8_0 the int8 code, Q5_0 `q − 16`, Q5_1 `q`, IQ4_NL `T[q]` ([`IQ4_NL_F16`]). Per block and lane `j ∈ 0..8`, with `fl16` rounding to
//! the nearest half (ties to even) once per operation (fused multiply-add):
//!
//! ```text
//! p[j] = fl16(w[j+24]·h[j+24] + fl16(w[j+16]·h[j+16] + fl16(w[j+8]·h[j+8] + fl16(w[j]·h[j]))))
//! q[k] = f32(p[k]) + f32(p[k+4])                     k ∈ 0..4, f32 addition
//! acc[k] = fma32(q[k], f32(d_w)·d_a, acc[k])         blocks in order, acc starting at 0
//! dot = (acc[0] + acc[1]) + (acc[2] + acc[3])        (+ Σ_blocks m·s for Q4_1, in order)
//! ```
//!
//! # Error bound
//!
//! No f16 overflow is possible: `|w·h| ≤ 128·2` and a lane adds four products, so
//! `|p[j]| ≤ 4·128·2 = 1024` (Q8_0; 1016 for IQ4_NL, 248 for Q5_1, 128 for Q5_0, 120 for Q4_1,
//! 64 for Q4_0), far below 65504. Each lane is at
//! most four f16 roundings deep (unit roundoff `u₁₆ = 2⁻¹¹`), so with `γ₄ = 4u₁₆/(1 − 4u₁₆)`
//!
//! ```text
//! |p[j] − Σ w·h| ≤ γ₄ · Σ|w·h| + 4·2⁻²⁵        (the last term: f16 subnormal spacing 2⁻²⁴)
//! ```
//!
//! and each `h` is within `u₁₆·|x|/d_a` (plus `2⁻²⁵` below f16's normal range) of `x/d_a`.
//! Relative to the f32 path a block therefore errs by about `5·u₁₆·Σ|w·x| ≈ 2.4e-3·Σ|w·x|`,
//! the f32 steps adding only f32 roundings on top (`γ_{n/32+3}` in f32). The per-block power of
//! two keeps `h` in f16's normal range whatever the activations' magnitude, so the bound holds
//! for activations anywhere in f32's range (up to `d_a·2⁻²⁵` absolute per element, for
//! elements under `2⁻¹⁴` of the block's largest).

use half::f16;

use super::act::IQ4_NL_VALUES;
use super::q5::codes5;
use crate::blocks::{
    as_blocks, as_blocks_mut, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
    F16Le,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// 32 activations converted to halves for the f16 products.
///
/// ```text
/// byte 0..4    d (f32): a power of two, activation j ≈ hs[j]·d
/// byte 4..8    s (f32): d·Σ hs, the block sum the Q4_1 offset multiplies
/// byte 8..72   hs: 32 × f16, each |hs[j]| ≤ 2
/// ```
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct BlockF16Act {
    /// Scale, little-endian f32 (a power of two).
    pub d: [u8; 4],
    /// `d · Σ hs` ([`tree_sum`] order), little-endian f32.
    pub s: [u8; 4],
    /// The scaled activations as halves.
    pub hs: [F16Le; 32],
}
const _: () = assert!(core::mem::size_of::<BlockF16Act>() == 72);

impl BlockF16Act {
    /// Bytes of one block.
    pub const BYTES: usize = 72;

    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// `d · Σ hs`.
    #[inline(always)]
    pub fn s(&self) -> f32 {
        f32::from_le_bytes(self.s)
    }
}

/// Bytes [`quantize_act_f16`] writes for `n` activations (`n` a multiple of 32).
pub const fn act_f16_bytes(n: usize) -> usize {
    n / 32 * BlockF16Act::BYTES
}

/// Q4_0's codebook as halves: code `q` means `q − 8`.
pub const Q4_0_F16: [f16; 16] = codebook(-8);

/// Q4_1's codebook as halves: code `q` means `q` (the block's offset is added in f32).
pub const Q4_1_F16: [f16; 16] = codebook(0);

/// IQ4_NL's codebook as halves (every value is a small integer, exact in f16).
pub const IQ4_NL_F16: [f16; 16] = {
    let mut t = [f16::ZERO; 16];
    let mut q = 0;
    while q < 16 {
        t[q] = f16::from_f32_const(IQ4_NL_VALUES[q] as f32);
        q += 1;
    }
    t
};

/// `[f16(q + offset) for q in 0..16]`.
const fn codebook(offset: i32) -> [f16; 16] {
    let mut t = [f16::ZERO; 16];
    let mut q = 0;
    while q < 16 {
        t[q] = f16::from_f32_const((q as i32 + offset) as f32);
        q += 1;
    }
    t
}

/// The block scale `d_a` and its inverse for a block whose largest magnitude is `amax`: the
/// power of two `2^e` with `amax/2^e ∈ [1, 2)`, or 1 when `amax` is zero, f32-subnormal,
/// infinite or NaN. Shared by every backend, so all of them produce the same bytes.
#[inline(always)]
pub fn act_f16_scale(amax: f32) -> (f32, f32) {
    let e = (amax.to_bits() >> 23) & 0xFF;
    match e {
        0 | 255 => (1.0, 1.0),
        // 2^-127 is an f32 subnormal: exponent field 0, mantissa bit 22.
        254 => (f32::from_bits(254 << 23), f32::from_bits(1 << 22)),
        _ => (f32::from_bits(e << 23), f32::from_bits((254 - e) << 23)),
    }
}

/// `Σ v` of 32 floats in the fixed order of the contract (four-lane vectors `v[4k..4k+4]`
/// added as `((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7))`, then the lanes as `(l0+l1)+(l2+l3)`).
#[inline(always)]
pub fn tree_sum(v: &[f32; 32]) -> f32 {
    let l: [f32; 4] = core::array::from_fn(|j| {
        let g = |k: usize| v[4 * k + j];
        ((g(0) + g(1)) + (g(2) + g(3))) + ((g(4) + g(5)) + (g(6) + g(7)))
    });
    (l[0] + l[1]) + (l[2] + l[3])
}

/// Converts `x` (a multiple of 32 long) to [`BlockF16Act`] blocks in `out`
/// ([`act_f16_bytes`]`(x.len())` bytes), as the module's contract states.
///
/// Every backend writes the same bytes for finite inputs.
pub fn quantize_act_f16(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockF16Act] = as_blocks_mut(out).expect("output is whole act blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = act_f16_scale(amax);
        let mut wide = [0.0f32; 32];
        for ((h, w), &v) in b.hs.iter_mut().zip(&mut wide).zip(x) {
            *h = F16Le::from_f32(v * id);
            *w = h.to_f32();
        }
        b.d = d.to_le_bytes();
        b.s = (d * tree_sum(&wide)).to_le_bytes();
    }
}

/// `a` rounded once to the nearest half, ties to even. (`half`'s `from_f64` rounds only the top
/// 32 bits, so it can misround.) Rounding to odd at f32's 24 bits first and then to nearest at
/// f16's 11 bits equals one rounding to nearest, since 24 ≥ 11 + 2 (Boldo and Melquiond, 2008);
/// `|a| < 2^34` here, well inside f32's range.
#[inline(always)]
fn round_f16(a: f64) -> f16 {
    let t = a as f32;
    let odd = if t as f64 == a || !a.is_finite() {
        t
    } else {
        // Inexact: truncate toward zero, then force the last bit to 1.
        let tz = if (t as f64).abs() > a.abs() {
            f32::from_bits(t.to_bits() - 1)
        } else {
            t
        };
        f32::from_bits(tz.to_bits() | 1)
    };
    f16::from_f32(odd)
}

/// `fl16(a·b + c)`: f16 fused multiply-add. `a·b` is exact in f64 (22 significant bits) and the
/// f64 sum's own rounding cannot change the final f16 rounding: the sum is a multiple of 2⁻⁴⁸,
/// so it could only land on an f16 rounding midpoint it is not equal to if `|a·b + c| ≥ 32`
/// and `a·b` carried bits below 2⁻³⁷, i.e. `|a·b| < 2⁻¹⁵`, too small to move the result that
/// close to a midpoint.
#[inline(always)]
pub fn fma_f16(a: f16, b: f16, c: f16) -> f16 {
    round_f16(a.to_f64() * b.to_f64() + c.to_f64())
}

/// `fl16(a·b)`: the product is exact in f32, so `half`'s conversion rounds it once.
#[inline(always)]
pub fn mul_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() * b.to_f32())
}

/// One block's `q[0..4]` of the contract: the 8-lane f16 dot of `w` and `h`, widened and folded
/// to four f32 lanes.
#[inline(always)]
pub fn block_dot_f16(w: &[f16; 32], h: &[F16Le; 32]) -> [f32; 4] {
    let h = |i: usize| f16::from_bits(u16::from_le_bytes(h[i].0));
    let p: [f16; 8] = core::array::from_fn(|j| {
        let mut acc = mul_f16(w[j], h(j));
        for g in 1..4 {
            acc = fma_f16(w[8 * g + j], h(8 * g + j), acc);
        }
        acc
    });
    core::array::from_fn(|k| p[k].to_f32() + p[k + 4].to_f32())
}

/// Q4 codes of a block in element order through a 16-entry f16 codebook.
#[inline(always)]
fn lut4_f16(qs: &[u8; 16], lut: &[f16; 16]) -> [f16; 32] {
    let mut w = [f16::ZERO; 32];
    for (j, &b) in qs.iter().enumerate() {
        w[j] = lut[(b & 0x0F) as usize];
        w[j + 16] = lut[(b >> 4) as usize];
    }
    w
}

fn act_blocks(xh: &[u8], n_blocks: usize) -> &[BlockF16Act] {
    let a: &[BlockF16Act] = as_blocks(xh).expect("activations are whole act blocks");
    assert_eq!(a.len(), n_blocks, "activation blocks match the row");
    a
}

/// The contract's f32 steps over the blocks: `acc[k] = fma32(q[k], c, acc[k])` in block order,
/// then `(acc0 + acc1) + (acc2 + acc3)`; `blocks` yields each block's `(q, c)`.
#[inline(always)]
fn fold_blocks(blocks: impl Iterator<Item = ([f32; 4], f32)>) -> f32 {
    let mut acc = [0.0f32; 4];
    for (q, c) in blocks {
        for k in 0..4 {
            acc[k] = libm::fmaf(q[k], c, acc[k]);
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Dot product of a Q4_0 row with f16 activations `xh` (from [`quantize_act_f16`]).
pub fn dot_q4_0_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockQ4_0] = as_blocks(row).expect("Q4_0 row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot_f16(&lut4_f16(&b.qs, &Q4_0_F16), &a.hs);
        (q, b.d.to_f32() * a.d())
    }))
}

/// Dot product of a Q4_1 row with f16 activations: `Σ (d_w·d_a)·Σ q·h + Σ m·s`.
pub fn dot_q4_1_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockQ4_1] = as_blocks(row).expect("Q4_1 row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    let mut ms = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        ms += b.m.to_f32() * a.s();
    }
    let qa = fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot_f16(&lut4_f16(&b.qs, &Q4_1_F16), &a.hs);
        (q, b.d.to_f32() * a.d())
    }));
    qa + ms
}

/// Dot product of a Q8_0 row with f16 activations.
pub fn dot_q8_0_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockQ8_0] = as_blocks(row).expect("Q8_0 row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let w = b.qs.map(|q| f16::from_f32(q as f32));
        (block_dot_f16(&w, &a.hs), b.d.to_f32() * a.d())
    }))
}

/// Dot product of an IQ4_NL row with f16 activations.
pub fn dot_iq4_nl_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockIQ4_NL] = as_blocks(row).expect("IQ4_NL row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let q = block_dot_f16(&lut4_f16(&b.qs, &IQ4_NL_F16), &a.hs);
        (q, b.d.to_f32() * a.d())
    }))
}

/// Dot product of a Q5_0 row with f16 activations.
pub fn dot_q5_0_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockQ5_0] = as_blocks(row).expect("Q5_0 row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let w = codes5(&b.qh, &b.qs).map(|q| f16::from_f32((q as i32 - 16) as f32));
        (block_dot_f16(&w, &a.hs), b.d.to_f32() * a.d())
    }))
}

/// Dot product of a Q5_1 row with f16 activations: `Σ (d_w·d_a)·Σ q·h + Σ m·s`.
pub fn dot_q5_1_f16(row: &[u8], xh: &[u8]) -> f32 {
    let blocks: &[BlockQ5_1] = as_blocks(row).expect("Q5_1 row is whole blocks");
    let acts = act_blocks(xh, blocks.len());
    let mut ms = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        ms += b.m.to_f32() * a.s();
    }
    let qa = fold_blocks(blocks.iter().zip(acts).map(|(b, a)| {
        let w = codes5(&b.qh, &b.qs).map(|q| f16::from_f32(q as f32));
        (block_dot_f16(&w, &a.hs), b.d.to_f32() * a.d())
    }));
    qa + ms
}
