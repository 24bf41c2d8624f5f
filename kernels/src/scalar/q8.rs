//! Q8_0: 32 weights per block, int8 codes.

use crate::blocks::{as_blocks, as_blocks_mut, BlockQ8_0, F16Le};

/// Dequantizes a Q8_0 row into `out`.
pub fn dequant_q8_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ8_0] = as_blocks(row).expect("Q8_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for (q, o) in b.qs.iter().zip(o) {
            *o = *q as f32 * d;
        }
    }
}

/// Dot product of a Q8_0 row with f32 activations.
pub fn dot_q8_0_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ8_0] = as_blocks(row).expect("Q8_0 row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let mut acc = 0.0f32;
        for (q, xi) in b.qs.iter().zip(x) {
            acc += *q as f32 * xi;
        }
        sum += acc * b.d.to_f32();
    }
    sum
}

/// Quantizes `x` (a multiple of 32 long) to Q8_0: scale max|x|/127, round to nearest.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8_0] = as_blocks_mut(out).expect("output is whole Q8_0 blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = F16Le::from_f32(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_half_away(v * id).clamp(-127.0, 127.0) as i8;
        }
    }
}

/// Rounds half away from zero without `std` (`f32::round` needs libm).
#[inline(always)]
pub(crate) fn round_half_away(v: f32) -> f32 {
    let t = (v.abs() + 0.5) as i32 as f32;
    if v < 0.0 {
        -t
    } else {
        t
    }
}
