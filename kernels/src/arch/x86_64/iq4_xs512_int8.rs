//! IQ4_XS int8 GEMM on 512-bit registers (AVX512-VNNI `vpdpbusd` with
//! AVX-512BW byte ops), installed with the AVX512-VNNI backend.
//!
//! Hand-written for the same reason as `kquants_low512_int8.rs`, whose plan it follows: the
//! 256-bit kernel (`kquants_int8.rs`) spends a sign trick, a dot and a horizontal-add tree per
//! activation block. Here 32 code bytes (sub-blocks `2m` and `2m + 1`) are broadcast to both
//! halves of a register, the low half keeps the low nibbles and the high half the high ones
//! (one variable shift, one mask), and one `vpshufb` looks all 64 up in the codebook offset by
//! 128 (`T[q] + 128` is in 1..=241, so the codes are unsigned and `vpdpbusd` needs no sign
//! trick): `Σ T[q]·a = Σ (T[q] + 128)·a − 128·Σa`, the activation sums computed once per
//! super-block of a token for every [`ROW_BLOCK`](super::kquants_low512_int8::ROW_BLOCK) rows. The activations are permuted once to the codes'
//! order (the first halves of blocks `2m` and `2m + 1`, then their second halves).
//!
//! Used for the GEMM only: a single row cannot share the activation work, and the 256-bit row
//! dot measured faster there (11.2 against 9.5 GB/s on the 576x1536 bench shape). A 512-bit
//! row dot without the preparation (the codes moved to the activations' order instead, the
//! offset `128·Σa` by a second `vpdpbusd` per 64 weights) measured no better either: 10.5
//! against 11.2 GB/s (Zen 4 runs a 512-bit operation as two 256-bit halves).
//!
//! Bit-identical to `scalar::dot_iq4_xs_q8`: every integer is exact (`|Σ (T + 128)·a|` over a
//! 32-element block is below 2²⁰), and the float part is the reference's: per activation block
//! one conversion and one product by its scale, `sum8_tree`'s order, then `d·P` added to the
//! running sum.

use core::arch::x86_64::*;

use super::avx2::hsum;
use super::kquants::iq4_xs_scales8;
use super::kquants_low512_int8::{f16_pair, gemm_rows, sums_tree};
use crate::blocks::BlockIQ4_XS;
use crate::scalar::{BlockQ8Act, IQ4_NL_VALUES};

/// Rows per tile of the GEMM: the rows that meet each prepared super-block of activations while
/// it is in registers (the preparation itself is shared by `ROW_BLOCK` rows, see `gemm_rows!`).
const ROWS: usize = 4;

/// One super-block's activations, prepared once for every row that meets them.
#[derive(Clone, Copy)]
struct Acts {
    /// For `m` in 0..4: the first 16 codes of blocks `2m`, `2m + 1`, then their last 16.
    a: [__m512i; 4],
    /// `128·Σa` of each activation block, in block order.
    t128: __m256i,
    /// The eight activation-block scales.
    d: __m256,
}

/// Per activation block (sub-block) `j`, the sum of its four 128-bit lanes' worth: from
/// [`sums_tree`]'s `v[4L + m]` (lane `L` of pair `m`: `L` even is block `2m`, odd `2m + 1`),
/// `v[m] + v[8 + m]` and `v[4 + m] + v[12 + m]`, returned in block order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_sums(v: __m512i) -> __m256i {
    let s = _mm512_add_epi32(v, _mm512_shuffle_i32x4::<0b01_00_11_10>(v, v));
    // Lanes 0..4: blocks 0, 2, 4, 6; lanes 4..8: blocks 1, 3, 5, 7.
    let order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, s))
}

/// Prepares the eight activation blocks of one super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn prepare(a: &[BlockQ8Act]) -> Acts {
    assert!(a.len() >= 8);
    let load = |k: usize| {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(a[k].qs.as_ptr().cast()) }
    };
    let pairs: [__m512i; 4] = core::array::from_fn(|m| {
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load(2 * m)), load(2 * m + 1));
        // [a.lo, a.hi, b.lo, b.hi] → [a.lo, b.lo, a.hi, b.hi].
        _mm512_shuffle_i64x2::<0b11_01_10_00>(v, v)
    });
    let ones = _mm512_set1_epi8(1);
    let t = sums_tree(pairs.map(|p| _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, p)));
    let t128 = _mm256_slli_epi32::<7>(block_sums(t));
    let d: [f32; 8] = core::array::from_fn(|k| a[k].d());
    // SAFETY: `d` holds 8 floats; the load is unaligned.
    let d = unsafe { _mm256_loadu_ps(d.as_ptr()) };
    Acts { a: pairs, t128, d }
}

/// The codebook plus 128 as bytes, in every 128-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn codebook() -> __m512i {
    let t: [u8; 16] = core::array::from_fn(|i| (IQ4_NL_VALUES[i] as i16 + 128) as u8);
    // SAFETY: `t` is 16 readable bytes; the load is unaligned.
    _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(t.as_ptr().cast()) })
}

/// One IQ4_XS super-block against its prepared activations: `d·P`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block(b: &BlockIQ4_XS, acts: &Acts, lut: __m512i) -> f32 {
    let shifts = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(4));
    let low = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    let v: [__m512i; 4] = core::array::from_fn(|m| {
        // SAFETY: 32m + 32 ≤ 128 bytes of `qs`; the load is unaligned.
        let q = unsafe { _mm256_loadu_si256(b.qs[32 * m..].as_ptr().cast()) };
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), q);
        let idx = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), low);
        _mm512_dpbusd_epi32(zero, _mm512_shuffle_epi8(lut, idx), acts.a[m])
    });
    let isum = _mm256_sub_epi32(block_sums(sums_tree(v)), acts.t128);
    let scaled = _mm256_cvtepi32_ps(_mm256_mullo_epi32(isum, iq4_xs_scales8(b)));
    f16_pair(b.d, b.d).0 * hsum(_mm256_mul_ps(acts.d, scaled))
}

gemm_rows!(gemm_iq4_xs_q8, tile, BlockIQ4_XS, block, codebook());
