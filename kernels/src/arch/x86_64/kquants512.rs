//! Decoding's rows · one f32 vector for Q4_K with AVX-512F (`dot_rows_q4_k_f32/avx512`),
//! installed with the AVX512-VNNI backend (whose detection includes `avx512f`).
//!
//! The AVX2 row kernel spends a widening, a mask, a conversion and an FMA per eight weights,
//! on the two ports that do conversions and FMAs. Here a code becomes its f32 value through a
//! 16-entry table in one register (`vpermps` reads only the low four bits of each index, so
//! the low nibble needs no mask and the high one a shift): per sixteen weights a widening,
//! (a shift,) a lookup and an FMA. Rows are taken four at a time (32 registers leave room),
//! sharing each run of `x`. Measured 7.0–7.4 GB/s against 5.2–5.5 for the AVX2 kernels
//! (`cargo bench -p tern-kernels -- "Q4_K dot"`).
//!
//! Q6_K keeps the AVX2 kernel: widening and converting its 6-bit codes sixteen at a time
//! measured no faster (building the codes from `ql`/`qh`, byte work either way, dominates).
//!
//! IQ4_XS (`dot_rows_iq4_xs_f32/avx512`) is Q4_0's AVX-512 kernel (`avx512.rs`) per 32-weight
//! sub-block: its 16 code bytes are a Q4_0 block's, so the same broadcast-and-shift indices and
//! transposed `x` serve, and the 16-entry table holds IQ4_NL's codebook times the sub-block's
//! step `d·(sc − 32)` (one multiply builds it): per 32 weights a load, two shifts, the table's
//! multiply, two lookups and two FMAs.

// Tiles index the steps and accumulators by the same row number.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::avx512::{load32, q4_codes, store_sums, transpose_quads};
use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX};
use super::kquants::{iq4_xs_steps8, q4_k_steps};
use crate::blocks::{BlockIQ4_XS, BlockQ4_K};
use crate::scalar::IQ4_NL_VALUES;

/// Rows per step.
const ROWS: usize = 4;

/// The first 16 floats of `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn load16(x: &[f32]) -> __m512 {
    assert!(x.len() >= 16);
    // SAFETY: x holds at least 16 floats; the unaligned load reads x[0..16].
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// Sixteen bytes of `b` zero-extended to i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn widen16(b: &[u8]) -> __m512i {
    assert!(b.len() >= 16);
    // SAFETY: b holds at least 16 bytes; the unaligned load reads b[0..16].
    _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
}

/// `R` Q4_K rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q4_k<const R: usize>(w: &[BlockQ4_K], kb: usize, x: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let tbl = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q4_k_steps(&w[r * kb + b]));
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles) of the chunk.
            let xc = &x[256 * b + 64 * c..];
            let xv = [0, 16, 32, 48].map(|o| load16(&xc[o..]));
            let sx = [_mm512_add_ps(xv[0], xv[1]), _mm512_add_ps(xv[2], xv[3])];
            for r in 0..R {
                let qs = &w[r * kb + b].qs[32 * c..];
                let (i0, i1) = (widen16(qs), widen16(&qs[16..]));
                let lo = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(i1, tbl),
                    xv[1],
                    _mm512_mul_ps(_mm512_permutexvar_ps(i0, tbl), xv[0]),
                );
                let hi = _mm512_fmadd_ps(
                    _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(i1), tbl),
                    xv[3],
                    _mm512_mul_ps(
                        _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(i0), tbl),
                        xv[2],
                    ),
                );
                let ((st, mn), j) = (steps[r], 2 * c);
                acc[r] = _mm512_fmadd_ps(lo, _mm512_set1_ps(st[j]), acc[r]);
                acc[r] = _mm512_fnmadd_ps(sx[0], _mm512_set1_ps(mn[j]), acc[r]);
                acc[r] = _mm512_fmadd_ps(hi, _mm512_set1_ps(st[j + 1]), acc[r]);
                acc[r] = _mm512_fnmadd_ps(sx[1], _mm512_set1_ps(mn[j + 1]), acc[r]);
            }
        }
    }
    acc
}

/// Each of `R ≤ ROWS` 16-lane sums reduced into `y[r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn store_rows512<const R: usize>(acc: [__m512; R], y: &mut [f32]) {
    for (yr, acc) in y.iter_mut().zip(acc) {
        *yr = _mm512_reduce_add_ps(acc);
    }
}

dot_rows_driver!(
    "avx2,fma,f16c,avx512f",
    pub(super) dot_rows_q4_k_f32,
    BlockQ4_K,
    rows_q4_k,
    store_rows512
);

/// `R` IQ4_XS rows (`kb` blocks each, back to back in `w`) · `xt` (the activations through
/// `transpose_quads`): per sub-block and row, the table `T·(d·(sc − 32))` and two lookups.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_iq4_xs<const R: usize>(w: &[BlockIQ4_XS], kb: usize, xt: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xt.len() >= 256 * kb);
    let values: [f32; 16] = IQ4_NL_VALUES.map(|v| v as f32);
    // SAFETY: `values` holds 16 floats; the load is unaligned.
    let values = unsafe { _mm512_loadu_ps(values.as_ptr()) };
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let steps: [[f32; 8]; R] = core::array::from_fn(|r| iq4_xs_steps8(&w[r * kb + b]));
        for j in 0..8 {
            // SAFETY: 256·b + 32·j + 32 ≤ 256·kb ≤ xt.len() (asserted).
            let xv = unsafe { load32(xt.as_ptr().add(256 * b + 32 * j)) };
            for r in 0..R {
                let tbl = _mm512_mul_ps(values, _mm512_set1_ps(steps[r][j]));
                let [lo, hi] = q4_codes(&w[r * kb + b].qs.as_chunks::<16>().0[j]);
                acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo, tbl), xv[0], acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi, tbl), xv[1], acc[r]);
            }
        }
    }
    acc
}

dot_rows_driver!(
    "avx2,fma,f16c,avx512f",
    pub(super) dot_rows_iq4_xs_f32,
    BlockIQ4_XS,
    rows_iq4_xs,
    store_sums,
    prescale = transpose_quads
);
