//! Q5_0 rows × one int8 token on 512-bit registers (AVX512-VNNI `vpdpbusd` with AVX-512BW
//! byte masks): the decode product of the Q5_0 matrices (Qwen2.5's attention and FFN gate/up),
//! installed with the AVX512-VNNI backend in front of the 256-bit `gemm_q5_0_q8`, which keeps
//! the batched (`n ≥ 2`) calls.
//!
//! Hand-written because the 256-bit tile spends most of its instructions building one block's
//! codes (nibbles, then the fifth bits spread to bytes by shuffle, compare and mask) and
//! converting one block's sum to float. Here a register holds two blocks: one masked load
//! takes both (44 contiguous bytes), one word permute places their 16 code bytes each in
//! 128-bit lanes `[qs₀, qs₀, qs₁, qs₁]`, one variable shift and one mask leave the 64 nibbles
//! in element order, and the two 32-bit `qh` words *are* the 64-bit byte mask under which 16 is
//! added (bit `j` of `qh` is element `j`'s fifth bit). The unsigned codes 0..=31 meet the
//! activations in one `vpdpbusd` started from `−16·Σa` (computed once per block pair for all
//! the rows), so each i32 lane holds the exact `Σ (q − 16)·a` of four elements. The two f16
//! scales are converted and multiplied by their `d_a` together in one 128-bit step (about 5 %
//! fewer ns per row than widening them to 512 bits first: 35.4 against 37.2 ns per 896-wide
//! row, one thread, `cargo bench -p tern-kernels --bench kernels "Q5_0 gemm_q8"`), then spread
//! to their blocks' lanes; one conversion and one fused multiply-add per lane follow, and the
//! sixteen lanes are reduced once per row.
//!
//! The integers equal the scalar reference's (`scalar::dot_q5_0_q8`) exactly; the float sum
//! is the reference's terms in another order (16 running lanes, then a reduction tree), within
//! the budget `tests/simd_kernels.rs` derives for every `gemm_q8`.

use core::arch::x86_64::*;

use super::gemm::{prefetch_ahead, prefetch_head};
use crate::blocks::BlockQ5_0;
use crate::scalar::BlockQ8Act;

/// Rows per tile: the rows that meet each prepared block pair of activations.
const ROWS: usize = 4;

/// One pair of activation blocks, prepared once for every row of a tile (shared with the Q8_0
/// kernel, `q8_0_512_int8`).
#[derive(Clone, Copy)]
pub(super) struct Acts {
    /// Block `b` in bytes 0..32, block `b + 1` (or zeros) in bytes 32..64.
    pub(super) a: __m512i,
    /// `−offset·Σa` per group of four bytes: the offset of the weights' unsigned codes.
    pub(super) base: __m512i,
    /// `[d_a(b), d_a(b + 1) (or 0), 0, 0]`.
    pub(super) d: __m128,
}

/// Prepares activation blocks `a0` and `a1` (absent past an odd row's last block: zeros) for
/// unsigned codes `q + offset`; `offset` is the byte read as unsigned (Q5_0: 16; Q8_0's
/// flipped top bit: 0x80 as `-128`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn prepare(a0: &BlockQ8Act, a1: Option<&BlockQ8Act>, offset: i8) -> Acts {
    // SAFETY: `qs` is 32 readable bytes; the loads are unaligned.
    let lo = unsafe { _mm256_loadu_si256(a0.qs.as_ptr().cast()) };
    let (hi, d1) = match a1 {
        // SAFETY: as above.
        Some(a1) => (unsafe { _mm256_loadu_si256(a1.qs.as_ptr().cast()) }, a1.d()),
        None => (_mm256_setzero_si256(), 0.0),
    };
    let a = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(offset), a);
    let base = _mm512_sub_epi32(_mm512_setzero_si512(), sums);
    let d = _mm_setr_ps(a0.d(), d1, 0.0, 0.0);
    Acts { a, base, d }
}

/// Blocks `w[0]` and `w[1]` (with `pair == false` only `w[0]`: zero codes, zero scale for the
/// second) as unsigned codes 0..=31 in element order, and their scales `[d_w₀, d_w₁, 0, 0]`.
/// The pair's 44 bytes come in one masked load; a word permute places the code bytes (a block
/// is 11 words: `d` word 0, `qh` words 1..3, `qs` words 3..11); the two scales are read as one
/// 32-bit word and converted together.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn codes(w: &[BlockQ5_0], pair: bool) -> (__m512i, __m128) {
    assert!(w.len() > usize::from(pair), "the blocks read are present");
    let (bytes, qh1, d1): (__mmask64, u32, [u8; 2]) = match pair {
        true => ((1 << 44) - 1, u32::from_le_bytes(w[1].qh), w[1].d.0),
        false => ((1 << 22) - 1, 0, [0, 0]),
    };
    // SAFETY: the mask covers only the blocks asserted present (22 bytes each, contiguous in
    // the slice); masked-off bytes are neither read nor able to fault.
    let z = unsafe { _mm512_maskz_loadu_epi8(bytes, w.as_ptr().cast()) };
    // 128-bit lanes [qs₀, qs₀, qs₁, qs₁] (words 3..11 and 14..22); the odd lanes take the
    // high nibbles. A missing second block reads as zeros (masked off above).
    let place = _mm512_set_epi16(
        21, 20, 19, 18, 17, 16, 15, 14, 21, 20, 19, 18, 17, 16, 15, 14, //
        10, 9, 8, 7, 6, 5, 4, 3, 10, 9, 8, 7, 6, 5, 4, 3,
    );
    let qs = _mm512_permutexvar_epi16(place, z);
    let shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    let nibbles = _mm512_and_si512(_mm512_srlv_epi64(qs, shifts), _mm512_set1_epi8(0x0F));
    let fifth: __mmask64 = u64::from(u32::from_le_bytes(w[0].qh)) | (u64::from(qh1) << 32);
    let c = _mm512_mask_add_epi8(nibbles, fifth, nibbles, _mm512_set1_epi8(16));
    // d₀ in the low half of one little-endian word, d₁ (zero when absent) in the high half.
    let d = i32::from_le_bytes([w[0].d.0[0], w[0].d.0[1], d1[0], d1[1]]);
    (c, _mm_cvtph_ps(_mm_cvtsi32_si128(d)))
}

/// `acc + Σ_lanes (d_w·d_a)·Σ(q − 16)·a` for one row's block pair: the two products `d_w·d_a`
/// in one 128-bit multiply, then spread to their blocks' lanes (0..8 and 8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn step(acc: __m512, c: __m512i, dw: __m128, acts: &Acts) -> __m512 {
    let isum = _mm512_dpbusd_epi32(acts.base, c, acts.a);
    let s = _mm_mul_ps(dw, acts.d);
    let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let scale = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc)
}

/// Rows `w[r·kb..]` for `r < R` against one token: writes `y[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tile<const R: usize>(w: &[BlockQ5_0], kb: usize, acts: &[BlockQ8Act], y: &mut [f32]) {
    assert!(w.len() >= R * kb && acts.len() >= kb && y.len() >= R);
    let mut acc = [_mm512_setzero_ps(); R];
    let mut b = 0;
    while b + 2 <= kb {
        let a = prepare(&acts[b], Some(&acts[b + 1]), 16);
        for r in 0..R {
            let (c, dw) = codes(&w[r * kb + b..], true);
            acc[r] = step(acc[r], c, dw, &a);
        }
        b += 2;
    }
    if b < kb {
        let a = prepare(&acts[b], None, 16);
        for r in 0..R {
            let (c, dw) = codes(&w[r * kb + b..], false);
            acc[r] = step(acc[r], c, dw, &a);
        }
    }
    for r in 0..R {
        y[r] = _mm512_reduce_add_ps(acc[r]);
    }
}

/// `y[r] = row r · token` for the `m` Q5_0 rows of `w` (`kb` blocks each) and one token's
/// activation blocks `acts`: [`ROWS`]-row tiles, then single rows, prefetching ahead.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn gemv_q5_0_q8(
    w: &[BlockQ5_0],
    m: usize,
    kb: usize,
    acts: &[BlockQ8Act],
    y: &mut [f32],
) {
    assert!(w.len() >= m * kb && acts.len() >= kb && y.len() >= m);
    let group_bytes = ROWS * kb * core::mem::size_of::<BlockQ5_0>();
    prefetch_head(
        w.as_ptr().cast(),
        m * kb * core::mem::size_of::<BlockQ5_0>(),
    );
    let mut r = 0;
    while r + ROWS <= m {
        let wr = &w[r * kb..];
        prefetch_ahead(wr.as_ptr().cast(), group_bytes);
        tile::<ROWS>(wr, kb, acts, &mut y[r..]);
        r += ROWS;
    }
    while r < m {
        tile::<1>(&w[r * kb..], kb, acts, &mut y[r..]);
        r += 1;
    }
}
