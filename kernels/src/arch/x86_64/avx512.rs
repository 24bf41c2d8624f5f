//! Decoding's rows · one f32 vector for Q4_0 and Q4_1 with AVX-512 (`dot_rows_*_f32/avx512`),
//! for the CPUs that have it (installed with the AVX512-VNNI backend). On the SmolLM2 shapes
//! they take 25–29 ns per 576-wide row against 37 ns for the AVX2 kernels (`cargo bench -p
//! tern-kernels -- dot_rows`). Q8_0 keeps the AVX2 kernel: the same scheme measured no faster
//! there (two widenings and two conversions per block either way).
//!
//! Two things make these faster than the AVX2 row kernels, which spend about as many
//! instructions on each block's scales as on its 32 products:
//! - The block scales of a row group are converted up front, sixteen blocks per `vpgatherdd`
//!   and one `vcvtph2ps`, into small f32 tables; the main loop then multiplies by a scale
//!   with a broadcast operand of its FMA (no instruction of its own). For Q4_1 the offset term
//!   `Σ m·(Σ x)` becomes one short dot product per row after the loop.
//! - A Q4 code becomes its f32 value through a 16-entry table held in one register
//!   (`vpermps` reads only the low four bits of each index): one instruction per 16 weights,
//!   no mask, no integer-to-float conversion, and any 16-value codebook costs the same.
//!
//! With 512-bit vectors the FMA, conversion and permute instructions share two ports, so a
//! Q4 block costs six of them per row (widen, two lookups, a shift, two FMAs) against about
//! twenty on three ports for AVX2.

// Tiles index the scale tables and accumulators by the same row number.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX, ROWS};
use crate::blocks::{BlockQ4_0, BlockQ4_1};

/// Most blocks in a row these kernels take (the wrappers send wider rows elsewhere).
pub(super) const MAX_BLOCKS: usize = PRESCALE_MAX / 32;

/// Per-row f32 tables of a row group's block scales (`d`) and, for Q4_1, offsets (`m`).
struct Scales {
    d: [[f32; MAX_BLOCKS]; ROWS],
    m: [[f32; MAX_BLOCKS]; ROWS],
}

/// Fills `s.d[r][..kb]` (and `s.m[r][..kb]` if `with_m`) for the `rows` rows starting at
/// `base`, whose blocks are `stride` bytes long with `d` at byte 0 and `m` (if any) at 2.
///
/// # Safety
/// `base` must point at `rows · kb` blocks of `stride ≥ 4` bytes, `kb ≤ MAX_BLOCKS`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn load_scales(
    s: &mut Scales,
    base: *const u8,
    stride: usize,
    rows: usize,
    kb: usize,
    with_m: bool,
) {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
    for r in 0..rows {
        let mut b = 0;
        while b < kb {
            let n = (kb - b).min(16);
            let mask: __mmask16 = if n == 16 { !0 } else { (1u16 << n) - 1 };
            // SAFETY: lane i < n reads the 4 bytes at block r·kb + b + i (d and the next two
            // bytes: `m` for Q4_1, codes otherwise), inside the caller's blocks; masked-off
            // lanes read nothing.
            let v = unsafe {
                _mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    mask,
                    offsets,
                    base.add((r * kb + b) * stride).cast(),
                )
            };
            let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
            // SAFETY: lanes b..b + n ≤ kb ≤ MAX_BLOCKS are inside the table; the rest are
            // masked off (not written).
            unsafe { _mm512_mask_storeu_ps(s.d[r].as_mut_ptr().add(b), mask, d) };
            if with_m {
                let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(v)));
                // SAFETY: as for `d`.
                unsafe { _mm512_mask_storeu_ps(s.m[r].as_mut_ptr().add(b), mask, m) };
            }
            b += n;
        }
    }
}

/// `Σ_b a[b]·c[b]` over the first `n ≤ MAX_BLOCKS` entries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn dot_short(a: &[f32; MAX_BLOCKS], c: &[f32; MAX_BLOCKS], n: usize) -> f32 {
    let mut acc = _mm512_setzero_ps();
    let mut b = 0;
    while b < n {
        let k = (n - b).min(16);
        let mask: __mmask16 = if k == 16 { !0 } else { (1u16 << k) - 1 };
        // SAFETY: lanes b..b + k < n ≤ MAX_BLOCKS are inside both arrays; the rest are
        // masked off (not read).
        let (av, cv) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask, a.as_ptr().add(b)),
                _mm512_maskz_loadu_ps(mask, c.as_ptr().add(b)),
            )
        };
        acc = _mm512_fmadd_ps(av, cv, acc);
        b += k;
    }
    _mm512_reduce_add_ps(acc)
}

/// The 32 values of a Q4 block (`qs`: element `j` in the low nibble of byte `j`, element
/// `j + 16` in the high one) through the 16-entry table `tbl`, as two vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn q4_values(qs: &[u8; 16], tbl: __m512) -> [__m512; 2] {
    // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
    let bytes = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let v = _mm512_cvtepu8_epi32(bytes);
    [
        _mm512_permutexvar_ps(v, tbl),
        _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(v), tbl),
    ]
}

/// The first 32 floats of `x` as two vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn load32(x: &[f32]) -> [__m512; 2] {
    assert!(x.len() >= 32);
    // SAFETY: x holds at least 32 floats; the unaligned loads read x[0..32].
    unsafe {
        [
            _mm512_loadu_ps(x.as_ptr()),
            _mm512_loadu_ps(x.as_ptr().add(16)),
        ]
    }
}

/// Per-block sums of `x` (`kb` blocks of 32), for Q4_1's offsets.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn block_sums(x: &[f32], kb: usize, out: &mut [f32; MAX_BLOCKS]) {
    for b in 0..kb {
        let v = load32(&x[32 * b..]);
        out[b] = _mm512_reduce_add_ps(_mm512_add_ps(v[0], v[1]));
    }
}

/// `R` rows of 4-bit blocks (`kb` each, back to back in `w`) · `x`, without offsets:
/// `Σ_b d[r][b] · (table[q] · x)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q4<B: Q4Block, const R: usize>(
    w: &[B],
    kb: usize,
    x: &[f32],
    s: &Scales,
    tbl: __m512,
) -> [f32; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        for r in 0..R {
            let w = q4_values(w[r * kb + b].qs(), tbl);
            let p = _mm512_fmadd_ps(w[1], xv[1], _mm512_mul_ps(w[0], xv[0]));
            acc[r] = _mm512_fmadd_ps(p, _mm512_set1_ps(s.d[r][b]), acc[r]);
        }
    }
    acc.map(|a| _mm512_reduce_add_ps(a))
}

/// `y[r] = row r · x` for Q4_0 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q4_0_f32(w: &[BlockQ4_0], kb: usize, x: &[f32], y: &mut [f32]) {
    let values: [f32; 16] = core::array::from_fn(|i| i as f32 - 8.0);
    dot_rows_q4(w, kb, x, y, &values, |_, _, _| 0.0);
}

/// `y[r] = row r · x` for Q4_1 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q4_1_f32(w: &[BlockQ4_1], kb: usize, x: &[f32], y: &mut [f32]) {
    let values: [f32; 16] = core::array::from_fn(|i| i as f32);
    let mut sums = [0.0f32; MAX_BLOCKS];
    block_sums(x, kb, &mut sums);
    dot_rows_q4(w, kb, x, y, &values, |s, r, kb| {
        dot_short(&s.m[r], &sums, kb)
    });
}

/// The blocks the 4-bit row kernels read: 16 code bytes and 2 or 4 bytes of scales first.
trait Q4Block {
    /// Whether the block has an offset `m` right after `d`.
    const HAS_M: bool;
    /// The code bytes.
    fn qs(&self) -> &[u8; 16];
}

impl Q4Block for BlockQ4_0 {
    const HAS_M: bool = false;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Q4Block for BlockQ4_1 {
    const HAS_M: bool = true;
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

/// The shared body of the 4-bit row kernels: `values` is the code table, `offset(s, r, kb)`
/// the offset term of row `r` of the group whose scales are `s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn dot_rows_q4<B: Q4Block>(
    w: &[B],
    kb: usize,
    x: &[f32],
    y: &mut [f32],
    values: &[f32; 16],
    offset: impl Fn(&Scales, usize, usize) -> f32,
) {
    assert!(kb <= MAX_BLOCKS && x.len() >= 32 * kb && w.len() >= y.len() * kb);
    // SAFETY: `values` holds 16 floats; the load is unaligned.
    let tbl = unsafe { _mm512_loadu_ps(values.as_ptr()) };
    let size = core::mem::size_of::<B>();
    let mut s = Scales {
        d: [[0.0; MAX_BLOCKS]; ROWS],
        m: [[0.0; MAX_BLOCKS]; ROWS],
    };
    prefetch_head(w.as_ptr().cast(), y.len() * kb * size);
    let mut r = 0;
    while r < y.len() {
        let rows = (y.len() - r).min(ROWS);
        let group = &w[r * kb..(r + rows) * kb];
        prefetch_ahead(group.as_ptr().cast(), rows * kb * size);
        // SAFETY: `group` is `rows · kb` blocks of `size ≥ 18` bytes with `d` first (and
        // `m` next for Q4_1); kb ≤ MAX_BLOCKS was asserted.
        unsafe { load_scales(&mut s, group.as_ptr().cast(), size, rows, kb, B::HAS_M) };
        let yg = &mut y[r..r + rows];
        let dots: [f32; ROWS] = match rows {
            4 => rows_q4::<B, 4>(group, kb, x, &s, tbl),
            3 => pad(rows_q4::<B, 3>(group, kb, x, &s, tbl)),
            2 => pad(rows_q4::<B, 2>(group, kb, x, &s, tbl)),
            _ => pad(rows_q4::<B, 1>(group, kb, x, &s, tbl)),
        };
        for (i, yr) in yg.iter_mut().enumerate() {
            *yr = dots[i] + offset(&s, i, kb);
        }
        r += rows;
    }
}

/// `R ≤ 4` results padded to four.
fn pad<const R: usize>(v: [f32; R]) -> [f32; ROWS] {
    let mut out = [0.0; ROWS];
    out[..R].copy_from_slice(&v);
    out
}
