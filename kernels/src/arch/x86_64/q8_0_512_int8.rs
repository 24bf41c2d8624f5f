//! Q8_0 rows × one int8 token on 512-bit registers (AVX512-VNNI `vpdpbusd`): the decode product
//! of the Q8_0 matrices, above all the tied output heads of Qwen2.5-0.5B (151936 × 896) and
//! Gemma 3 270M (262144 × 640), installed with the AVX512-VNNI backend in front of the 256-bit
//! `gemm_q8_0_q8`, which keeps the batched (`n ≥ 2`) calls.
//!
//! Hand-written because the 256-bit tile spends, per row and block, two `vpsignb` (the sign
//! trick: `vpdpbusd` multiplies unsigned by signed bytes) and a broadcast and conversion of the
//! block's f16 scale on a 32-byte block. Here a register holds two blocks of one row, and the
//! signed codes become unsigned by flipping their top bit (`q + 128`, one `vpxorq` for 64
//! codes); the offset is removed by starting `vpdpbusd` from `−128·Σa`, computed once per
//! activation block pair for all the rows of a tile (as `q5_0_512_int8` does with 16). Each
//! i32 lane then holds the exact `Σ q·a` of four elements: `(q + 128)·a ≤ 255·127`, four of
//! them and the offset stay far inside i32. The pair's two f16 scales are converted together
//! and multiplied by the activations' `d_a` in one 128-bit step, then spread to the lanes of
//! their blocks; one conversion and one fused multiply-add per lane follow, and the sixteen
//! lanes are reduced once per row.
//!
//! The integers equal the scalar reference's (`scalar::dot_q8_0_q8`) exactly, and so does each
//! block's scale `d_w·d_a`; the float sum is the reference's terms in another order (16 running
//! lanes, then a reduction tree), within the budget `tests/simd_kernels.rs` derives for every
//! `gemm_q8`.

use core::arch::x86_64::*;

use super::gemm::{prefetch_ahead, prefetch_head};
use super::q5_0_512_int8::{prepare, Acts};
use crate::blocks::BlockQ8_0;
use crate::scalar::BlockQ8Act;

/// Rows per tile: the rows that meet each prepared block pair of activations.
const ROWS: usize = 4;

/// `acc + Σ_lanes (d_w·d_a)·Σ q·a` for one row's blocks `w[0]` and `w[1]` (with
/// `pair == false` only `w[0]`: the second half then has zero codes against zero activations
/// and a zero scale).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn step(acc: __m512, w: &[BlockQ8_0], pair: bool, acts: &Acts) -> __m512 {
    assert!(w.len() > usize::from(pair), "the blocks read are present");
    // SAFETY: `qs` is 32 readable bytes of a block asserted present; unaligned loads.
    let lo = unsafe { _mm256_loadu_si256(w[0].qs.as_ptr().cast()) };
    let (hi, d1) = match pair {
        // SAFETY: as above.
        true => (
            unsafe { _mm256_loadu_si256(w[1].qs.as_ptr().cast()) },
            w[1].d.0,
        ),
        false => (_mm256_setzero_si256(), [0, 0]),
    };
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    let c = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
    let isum = _mm512_dpbusd_epi32(acts.base, c, acts.a);
    // Both f16 scales in one 32-bit word (little-endian: d₀ in the low half), converted
    // together and multiplied by their d_a: [d_w₀·d_a₀, d_w₁·d_a₁, 0, 0].
    let dw = i32::from_le_bytes([w[0].d.0[0], w[0].d.0[1], d1[0], d1[1]]);
    let s = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(dw)), acts.d);
    let spread = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let scale = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s));
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc)
}

/// Rows `w[r·kb..]` for `r < R` against one token: writes `y[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tile<const R: usize>(w: &[BlockQ8_0], kb: usize, acts: &[BlockQ8Act], y: &mut [f32]) {
    assert!(w.len() >= R * kb && acts.len() >= kb && y.len() >= R);
    let mut acc = [_mm512_setzero_ps(); R];
    let mut b = 0;
    while b + 2 <= kb {
        let a = prepare(&acts[b], Some(&acts[b + 1]), -128);
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = step(*acc, &w[r * kb + b..], true, &a);
        }
        b += 2;
    }
    if b < kb {
        let a = prepare(&acts[b], None, -128);
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = step(*acc, &w[r * kb + b..], false, &a);
        }
    }
    for (y, acc) in y.iter_mut().zip(acc) {
        *y = _mm512_reduce_add_ps(acc);
    }
}

/// `y[r] = row r · token` for the `m` Q8_0 rows of `w` (`kb` blocks each) and one token's
/// activation blocks `acts`: [`ROWS`]-row tiles, then single rows, prefetching ahead.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn gemv_q8_0_q8(
    w: &[BlockQ8_0],
    m: usize,
    kb: usize,
    acts: &[BlockQ8Act],
    y: &mut [f32],
) {
    assert!(w.len() >= m * kb && acts.len() >= kb && y.len() >= m);
    let group_bytes = ROWS * kb * core::mem::size_of::<BlockQ8_0>();
    prefetch_head(
        w.as_ptr().cast(),
        m * kb * core::mem::size_of::<BlockQ8_0>(),
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
