//! The batched int8 GEMM: every format's weights in one common form, and one product over it.
//!
//! Prompt processing multiplies each weight matrix by many activation rows. The per-format
//! int8 kernels (`gemm_*_q8`) decode each block inside their dot products; the SIMD GEMMs
//! instead decode ("unpack") a panel of weight rows once into the form of
//! [`Int8Layout`](crate::format::Int8Layout) — unsigned 8-bit codes `u`, one f32 scale (and
//! bias) per group of 16 or 32 weights, weight `scale·q + bias` with integer `q` in
//! −128..=127 — and run one format-independent integer microkernel over it, reusing the panel
//! across all tokens.
//!
//! This file is the specification of both halves: the `unpack_i8_*` functions (one per format,
//! exact: `scale·q + bias` is the format's dequantized value bit for bit, see the tests) and
//! [`gemm_i8`], the product as plain loops.
//!
//! The arithmetic, per output `y[t][r]` and in the order of the row's groups `g`:
//!
//! ```text
//! i_g = Σ_{j in g} q_j·a_j                                 exact i32
//! acc = fma(i_g as f32, scale_g·d_a, acc)                  d_a: the activation block's scale
//! acc = fma(bias_g, s_g, acc)        (formats with a bias)
//! ```
//!
//! where `s_g` is the activation side of the bias: for 32-weight groups the block's stored
//! `s = d_a·Σ a`; for 16-weight groups (Q2_K's mins) `d_a·(Σ_{j in g} a_j as f32)`, one
//! rounded product of the exact half-block sum ([`group_act_sum`]).
//!
//! starting from `acc = 0`. `i_g` is at most 32·128·127 < 2²⁴ in magnitude, exact in f32, and
//! every SIMD backend performs exactly these operations (the fused multiply-adds included), so
//! they equal this reference bit for bit. Against the per-format int8 dots
//! (`dot_q4_k_q8` etc.), which group the same exact integer terms differently (per block, per
//! super-block, `sum8_tree`), the result differs only by float rounding: both are sums of the
//! same `G` exact terms `T_g = scale_g·d_a·i_g (+ bias_g·s_a)`, each formed with at most three
//! roundings and summed with at most `G + 3` more, so each lies within `(G + 6)·u·Σ|T_g|` of
//! the exact sum (`u = 2⁻²⁴`) and they differ by at most twice that (`gemm_i8_bound`).

use super::act::{act_blocks, lut4, BlockQ8Act, IQ4_NL_VALUES};
use super::gemm::gemm_shape;
use super::iq4_xs::{iq4_xs_steps, iq4_xs_values};
use super::kquants::{k4_steps, q4_k_codes, q6_k_codes, q6_k_steps};
use super::kquants5::q5_k_codes;
use super::kquants_low::{q2_k_steps, q3_k_codes, q3_k_steps, two_bit_codes};
use super::q4::codes as q4_codes;
use super::q5::codes5;
use crate::blocks::{
    as_blocks, BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K,
    BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};
use crate::dispatch::UnpackI8Fn;
use crate::format::Format;

/// Checks an `unpack_i8_*` call: `codes` holds the row's weights, `scales` (and `bias`, for
/// formats with one) a value per group of `group`; returns the row's blocks.
fn unpack_shape<'a, B: crate::blocks::Pod>(
    row: &'a [u8],
    len: usize,
    codes: &[i8],
    scales: &[f32],
    group: usize,
) -> &'a [B] {
    let blocks: &[B] = as_blocks(row).expect("row is whole blocks");
    assert_eq!(blocks.len() * len, codes.len(), "one code per weight");
    assert_eq!(codes.len() / group, scales.len(), "one scale per group");
    blocks
}

/// Q4_0 → `q − 8`, scale `d` per block.
pub fn unpack_i8_q4_0(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockQ4_0] = unpack_shape(row, 32, codes, scales, 32);
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(32)).zip(scales) {
        c.copy_from_slice(&q4_codes(&b.qs).map(|q| q as i8 - 8));
        *s = b.d.to_f32();
    }
}

/// Q4_1 → `q`, scale `d` and bias `m` per block.
pub fn unpack_i8_q4_1(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
    let blocks: &[BlockQ4_1] = unpack_shape(row, 32, codes, scales, 32);
    for (((b, c), s), m) in blocks
        .iter()
        .zip(codes.chunks_exact_mut(32))
        .zip(scales)
        .zip(bias)
    {
        c.copy_from_slice(&q4_codes(&b.qs).map(|q| q as i8));
        (*s, *m) = (b.d.to_f32(), b.m.to_f32());
    }
}

/// Q5_0 → `q − 16`, scale `d` per block.
pub fn unpack_i8_q5_0(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockQ5_0] = unpack_shape(row, 32, codes, scales, 32);
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(32)).zip(scales) {
        c.copy_from_slice(&codes5(&b.qh, &b.qs).map(|q| q as i8 - 16));
        *s = b.d.to_f32();
    }
}

/// Q5_1 → `q`, scale `d` and bias `m` per block.
pub fn unpack_i8_q5_1(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
    let blocks: &[BlockQ5_1] = unpack_shape(row, 32, codes, scales, 32);
    for (((b, c), s), m) in blocks
        .iter()
        .zip(codes.chunks_exact_mut(32))
        .zip(scales)
        .zip(bias)
    {
        c.copy_from_slice(&codes5(&b.qh, &b.qs).map(|q| q as i8));
        (*s, *m) = (b.d.to_f32(), b.m.to_f32());
    }
}

/// Q8_0 → `q`, scale `d` per block.
pub fn unpack_i8_q8_0(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockQ8_0] = unpack_shape(row, 32, codes, scales, 32);
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(32)).zip(scales) {
        c.copy_from_slice(&b.qs);
        *s = b.d.to_f32();
    }
}

/// IQ4_NL → codebook values `T[q]`, scale `d` per block.
pub fn unpack_i8_iq4_nl(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockIQ4_NL] = unpack_shape(row, 32, codes, scales, 32);
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(32)).zip(scales) {
        c.copy_from_slice(&lut4(&b.qs, &IQ4_NL_VALUES));
        *s = b.d.to_f32();
    }
}

/// Q4_K → `q`, per 32-weight sub-block scale `d·sc` and bias `−dmin·m`.
pub fn unpack_i8_q4_k(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
    let blocks: &[BlockQ4_K] = unpack_shape(row, 256, codes, scales, 32);
    let groups = scales.chunks_exact_mut(8).zip(bias.chunks_exact_mut(8));
    for ((b, c), (s, m)) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(groups) {
        c.copy_from_slice(&q4_k_codes(&b.qs).map(|q| q as i8));
        for (j, (step, min)) in k4_steps(b.d, b.dmin, &b.scales).into_iter().enumerate() {
            (s[j], m[j]) = (step, -min);
        }
    }
}

/// Q5_K → `q`, per 32-weight sub-block scale `d·sc` and bias `−dmin·m`.
pub fn unpack_i8_q5_k(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
    let blocks: &[BlockQ5_K] = unpack_shape(row, 256, codes, scales, 32);
    let groups = scales.chunks_exact_mut(8).zip(bias.chunks_exact_mut(8));
    for ((b, c), (s, m)) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(groups) {
        c.copy_from_slice(&q5_k_codes(b).map(|q| q as i8));
        for (j, (step, min)) in k4_steps(b.d, b.dmin, &b.scales).into_iter().enumerate() {
            (s[j], m[j]) = (step, -min);
        }
    }
}

/// Q6_K → `q − 32`, per 16-weight sub-block scale `d·sc`.
pub fn unpack_i8_q6_k(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockQ6_K] = unpack_shape(row, 256, codes, scales, 16);
    for ((b, c), s) in blocks
        .iter()
        .zip(codes.chunks_exact_mut(256))
        .zip(scales.chunks_exact_mut(16))
    {
        c.copy_from_slice(&q6_k_codes(b));
        s.copy_from_slice(&q6_k_steps(b));
    }
}

/// Q3_K → `q − 4·(1 − h)` in −4..=3, per 16-weight sub-block scale `d·(sc − 32)`.
pub fn unpack_i8_q3_k(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockQ3_K] = unpack_shape(row, 256, codes, scales, 16);
    for ((b, c), s) in blocks
        .iter()
        .zip(codes.chunks_exact_mut(256))
        .zip(scales.chunks_exact_mut(16))
    {
        c.copy_from_slice(&q3_k_codes(b));
        s.copy_from_slice(&q3_k_steps(b));
    }
}

/// Q2_K → `q` in 0..=3, per 16-weight sub-block scale `d·sc` and bias `−dmin·m`.
pub fn unpack_i8_q2_k(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
    let blocks: &[BlockQ2_K] = unpack_shape(row, 256, codes, scales, 16);
    let groups = scales.chunks_exact_mut(16).zip(bias.chunks_exact_mut(16));
    for ((b, c), (s, m)) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(groups) {
        c.copy_from_slice(&two_bit_codes(&b.qs).map(|q| q as i8));
        for (j, (step, min)) in q2_k_steps(b).into_iter().enumerate() {
            (s[j], m[j]) = (step, -min);
        }
    }
}

/// IQ4_XS → codebook values `T[q]`, per 32-weight sub-block scale `d·(sc − 32)`.
pub fn unpack_i8_iq4_xs(row: &[u8], codes: &mut [i8], scales: &mut [f32], _bias: &mut [f32]) {
    let blocks: &[BlockIQ4_XS] = unpack_shape(row, 256, codes, scales, 32);
    for ((b, c), s) in blocks
        .iter()
        .zip(codes.chunks_exact_mut(256))
        .zip(scales.chunks_exact_mut(8))
    {
        c.copy_from_slice(&iq4_xs_values(&b.qs));
        s.copy_from_slice(&iq4_xs_steps(b));
    }
}

/// The reference `unpack_i8_*` of `format`, if the int8 GEMM takes it.
pub fn unpack_i8_ref(format: Format) -> Option<UnpackI8Fn> {
    Some(match format {
        Format::Q4_0 => unpack_i8_q4_0,
        Format::Q4_1 => unpack_i8_q4_1,
        Format::Q5_0 => unpack_i8_q5_0,
        Format::Q5_1 => unpack_i8_q5_1,
        Format::Q8_0 => unpack_i8_q8_0,
        Format::IQ4_NL => unpack_i8_iq4_nl,
        Format::Q4_K => unpack_i8_q4_k,
        Format::Q5_K => unpack_i8_q5_k,
        Format::Q6_K => unpack_i8_q6_k,
        Format::IQ4_XS => unpack_i8_iq4_xs,
        Format::Q3_K => unpack_i8_q3_k,
        Format::Q2_K => unpack_i8_q2_k,
        _ => return None,
    })
}

/// Most weights per block of any format the int8 GEMM takes (the k-quants' 256).
pub const MAX_BLOCK_LEN: usize = 256;

/// The activation side `s_g` of a bias for the group of `group` weights starting at code
/// `at` (0, or 16 for the second half) of activation block `a` (module docs): the stored
/// `s` for a whole block, `d·Σ a` over the half otherwise (the sum is exact, at most 16·127).
#[inline(always)]
pub fn group_act_sum(a: &BlockQ8Act, at: usize, group: usize) -> f32 {
    if group == 32 {
        a.s()
    } else {
        let sum: i32 = a.qs[at..at + group].iter().map(|&q| q as i32).sum();
        a.d() * sum as f32
    }
}

/// `y[t·ldy + r] = row r · token t` for `m` rows of `format` weights in `w` and `n` rows of int8
/// activations in `xq` ([`act_q8_bytes`](super::act_q8_bytes) each), through `unpack` (the
/// format's `unpack_i8` kernel) and the arithmetic of the module docs, as plain loops.
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
pub fn gemm_i8(
    format: Format,
    unpack: UnpackI8Fn,
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let l = format.int8().expect("the int8 GEMM takes the format");
    let (bl, bb, g) = (format.block_len(), format.block_bytes(), l.group);
    assert!(bl <= MAX_BLOCK_LEN);
    let (rb, qb) = gemm_shape(w, m, xq.len(), n, y, ldy);
    assert_eq!(rb % bb, 0, "rows are whole blocks");
    let cols = rb / bb * bl;
    assert_eq!(
        qb,
        super::act_q8_bytes(cols),
        "activation rows match the weight rows"
    );
    let (mut codes, mut scales, mut bias) = ([0i8; MAX_BLOCK_LEN], [0f32; 32], [0f32; 32]);
    let (codes, scales, bias) = (&mut codes[..bl], &mut scales[..bl / g], &mut bias[..bl / g]);
    for (r, row) in w.chunks_exact(rb).enumerate() {
        for t in 0..n {
            y[t * ldy + r] = 0.0;
        }
        for (fb, block) in row.chunks_exact(bb).enumerate() {
            unpack(block, codes, scales, bias);
            for (t, xt) in xq.chunks_exact(qb).enumerate() {
                let acts: &[BlockQ8Act] = act_blocks(xt, cols / 32);
                let mut acc = y[t * ldy + r];
                for (j, c) in codes.chunks_exact(g).enumerate() {
                    let k = fb * bl + j * g;
                    let a = &acts[k / 32];
                    let isum: i32 = c
                        .iter()
                        .zip(&a.qs[k % 32..])
                        .map(|(&q, &a)| q as i32 * a as i32)
                        .sum();
                    acc = libm::fmaf(isum as f32, scales[j] * a.d(), acc);
                    if l.bias {
                        acc = libm::fmaf(bias[j], group_act_sum(a, k % 32, g), acc);
                    }
                }
                y[t * ldy + r] = acc;
            }
        }
    }
}

/// The bound of the module docs on `|gemm_i8 − dot_*_q8|` for one output: `2·(G + 6)·u` times
/// `Σ_g |T_g|` (given in f64), `G` the row's groups, plus a few f32 subnormal steps for terms
/// that underflow.
pub fn gemm_i8_bound(groups: usize, abs_terms: f64) -> f64 {
    let u = f64::from(f32::EPSILON) / 2.0;
    2.0 * (groups as f64 + 6.0) * u * abs_terms + 64.0 * f64::from(f32::from_bits(1))
}
