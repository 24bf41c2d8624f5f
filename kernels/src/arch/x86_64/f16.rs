//! F16 rows (e.g. BitNet's tied F16 embedding used as output head): dot with f32 activations
//! and dequantization, converting 8 halves at a time with F16C; the row kernels of decoding's
//! output head, four rows per step with AVX2 or AVX-512F.

// Tiles index accumulators and outputs by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;

use super::gemm::{prefetch_ahead, prefetch_head, ROWS};

/// Halves per iteration of the bodies; callers pass whole multiples.
pub(super) const LANES: usize = 8;
/// Columns [`axpy_rows_f16`] takes per step.
pub(super) const AXPY_ROWS_LANES: usize = LANES;
/// Values [`quantize_f16`] takes per step.
pub(super) const QUANTIZE_F16_LANES: usize = LANES;

/// `Σ row[i]·x[i]` for `x.len()` a multiple of [`LANES`] and `row` its f16 bytes.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `row.len() == 2·x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16_f32(row: &[u8], x: &[f32]) -> f32 {
    debug_assert!(row.len() == 2 * x.len() && x.len().is_multiple_of(LANES));
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let n = x.len();
    let mut i = 0;
    while i + 2 * LANES <= n {
        // SAFETY: i + 16 ≤ n, so halves i..i+16 (bytes 2i..2i+32) and floats i..i+16 are in
        // bounds; unaligned loads are allowed.
        unsafe {
            let h0 = _mm_loadu_si128(row.as_ptr().add(2 * i).cast());
            let h1 = _mm_loadu_si128(row.as_ptr().add(2 * i + 16).cast());
            acc0 = _mm256_fmadd_ps(
                _mm256_cvtph_ps(h0),
                _mm256_loadu_ps(x.as_ptr().add(i)),
                acc0,
            );
            acc1 = _mm256_fmadd_ps(
                _mm256_cvtph_ps(h1),
                _mm256_loadu_ps(x.as_ptr().add(i + 8)),
                acc1,
            );
        }
        i += 2 * LANES;
    }
    if i < n {
        // SAFETY: n is a multiple of 8, so exactly 8 halves and floats remain at i.
        unsafe {
            let h = _mm_loadu_si128(row.as_ptr().add(2 * i).cast());
            acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(x.as_ptr().add(i)), acc0);
        }
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// `out[i] = row[i]` for `out.len()` a multiple of [`LANES`].
///
/// # Safety
/// The CPU supports AVX2 and F16C; `row.len() == 2·out.len()`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn dequant_f16(row: &[u8], out: &mut [f32]) {
    debug_assert!(row.len() == 2 * out.len() && out.len().is_multiple_of(LANES));
    for i in (0..out.len()).step_by(LANES) {
        // SAFETY: i + 8 ≤ out.len(): halves and floats i..i+8 are in bounds.
        unsafe {
            let h = _mm_loadu_si128(row.as_ptr().add(2 * i).cast());
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
}

dot_rows_f16!(
    /// AVX2 + F16C, [`ROWS_LANES`] halves per step.
    dot_rows_f16_f32,
    rows_f16,
    ROWS_LANES,
    "avx2,fma,f16c"
);
dot_rows_f16!(
    /// AVX-512F, [`ROWS_LANES_512`] halves per step.
    dot_rows_f16_f32_avx512,
    rows_f16_512,
    ROWS_LANES_512,
    "avx2,fma,f16c,avx512f"
);

/// Halves per step of [`dot_rows_f16_f32`] (two vectors per row, so each row keeps two
/// independent FMA chains).
pub(super) const ROWS_LANES: usize = 16;

/// `R` rows at `p`, `stride` bytes apart, · `x`.
///
/// # Safety
/// AVX2, FMA and F16C; `R` rows of `2·x.len()` readable bytes at `p + r·stride`;
/// `x.len()` a multiple of 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_f16<const R: usize>(p: *const u8, stride: usize, x: &[f32]) -> [f32; R] {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let xp = x.as_ptr();
    for i in (0..x.len()).step_by(ROWS_LANES) {
        // SAFETY: i + 16 ≤ x.len(); unaligned loads.
        let xv = unsafe { [_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(xp.add(i + 8))] };
        for r in 0..R {
            // SAFETY: halves i..i+16 of row r, i.e. bytes 2i..2i+32 < 2·x.len() (caller).
            let (h0, h1) = unsafe {
                let q = p.add(r * stride + 2 * i);
                (_mm_loadu_si128(q.cast()), _mm_loadu_si128(q.add(16).cast()))
            };
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), xv[0], acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(_mm256_cvtph_ps(h1), xv[1], acc[r][1]);
        }
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        let a = _mm256_add_ps(acc[r][0], acc[r][1]);
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        out[r] = _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
    }
    out
}

/// Halves per step of [`dot_rows_f16_f32_avx512`].
pub(super) const ROWS_LANES_512: usize = 32;

/// `R` rows at `p`, `stride` bytes apart, · `x`, 32 halves per step.
///
/// # Safety
/// As [`rows_f16`], with AVX-512F and `x.len()` a multiple of 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn rows_f16_512<const R: usize>(p: *const u8, stride: usize, x: &[f32]) -> [f32; R] {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let xp = x.as_ptr();
    for i in (0..x.len()).step_by(ROWS_LANES_512) {
        // SAFETY: i + 32 ≤ x.len(); unaligned loads.
        let xv = unsafe { [_mm512_loadu_ps(xp.add(i)), _mm512_loadu_ps(xp.add(i + 16))] };
        for r in 0..R {
            // SAFETY: halves i..i+32 of row r, bytes 2i..2i+64 < 2·x.len() (caller).
            let (h0, h1) = unsafe {
                let q = p.add(r * stride + 2 * i);
                (
                    _mm256_loadu_si256(q.cast()),
                    _mm256_loadu_si256(q.add(32).cast()),
                )
            };
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtph_ps(h0), xv[0], acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtph_ps(h1), xv[1], acc[r][1]);
        }
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
    }
    out
}

axpy_rows_f16!(
    /// `y[i] += Σ_p a[p]·row p[i]` over f16 rows `stride` bytes apart, 32 columns at a time in
    /// registers while every row passes, then 8 at a time (AVX2, FMA and F16C).
    "avx2,fma,f16c"
);

/// Columns `c..c + 8·V` of [`axpy_rows_f16`].
///
/// # Safety
/// As [`axpy_rows_f16`], with `c + 8·V ≤ y.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_cols<const V: usize>(
    y: &mut [f32],
    c: usize,
    a: &[f32],
    rows: &[u8],
    stride: usize,
) {
    let yp = y.as_mut_ptr();
    // SAFETY: c + 8·V ≤ y.len() (caller); unaligned loads.
    let mut acc: [__m256; V] =
        core::array::from_fn(|v| unsafe { _mm256_loadu_ps(yp.add(c + 8 * v)) });
    for (p, &ap) in a.iter().enumerate() {
        let w = _mm256_set1_ps(ap);
        for v in 0..V {
            // SAFETY: halves c+8v..c+8v+8 of row p lie inside `rows` (caller's contract).
            let h =
                unsafe { _mm_loadu_si128(rows.as_ptr().add(p * stride + 2 * (c + 8 * v)).cast()) };
            acc[v] = _mm256_fmadd_ps(w, _mm256_cvtph_ps(h), acc[v]);
        }
    }
    for (v, acc) in acc.iter().enumerate() {
        // SAFETY: as the loads above.
        unsafe { _mm256_storeu_ps(yp.add(c + 8 * v), *acc) };
    }
}

/// `out` = `x` as halves, rounded to nearest even (`vcvtps2ph` with that immediate), for
/// `x.len()` a multiple of [`LANES`].
///
/// # Safety
/// AVX2 and F16C; `out.len() == 2·x.len()`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn quantize_f16(x: &[f32], out: &mut [u8]) {
    debug_assert!(out.len() == 2 * x.len() && x.len().is_multiple_of(LANES));
    for i in (0..x.len()).step_by(LANES) {
        // SAFETY: i + 8 ≤ x.len(): floats i..i+8 and bytes 2i..2i+16 are in bounds.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(2 * i).cast(), h);
        }
    }
}
