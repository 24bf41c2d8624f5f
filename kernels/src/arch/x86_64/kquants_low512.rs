//! Decoding's rows · one f32 vector for Q2_K with AVX-512F/BW (`dot_rows_q2_k_f32/avx512`),
//! installed with the AVX512-VNNI backend (whose detection includes `avx512f` and `avx512bw`).
//!
//! The AVX2 kernel's method (`kquants_low.rs`) on 512-bit vectors: `x` is transposed once per
//! call so that lane `4c + k` of a vector belongs to sub-block `8h + 2k + i` (`c = 2h + i`, the
//! 16-byte chunk of the codes) for the whole block. The 64 code bytes load as they lie (128-bit
//! lane `c` holds chunk `c`, positions `t = 0..16` of its four sub-blocks); per group of four
//! positions one `vpshufb` puts a lane's four bytes into each of its dwords, then per position
//! an `and` keeps the dword's code as `q·4^k·2^(8b)` (`b` the byte, the fourth moved to the
//! third by a shift so that a code stays below 2^24: exact, and no closer to overflow than the
//! AVX2 kernel's against large activations), a conversion and an FMA with `x`, one
//! accumulator per scale `2^8b`. The sixteen steps `d·sc` (times `4^−k`, exact) apply once per
//! block and row, as do the offsets `dmin·m` against the sub-block sums of `x` computed with
//! the transposition.
//!
//! Per 16 weights: an `and`, a conversion and an FMA, and a quarter of a `vpshufb`: 7.3 GB/s
//! (72–74 % of Q4_0's AVX-512 kernel in the same run) on the 576x1536 and 2048x2048 bench
//! shapes, Zen 4, against 5.5 GB/s (54–56 %) for the kernel this replaces, which tested each
//! code's two bits into masks and added `step·x` under them with two merge-masked FMAs per 16
//! weights, and 6.0 GB/s for the AVX2 kernel.
//!
//! The sums differ from the reference's in order only: per lane one rounding per product and
//! per sub-block step, inside the row dot's budget (`tests/kquant_kernels.rs`).

// Tiles index the parts and accumulators by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx512::store_sums;
use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX, ROWS};
use crate::blocks::{BlockQ2_K, F16Le};

/// Floats [`transpose_q2_k`] writes per block: its 256 activations, then the sums of its 16
/// sub-blocks.
const T_BLOCK: usize = 272;

/// Most floats [`transpose_q2_k`] writes (the wrapper sends wider rows to the one-row dot).
const T_MAX: usize = PRESCALE_MAX / 256 * T_BLOCK;

/// `vpshufb` indices: group `g` puts bytes `4g..4g + 4` of each 128-bit lane into every
/// dword of the lane.
const GROUPS: [[i8; 64]; 4] = {
    let mut t = [[0i8; 64]; 4];
    let mut g = 0;
    while g < 4 {
        let mut j = 0;
        while j < 64 {
            t[g][j] = (4 * g + j % 4) as i8;
            j += 1;
        }
        g += 1;
    }
    t
};

/// The first 16 floats at `x`.
///
/// # Safety
/// `x` must point at 16 readable floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn load16(x: *const f32) -> __m512 {
    // SAFETY: the caller's contract; the load is unaligned.
    unsafe { _mm512_loadu_ps(x) }
}

/// `x` (a multiple of 256 long, at most [`PRESCALE_MAX`]) in the order [`rows_q2_k`] reads
/// it, written into `buf`, of which it returns the initialized part: per block, float
/// `16t + 4c + k` is element `128h + 32k + 16i + t` (`c = 2h + i`), followed by the sums of
/// the block's 16 sub-blocks in element order. Once per call, for every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn transpose_q2_k<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; T_MAX]) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(256));
    for (xb, out) in x.chunks_exact(256).zip(buf.chunks_exact_mut(T_BLOCK)) {
        for t in 0..16 {
            for c in 0..4 {
                for k in 0..4 {
                    let e = 128 * (c / 2) + 32 * k + 16 * (c % 2) + t;
                    out[16 * t + 4 * c + k] = MaybeUninit::new(xb[e]);
                }
            }
        }
        for (s, sub) in xb.chunks_exact(16).enumerate() {
            // SAFETY: `sub` is 16 floats.
            out[256 + s] = MaybeUninit::new(_mm512_reduce_add_ps(unsafe { load16(sub.as_ptr()) }));
        }
    }
    let n = x.len() / 256 * T_BLOCK;
    // SAFETY: the loop wrote the first n floats, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(buf.as_ptr().cast(), n) }
}

/// `d` and `dmin` as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn f16_pair(d: F16Le, dmin: F16Le) -> (f32, f32) {
    let bits = u32::from(u16::from_le_bytes(d.0)) | u32::from(u16::from_le_bytes(dmin.0)) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// `R` Q2_K rows (`kb` blocks each, back to back in `w`) · `xt` ([`transpose_q2_k`]), as
/// 16-lane partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn rows_q2_k<const R: usize>(w: &[BlockQ2_K], kb: usize, xt: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xt.len() >= T_BLOCK * kb);
    // SAFETY: each table holds 64 bytes; the loads are unaligned.
    let idx = GROUPS.map(|t| unsafe { _mm512_loadu_si512(t.as_ptr().cast()) });
    let fields = _mm512_set4_epi32(192, 48, 12, 3);
    let masks = [0, 8, 16].map(|b| _mm512_sllv_epi32(fields, _mm512_set1_epi32(b)));
    // Scale bytes in lane order 4c + k: sub-block 8h + 2k + i.
    let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    let pow = _mm512_setr4_ps(1.0, 0.25, 0.0625, 0.015625);
    let low = _mm_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let xb = &xt[T_BLOCK * b..T_BLOCK * (b + 1)];
        // SAFETY: floats 256..272 of the block's 272.
        let sums = unsafe { load16(xb.as_ptr().add(256)) };
        let mut part = [[_mm512_setzero_ps(); 3]; R];
        let mut q = [_mm512_setzero_si512(); R];
        for r in 0..R {
            let blk = &w[r * kb + b];
            // SAFETY: `qs` is 64 readable bytes; the load is unaligned.
            q[r] = unsafe { _mm512_loadu_si512(blk.qs.as_ptr().cast()) };
            // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
            let s = unsafe { _mm_loadu_si128(blk.scales.as_ptr().cast()) };
            let (_, dmin) = f16_pair(blk.d, blk.dmin);
            // The reference's offsets dmin·m against the sub-block sums (natural order).
            let m = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                _mm_srli_epi16::<4>(s),
                low,
            )));
            let min = _mm512_mul_ps(_mm512_set1_ps(dmin), m);
            acc[r] = _mm512_fnmadd_ps(min, sums, acc[r]);
        }
        for g in 0..4 {
            for j in 0..4 {
                // SAFETY: 16(4g + j) + 16 ≤ 256 floats of the block.
                let xv = unsafe { load16(xb.as_ptr().add(16 * (4 * g + j))) };
                for r in 0..R {
                    let spread = _mm512_shuffle_epi8(q[r], idx[g]);
                    // Byte 3 moves to byte 2 (its code would reach 3·2^30, and overflow
                    // against activations the reference takes): both scale by 2^16.
                    let spread = if j == 3 {
                        _mm512_srli_epi32::<8>(spread)
                    } else {
                        spread
                    };
                    let code = _mm512_cvtepi32_ps(_mm512_and_si512(spread, masks[j.min(2)]));
                    part[r][j.min(2)] = _mm512_fmadd_ps(code, xv, part[r][j.min(2)]);
                }
            }
        }
        for r in 0..R {
            let blk = &w[r * kb + b];
            // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
            let s = unsafe { _mm_loadu_si128(blk.scales.as_ptr().cast()) };
            let sc = _mm_and_si128(_mm_shuffle_epi8(s, order), low);
            let (d, _) = f16_pair(blk.d, blk.dmin);
            // The reference's steps d·sc, times 4^−k (exact).
            let step = _mm512_mul_ps(
                _mm512_set1_ps(d),
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc)),
            );
            let step = _mm512_mul_ps(step, pow);
            let p = &part[r];
            // The bytes' 2^8b (Horner, the products exact): u = Σ_b part_b·2^−8b.
            let u = _mm512_fmadd_ps(p[2], _mm512_set1_ps(1.0 / 256.0), p[1]);
            let u = _mm512_fmadd_ps(u, _mm512_set1_ps(1.0 / 256.0), p[0]);
            acc[r] = _mm512_fmadd_ps(u, step, acc[r]);
        }
    }
    acc
}

/// `y[r] = row r · x` for the `y.len()` Q2_K rows of `w` (`kb` blocks each, `256·kb ≤
/// PRESCALE_MAX`): `x` transposed once, then [`ROWS`] rows per step through [`rows_q2_k`],
/// prefetching the rows ahead.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn dot_rows_q2_k_f32(w: &[BlockQ2_K], kb: usize, x: &[f32], y: &mut [f32]) {
    assert!(w.len() >= y.len() * kb && x.len() >= 256 * kb);
    let mut buf = [MaybeUninit::uninit(); T_MAX];
    let xt = transpose_q2_k(&x[..256 * kb], &mut buf);
    let row_bytes = kb * core::mem::size_of::<BlockQ2_K>();
    prefetch_head(w.as_ptr().cast(), y.len() * row_bytes);
    let mut groups = y.chunks_exact_mut(ROWS);
    let mut r = 0;
    for yg in &mut groups {
        prefetch_ahead(w[r * kb..].as_ptr().cast(), ROWS * row_bytes);
        store_sums(rows_q2_k::<ROWS>(&w[r * kb..], kb, xt), yg);
        r += ROWS;
    }
    for yr in groups.into_remainder() {
        store_sums(
            rows_q2_k::<1>(&w[r * kb..], kb, xt),
            core::slice::from_mut(yr),
        );
        r += 1;
    }
}
