//! Decoding's rows · one f32 vector for Q4_K, Q5_K, Q6_K and IQ4_XS with AVX-512
//! (`dot_rows_{q4_k,q5_k,q6_k,iq4_xs}_f32/avx512`), installed with the AVX512-VNNI backend (whose
//! detection includes `avx512f` and `avx512bw`; Q6_K's also needs `avx512vbmi`).
//!
//! The AVX2 row kernel spends a widening, a mask, a conversion and an FMA per eight weights,
//! on the two ports that do conversions and FMAs. Here a code becomes its f32 value through a
//! 16-entry table in one register (`vpermps` reads only the low four bits of each index, so
//! the low nibble needs no mask and the high one a shift): per sixteen weights a widening,
//! (a shift,) a lookup and an FMA. Rows are taken four at a time (32 registers leave room),
//! sharing each run of `x`. The min terms `(dmin·m)·(Σ x)` take one 8-lane FMA per block and
//! row, of the block's eight mins with the sums of `x` over each sub-block, computed once per
//! call, instead of a 16-lane FMA per sub-block: 9.4–9.5 GB/s against 8.4 with the per-sub-block
//! form and 7.5 for the AVX2 kernel (`cargo bench -p tern-kernels -- "Q4_K dot_rows"`, Zen 4).
//!
//! Q6_K (`dot_rows_q6_k_f32/avx512`, also needing AVX512-BW and AVX512-VBMI) builds a
//! half-block's 128 codes as bytes in two 512-bit vectors (eleven operations), then spreads
//! each vector's bytes four ways into i32 lanes with one zero-masked `vpermb` per sixteen codes
//! (the code lands in the top byte: an exact `2^24·(q − 32)`, converted without a sign
//! extension). Lane `L` of such a vector holds only elements `4L..4L + 4` of a 64-weight
//! chunk, which all lie in sub-block `L/4`, so the chunk's products sum lane-wise and one FMA
//! with a vector of per-lane steps scales them: per sixteen weights a permute, a conversion
//! and an FMA, with `x` transposed once per call to match. 14.0–14.2 GB/s against 9.1 for the
//! AVX2 kernel and 8.7–11 for widening sixteen bytes at a time with per-sub-block scaling
//! (`cargo bench -p tern-kernels -- "Q6_K dot_rows"`, Zen 4).
//!
//! Q5_K (`dot_rows_q5_k_f32/avx512`) is the Q4_K kernel with five-bit codes: the 32-entry table
//! lives in two registers and one two-table permute (`vpermt2ps`, which reads the low five bits
//! of each index) looks a code up; bit 4 of the index is the code's `qh` bit, brought there by
//! one shift and merged with the nibble by one bitwise select (`vpternlogd`). 10.2 GB/s against
//! 7.1 for the AVX2 kernel (`cargo bench -p tern-kernels -- "dot_rows 576x1536"`, Zen 4).
//!
//! IQ4_XS (`dot_rows_iq4_xs_f32/avx512`) is Q4_0's AVX-512 kernel (`avx512.rs`) per 32-weight
//! sub-block: its 16 code bytes are a Q4_0 block's, so the same broadcast-and-shift indices and
//! transposed `x` serve, and the 16-entry table holds IQ4_NL's codebook times the sub-block's
//! step `d·(sc − 32)` (one multiply builds it): per 32 weights a load, two shifts, the table's
//! multiply, two lookups and two FMAs.

// Tiles index the steps and accumulators by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx512::{load32, q4_codes, store_sums, transpose_quads};
use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX};
use super::kquants::{iq4_xs_steps8, q4_k_steps, q5_k_steps};
use crate::blocks::{BlockIQ4_XS, BlockQ4_K, BlockQ5_K, BlockQ6_K};
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

/// Widest rows the AVX-512 Q4_K and Q6_K kernels take: they keep a rearranged copy of the
/// activations on the stack (at most 33 KiB); the wrappers send wider rows to the single-row
/// kernels.
pub(super) const KQ_MAX: usize = 8192;

/// Floats of [`with_sums`]' buffer: the activations and one sum per 32 of them.
const SUMS_BUF: usize = KQ_MAX + KQ_MAX / 32;

/// `x` (whole blocks, at most [`KQ_MAX`]) followed by the sum of each run of 32 (one per Q4_K
/// sub-block), for [`rows_q4_k`]'s min terms. Written into `buf`, of which it returns the
/// initialized part.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn with_sums<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; SUMS_BUF]) -> &'a [f32] {
    assert!(x.len() <= KQ_MAX && x.len().is_multiple_of(32));
    let n = x.len();
    let out = buf.as_mut_ptr().cast::<f32>();
    for (j, run) in x.chunks_exact(32).enumerate() {
        let (a, b) = (load16(run), load16(&run[16..]));
        // SAFETY: 32·j + 32 ≤ n and n + j < n + n/32 ≤ SUMS_BUF keep both stores in `buf`;
        // the vector stores are unaligned.
        unsafe {
            _mm512_storeu_ps(out.add(32 * j), a);
            _mm512_storeu_ps(out.add(32 * j + 16), b);
            *out.add(n + j) = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
        }
    }
    // SAFETY: the loop wrote the first n + n/32 floats, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(out, n + n / 32) }
}

/// `R` Q4_K rows (`kb` blocks each, back to back in `w`) · `xs` (the activations through
/// [`with_sums`]): per sub-block and row `acc += (d·sc)·(Σ q·x)`, and per block and row the
/// eight min terms `(dmin·m)·(Σ x)` at once, one 8-lane FMA of the block's mins with the
/// precomputed sums, subtracted at the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q4_k<const R: usize>(w: &[BlockQ4_K], kb: usize, xs: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xs.len() >= 256 * kb + 8 * kb);
    let (x, sums) = xs.split_at(256 * kb);
    let tbl = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    let mut acc = [_mm512_setzero_ps(); R];
    let mut acc_min = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q4_k_steps(&w[r * kb + b]));
        let sx = &sums[8 * b..8 * b + 8];
        // SAFETY: `sx` holds 8 floats; the load is unaligned.
        let sx = unsafe { _mm256_loadu_ps(sx.as_ptr()) };
        for r in 0..R {
            // SAFETY: the mins are 8 floats; the load is unaligned.
            let mins = unsafe { _mm256_loadu_ps(steps[r].1.as_ptr()) };
            acc_min[r] = _mm256_fmadd_ps(mins, sx, acc_min[r]);
        }
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles) of the chunk.
            let xc = &x[256 * b + 64 * c..];
            let xv = [0, 16, 32, 48].map(|o| load16(&xc[o..]));
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
                let (st, j) = (steps[r].0, 2 * c);
                acc[r] = _mm512_fmadd_ps(lo, _mm512_set1_ps(st[j]), acc[r]);
                acc[r] = _mm512_fmadd_ps(hi, _mm512_set1_ps(st[j + 1]), acc[r]);
            }
        }
    }
    core::array::from_fn(|r| _mm512_sub_ps(acc[r], _mm512_zextps256_ps512(acc_min[r])))
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
    store_rows512,
    prescale = with_sums[SUMS_BUF]
);

/// `R` Q5_K rows (`kb` blocks each, back to back in `w`) · `xs` (the activations through
/// [`with_sums`]): [`rows_q4_k`] with five-bit codes, looked up in a 32-entry table by one
/// two-table permute (`vpermt2ps` reads the low five bits of each index): the index's low four
/// bits are the nibble, bit 4 the code's `qh` bit, moved there by one shift and merged by one
/// bitwise select.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q5_k<const R: usize>(w: &[BlockQ5_K], kb: usize, xs: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xs.len() >= 256 * kb + 8 * kb);
    let (x, sums) = xs.split_at(256 * kb);
    let tbl_lo = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    let tbl_hi = _mm512_add_ps(tbl_lo, _mm512_set1_ps(16.0));
    let nibble = _mm512_set1_epi32(0x0F);
    // Bits 0..4 from the nibble, the rest (bit 4 read) from the shifted `qh` byte: c ? a : b.
    let merge = |a: __m512i, b: __m512i| _mm512_ternarylogic_epi32::<0xE4>(a, b, nibble);
    let mut acc = [_mm512_setzero_ps(); R];
    let mut acc_min = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q5_k_steps(&w[r * kb + b]));
        let sx = &sums[8 * b..8 * b + 8];
        // SAFETY: `sx` holds 8 floats; the load is unaligned.
        let sx = unsafe { _mm256_loadu_ps(sx.as_ptr()) };
        for r in 0..R {
            // SAFETY: the mins are 8 floats; the load is unaligned.
            let mins = unsafe { _mm256_loadu_ps(steps[r].1.as_ptr()) };
            acc_min[r] = _mm256_fmadd_ps(mins, sx, acc_min[r]);
        }
        // `qh` bytes 0..16 and 16..32 in i32 lanes, times 16: bit j (sub-block j) at 4 + j.
        let qh: [[__m512i; 2]; R] = core::array::from_fn(|r| {
            let h = &w[r * kb + b].qh;
            [
                _mm512_slli_epi32::<4>(widen16(h)),
                _mm512_slli_epi32::<4>(widen16(&h[16..])),
            ]
        });
        for c in 0..4 {
            // Sub-blocks 2c (low nibbles, `qh` bit 2c) and 2c + 1 (high nibbles, bit 2c + 1).
            let xc = &x[256 * b + 64 * c..];
            let xv = [0, 16, 32, 48].map(|o| load16(&xc[o..]));
            let (sh_lo, sh_hi) = (
                _mm_cvtsi32_si128(2 * c as i32),
                _mm_cvtsi32_si128(2 * c as i32 + 1),
            );
            for r in 0..R {
                let qs = &w[r * kb + b].qs[32 * c..];
                let (i0, i1) = (widen16(qs), widen16(&qs[16..]));
                let [h0, h1] = qh[r];
                let look = |i: __m512i, h: __m512i, sh: __m128i| {
                    _mm512_permutex2var_ps(tbl_lo, merge(i, _mm512_srl_epi32(h, sh)), tbl_hi)
                };
                let lo = _mm512_fmadd_ps(
                    look(i1, h1, sh_lo),
                    xv[1],
                    _mm512_mul_ps(look(i0, h0, sh_lo), xv[0]),
                );
                let hi = _mm512_fmadd_ps(
                    look(_mm512_srli_epi32::<4>(i1), h1, sh_hi),
                    xv[3],
                    _mm512_mul_ps(look(_mm512_srli_epi32::<4>(i0), h0, sh_hi), xv[2]),
                );
                let (st, j) = (steps[r].0, 2 * c);
                acc[r] = _mm512_fmadd_ps(lo, _mm512_set1_ps(st[j]), acc[r]);
                acc[r] = _mm512_fmadd_ps(hi, _mm512_set1_ps(st[j + 1]), acc[r]);
            }
        }
    }
    core::array::from_fn(|r| _mm512_sub_ps(acc[r], _mm512_zextps256_ps512(acc_min[r])))
}

dot_rows_driver!(
    "avx2,fma,f16c,avx512f",
    pub(super) dot_rows_q5_k_f32,
    BlockQ5_K,
    rows_q5_k,
    store_rows512,
    prescale = with_sums[SUMS_BUF]
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

/// The constants [`q6_k_half`] combines the code bits with.
#[derive(Clone, Copy)]
struct Q6Masks {
    /// `0x0F` in every byte: a code's low four bits.
    low: __m512i,
    /// Per 256-bit half, the `qh` bits of the low-nibble codes: `0x03` (elements 0..32 of the
    /// half), `0x0C` (32..64), and the word shifts moving them to bits 4..6: 4 and 2.
    h_lo: (__m512i, __m512i),
    /// The same for the high-nibble codes: `0x30` (64..96) and `0xC0` (96..128), shifted
    /// right by 0 and 2.
    h_hi: (__m512i, __m512i),
}

impl Q6Masks {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
    fn new() -> Self {
        let halves = |a: __m512i, b: __m256i| _mm512_inserti64x4::<1>(a, b);
        Q6Masks {
            low: _mm512_set1_epi8(0x0F),
            h_lo: (
                halves(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C)),
                halves(_mm512_set1_epi16(4), _mm256_set1_epi16(2)),
            ),
            h_hi: (
                halves(_mm512_set1_epi8(0x30), _mm256_set1_epi8(0xC0u8 as i8)),
                halves(_mm512_set1_epi16(0), _mm256_set1_epi16(2)),
            ),
        }
    }
}

/// One half (128 weights) of a Q6_K block's codes minus 32 as signed bytes in element order,
/// from its 64 `ql` and 32 `qh` bytes: vector 0 holds elements 0..64 (low nibbles of `ql`,
/// `qh` bits 0..2 for the first 32, 2..4 for the next), vector 1 elements 64..128 (high
/// nibbles, `qh` bits 4..6 and 6..8). Each pair of `qh` bits is masked in place, then moved to
/// bits 4..6 by a 16-bit shift (masked first, so nothing crosses into the next byte).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
fn q6_k_half(ql: &[u8], qh: &[u8], m: &Q6Masks) -> [__m512i; 2] {
    assert!(ql.len() >= 64 && qh.len() >= 32);
    // SAFETY: the lengths are asserted; both loads are unaligned.
    let (l, h) = unsafe {
        (
            _mm512_loadu_si512(ql.as_ptr().cast()),
            _mm512_broadcast_i64x4(_mm256_loadu_si256(qh.as_ptr().cast())),
        )
    };
    let hl = _mm512_sllv_epi16(_mm512_and_si512(h, m.h_lo.0), m.h_lo.1);
    let hh = _mm512_srlv_epi16(_mm512_and_si512(h, m.h_hi.0), m.h_hi.1);
    // (l & 0x0F) | h: the 16-bit shift of `l` leaves the neighbour's bits above the nibble.
    let lo = _mm512_ternarylogic_epi32::<0xEA>(l, m.low, hl);
    let hi = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<4>(l), m.low, hh);
    let k32 = _mm512_set1_epi8(32);
    [_mm512_sub_epi8(lo, k32), _mm512_sub_epi8(hi, k32)]
}

/// `x` (whole 64-float chunks, at most [`KQ_MAX`]) with each chunk transposed as a 16 × 4
/// matrix: element `4L + s` moves to `16s + L`, the order [`q6_k_quads`] leaves a chunk's
/// codes in. Written into `buf`, of which it returns the initialized part.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn transpose_by4<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; KQ_MAX]) -> &'a [f32] {
    assert!(x.len() <= KQ_MAX && x.len().is_multiple_of(64));
    let out = buf.as_mut_ptr().cast::<f32>();
    for (c, chunk) in x.chunks_exact(64).enumerate() {
        let a = [0, 16, 32, 48].map(|o| load16(&chunk[o..]));
        for s in 0..4 {
            // Lane L < 8 takes element 4L + s of a0:a1, lane L ≥ 8 element 4(L − 8) + s of a2:a3.
            let idx = _mm512_add_epi32(
                _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
                _mm512_set1_epi32(s),
            );
            let v = _mm512_mask_blend_ps(
                0xFF00,
                _mm512_permutex2var_ps(a[0], idx, a[1]),
                _mm512_permutex2var_ps(a[2], idx, a[3]),
            );
            // SAFETY: 64·c + 16·s + 16 ≤ x.len() ≤ KQ_MAX keeps the store in `buf`; the
            // store is unaligned.
            unsafe { _mm512_storeu_ps(out.add(64 * c + 16 * s as usize), v) };
        }
    }
    // SAFETY: the loop wrote the first x.len() floats, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(out, x.len()) }
}

/// Activations [`rows_q6_k`] takes are below this in magnitude (2^96): its partial sums,
/// `2^31·max|x|` at most, then stay below f32's 2^128.
pub(super) const Q6_K_X_LIMIT: f32 = (1u128 << 96) as f32;

/// The codes of a 64-byte vector from [`q6_k_half`] as four vectors of i32 lanes, code `4L + s`
/// times 2^24 in lane `L` of vector `s`: one zero-masked byte permute each puts the signed
/// byte on top of its lane, so the conversion is exact and needs no sign extension.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vbmi")]
fn q6_k_quads(v: __m512i) -> [__m512; 4] {
    core::array::from_fn(|s| {
        // Byte 4L + 3 of the result takes byte 4L + s of `v`; the mask keeps only those.
        let idx = _mm512_add_epi32(
            _mm512_setr_epi32(
                0x0300_0000,
                0x0700_0000,
                0x0B00_0000,
                0x0F00_0000,
                0x1300_0000,
                0x1700_0000,
                0x1B00_0000,
                0x1F00_0000,
                0x2300_0000,
                0x2700_0000,
                0x2B00_0000,
                0x2F00_0000,
                0x3300_0000,
                0x3700_0000,
                0x3B00_0000,
                0x3F00_0000,
            ),
            _mm512_set1_epi32((s as i32 - 3) << 24),
        );
        let q = _mm512_maskz_permutexvar_epi8(0x8888_8888_8888_8888, idx, v);
        _mm512_cvtepi32_ps(q)
    })
}

/// `R` Q6_K rows (`kb` blocks each, back to back in `w`) · `xt` (the activations through
/// [`transpose_by4`]). Each half-block's codes are built as bytes ([`q6_k_half`]), then spread
/// four per lane ([`q6_k_quads`]): lane `L` of a 64-weight chunk only ever sees the four
/// elements `4L..4L + 4`, all in sub-block `L / 4`, so the chunk's four products sum in one
/// vector and one FMA applies a vector of per-lane steps `d·scale·2^-24` (exact: `d·scale` is
/// at least 2^-24 unless zero, so the scaled step stays normal), whose `2^-24` undoes the
/// codes'. Exact scalings of the reference's terms, so the budget is the same, for
/// activations below [`Q6_K_X_LIMIT`]: a lane's partial sum is at most `4·32·2^24·max|x|`
/// (the wrapper sends larger activations to the AVX2 kernel).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vbmi")]
fn rows_q6_k<const R: usize>(w: &[BlockQ6_K], kb: usize, xt: &[f32]) -> [__m512; R] {
    assert!(w.len() >= R * kb && xt.len() >= 256 * kb);
    let m = Q6Masks::new();
    let unit = _mm512_set1_ps(1.0 / 16_777_216.0);
    let spread: [__m512i; 4] = core::array::from_fn(|c| {
        let c = 4 * c as i32;
        _mm512_setr_epi32(
            c,
            c,
            c,
            c,
            c + 1,
            c + 1,
            c + 1,
            c + 1,
            c + 2,
            c + 2,
            c + 2,
            c + 2,
            c + 3,
            c + 3,
            c + 3,
            c + 3,
        )
    });
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        let steps: [__m512; R] = core::array::from_fn(|r| {
            let blk = &w[r * kb + b];
            // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
            let sc = unsafe { _mm_loadu_si128(blk.scales.as_ptr().cast()) };
            let d = _mm512_set1_ps(blk.d.to_f32());
            // d·scale as the reference computes it (exact), then the exact 2^-24.
            _mm512_mul_ps(
                _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc))),
                unit,
            )
        });
        for h in 0..2 {
            let codes: [[__m512i; 2]; R] = core::array::from_fn(|r| {
                let blk = &w[r * kb + b];
                q6_k_half(&blk.ql[64 * h..], &blk.qh[32 * h..], &m)
            });
            for v in 0..2 {
                let c = 2 * h + v;
                let xc = &xt[256 * b + 64 * c..];
                let xv = [0, 16, 32, 48].map(|o| load16(&xc[o..]));
                for r in 0..R {
                    let q = q6_k_quads(codes[r][v]);
                    let p = _mm512_mul_ps(q[0], xv[0]);
                    let p = _mm512_fmadd_ps(q[1], xv[1], p);
                    let p = _mm512_fmadd_ps(q[2], xv[2], p);
                    let p = _mm512_fmadd_ps(q[3], xv[3], p);
                    let step = _mm512_permutexvar_ps(spread[c], steps[r]);
                    acc[r] = _mm512_fmadd_ps(p, step, acc[r]);
                }
            }
        }
    }
    acc
}

dot_rows_driver!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vbmi",
    pub(super) dot_rows_q6_k_f32,
    BlockQ6_K,
    rows_q6_k,
    store_sums,
    prescale = transpose_by4[KQ_MAX]
);
