//! Q5_K int8 GEMM on 512-bit registers (AVX512-VNNI `vpdpbusd` with AVX-512BW byte ops),
//! installed with the AVX512-VNNI backend; the plan of `kquants_low512_int8.rs`.
//!
//! Hand-written because the 256-bit kernel (`kquants_int8.rs`) builds and dots 32 codes per
//! instruction and reduces them with a horizontal-add tree. Here a chunk's 32 code bytes are
//! broadcast to both halves of a register, the low half keeps the low nibbles (sub-block `2c`)
//! and the high half the high ones (sub-block `2c + 1`), one variable shift and one mask; the
//! fifth bits (bit `2c`, resp. `2c + 1`, of `qh[l]`) become one byte mask by one `vptestmb`
//! and add 16 under it. The 64 codes, 0..=31 and unsigned as they are, meet activation blocks
//! `2c` and `2c + 1` side by side in one `vpdpbusd`; four of those and one transpose-and-add
//! tree give the eight block sums. Used for the GEMM only: a single row cannot share the
//! activation loads, and the 256-bit row dot is as fast there.
//!
//! Bit-identical to `scalar::dot_q5_k_q8`: the integers are exact, and the float part is the
//! reference's: `d·sum8_tree([d_j·(sc_j·i_j)]) − dmin·sum8_tree([s_j·m_j])` per super-block,
//! added to the running sum.

use core::arch::x86_64::*;

use super::avx2::hsum;
use super::kquants_low512_int8::{f16_pair, gemm_rows, sums_tree};
use crate::blocks::BlockQ5_K;
use crate::scalar::{scales_mins_k4, BlockQ8Act};

/// Rows per tile of the GEMM: the rows that meet each prepared super-block of activations while
/// it is in registers (the preparation itself is shared by `ROW_BLOCK` rows, see `gemm_rows!`).
const ROWS: usize = 4;

/// One super-block's activations, prepared once for every row that meets them.
#[derive(Clone, Copy)]
struct Acts {
    /// Activation blocks `2c` (bytes 0..32) and `2c + 1` (bytes 32..64), for `c` in 0..4.
    a: [__m512i; 4],
    /// The eight activation-block scales `d`.
    d: __m256,
    /// The eight activation-block sums `s`.
    s: __m256,
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
    let pairs = core::array::from_fn(|c| {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load(2 * c)), load(2 * c + 1))
    });
    let (d, s): ([f32; 8], [f32; 8]) = (
        core::array::from_fn(|k| a[k].d()),
        core::array::from_fn(|k| a[k].s()),
    );
    // SAFETY: `d` and `s` hold 8 floats each; the loads are unaligned.
    let (d, s) = unsafe { (_mm256_loadu_ps(d.as_ptr()), _mm256_loadu_ps(s.as_ptr())) };
    Acts { a: pairs, d, s }
}

/// Eight bytes as eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn u8x8_to_i32(b: [u8; 8]) -> __m256i {
    _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(i64::from_le_bytes(b)))
}

/// One Q5_K super-block against its prepared activations: `d·P − dmin·M`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block(b: &BlockQ5_K, acts: &Acts) -> f32 {
    let shifts = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(4));
    let (low, sixteen) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(16));
    // SAFETY: `qh` is 32 readable bytes; the load is unaligned.
    let qh = unsafe { _mm256_loadu_si256(b.qh.as_ptr().cast()) };
    let qh = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), qh);
    let zero = _mm512_setzero_si512();
    let v: [__m512i; 4] = core::array::from_fn(|c| {
        // SAFETY: 32c + 32 ≤ 128 bytes of `qs`; the load is unaligned.
        let q = unsafe { _mm256_loadu_si256(b.qs[32 * c..].as_ptr().cast()) };
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), q);
        let nibbles = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), low);
        let bits = _mm512_inserti64x4::<1>(
            _mm512_set1_epi8((1u8 << (2 * c)) as i8),
            _mm256_set1_epi8((2u8 << (2 * c)) as i8),
        );
        let codes =
            _mm512_mask_add_epi8(nibbles, _mm512_test_epi8_mask(qh, bits), nibbles, sixteen);
        _mm512_dpbusd_epi32(zero, codes, acts.a[c])
    });
    // Lane L of pair c: L = 0, 1 is block 2c, L = 2, 3 block 2c + 1.
    let t = sums_tree(v);
    let t = _mm512_add_epi32(t, _mm512_shuffle_i32x4::<0b10_11_00_01>(t, t));
    let order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0);
    let isum = _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, t));
    let (sc, m) = scales_mins_k4(&b.scales);
    let scaled = _mm256_cvtepi32_ps(_mm256_mullo_epi32(isum, u8x8_to_i32(sc)));
    let p = hsum(_mm256_mul_ps(acts.d, scaled));
    let q = hsum(_mm256_mul_ps(acts.s, _mm256_cvtepi32_ps(u8x8_to_i32(m))));
    let (d, dmin) = f16_pair(b.d, b.dmin);
    d * p - dmin * q
}

gemm_rows!(gemm_q5_k_q8, tile, BlockQ5_K, block);
