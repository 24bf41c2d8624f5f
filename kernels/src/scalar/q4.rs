//! Q4_0 and Q4_1: 32 weights per block, 4-bit codes, low nibbles first.

use crate::blocks::{as_blocks, as_blocks_mut, BlockQ4_0, BlockQ4_1, F16Le};

/// Codes of one Q4 block in element order: `q[j]` and `q[j + 16]` share byte `j`.
#[inline(always)]
pub(super) fn codes(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = b & 0x0F;
        q[j + 16] = b >> 4;
    }
    q
}

/// Dequantizes a Q4_0 row into `out`.
pub fn dequant_q4_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ4_0] = as_blocks(row).expect("Q4_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for (q, o) in codes(&b.qs).iter().zip(o) {
            *o = (*q as i32 - 8) as f32 * d;
        }
    }
}

/// Dot product of a Q4_0 row with f32 activations.
pub fn dot_q4_0_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ4_0] = as_blocks(row).expect("Q4_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let mut acc = 0.0f32;
        for (q, xi) in codes(&b.qs).iter().zip(x) {
            acc += (*q as i32 - 8) as f32 * xi;
        }
        sum += acc * b.d.to_f32();
    }
    sum
}

/// Dequantizes a Q4_1 row into `out`.
pub fn dequant_q4_1(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ4_1] = as_blocks(row).expect("Q4_1 row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for (q, o) in codes(&b.qs).iter().zip(o) {
            *o = *q as f32 * d + m;
        }
    }
}

/// Dot product of a Q4_1 row with f32 activations: `Σ d·(Σ q·x) + m·(Σ x)` per block.
pub fn dot_q4_1_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ4_1] = as_blocks(row).expect("Q4_1 row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let (mut qx, mut sx) = (0.0f32, 0.0f32);
        for (q, xi) in codes(&b.qs).iter().zip(x) {
            qx += *q as f32 * xi;
            sx += xi;
        }
        sum += qx * b.d.to_f32() + sx * b.m.to_f32();
    }
    sum
}

/// Quantizes `x` (a multiple of 32 long) to Q4_0 the way ggml's reference does: the scale is
/// the signed value of largest magnitude divided by −8.
pub fn quantize_q4_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ4_0] = as_blocks_mut(out).expect("output is whole Q4_0 blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let max = x
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = F16Le::from_f32(d);
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Quantizes `x` (a multiple of 32 long) to Q4_1: scale (max − min)/15, offset min.
pub fn quantize_q4_1(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ4_1] = as_blocks_mut(out).expect("output is whole Q4_1 blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = F16Le::from_f32(d);
        b.m = F16Le::from_f32(min);
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}
