//! Ternary formats: weights in {−1, 0, +1} times a scale.
//!
//! - TQ1_0 and TQ2_0 (upstream ggml): 256-weight blocks with an f16 scale each, as in ggml's
//!   `dequantize_row_tq1_0` / `dequantize_row_tq2_0` and `quantize_row_tq{1,2}_0_ref`.
//! - I2_S (bitnet.cpp): 128-weight blocks of 2-bit codes and ONE f32 scale per tensor, stored
//!   after the tensor's packed codes. A row kernel sees only the row's `n/4` packed bytes, so
//!   [`dequant_i2_s`] and [`dot_i2_s_f32`] take the tensor scale as an argument. The dispatch
//!   table holds [`dequant_i2_s_unscaled`] and [`dot_i2_s_f32_unscaled`] (scale 1): the runtime
//!   multiplies their results by the tensor scale.
//!
//! Codes are q ∈ {0, 1, 2} for weights q − 1. A 2-bit code 3 never comes out of a quantizer; it
//! reads as +2, as the arithmetic of both ggml and bitnet.cpp treats it.

use super::q8::round_half_away;
use crate::blocks::{as_blocks, as_blocks_mut, BlockI2_S, BlockTQ1_0, BlockTQ2_0, F16Le};

/// Weights per TQ1_0 / TQ2_0 block (ggml's `QK_K`).
const QK_K: usize = 256;
/// Weights per I2_S block (bitnet.cpp's `QK_I2_S`).
const QK_I2_S: usize = 128;

// ---------------------------------------------------------------------------------------------
// TQ1_0

/// Powers of three for trit extraction; `u8` arithmetic wraps modulo 256 on purpose.
const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Trit `n` (0 = most significant) of a TQ1_0 byte: shifting the base-3 fraction left by `n`
/// digits is a multiplication by 3^n modulo 256, and the leading digit is then `(t·3) >> 8`.
#[inline(always)]
fn trit(byte: u8, n: usize) -> u8 {
    let t = byte.wrapping_mul(POW3[n]);
    ((t as u16 * 3) >> 8) as u8
}

/// Codes of one TQ1_0 block in element order (see [`BlockTQ1_0`]).
#[inline(always)]
fn tq1_0_codes(b: &BlockTQ1_0) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for n in 0..5 {
        for m in 0..32 {
            q[32 * n + m] = trit(b.qs[m], n);
        }
        for m in 0..16 {
            q[160 + 16 * n + m] = trit(b.qs[32 + m], n);
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            q[240 + 4 * n + j] = trit(b.qh[j], n);
        }
    }
    q
}

/// Dequantizes a TQ1_0 row into `out`: `(q − 1)·d`.
pub fn dequant_tq1_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockTQ1_0] = as_blocks(row).expect("TQ1_0 row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (q, o) in tq1_0_codes(b).iter().zip(o) {
            *o = (*q as i32 - 1) as f32 * d;
        }
    }
}

/// Dot product of a TQ1_0 row with f32 activations: `Σ d·(Σ (q − 1)·x)` per block.
pub fn dot_tq1_0_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockTQ1_0] = as_blocks(row).expect("TQ1_0 row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum += b.d.to_f32() * ternary_dot(&tq1_0_codes(b), x);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to TQ1_0 exactly as ggml's `quantize_row_tq1_0_ref`
/// (see [`ternarize_block`] for the rule).
pub fn quantize_tq1_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockTQ1_0] = as_blocks_mut(out).expect("output is whole TQ1_0 blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, q) = ternarize_block(x);
        b.d = d;
        for m in 0..32 {
            b.qs[m] = pack_trits(core::array::from_fn(|n| q[32 * n + m]));
        }
        for m in 0..16 {
            b.qs[32 + m] = pack_trits(core::array::from_fn(|n| q[160 + 16 * n + m]));
        }
        for j in 0..4 {
            // Four trits, and a fifth (least significant) of 0.
            b.qh[j] = pack_trits([q[240 + j], q[244 + j], q[248 + j], q[252 + j], 0]);
        }
    }
}

/// Five trits (first most significant) as a TQ1_0 byte: `ceil(v·256/243)` of their base-3
/// value `v`, so that [`trit`] reads them back.
#[inline]
fn pack_trits(t: [u8; 5]) -> u8 {
    let v = t.iter().fold(0u16, |v, &t| v * 3 + t as u16);
    // v ≤ 242, so the quotient is at most 255.
    ((v * 256 + 242) / 243) as u8
}

// ---------------------------------------------------------------------------------------------
// TQ2_0

/// Codes of one TQ2_0 block in element order (see [`BlockTQ2_0`]).
#[inline(always)]
fn tq2_0_codes(b: &BlockTQ2_0) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        for n in 0..4 {
            for m in 0..32 {
                q[128 * h + 32 * n + m] = (b.qs[32 * h + m] >> (2 * n)) & 3;
            }
        }
    }
    q
}

/// Dequantizes a TQ2_0 row into `out`: `(q − 1)·d`.
pub fn dequant_tq2_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockTQ2_0] = as_blocks(row).expect("TQ2_0 row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (q, o) in tq2_0_codes(b).iter().zip(o) {
            *o = (*q as i32 - 1) as f32 * d;
        }
    }
}

/// Dot product of a TQ2_0 row with f32 activations: `Σ d·(Σ (q − 1)·x)` per block.
pub fn dot_tq2_0_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockTQ2_0] = as_blocks(row).expect("TQ2_0 row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum += b.d.to_f32() * ternary_dot(&tq2_0_codes(b), x);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to TQ2_0 exactly as ggml's `quantize_row_tq2_0_ref`
/// (see [`ternarize_block`] for the rule).
pub fn quantize_tq2_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockTQ2_0] = as_blocks_mut(out).expect("output is whole TQ2_0 blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, q) = ternarize_block(x);
        b.d = d;
        for h in 0..2 {
            for m in 0..32 {
                b.qs[32 * h + m] =
                    (0..4).fold(0u8, |byte, n| byte | (q[128 * h + 32 * n + m] << (2 * n)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TQ shared

/// ggml's ternarization of one 256-weight block (both TQ formats): the scale is the block's
/// max |x| (not BitNet's absmean), stored as f16; each weight becomes
/// `round(x · (1/max)) ∈ {−1, 0, 1}` with ties away from zero (C's `lroundf`), so weights of at
/// least half the max in magnitude map to ±1. The reciprocal is taken in f32 from the unrounded
/// max, as ggml does. Returns the stored scale and the codes q = w + 1.
fn ternarize_block(x: &[f32]) -> (F16Le, [u8; QK_K]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let inv = if amax != 0.0 { 1.0 / amax } else { 0.0 };
    let mut q = [1u8; QK_K];
    for (q, v) in q.iter_mut().zip(x) {
        *q = (round_half_away(v * inv).clamp(-1.0, 1.0) as i32 + 1) as u8;
    }
    (F16Le::from_f32(amax), q)
}

/// `Σ (q − 1)·x` over one block, in f32.
#[inline(always)]
fn ternary_dot(q: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (q, xi) in q.iter().zip(x) {
        acc += (*q as i32 - 1) as f32 * xi;
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// I2_S

/// Codes of one I2_S block in element order: byte `p` holds element `p + 32k` in bits
/// `6 − 2k..8 − 2k` (k = 0 in the top two bits).
#[inline(always)]
fn i2_s_codes(b: &BlockI2_S) -> [u8; QK_I2_S] {
    let mut q = [0u8; QK_I2_S];
    for (p, &byte) in b.qs.iter().enumerate() {
        for k in 0..4 {
            q[p + 32 * k] = (byte >> (6 - 2 * k)) & 3;
        }
    }
    q
}

/// Dequantizes an I2_S row (its `n/4` packed bytes, no trailer) into `out`: `(q − 1)·scale`,
/// where `scale` is the tensor's f32 scale from its trailer.
pub fn dequant_i2_s(row: &[u8], scale: f32, out: &mut [f32]) {
    let blocks: &[BlockI2_S] = as_blocks(row).expect("I2_S row is whole blocks");
    assert_eq!(blocks.len() * QK_I2_S, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_I2_S)) {
        for (q, o) in i2_s_codes(b).iter().zip(o) {
            *o = (*q as i32 - 1) as f32 * scale;
        }
    }
}

/// Dot product of an I2_S row (its `n/4` packed bytes) with f32 activations:
/// `scale · Σ (q − 1)·x`, where `scale` is the tensor's f32 scale from its trailer.
pub fn dot_i2_s_f32(row: &[u8], scale: f32, x: &[f32]) -> f32 {
    let blocks: &[BlockI2_S] = as_blocks(row).expect("I2_S row is whole blocks");
    assert_eq!(blocks.len() * QK_I2_S, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_I2_S)) {
        sum += ternary_dot(&i2_s_codes(b), x);
    }
    sum * scale
}

/// [`dequant_i2_s`] with scale 1, the dispatch-table form: the caller multiplies the output by
/// the tensor's scale.
pub fn dequant_i2_s_unscaled(row: &[u8], out: &mut [f32]) {
    dequant_i2_s(row, 1.0, out)
}

/// [`dot_i2_s_f32`] with scale 1, the dispatch-table form: the caller multiplies the result by
/// the tensor's scale.
pub fn dot_i2_s_f32_unscaled(row: &[u8], x: &[f32]) -> f32 {
    dot_i2_s_f32(row, 1.0, x)
}

/// Quantizes a whole tensor `x` (a multiple of 128 long) to I2_S codes in `out` (`x.len()/4`
/// bytes) and returns the tensor scale. The caller writes the tensor as `out`, then the scale
/// as little-endian f32, then padding to `x.len()/4 + 32` bytes.
///
/// The rule is BitNet b1.58's absmean ternarization: `scale = mean |x|` over the whole tensor
/// (summed in f64) and `w = round(clamp(x/scale, −1, 1))`, with exact halves rounding to 0 as
/// `torch.round` (half to even) does in BitNet's training code and bitnet.cpp's converter. An
/// all-zero (or empty) tensor gets scale 0 and all-zero weights.
///
/// bitnet.cpp's own `quantize_i2_s` instead expects weights that are already ternary: it keeps
/// their signs (|x| < 1e-6 → 0) and stores max |x| as the scale. For such input this absmean
/// rule is lossy, since mean |x| is below the common magnitude whenever some weights are zero.
pub fn quantize_i2_s(x: &[f32], out: &mut [u8]) -> f32 {
    let blocks: &mut [BlockI2_S] = as_blocks_mut(out).expect("output is whole I2_S blocks");
    assert_eq!(blocks.len() * QK_I2_S, x.len());
    let sum: f64 = x.iter().map(|v| v.abs() as f64).sum();
    let scale = if x.is_empty() {
        0.0
    } else {
        (sum / x.len() as f64) as f32
    };
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_I2_S)) {
        let mut q = [1u8; QK_I2_S];
        if scale > 0.0 {
            for (q, v) in q.iter_mut().zip(x) {
                let t = v / scale;
                *q = if t > 0.5 {
                    2
                } else if t < -0.5 {
                    0
                } else {
                    1 // Also NaN.
                };
            }
        }
        for (p, byte) in b.qs.iter_mut().enumerate() {
            *byte = (0..4).fold(0u8, |acc, k| acc | (q[p + 32 * k] << (6 - 2 * k)));
        }
    }
    scale
}
