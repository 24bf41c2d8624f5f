//! Q5_0 and Q5_1: 32 weights per block, 5-bit codes: the low four bits in nibbles ordered as
//! Q4_0's, the fifth bit of element j in bit j of the little-endian 32-bit `qh`.

use crate::blocks::{as_blocks, as_blocks_mut, BlockQ5_0, BlockQ5_1, F16Le};

/// The 5-bit codes (0..=31) of one Q5 block in element order.
#[inline(always)]
pub(crate) fn codes5(qh: &[u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let h = u32::from_le_bytes(*qh);
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = (b & 0x0F) | (((h >> j) & 1) as u8) << 4;
        q[j + 16] = (b >> 4) | (((h >> (j + 16)) & 1) as u8) << 4;
    }
    q
}

/// Packs 32 codes (0..=31, element order) into `qh` and `qs`.
#[inline(always)]
fn pack5(q: &[u8; 32], qh: &mut [u8; 4], qs: &mut [u8; 16]) {
    let mut h = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        h |= ((q[j] as u32 >> 4) & 1) << j;
        h |= ((q[j + 16] as u32 >> 4) & 1) << (j + 16);
    }
    *qh = h.to_le_bytes();
}

/// Dequantizes a Q5_0 row into `out`.
pub fn dequant_q5_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ5_0] = as_blocks(row).expect("Q5_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for (q, o) in codes5(&b.qh, &b.qs).iter().zip(o) {
            *o = (*q as i32 - 16) as f32 * d;
        }
    }
}

/// Dot product of a Q5_0 row with f32 activations.
pub fn dot_q5_0_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ5_0] = as_blocks(row).expect("Q5_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let mut acc = 0.0f32;
        for (q, xi) in codes5(&b.qh, &b.qs).iter().zip(x) {
            acc += (*q as i32 - 16) as f32 * xi;
        }
        sum += acc * b.d.to_f32();
    }
    sum
}

/// Dequantizes a Q5_1 row into `out`.
pub fn dequant_q5_1(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ5_1] = as_blocks(row).expect("Q5_1 row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for (q, o) in codes5(&b.qh, &b.qs).iter().zip(o) {
            *o = *q as f32 * d + m;
        }
    }
}

/// Dot product of a Q5_1 row with f32 activations: `Σ d·(Σ q·x) + m·(Σ x)` per block.
pub fn dot_q5_1_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ5_1] = as_blocks(row).expect("Q5_1 row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let (mut qx, mut sx) = (0.0f32, 0.0f32);
        for (q, xi) in codes5(&b.qh, &b.qs).iter().zip(x) {
            qx += *q as f32 * xi;
            sx += xi;
        }
        sum += qx * b.d.to_f32() + sx * b.m.to_f32();
    }
    sum
}

/// Quantizes `x` (a multiple of 32 long) to Q5_0 as ggml's `quantize_row_q5_0_ref` does: the
/// scale is the signed value of largest magnitude divided by −16, codes
/// `min(31, trunc(x/d + 16.5))`.
pub fn quantize_q5_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ5_0] = as_blocks_mut(out).expect("output is whole Q5_0 blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let max = x
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = F16Le::from_f32(d);
        // ggml converts to int8 (truncating); the value is at least 0.5 minus rounding, so
        // the saturating `as` only differs on NaN or infinite input, where C is undefined.
        let q: [u8; 32] = core::array::from_fn(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
        pack5(&q, &mut b.qh, &mut b.qs);
    }
}

/// Quantizes `x` (a multiple of 32 long) to Q5_1 as ggml's `quantize_row_q5_1_ref` does:
/// scale (max − min)/31, offset min, codes `trunc((x − min)/d + 0.5)` as u8, bits 0..5 kept.
pub fn quantize_q5_1(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ5_1] = as_blocks_mut(out).expect("output is whole Q5_1 blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let min = x
            .iter()
            .copied()
            .fold(f32::MAX, |m, v| if v < m { v } else { m });
        let max = x
            .iter()
            .copied()
            .fold(-f32::MAX, |m, v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = F16Le::from_f32(d);
        b.m = F16Le::from_f32(min);
        let q: [u8; 32] = core::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8 & 0x1F);
        pack5(&q, &mut b.qh, &mut b.qs);
    }
}
