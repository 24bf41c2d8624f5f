//! F16 rows (e.g. BitNet's tied F16 embedding used as output head): dot with f32 activations
//! and dequantization, converting 8 halves at a time with F16C.

use core::arch::x86_64::*;

/// Halves per iteration of the bodies; callers pass whole multiples.
pub(super) const LANES: usize = 8;

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
