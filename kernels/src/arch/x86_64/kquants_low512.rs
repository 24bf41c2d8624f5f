//! Decoding's rows · one f32 vector for Q2_K with AVX-512F/BW (`dot_rows_q2_k_f32/avx512`),
//! installed with the AVX512-VNNI backend (whose detection includes `avx512f` and `avx512bw`).
//!
//! Hand-written because the AVX2 kernel (`kquants_low.rs`) widens every 2-bit code to an f32
//! and multiplies it: a widening, a conversion and an FMA per eight weights, while a weight is
//! only 2.6 bits. Here codes are never widened: a code is the sum of its bits, so
//! `step·q·x = step·(b₀·x) + 2·step·(b₁·x)`, and each bit plane of a 16-weight sub-block is one
//! 16-lane mask (one `vptestmb` over the 16 code bytes that hold it) under which one
//! merge-masked FMA adds `step·x` to the plane's accumulator: two tests and two FMAs per 16
//! weights, `x` loaded once per sub-block for [`ROWS`] rows. The offsets `−dmin·m` multiply the
//! sum of `x` over each sub-block, computed once per call for all rows: one 16-lane FMA per
//! super-block and row.
//!
//! Measured on Zen 4 (`cargo bench -p tern-kernels -- "Q2_K dot_rows"`): 94 ns per 1536-wide
//! row against 142 ns for the AVX2 kernel. Zen 4 runs a 512-bit FMA at one per cycle, so two
//! per 16 weights is where this approach stops (Q4_0's table kernel spends three per 32): about
//! 55 % of Q4_0's bytes per second, short of the 70 % target (see the report of issue 15).
//! Q3_K keeps its AVX2 kernel: its third plane (the high bits) makes three masked FMAs per 16
//! weights, which measured slower (175 against 142 ns per row).
//!
//! The sums differ from the reference's in order only (each bit plane accumulates in its own
//! vector, the second doubled at the end, which is exact): per lane one rounding per sub-block
//! and plane, inside the row dot's budget (`tests/kquant_kernels.rs`).

// Tiles index the steps and accumulators by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx512::store_sums;
use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX, ROWS};
use crate::blocks::{BlockQ2_K, F16Le};

/// Most 16-weight sub-blocks in a row this kernel takes (the wrapper sends wider rows to the
/// single-row kernel).
const MAX_SUBS: usize = PRESCALE_MAX / 16;

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

/// The sum of each 16-float sub-block of `x` (a multiple of 16, at most [`PRESCALE_MAX`]),
/// written into `buf`, of which it returns the initialized part. Shared by every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn sub_block_sums<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; MAX_SUBS]) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(16));
    for (s, sub) in x.chunks_exact(16).enumerate() {
        // SAFETY: `sub` is 16 floats.
        buf[s] = MaybeUninit::new(_mm512_reduce_add_ps(unsafe { load16(sub.as_ptr()) }));
    }
    // SAFETY: the loop wrote the first x.len() / 16 entries, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(buf.as_ptr().cast(), x.len() / 16) }
}

/// Bit plane `p` (0 or 1) of sub-block `s` of Q2_K codes `qs` as a 16-lane mask: element
/// `128h + 32k + 16i + l` is bits `2k..2k + 2` of `qs[32h + 16i + l]`. One `vptestmb` over 16
/// bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn plane(qs: &[u8; 64], s: usize, p: usize) -> __mmask16 {
    let (h, k, i) = (s / 8, (s % 8) / 2, s % 2);
    // SAFETY: 32h + 16i + 16 ≤ 64; the load is unaligned.
    let v = unsafe { _mm_loadu_si128(qs[32 * h + 16 * i..].as_ptr().cast()) };
    _mm_test_epi8_mask(v, _mm_set1_epi8((1u8 << (2 * k + p)) as i8))
}

/// Adds, for the sixteen sub-blocks of one super-block of `R` rows (codes `qs[r]`), `step·x`
/// under each plane's mask to that plane's accumulator: `acc[p][r]` collects plane `p` of row
/// `r`; `steps[r]` are row `r`'s sub-block steps, `x` the super-block's activations.
///
/// # Safety
/// `x` must point at 256 readable floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn add_planes<const R: usize>(
    acc: &mut [[__m512; R]; 2],
    qs: [&[u8; 64]; R],
    steps: &[[f32; 16]; R],
    x: *const f32,
) {
    for s in 0..16 {
        // SAFETY: 16·s + 16 ≤ 256 (the caller's contract).
        let xv = unsafe { load16(x.add(16 * s)) };
        for r in 0..R {
            let step = _mm512_set1_ps(steps[r][s]);
            for p in 0..2 {
                acc[p][r] = masked_fmadd(acc[p][r], plane(qs[r], s, p), xv, step);
            }
        }
    }
}

/// `acc + a·b` in the lanes of `m`, `acc` in the others: one merge-masked `vfmadd231ps`.
///
/// Written as assembly because LLVM rewrites the intrinsic (`_mm512_mask3_fmadd_ps`) fed by
/// a `vptestmb` into an unmasked FMA and a masked move under the inverted test, two
/// instructions where one does (measured 111 against 94 ns per 1536-wide Q2_K row).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn masked_fmadd(acc: __m512, m: __mmask16, a: __m512, b: __m512) -> __m512 {
    let mut acc = acc;
    // SAFETY: register-only arithmetic on AVX-512F registers, which this function's features
    // enable; no memory, stack or flags are touched.
    unsafe {
        core::arch::asm!(
            "vfmadd231ps {acc}{{{m}}}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            m = in(kreg) m,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `d` and `dmin` as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn f16_pair(d: F16Le, dmin: F16Le) -> (f32, f32) {
    let bits = u32::from(u16::from_le_bytes(d.0)) | u32::from(u16::from_le_bytes(dmin.0)) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// `R` Q2_K rows (`kb` blocks each, back to back in `w`) · `x`, with `sx` the sub-block sums
/// of `x`: per row `acc_0 + 2·acc_1 − Σ_s (dmin·m_s)·sx_s`, as 16-lane partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn rows_q2_k<const R: usize>(w: &[BlockQ2_K], kb: usize, x: &[f32], sx: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb && sx.len() >= 16 * kb);
    let low = _mm_set1_epi8(0x0F);
    let mut acc = [[_mm512_setzero_ps(); R]; 2];
    let mut mins = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let mut steps = [[0.0f32; 16]; R];
        // SAFETY: 16·b + 16 ≤ sx.len() (asserted).
        let sxv = unsafe { load16(sx.as_ptr().add(16 * b)) };
        for r in 0..R {
            let blk = &w[r * kb + b];
            // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
            let s = unsafe { _mm_loadu_si128(blk.scales.as_ptr().cast()) };
            let sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(s, low)));
            let m = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16::<4>(s), low));
            let (d, dmin) = f16_pair(blk.d, blk.dmin);
            // The reference's steps d·sc and offsets dmin·m (exact: f16 times 4 bits).
            let step = _mm512_mul_ps(_mm512_set1_ps(d), sc);
            // SAFETY: `steps[r]` holds 16 floats; the store is unaligned.
            unsafe { _mm512_storeu_ps(steps[r].as_mut_ptr(), step) };
            let min = _mm512_mul_ps(_mm512_set1_ps(dmin), _mm512_cvtepi32_ps(m));
            mins[r] = _mm512_fmadd_ps(min, sxv, mins[r]);
        }
        let qs = core::array::from_fn(|r| &w[r * kb + b].qs);
        // SAFETY: 256·b + 256 ≤ x.len() (asserted).
        unsafe { add_planes::<R>(&mut acc, qs, &steps, x.as_ptr().add(256 * b)) };
    }
    let two = _mm512_set1_ps(2.0);
    core::array::from_fn(|r| _mm512_sub_ps(_mm512_fmadd_ps(acc[1][r], two, acc[0][r]), mins[r]))
}

/// `y[r] = row r · x` for the `y.len()` Q2_K rows of `w` (`kb` blocks each, `256·kb ≤
/// PRESCALE_MAX`): the sub-block sums of `x` once, then [`ROWS`] rows per step through
/// [`rows_q2_k`], prefetching the rows ahead.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn dot_rows_q2_k_f32(w: &[BlockQ2_K], kb: usize, x: &[f32], y: &mut [f32]) {
    assert!(w.len() >= y.len() * kb && x.len() >= 256 * kb);
    let mut buf = [MaybeUninit::uninit(); MAX_SUBS];
    let sx = sub_block_sums(&x[..256 * kb], &mut buf);
    let row_bytes = kb * core::mem::size_of::<BlockQ2_K>();
    prefetch_head(w.as_ptr().cast(), y.len() * row_bytes);
    let mut groups = y.chunks_exact_mut(ROWS);
    let mut r = 0;
    for yg in &mut groups {
        prefetch_ahead(w[r * kb..].as_ptr().cast(), ROWS * row_bytes);
        store_sums(rows_q2_k::<ROWS>(&w[r * kb..], kb, x, sx), yg);
        r += ROWS;
    }
    for yr in groups.into_remainder() {
        store_sums(
            rows_q2_k::<1>(&w[r * kb..], kb, x, sx),
            core::slice::from_mut(yr),
        );
        r += 1;
    }
}
