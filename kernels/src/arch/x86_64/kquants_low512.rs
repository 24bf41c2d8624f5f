//! Decoding's rows · one f32 vector for Q2_K and Q3_K with AVX-512F/BW
//! (`dot_rows_q2_k_f32/avx512`, `dot_rows_q3_k_f32/avx512`), installed with the AVX512-VNNI
//! backend (whose detection includes `avx512f` and `avx512bw`).
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
//! Q3_K ([`rows_q3_k`]) shares the transposition (its low code bits lie as Q2_K's) and merges
//! its high bits into the dwords before the per-position `and`; each code then loses its
//! offset 4 with one integer subtraction, so that every product is the reference's `q·x`
//! times a power of two (subtracting `4·Σx` per sub-block instead, one operation fewer per 16 weights, gave
//! 7.0 GB/s, 69–71 %, but its rounding error scales with `|q + 4|`, not the budget's `|q|`):
//! 6.4 GB/s, 63–65 % of Q4_0's, against 5.0 GB/s (50–51 %) for the AVX2 kernel it replaces on
//! this backend. Short of 70 %: per 16 weights it spends four operations and a third of a group's
//! four (two `vpshufb`, a shift, a `vpternlogd`), against Q2_K's three and a quarter.
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
use super::kquants_low::{
    byte_triples, q3_k_scales_i8, sub_block_lanes, transpose_sub_blocks, T_BLOCK, T_MAX,
};
use crate::blocks::{BlockQ2_K, BlockQ3_K, F16Le};

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
        transpose_sub_blocks(xb, out, |h, i, t| 16 * t + 4 * (2 * h + i));
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
            let sc = _mm_and_si128(sub_block_lanes(s), low);
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

/// `y[r] = row r · x` for the `y.len()` rows of `w` (`kb` blocks each, `256·kb ≤
/// PRESCALE_MAX`): `x` transposed once ([`transpose_q2_k`]; Q3_K keeps its low code bits in
/// Q2_K's layout), then `$rows` rows per step through the format's row kernel, prefetching
/// the rows ahead.
macro_rules! dot_rows_driver {
    ($(#[$doc:meta])* $name:ident, $block:ty, $kernel:ident, $rows:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        pub(super) fn $name(w: &[$block], kb: usize, x: &[f32], y: &mut [f32]) {
            assert!(w.len() >= y.len() * kb && x.len() >= 256 * kb);
            let mut buf = [MaybeUninit::uninit(); T_MAX];
            let xt = transpose_q2_k(&x[..256 * kb], &mut buf);
            let row_bytes = kb * core::mem::size_of::<$block>();
            prefetch_head(w.as_ptr().cast(), y.len() * row_bytes);
            let mut groups = y.chunks_exact_mut($rows);
            let mut r = 0;
            for yg in &mut groups {
                prefetch_ahead(w[r * kb..].as_ptr().cast(), $rows * row_bytes);
                store_sums($kernel::<{ $rows }>(&w[r * kb..], kb, xt), yg);
                r += $rows;
            }
            for yr in groups.into_remainder() {
                store_sums(
                    $kernel::<1>(&w[r * kb..], kb, xt),
                    core::slice::from_mut(yr),
                );
                r += 1;
            }
        }
    };
}

dot_rows_driver!(
    /// Q2_K: [`ROWS`] rows per step through [`rows_q2_k`].
    dot_rows_q2_k_f32, BlockQ2_K, rows_q2_k, ROWS
);

/// Rows per step of the Q3_K kernel: two (576x1536 and 2048x2048, one thread: 6.40–6.42 GB/s
/// against 6.10–6.21 for one row per step, quiet machine; four measured 6.35 under load: its
/// codes and high bits of four rows do not fit the registers beside the accumulators).
const ROWS3: usize = 2;

/// `vpshufb` indices for Q3_K (see [`byte_triples`]).
const GROUPS3: [[i8; 64]; 6] = byte_triples::<64>();

/// `R` Q3_K rows (`kb` blocks each, back to back in `w`) · `xt` ([`transpose_q2_k`]: Q3_K
/// keeps its low code bits in Q2_K's layout), as 16-lane partial sums.
///
/// As [`rows_q2_k`], with three bytes per dword (a code reaches 4·2^22 in magnitude), the code
/// `u = q + 4` built in place before the per-position `and`: the high bits of
/// element `128h + 32k + 16i + t` are bit `4h + k` of `hmask` byte `16i + t`, so `hmask`
/// broadcast to both 256-bit halves (and shifted right by four in the second, `h = 1`) goes
/// through the same `vpshufb`, a shift by `k + 2` per lane puts bit `k` of each byte on bit
/// `2k + 2`, next to the low pair, and one `vpternlogd` merges the two. After the `and`, one
/// subtraction makes it `q = u − 4` (times `4^k·2^8b`), exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn rows_q3_k<const R: usize>(w: &[BlockQ3_K], kb: usize, xt: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xt.len() >= T_BLOCK * kb);
    // SAFETY: each table holds 64 bytes; the loads are unaligned.
    let idx = GROUPS3.map(|t| unsafe { _mm512_loadu_si512(t.as_ptr().cast()) });
    // Per lane k (the dword's position in its 128-bit lane), bytes 0..3.
    let pairs = _mm512_set4_epi32(0x00C0_C0C0, 0x0030_3030, 0x000C_0C0C, 0x0003_0303);
    let up = _mm512_set4_epi32(5, 4, 3, 2);
    let fields = _mm512_set4_epi32(7 << 6, 7 << 4, 7 << 2, 7);
    let masks = [0, 8, 16].map(|b| _mm512_sllv_epi32(fields, _mm512_set1_epi32(b)));
    let four = _mm512_set4_epi32(4 << 6, 4 << 4, 4 << 2, 4);
    let fours = [0, 8, 16].map(|b| _mm512_sllv_epi32(four, _mm512_set1_epi32(b)));
    let pow = _mm512_setr4_ps(1.0, 0.25, 0.0625, 0.015625);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let xb = &xt[T_BLOCK * b..T_BLOCK * (b + 1)];
        let mut part = [[_mm512_setzero_ps(); 3]; R];
        let mut q = [_mm512_setzero_si512(); R];
        let mut hm = [_mm512_setzero_si512(); R];
        for r in 0..R {
            let blk = &w[r * kb + b];
            // SAFETY: `qs` is 64 readable bytes, `hmask` 32; the loads are unaligned.
            let h = unsafe {
                q[r] = _mm512_loadu_si512(blk.qs.as_ptr().cast());
                _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.hmask.as_ptr().cast()))
            };
            hm[r] = _mm512_mask_srli_epi32::<4>(h, 0xFF00, h);
        }
        for g in 0..6 {
            for r in 0..R {
                let low = _mm512_shuffle_epi8(q[r], idx[g]);
                let high = _mm512_sllv_epi32(_mm512_shuffle_epi8(hm[r], idx[g]), up);
                // Bitwise `pairs ? low : high`: the bits the masks below keep.
                let u = _mm512_ternarylogic_epi32::<0xE4>(low, high, pairs);
                for j in 0..3.min(16 - 3 * g) {
                    // SAFETY: 16(3g + j) + 16 ≤ 256 floats of the block.
                    let xv = unsafe { load16(xb.as_ptr().add(16 * (3 * g + j))) };
                    // q = u − 4 in place, exact: the products are the reference's.
                    let q = _mm512_sub_epi32(_mm512_and_si512(u, masks[j]), fours[j]);
                    part[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), xv, part[r][j]);
                }
            }
        }
        for r in 0..R {
            let blk = &w[r * kb + b];
            let sc = q3_k_scales_i8(blk);
            let d = _mm512_set1_ps(f16_pair(blk.d, blk.d).0);
            // The reference's steps d·(sc − 32), in lane order, times 4^−k (exact).
            let lanes = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sub_block_lanes(sc)));
            let step = _mm512_mul_ps(_mm512_mul_ps(d, lanes), pow);
            let p = &part[r];
            // The bytes' 2^8b (Horner, the products exact): u = Σ_b part_b·2^−8b.
            let u = _mm512_fmadd_ps(p[2], _mm512_set1_ps(1.0 / 256.0), p[1]);
            let u = _mm512_fmadd_ps(u, _mm512_set1_ps(1.0 / 256.0), p[0]);
            acc[r] = _mm512_fmadd_ps(u, step, acc[r]);
        }
    }
    acc
}

dot_rows_driver!(
    /// Q3_K: [`ROWS3`] rows per step through [`rows_q3_k`].
    dot_rows_q3_k_f32, BlockQ3_K, rows_q3_k, ROWS3
);
