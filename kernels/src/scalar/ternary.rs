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
pub(crate) fn tq1_0_codes(b: &BlockTQ1_0) -> [u8; QK_K] {
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

/// Quantizes `x` (a multiple of 256 long) to TQ1_0 exactly as ggml's `quantize_row_tq1_0_ref`.
///
/// The rule is ggml's, not BitNet's absmean: per block, `d = max |x|` (stored as f16) and each
/// weight is `round(x · (1/d))` with ties away from zero, so weights of at least half the max
/// in magnitude become ±1 and the rest 0.
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
    (v * 256).div_ceil(243) as u8
}

// ---------------------------------------------------------------------------------------------
// TQ2_0

/// Codes of one TQ2_0 block in element order (see [`BlockTQ2_0`]).
#[inline(always)]
pub(crate) fn tq2_0_codes(b: &BlockTQ2_0) -> [u8; QK_K] {
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

/// Quantizes `x` (a multiple of 256 long) to TQ2_0 exactly as ggml's `quantize_row_tq2_0_ref`.
///
/// The rule is ggml's, not BitNet's absmean: per block, `d = max |x|` (stored as f16) and each
/// weight is `round(x · (1/d))` with ties away from zero, so weights of at least half the max
/// in magnitude become ±1 and the rest 0.
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
pub(crate) fn i2_s_codes(b: &BlockI2_S) -> [u8; QK_I2_S] {
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

#[cfg(test)]
mod tests {
    //! Element order from hand-built blocks (one-hot sweeps, every TQ1_0 byte value), I2_S's bit
    //! order, and quantize → dequantize round trips. Agreement with an independent implementation
    //! is `tests/formats_reference.rs`.

    use super::*;
    use crate::blocks::as_bytes;

    extern crate alloc;
    use crate::scalar::tests::randoms;
    use alloc::vec;

    /// `Σ w·x` over the dequantized row in f64 against the dot kernel; the weights are ±d or 0,
    /// so the kernel's only error is f32 summation: `n·u·Σ|w·x|` bounds it.
    fn check_dot(w: &[f32], got: f32, x: &[f32]) {
        let exact: f64 = w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mag: f64 = w
            .iter()
            .zip(x)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let bound = (w.len() + 2) as f64 * f32::EPSILON as f64 * mag + 1e-30;
        assert!((got as f64 - exact).abs() <= bound, "dot {got} vs {exact}");
    }

    /// A TQ1_0 byte from five trits, straight from the format's definition (base-3 fraction
    /// `v/243`, stored as `ceil(v·256/243)`).
    fn tq1_byte(t: [u8; 5]) -> u8 {
        let v =
            t[0] as u32 * 81 + t[1] as u32 * 27 + t[2] as u32 * 9 + t[3] as u32 * 3 + t[4] as u32;
        (v * 256).div_ceil(243) as u8
    }

    #[test]
    fn tq1_0_every_byte_value_decodes_to_its_digits() {
        for v in 0..243u32 {
            let digits = [v / 81 % 3, v / 27 % 3, v / 9 % 3, v / 3 % 3, v % 3].map(|d| d as u8);
            let byte = tq1_byte(digits);
            for (n, &d) in digits.iter().enumerate() {
                assert_eq!(trit(byte, n), d, "value {v}, trit {n}");
            }
        }
        // Every byte, canonical or not, decodes to trits in 0..=2.
        for b in 0..=255u8 {
            assert!((0..5).all(|n| trit(b, n) <= 2));
        }
    }

    #[test]
    fn tq1_0_one_hot_every_element() {
        let zero = tq1_byte([1; 5]);
        let zero_qh = tq1_byte([1, 1, 1, 1, 0]);
        for e in 0..QK_K {
            let mut b = BlockTQ1_0 {
                qs: [zero; 48],
                qh: [zero_qh; 4],
                d: F16Le::from_f32(0.25),
            };
            // Element e gets trit 2 (+1) at its documented place.
            if e < 160 {
                let (n, m) = (e / 32, e % 32);
                let mut t = [1; 5];
                t[n] = 2;
                b.qs[m] = tq1_byte(t);
            } else if e < 240 {
                let (n, m) = ((e - 160) / 16, (e - 160) % 16);
                let mut t = [1; 5];
                t[n] = 2;
                b.qs[32 + m] = tq1_byte(t);
            } else {
                let (n, j) = ((e - 240) / 4, (e - 240) % 4);
                let mut t = [1, 1, 1, 1, 0];
                t[n] = 2;
                b.qh[j] = tq1_byte(t);
            }
            let mut out = [f32::NAN; QK_K];
            dequant_tq1_0(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                assert_eq!(
                    v,
                    if i == e { 0.25 } else { 0.0 },
                    "one-hot {e}, element {i}"
                );
            }
        }
    }

    #[test]
    fn tq2_0_one_hot_every_element_and_code_3() {
        for e in 0..QK_K {
            // 0x55: every code 1 (weight 0).
            let mut b = BlockTQ2_0 {
                qs: [0x55; 64],
                d: F16Le::from_f32(-0.5),
            };
            let (h, n, m) = (e / 128, (e % 128) / 32, e % 32);
            b.qs[32 * h + m] ^= 0b11 << (2 * n); // code 1 → code 2
            let mut out = [f32::NAN; QK_K];
            dequant_tq2_0(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                assert_eq!(
                    v,
                    if i == e { -0.5 } else { 0.0 },
                    "one-hot {e}, element {i}"
                );
            }
        }
        let b = BlockTQ2_0 {
            qs: [0xFF; 64],
            d: F16Le::from_f32(3.0),
        };
        let mut out = [0.0f32; QK_K];
        dequant_tq2_0(as_bytes(&[b]), &mut out);
        assert!(out.iter().all(|&v| v == 6.0), "code 3 reads as +2");
    }

    #[test]
    fn i2_s_bit_order_hand_built() {
        // Block 0, byte 0 = 0b10_01_00_11: element 0 (bits 7–6) code 2 → +1, element 32
        // (bits 5–4) code 1 → 0, element 64 (bits 3–2) code 0 → −1, element 96 (bits 1–0)
        // code 3 → +2. Byte 31 = 0b00_10_10_10: elements 31, 63, 95, 127 = −1, +1, +1, +1.
        // Block 1, byte 5 = 0b01_01_01_00: element 128 + 101 = −1. Everything else 0x55 (0).
        let mut row = [0x55u8; 64];
        row[0] = 0b10_01_00_11;
        row[31] = 0b00_10_10_10;
        row[32 + 5] = 0b01_01_01_00;
        let mut want = [0.0f32; 256];
        want[0] = 1.0;
        want[64] = -1.0;
        want[96] = 2.0;
        want[31] = -1.0;
        want[63] = 1.0;
        want[95] = 1.0;
        want[127] = 1.0;
        want[128 + 5 + 96] = -1.0;
        let mut out = [f32::NAN; 256];
        dequant_i2_s(&row, 0.5, &mut out);
        for i in 0..256 {
            assert_eq!(out[i], want[i] * 0.5, "element {i}");
        }
        dequant_i2_s_unscaled(&row, &mut out);
        assert_eq!(out, want);

        let x = randoms(256, 17);
        let exact: f32 = want.iter().zip(&x).map(|(w, x)| w * x).sum();
        assert!((dot_i2_s_f32_unscaled(&row, &x) - exact).abs() < 1e-6);
        let scaled = dot_i2_s_f32(&row, -0.75, &x);
        assert_eq!(scaled, dot_i2_s_f32_unscaled(&row, &x) * -0.75);
    }

    #[test]
    fn i2_s_quantize_absmean_rule_and_packing() {
        // mean |x| = 1, so thresholds are ±0.5: exactly ±0.5 → 0 (half to even), beyond → ±1.
        let mut x = [1.0f32; 128];
        let pattern = [0.5f32, -0.5, 0.75, -0.75, 0.0, 2.0, -2.0, 0.25];
        x[..8].copy_from_slice(&pattern);
        // Keep the mean at exactly 1: the 8 patterned values sum to 6.75 in magnitude, not 8.
        x[8] = 1.0 + (8.0 - 6.75);
        let mut q = [0u8; 32];
        let scale = quantize_i2_s(&x, &mut q);
        assert_eq!(scale, 1.0);
        let mut back = [f32::NAN; 128];
        dequant_i2_s(&q, scale, &mut back);
        assert_eq!(&back[..8], &[0.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0]);
        assert!(back[8..].iter().all(|&v| v == 1.0));
        // Packing: byte p, bits 7–6 = element p. Elements 32, 64, 96 are +1 (code 2).
        assert_eq!(q[2], 0b10_10_10_10);
        assert_eq!(q[3], 0b00_10_10_10);
        assert_eq!(q[0], 0b01_10_10_10);
    }

    #[test]
    fn i2_s_quantize_roundtrip_odd_blocks_and_zero() {
        for n_blocks in [1usize, 3, 5] {
            let x = randoms(128 * n_blocks, n_blocks as u64);
            let mut q = vec![0u8; 32 * n_blocks];
            let scale = quantize_i2_s(&x, &mut q);
            let mean = x.iter().map(|v| v.abs() as f64).sum::<f64>() / x.len() as f64;
            assert!((scale as f64 - mean).abs() <= mean * 1e-6);
            let mut back = vec![f32::NAN; x.len()];
            dequant_i2_s(&q, scale, &mut back);
            for (u, v) in x.iter().zip(&back) {
                let t = u / scale;
                let want = if t > 0.5 {
                    scale
                } else if t < -0.5 {
                    -scale
                } else {
                    0.0
                };
                assert_eq!(*v, want, "{u}");
            }
            let xs = randoms(x.len(), 99);
            check_dot(&back, dot_i2_s_f32(&q, scale, &xs), &xs);
        }
        let mut q = [0xAAu8; 32];
        assert_eq!(quantize_i2_s(&[0.0; 128], &mut q), 0.0);
        assert_eq!(q, [0x55; 32]);
        assert_eq!(quantize_i2_s(&[], &mut []), 0.0);
    }

    #[test]
    fn tq_quantize_roundtrip_follows_ggml_rule() {
        for n_blocks in [1usize, 3] {
            let mut x = randoms(QK_K * n_blocks, 40 + n_blocks as u64);
            x[3] = 7.0; // An outlier in block 0: most of that block rounds to 0.
            let mut q1 = vec![0u8; 54 * n_blocks];
            let mut q2 = vec![0u8; 66 * n_blocks];
            quantize_tq1_0(&x, &mut q1);
            quantize_tq2_0(&x, &mut q2);
            let (mut w1, mut w2) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
            dequant_tq1_0(&q1, &mut w1);
            dequant_tq2_0(&q2, &mut w2);
            assert_eq!(w1, w2, "both TQ formats ternarize alike");
            for (xb, wb) in x.chunks(QK_K).zip(w1.chunks(QK_K)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let d = F16Le::from_f32(amax).to_f32();
                for (u, v) in xb.iter().zip(wb) {
                    let t = u * (1.0 / amax);
                    let want = if t >= 0.5 {
                        d
                    } else if t <= -0.5 {
                        -d
                    } else {
                        0.0
                    };
                    assert_eq!(*v, want, "{u} of max {amax}");
                }
            }
            let xs = randoms(x.len(), 5);
            check_dot(&w1, dot_tq1_0_f32(&q1, &xs), &xs);
            check_dot(&w2, dot_tq2_0_f32(&q2, &xs), &xs);
        }
        // An all-zero block: scale 0, every code 1.
        let mut q2 = [0xAAu8; 66];
        quantize_tq2_0(&[0.0; QK_K], &mut q2);
        assert!(q2[..64].iter().all(|&b| b == 0x55) && q2[64..] == [0, 0]);
        let mut q1 = [0xAAu8; 54];
        quantize_tq1_0(&[0.0; QK_K], &mut q1);
        let mut back = [f32::NAN; QK_K];
        dequant_tq1_0(&q1, &mut back);
        assert!(back.iter().all(|&v| v == 0.0));
    }
}
