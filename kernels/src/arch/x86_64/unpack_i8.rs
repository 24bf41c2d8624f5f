//! `unpack_i8` on AVX2: a row's blocks → the batched int8 GEMM's codes, scales and biases,
//! bit for bit as `scalar::unpack_i8_*` (the codes from the same decoders the int8 dots use,
//! the scales by the scalar reference's own products).
//!
//! Hand-written because the GEMM unpacks every weight once per call and the scalar decoders,
//! at a few cycles per code, cost a quarter of the GEMM's time; these spend about one
//! instruction per 8–32 codes.

use core::arch::x86_64::*;

use super::avx2::{block_codes, lut16};
use super::kquants::{iq4_xs_values, q4_k_nibbles, q5_k_codes, q6_k_half};
use super::kquants_low::{q2_k_codes, q2_k_steps, q3_k_codes, q3_k_steps};
use crate::arch::int8_blocks::Block;
use crate::blocks::{BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K};
use crate::scalar::{iq4_xs_scales, k4_steps, IQ4_NL_VALUES};

/// Stores 32 codes at `codes[at..at + 32]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store32(codes: &mut [i8], at: usize, v: __m256i) {
    let dst = &mut codes[at..at + 32];
    // SAFETY: `dst` holds 32 bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) };
}

/// A 32-weight block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): codes by `block_codes`,
/// scale `d` (and bias `m`) per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_block32<B: Block>(
    blocks: &[B],
    codes: &mut [i8],
    scales: &mut [f32],
    bias: &mut [f32],
) {
    assert!(codes.len() == 32 * blocks.len() && scales.len() == blocks.len());
    assert!(!B::FMT.has_m() || bias.len() == blocks.len());
    let lut = lut16(B::FMT.lut());
    for (i, b) in blocks.iter().enumerate() {
        store32(codes, 32 * i, block_codes(lut, b));
        scales[i] = b.d().to_f32();
        if B::FMT.has_m() {
            bias[i] = b.m().to_f32();
        }
    }
}

/// Q4_K: codes `q`, per sub-block `d·sc` and `−dmin·m`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_q4_k(
    blocks: &[BlockQ4_K],
    codes: &mut [i8],
    scales: &mut [f32],
    bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 8 * blocks.len());
    assert_eq!(bias.len(), scales.len());
    for (i, b) in blocks.iter().enumerate() {
        for c in 0..4 {
            let (lo, hi) = q4_k_nibbles(&b.qs[32 * c..]);
            store32(codes, 256 * i + 64 * c, lo);
            store32(codes, 256 * i + 64 * c + 32, hi);
        }
        for (j, (step, min)) in k4_steps(b.d, b.dmin, &b.scales).into_iter().enumerate() {
            (scales[8 * i + j], bias[8 * i + j]) = (step, -min);
        }
    }
}

/// Q5_K: codes `q`, per sub-block `d·sc` and `−dmin·m`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_q5_k(
    blocks: &[BlockQ5_K],
    codes: &mut [i8],
    scales: &mut [f32],
    bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 8 * blocks.len());
    assert_eq!(bias.len(), scales.len());
    for (i, b) in blocks.iter().enumerate() {
        // SAFETY: `qh` is 32 bytes; the load is unaligned.
        let qh = unsafe { _mm256_loadu_si256(b.qh.as_ptr().cast()) };
        for c in 0..4 {
            let (lo, hi) = q5_k_codes(&b.qs[32 * c..], qh, c);
            store32(codes, 256 * i + 64 * c, lo);
            store32(codes, 256 * i + 64 * c + 32, hi);
        }
        for (j, (step, min)) in k4_steps(b.d, b.dmin, &b.scales).into_iter().enumerate() {
            (scales[8 * i + j], bias[8 * i + j]) = (step, -min);
        }
    }
}

/// Q6_K: codes `q − 32`, per 16-weight sub-block `d·sc`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_q6_k(
    blocks: &[BlockQ6_K],
    codes: &mut [i8],
    scales: &mut [f32],
    _bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 16 * blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        for h in 0..2 {
            let q = q6_k_half(&b.ql[64 * h..], &b.qh[32 * h..]);
            for (k, v) in q.into_iter().enumerate() {
                store32(codes, 256 * i + 128 * h + 32 * k, v);
            }
        }
        let d = b.d.to_f32();
        for (s, &sc) in scales[16 * i..16 * i + 16].iter_mut().zip(&b.scales) {
            *s = d * sc as f32;
        }
    }
}

/// IQ4_XS: codebook values, per sub-block `d·(sc − 32)`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_iq4_xs(
    blocks: &[BlockIQ4_XS],
    codes: &mut [i8],
    scales: &mut [f32],
    _bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 8 * blocks.len());
    let lut = lut16(&IQ4_NL_VALUES);
    for (i, b) in blocks.iter().enumerate() {
        for j in 0..8 {
            store32(codes, 256 * i + 32 * j, iq4_xs_values(lut, b, j));
        }
        let d = b.d.to_f32();
        for (s, sc) in scales[8 * i..8 * i + 8].iter_mut().zip(iq4_xs_scales(b)) {
            *s = d * sc as f32;
        }
    }
}

/// Q3_K: codes `q − 4·(1 − h)` in −4..=3, per 16-weight sub-block `d·(sc − 32)`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_q3_k(
    blocks: &[BlockQ3_K],
    codes: &mut [i8],
    scales: &mut [f32],
    _bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 16 * blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        for h in 0..2 {
            for k in 0..4 {
                store32(codes, 256 * i + 128 * h + 32 * k, q3_k_codes(b, h, k));
            }
        }
        scales[16 * i..16 * i + 16].copy_from_slice(&q3_k_steps(b));
    }
}

/// Q2_K: codes `q` in 0..=3, per 16-weight sub-block `d·sc` and `−dmin·m`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn unpack_i8_q2_k(
    blocks: &[BlockQ2_K],
    codes: &mut [i8],
    scales: &mut [f32],
    bias: &mut [f32],
) {
    assert!(codes.len() == 256 * blocks.len() && scales.len() == 16 * blocks.len());
    assert_eq!(bias.len(), scales.len());
    for (i, b) in blocks.iter().enumerate() {
        for h in 0..2 {
            for k in 0..4 {
                store32(codes, 256 * i + 128 * h + 32 * k, q2_k_codes(b, h, k));
            }
        }
        let (steps, mins) = q2_k_steps(b);
        scales[16 * i..16 * i + 16].copy_from_slice(&steps);
        for (m, min) in bias[16 * i..16 * i + 16].iter_mut().zip(mins) {
            *m = -min;
        }
    }
}
