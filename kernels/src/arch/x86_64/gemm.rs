//! Multi-row products on x86_64: decoding's rows · one vector and prompt processing's
//! rows · many tokens (see `scalar::gemm` for what each computes).
//!
//! - `dot_rows_*_f32` (AVX2 + FMA + F16C): four rows per step share the activation loads and,
//!   for Q4_1, the block sums of `x`. Q4 codes reach i32 lanes with one `vpshufb` per 16 codes
//!   (the 16 code bytes broadcast to both 128-bit lanes; byte `j` lands in dword `j`, its low
//!   nibble is `& 15`, its high nibble `>> 4`), instead of unpacking nibbles to bytes and
//!   widening twice.
//! - `gemm_*_q8` (AVX2, AVX-VNNI, AVX512-VNNI/VL from one macro): tiles of four rows by one or
//!   two tokens meeting in exact integer dots. For one token (decoding) each weight block is
//!   unpacked in the tile; for a batch (prompts), once per row group into a panel of codes and
//!   f32 scales that every token pair reuses.
//! - `gemm_f32` (AVX2 + FMA): a 4-row × 3-token register tile (12 accumulators), two loads
//!   per three FMAs.
//!
//! Every row kernel prefetches the weight bytes [`PREFETCH_AHEAD`] past the rows it is working
//! on into L2: a matrix is read once per token, too large to stay cached, and the hardware
//! prefetcher stops at every 4 KiB page, so without this the kernels stall on memory several
//! times per page.

// Tiles index several arrays (accumulators, rows, tokens) by the same row or token number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx2::{block_codes, f16x8, i8x32_to_f32, load_16, lut16};
use crate::arch::int8_blocks::Block;
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::dispatch::{Backend, Kernels};
use crate::format::Format;
use crate::scalar;

/// How far ahead of the rows being multiplied the row kernels prefetch, in bytes, and into
/// L1 (`prefetcht0`). Through 4 KiB pages, `prefetcht1` measured best on the 97 MB SmolLM2
/// decode stream (15.2 ms a token without prefetch, 10.5–11 ms with it). With the weights in
/// huge pages (`WeightMemory::Copy`), `prefetcht0` decodes 6–7 % faster than `prefetcht1`
/// (2 threads, interleaved runs) and is no slower on a map; 4–8 KiB ahead measure alike, 16
/// KiB and more are slower.
pub(super) const PREFETCH_AHEAD: usize = 8192;

/// Rows per step of the row kernels.
pub(super) const ROWS: usize = 4;

// ---- helpers -------------------------------------------------------------------------------

/// Prefetches into L1 the cache lines of `len` bytes starting `PREFETCH_AHEAD` past `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_ahead(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        // PREFETCH never faults, whatever the address; `wrapping_add` keeps the pointer
        // arithmetic defined past the end of the slice.
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_AHEAD + off).cast());
        off += 64;
    }
}

/// Prefetches into L2 the first [`PREFETCH_AHEAD`] bytes (at most `len`) at `p`: the rows a
/// kernel call starts on, which no earlier call prefetched when another thread ran the rows
/// before them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch_head(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len.min(PREFETCH_AHEAD) {
        // As in `prefetch_ahead`; these addresses are inside the slice.
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off).cast());
        off += 64;
    }
}

/// The first 32 floats of `x` as four vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(x: &[f32]) -> [__m256; 4] {
    assert!(x.len() >= 32);
    let p = x.as_ptr();
    // SAFETY: x holds at least 32 floats; the unaligned loads read x[0..32].
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

/// The 32 codes (0..=15) of a Q4 block as four vectors of eight i32, for activations whose
/// second half of each block is pre-scaled by 1/16 ([`prescale`]): elements 0..16 as `q`,
/// elements 16..32 as `16·q`.
///
/// Byte `j` of the block holds elements `j` (low nibble) and `j + 16` (high nibble). With the
/// 16 bytes in both 128-bit lanes, one `vpshufb` puts bytes 0..8 into the low byte of dwords
/// 0..8 (zeroing the rest); `& 0x0F` gives elements 0..8 and `& 0xF0` sixteen times elements
/// 16..24: masks (any vector port) instead of shifts (two ports shared with every conversion
/// and FMA, the bottleneck of this kernel).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_codes_i32(qs: &[u8; 16]) -> [__m256i; 4] {
    let q = _mm256_broadcastsi128_si256(load_16(qs));
    let z = -1i8; // pshufb: a set top bit writes zero
    #[rustfmt::skip]
    let spread_lo = _mm256_setr_epi8(
        0, z, z, z, 1, z, z, z, 2, z, z, z, 3, z, z, z,
        4, z, z, z, 5, z, z, z, 6, z, z, z, 7, z, z, z,
    );
    #[rustfmt::skip]
    let spread_hi = _mm256_setr_epi8(
        8, z, z, z, 9, z, z, z, 10, z, z, z, 11, z, z, z,
        12, z, z, z, 13, z, z, z, 14, z, z, z, 15, z, z, z,
    );
    let (a, b) = (
        _mm256_shuffle_epi8(q, spread_lo),
        _mm256_shuffle_epi8(q, spread_hi),
    );
    let (lo, hi) = (_mm256_set1_epi32(0x0F), _mm256_set1_epi32(0xF0));
    [
        _mm256_and_si256(a, lo),
        _mm256_and_si256(b, lo),
        _mm256_and_si256(a, hi),
        _mm256_and_si256(b, hi),
    ]
}

/// Widest row whose pre-scaled activations [`prescale`] keeps on the stack (16 KiB); wider
/// rows use [`scalar_rows`].
pub(super) const PRESCALE_MAX: usize = 4096;

/// `x` (whole blocks, at most [`PRESCALE_MAX`]) with the second half of every 32-element
/// block divided by 16, for [`q4_codes_i32`]: `16q · x/16 = q·x` exactly (scaling by a power
/// of two), unless `|x| < 2^-122`. Written into `buf`, of which it returns the initialized
/// part (no zeroing: this runs once per kernel call, thousands of times per token).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prescale<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; PRESCALE_MAX]) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(32));
    let s = _mm256_set1_ps(1.0 / 16.0);
    let out = buf.as_mut_ptr().cast::<f32>();
    for (b, xb) in x.chunks_exact(32).enumerate() {
        let v = load32(xb);
        let v = [v[0], v[1], _mm256_mul_ps(v[2], s), _mm256_mul_ps(v[3], s)];
        for (i, v) in v.into_iter().enumerate() {
            // SAFETY: 32·b + 8·i + 8 ≤ x.len() ≤ PRESCALE_MAX: inside `buf`; unaligned store.
            unsafe { _mm256_storeu_ps(out.add(32 * b + 8 * i), v) };
        }
    }
    // SAFETY: the loop wrote all x.len() floats of the prefix, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(out, x.len()) }
}

/// Rows wider than [`PRESCALE_MAX`]: the single-row reference, one row at a time.
pub(super) fn scalar_rows(w: &[u8], x: &[f32], y: &mut [f32], dot: fn(&[u8], &[f32]) -> f32) {
    let rb = w.len() / y.len();
    for (yr, row) in y.iter_mut().zip(w.chunks_exact(rb)) {
        *yr = dot(row, x);
    }
}

/// Lane-wise partial sums of `w · x` over 32 elements: one product chain (four ops on the
/// FMA ports; a tree would add a fifth).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot32(w: [__m256; 4], x: &[__m256; 4]) -> __m256 {
    let p = _mm256_mul_ps(w[0], x[0]);
    let p = _mm256_fmadd_ps(w[1], x[1], p);
    let p = _mm256_fmadd_ps(w[2], x[2], p);
    _mm256_fmadd_ps(w[3], x[3], p)
}

/// The horizontal sums of four vectors, as one vector `[Σa, Σb, Σc, Σd]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4(v: [__m256; 4]) -> __m128 {
    let ab = _mm256_hadd_ps(v[0], v[1]);
    let cd = _mm256_hadd_ps(v[2], v[3]);
    let abcd = _mm256_hadd_ps(ab, cd);
    _mm_add_ps(
        _mm256_castps256_ps128(abcd),
        _mm256_extractf128_ps::<1>(abcd),
    )
}

/// Writes the `R` row results of `acc` to `y[..R]` (`R ≤ 4`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store_rows<const R: usize>(acc: [__m256; R], y: &mut [f32]) {
    let mut v = [_mm256_setzero_ps(); 4];
    v[..R].copy_from_slice(&acc);
    let mut out = [0.0f32; 4];
    // SAFETY: `out` holds 4 floats; the store is unaligned.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), hsum4(v)) };
    y[..R].copy_from_slice(&out[..R]);
}

// ---- rows · f32 ----------------------------------------------------------------------------

/// `R` Q4_0 rows (`kb` blocks each, back to back in `w`) · `xs` (pre-scaled, [`prescale`]):
/// codes `q − 8` and `16q − 128 = 16(q − 8)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q4_0<const R: usize>(w: &[BlockQ4_0], kb: usize, xs: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && xs.len() >= 32 * kb);
    let off = [8, 8, 128, 128].map(|v| _mm256_set1_epi32(v));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let xv = load32(&xs[32 * b..]);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let c = q4_codes_i32(&blk.qs);
            let q: [__m256; 4] =
                core::array::from_fn(|i| _mm256_cvtepi32_ps(_mm256_sub_epi32(c[i], off[i])));
            acc[r] = _mm256_fmadd_ps(dot32(q, &xv), f16x8(blk.d), acc[r]);
        }
    }
    acc
}

/// `R` Q4_1 rows · `xs` (pre-scaled): `Σ d·(Σ q·x) + m·(Σ x)` per block, `Σ x` shared by the
/// rows, `d` and `m` converted together (they are adjacent halves).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q4_1<const R: usize>(w: &[BlockQ4_1], kb: usize, xs: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && xs.len() >= 32 * kb);
    let sixteen = _mm256_set1_ps(16.0);
    // One accumulator per row (eight would spill): both terms of a block go into it.
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let xv = load32(&xs[32 * b..]);
        // Σ x of the block (its second half was divided by 16).
        let sx = _mm256_fmadd_ps(
            _mm256_add_ps(xv[2], xv[3]),
            sixteen,
            _mm256_add_ps(xv[0], xv[1]),
        );
        for r in 0..R {
            let blk = &w[r * kb + b];
            let q = q4_codes_i32(&blk.qs).map(|c| _mm256_cvtepi32_ps(c));
            let dm = [blk.d.0[0], blk.d.0[1], blk.m.0[0], blk.m.0[1]];
            let dm = _mm256_cvtph_ps(_mm_set1_epi32(i32::from_le_bytes(dm)));
            let (d, m) = (_mm256_moveldup_ps(dm), _mm256_movehdup_ps(dm));
            acc[r] = _mm256_fmadd_ps(sx, m, _mm256_fmadd_ps(dot32(q, &xv), d, acc[r]));
        }
    }
    acc
}

/// `R` Q8_0 rows · `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q8_0<const R: usize>(w: &[BlockQ8_0], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let p = blk.qs.as_ptr();
            // SAFETY: `qs` holds 32 bytes; each load reads 8 of them, unaligned.
            let q = [0, 8, 16, 24].map(|o| unsafe {
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(o).cast())))
            });
            acc[r] = _mm256_fmadd_ps(dot32(q, &xv), f16x8(blk.d), acc[r]);
        }
    }
    acc
}

/// `R` rows of 32-weight blocks · `x` through [`block_codes`] (Q5_0, Q5_1, IQ4_NL): codes
/// widened from bytes as Q8_0's are, one scale per block, and for the formats with an offset
/// `Σ d·(Σ q·x) + m·(Σ x)` with `Σ x` shared by the rows and `d`, `m` converted together.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_codes<B: Block, const R: usize>(w: &[B], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let lut = lut16(B::FMT.lut());
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        let sx = _mm256_add_ps(_mm256_add_ps(xv[0], xv[1]), _mm256_add_ps(xv[2], xv[3]));
        for r in 0..R {
            let blk = &w[r * kb + b];
            let q = i8x32_to_f32(block_codes(lut, blk));
            if B::FMT.has_m() {
                let (d, m) = (blk.d().0, blk.m().0);
                let dm =
                    _mm256_cvtph_ps(_mm_set1_epi32(i32::from_le_bytes([d[0], d[1], m[0], m[1]])));
                let (d, m) = (_mm256_moveldup_ps(dm), _mm256_movehdup_ps(dm));
                acc[r] = _mm256_fmadd_ps(sx, m, _mm256_fmadd_ps(dot32(q, &xv), d, acc[r]));
            } else {
                acc[r] = _mm256_fmadd_ps(dot32(q, &xv), f16x8(blk.d()), acc[r]);
            }
        }
    }
    acc
}

/// [`rows_codes`] for Q5_0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q5_0<const R: usize>(w: &[BlockQ5_0], kb: usize, x: &[f32]) -> [__m256; R] {
    rows_codes::<BlockQ5_0, R>(w, kb, x)
}

/// [`rows_codes`] for Q5_1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q5_1<const R: usize>(w: &[BlockQ5_1], kb: usize, x: &[f32]) -> [__m256; R] {
    rows_codes::<BlockQ5_1, R>(w, kb, x)
}

/// [`rows_codes`] for IQ4_NL.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_iq4_nl<const R: usize>(w: &[BlockIQ4_NL], kb: usize, x: &[f32]) -> [__m256; R] {
    rows_codes::<BlockIQ4_NL, R>(w, kb, x)
}

// `y[r] = row r · x` for the rows of `w`, `rows_*` run on `x` as it is or pre-scaled
// ([`prescale`]).
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_q4_0_f32,
    BlockQ4_0,
    rows_q4_0,
    store_rows,
    prescale = prescale
);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_q4_1_f32,
    BlockQ4_1,
    rows_q4_1,
    store_rows,
    prescale = prescale
);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_q8_0_f32,
    BlockQ8_0,
    rows_q8_0,
    store_rows
);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_q5_0_f32,
    BlockQ5_0,
    rows_q5_0,
    store_rows
);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_q5_1_f32,
    BlockQ5_1,
    rows_q5_1,
    store_rows
);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(super) dot_rows_iq4_nl_f32,
    BlockIQ4_NL,
    rows_iq4_nl,
    store_rows
);

// ---- f32 GEMM ------------------------------------------------------------------------------

/// Floats of `k` the f32 GEMM body consumes per step; the wrapper adds any tail.
pub(super) const GEMM_F32_LANES: usize = 8;

/// One `R × T` tile: `y[t·ldy + r] = a_r · b_t` over the first `k8` (a multiple of 8)
/// elements, rows of `a` and `b` `k` apart.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_f32<const R: usize, const T: usize>(
    a: &[f32],
    b: &[f32],
    k: usize,
    k8: usize,
    y: &mut [f32],
    ldy: usize,
) {
    assert!(a.len() >= (R - 1) * k + k8 && b.len() >= (T - 1) * k + k8);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); R]; T];
    let mut i = 0;
    while i < k8 {
        // SAFETY: i + 8 ≤ k8 and the assertion above keep every load inside `a` and `b`.
        let bv: [__m256; T] =
            core::array::from_fn(|t| unsafe { _mm256_loadu_ps(pb.add(t * k + i)) });
        for r in 0..R {
            // SAFETY: as above.
            let av = unsafe { _mm256_loadu_ps(pa.add(r * k + i)) };
            for t in 0..T {
                acc[t][r] = _mm256_fmadd_ps(av, bv[t], acc[t][r]);
            }
        }
        i += 8;
    }
    for t in 0..T {
        store_rows(acc[t], &mut y[t * ldy..]);
    }
}

/// `y[t·ldy + r] = a_r · b_t` over the first `k8` elements of rows `k` apart, for `m` rows of
/// `a` and `n` of `b`, in 4 × 3 tiles (smaller at the edges).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gemm_f32(
    a: &[f32],
    m: usize,
    b: &[f32],
    n: usize,
    k: usize,
    k8: usize,
    y: &mut [f32],
    ldy: usize,
) {
    const R: usize = 4;
    const T: usize = 3;
    let mut r = 0;
    while r < m {
        let ar = &a[r * k..];
        let mut t = 0;
        while t < n {
            let (bt, yt) = (&b[t * k..], &mut y[t * ldy + r..]);
            macro_rules! tile {
                ($($rr:literal),*) => {
                    match (m - r).min(R) {
                        $($rr => match (n - t).min(T) {
                            3 => tile_f32::<$rr, 3>(ar, bt, k, k8, yt, ldy),
                            2 => tile_f32::<$rr, 2>(ar, bt, k, k8, yt, ldy),
                            _ => tile_f32::<$rr, 1>(ar, bt, k, k8, yt, ldy),
                        },)*
                        _ => unreachable!(),
                    }
                };
            }
            tile!(1, 2, 3, 4);
            t += T;
        }
        r += R;
    }
}

// ---- rows · int8 activations ---------------------------------------------------------------

/// Int8 tiles of `R` weight rows by `T` tokens, one copy per instruction set.
///
/// Per block: each row's codes are unpacked once; each token's codes are loaded once; each
/// (row, token) pair costs one integer dot (exact, see `int8.rs`), one conversion and one
/// scaled accumulation `acc += isum · d_w·d_a` into eight f32 lanes. Q4_1's offset term
/// `m·s` accumulates per row in a vector whose lanes `4t..4t + 4` hold token `t`.
macro_rules! int8_gemm {
    ($features:literal, $dot_u8_i8:ident, $dot_u8_i8_acc:ident) => {
        use core::arch::x86_64::*;

        use super::super::avx2::{block_codes, f16x8, load_i8x32, lut16, nibbles256, q5_high_mask};
        use super::{prefetch_ahead, prefetch_head, store_rows, Block, ROWS};
        use crate::arch::int8_blocks::Fmt;
        use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
        use crate::scalar::BlockQ8Act;

        /// The offset `o` of the formats whose code `q` (unsigned) means `q − o`: Q4_0 (8)
        /// and Q5_0 (16). Their tiles multiply the unsigned codes and start each (row,
        /// token) block sum at `−o·Σa`, computed once per token and block for all the rows,
        /// instead of the sign trick's two `vpsignb` per row. Every i32 lane then holds the
        /// same exact sum of four products as with signed codes, so results are unchanged.
        #[inline(always)]
        const fn offset<B: Block>() -> Option<i8> {
            match B::FMT {
                Fmt::Q4_0 => Some(8),
                Fmt::Q5_0 => Some(16),
                _ => None,
            }
        }

        /// A block's codes as the tiles multiply them: unsigned for the [`offset`] formats
        /// (Q4_0's nibbles, Q5_0's nibbles with the fifth bit as 16), else [`block_codes`].
        #[inline]
        #[target_feature(enable = $features)]
        fn tile_codes<B: Block>(lut: __m256i, blk: &B) -> __m256i {
            match B::FMT {
                Fmt::Q4_0 => nibbles256(blk.qs16()),
                Fmt::Q5_0 => _mm256_or_si256(
                    nibbles256(blk.qs16()),
                    _mm256_and_si256(q5_high_mask(blk.qh()), _mm256_set1_epi8(0x10)),
                ),
                _ => block_codes(lut, blk),
            }
        }

        /// `−o·Σa` per group of four activations (the lanes of `$dot_u8_i8`), or zero
        /// for formats without an [`offset`]. Exact: `o·Σ|a| ≤ 16·4·127`.
        #[inline]
        #[target_feature(enable = $features)]
        fn offset_sums<B: Block>(a: __m256i) -> __m256i {
            let zero = _mm256_setzero_si256();
            match offset::<B>() {
                Some(o) => _mm256_sub_epi32(zero, $dot_u8_i8(_mm256_set1_epi8(o), a)),
                None => zero,
            }
        }

        /// `Σ w·a` per group of four for one (row, token) block: unsigned codes from
        /// `base = −o·Σa` ([`offset_sums`]), signed ones with the sign trick.
        #[inline]
        #[target_feature(enable = $features)]
        fn block_isum<B: Block>(
            codes: __m256i,
            mag: __m256i,
            a: __m256i,
            base: __m256i,
        ) -> __m256i {
            if offset::<B>().is_some() || !B::FMT.signed() {
                $dot_u8_i8_acc(base, codes, a)
            } else {
                $dot_u8_i8(mag, _mm256_sign_epi8(a, codes))
            }
        }

        /// Whether the sign trick applies: signed codes without an [`offset`].
        #[inline(always)]
        const fn sign_trick<B: Block>() -> bool {
            offset::<B>().is_none() && B::FMT.signed()
        }

        /// One tile: rows `w[r·kb..]` for `r < R`, tokens `acts[t·kb..]` for `t < T ≤ 2`;
        /// writes `y[t·ldy + r]`.
        #[inline]
        #[target_feature(enable = $features)]
        fn tile<B: Block, const R: usize, const T: usize>(
            w: &[B],
            acts: &[BlockQ8Act],
            kb: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            assert!(w.len() >= R * kb && acts.len() >= T * kb && T <= 2);
            let lut = lut16(B::FMT.lut());
            let mut acc = [[_mm256_setzero_ps(); R]; T];
            let mut acc_m = [_mm256_setzero_ps(); R];
            for b in 0..kb {
                let a: [&BlockQ8Act; T] = core::array::from_fn(|t| &acts[t * kb + b]);
                let av: [__m256i; T] = core::array::from_fn(|t| load_i8x32(&a[t].qs));
                let ad: [__m256; T] = core::array::from_fn(|t| _mm256_set1_ps(a[t].d()));
                let base: [__m256i; T] = core::array::from_fn(|t| offset_sums::<B>(av[t]));
                // Lanes 4t..4t + 4 hold token t's block sum, for Q4_1's offset.
                let s = match T {
                    1 => _mm256_set1_ps(a[0].s()),
                    _ => _mm256_setr_m128(_mm_set1_ps(a[0].s()), _mm_set1_ps(a[T - 1].s())),
                };
                for r in 0..R {
                    let blk = &w[r * kb + b];
                    let codes = tile_codes(lut, blk);
                    let mag = if sign_trick::<B>() {
                        _mm256_sign_epi8(codes, codes)
                    } else {
                        codes
                    };
                    let dw = f16x8(blk.d());
                    for t in 0..T {
                        let isum = block_isum::<B>(codes, mag, av[t], base[t]);
                        let scale = _mm256_mul_ps(dw, ad[t]);
                        acc[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[t][r]);
                    }
                    if B::FMT.has_m() {
                        acc_m[r] = _mm256_fmadd_ps(f16x8(blk.m()), s, acc_m[r]);
                    }
                }
            }
            if B::FMT.has_m() {
                let mut ms = [[0.0f32; 8]; R];
                for r in 0..R {
                    // SAFETY: `ms[r]` holds 8 floats; the store is unaligned.
                    unsafe { _mm256_storeu_ps(ms[r].as_mut_ptr(), acc_m[r]) };
                }
                for t in 0..T {
                    let mut row = [0.0f32; 4];
                    store_rows(acc[t], &mut row);
                    for r in 0..R {
                        y[t * ldy + r] = row[r] + ms[r][4 * t];
                    }
                }
            } else {
                for t in 0..T {
                    store_rows(acc[t], &mut y[t * ldy..]);
                }
            }
        }

        /// Blocks per chunk of a [`Panel`].
        const KC: usize = 64;

        /// A row group's weights for a stretch of [`KC`] blocks, unpacked once for a batch of
        /// tokens: codes in the form the dot takes (8 KiB, in L1), scales in f32.
        struct Panel {
            codes: [[__m256i; KC]; ROWS],
            d: [[f32; KC]; ROWS],
            m: [[f32; KC]; ROWS],
        }

        /// `Σ a·b` for short slices (at most [`KC`]): eight lanes, then the tail.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_short(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                // SAFETY: i + 8 ≤ n ≤ both lengths; unaligned loads.
                acc = unsafe {
                    _mm256_fmadd_ps(
                        _mm256_loadu_ps(a.as_ptr().add(i)),
                        _mm256_loadu_ps(b.as_ptr().add(i)),
                        acc,
                    )
                };
                i += 8;
            }
            let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
            super::super::avx2::hsum(acc) + tail
        }

        /// An f16 scale as f32.
        #[inline]
        #[target_feature(enable = $features)]
        fn f16(h: crate::blocks::F16Le) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                u16::from_le_bytes(h.0) as i32
            )))
        }

        /// Unpacks blocks `k0..k0 + kc` of `rows` rows of `w` (`kb` blocks each) into `p`.
        #[inline]
        #[target_feature(enable = $features)]
        fn unpack<B: Block>(p: &mut Panel, w: &[B], rows: usize, kb: usize, k0: usize, kc: usize) {
            let lut = lut16(B::FMT.lut());
            for r in 0..rows {
                for b in 0..kc {
                    let blk = &w[r * kb + k0 + b];
                    p.codes[r][b] = tile_codes(lut, blk);
                    p.d[r][b] = f16(blk.d());
                    if B::FMT.has_m() {
                        p.m[r][b] = f16(blk.m());
                    }
                }
            }
        }

        /// One `R × T` tile over a panel's `kc` blocks: adds (or, for the first chunk,
        /// writes) `row r · token t` over those blocks to `y[t·ldy + r]`; `acts` starts at the
        /// panel's first block of token 0, tokens `kb` blocks apart.
        #[inline]
        #[target_feature(enable = $features)]
        fn tile_panel<B: Block, const R: usize, const T: usize>(
            p: &Panel,
            kc: usize,
            acts: &[BlockQ8Act],
            kb: usize,
            y: &mut [f32],
            ldy: usize,
            first: bool,
        ) {
            assert!(kc <= KC && acts.len() >= (T - 1) * kb + kc);
            let mut acc = [[_mm256_setzero_ps(); R]; T];
            for b in 0..kc {
                let a: [&BlockQ8Act; T] = core::array::from_fn(|t| &acts[t * kb + b]);
                let av: [__m256i; T] = core::array::from_fn(|t| load_i8x32(&a[t].qs));
                let ad: [__m256; T] = core::array::from_fn(|t| _mm256_set1_ps(a[t].d()));
                let base: [__m256i; T] = core::array::from_fn(|t| offset_sums::<B>(av[t]));
                for r in 0..R {
                    let c = p.codes[r][b];
                    let mag = if sign_trick::<B>() {
                        _mm256_sign_epi8(c, c)
                    } else {
                        c
                    };
                    let dw = _mm256_set1_ps(p.d[r][b]);
                    for t in 0..T {
                        let isum = block_isum::<B>(c, mag, av[t], base[t]);
                        let scale = _mm256_mul_ps(dw, ad[t]);
                        acc[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[t][r]);
                    }
                }
            }
            for t in 0..T {
                let mut out = [0.0f32; 4];
                store_rows(acc[t], &mut out);
                if B::FMT.has_m() {
                    // The offset term Σ m·s, a short dot over the panel's blocks.
                    let mut s = [0.0f32; KC];
                    for (b, s) in s[..kc].iter_mut().enumerate() {
                        *s = acts[t * kb + b].s();
                    }
                    for r in 0..R {
                        out[r] += dot_short(&p.m[r][..kc], &s[..kc]);
                    }
                }
                for r in 0..R {
                    let yv = &mut y[t * ldy + r];
                    *yv = if first { out[r] } else { *yv + out[r] };
                }
            }
        }

        /// The batched product (`n ≥ 2`): per row group and stretch of [`KC`] blocks, the
        /// weights are unpacked once into a [`Panel`] and every token pair reuses them.
        #[inline]
        #[target_feature(enable = $features)]
        fn gemm_batch<B: Block>(
            w: &[B],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            let zero = _mm256_setzero_si256();
            let mut p = Panel {
                codes: [[zero; KC]; ROWS],
                d: [[0.0; KC]; ROWS],
                m: [[0.0; KC]; ROWS],
            };
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(ROWS);
                let mut k0 = 0;
                while k0 < kb {
                    let kc = (kb - k0).min(KC);
                    unpack(&mut p, &w[r * kb..], rows, kb, k0, kc);
                    let mut t = 0;
                    while t < n {
                        let (at, yt) = (&acts[t * kb + k0..], &mut y[t * ldy + r..]);
                        let first = k0 == 0;
                        match (rows, (n - t).min(2)) {
                            (4, 2) => tile_panel::<B, 4, 2>(&p, kc, at, kb, yt, ldy, first),
                            (4, _) => tile_panel::<B, 4, 1>(&p, kc, at, kb, yt, ldy, first),
                            (3, 2) => tile_panel::<B, 3, 2>(&p, kc, at, kb, yt, ldy, first),
                            (3, _) => tile_panel::<B, 3, 1>(&p, kc, at, kb, yt, ldy, first),
                            (2, 2) => tile_panel::<B, 2, 2>(&p, kc, at, kb, yt, ldy, first),
                            (2, _) => tile_panel::<B, 2, 1>(&p, kc, at, kb, yt, ldy, first),
                            (_, 2) => tile_panel::<B, 1, 2>(&p, kc, at, kb, yt, ldy, first),
                            _ => tile_panel::<B, 1, 1>(&p, kc, at, kb, yt, ldy, first),
                        }
                        t += 2;
                    }
                    k0 += kc;
                }
                r += ROWS;
            }
        }

        /// `y[t·ldy + r] = row r · token t` for the `m` rows of `w` (`kb` blocks each) and
        /// the `n` activation rows of `acts`: [`ROWS`] × 2 tiles (× 1 for a single token or
        /// an odd last one), prefetching the rows ahead.
        #[inline]
        #[target_feature(enable = $features)]
        fn gemm<B: Block>(
            w: &[B],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            if n >= 2 {
                return gemm_batch(w, m, kb, acts, n, y, ldy);
            }
            let group_bytes = ROWS * kb * core::mem::size_of::<B>();
            prefetch_head(w.as_ptr().cast(), m * kb * core::mem::size_of::<B>());
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(ROWS);
                let wr = &w[r * kb..];
                if rows == ROWS {
                    prefetch_ahead(wr.as_ptr().cast(), group_bytes);
                }
                let mut t = 0;
                while t < n {
                    let (at, yt) = (&acts[t * kb..], &mut y[t * ldy + r..]);
                    match (rows, (n - t).min(2)) {
                        (ROWS, 2) => tile::<B, ROWS, 2>(wr, at, kb, yt, ldy),
                        (ROWS, _) => tile::<B, ROWS, 1>(wr, at, kb, yt, ldy),
                        (_, 2) => {
                            for i in 0..rows {
                                tile::<B, 1, 2>(&wr[i * kb..], at, kb, &mut yt[i..], ldy)
                            }
                        }
                        _ => {
                            for i in 0..rows {
                                tile::<B, 1, 1>(&wr[i * kb..], at, kb, &mut yt[i..], ldy)
                            }
                        }
                    }
                    t += 2;
                }
                r += ROWS;
            }
        }

        /// Q4_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q4_0_q8(
            w: &[BlockQ4_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q4_1 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q4_1_q8(
            w: &[BlockQ4_1],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q5_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q5_0_q8(
            w: &[BlockQ5_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q5_1 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q5_1_q8(
            w: &[BlockQ5_1],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// IQ4_NL rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_iq4_nl_q8(
            w: &[BlockIQ4_NL],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q8_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q8_0_q8(
            w: &[BlockQ8_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }
    };
}

/// AVX2: `vpmaddubsw` + `vpmaddwd` (exact for activation codes in [−127, 127]).
mod avx2_int8 {
    int8_gemm!("avx2,fma,f16c", dot_u8_i8, dot_u8_i8_acc);

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi32(acc, dot_u8_i8(u, s))
    }
}

/// AVX-VNNI: `vpdpbusd` (VEX).
mod avxvnni {
    int8_gemm!("avx2,fma,f16c,avxvnni", dot_u8_i8, dot_u8_i8_acc);

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn dot_u8_i8_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
mod avx512vnni {
    int8_gemm!(
        "avx2,fma,f16c,avx512vnni,avx512vl",
        dot_u8_i8,
        dot_u8_i8_acc
    );

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn dot_u8_i8_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }
}

// ---- install and safe wrappers ---------------------------------------------------------------

/// Puts this module's kernels in `k` for `backend`. Called by the parent's `install` only
/// after `detected(backend)`, which is what the wrappers' `SAFETY` comments rely on.
pub(super) fn install(backend: Backend, k: &mut Kernels) {
    k.gemm_f32 = named!(gemm_f32_wrapper, "gemm_f32/avx2");
    let f = k.format_mut(Format::Q4_0);
    f.dot_rows = Some(named!(dot_rows_q4_0, "dot_rows_q4_0_f32/avx2"));
    let f = k.format_mut(Format::Q4_1);
    f.dot_rows = Some(named!(dot_rows_q4_1, "dot_rows_q4_1_f32/avx2"));
    let f = k.format_mut(Format::Q8_0);
    f.dot_rows = Some(named!(dot_rows_q8_0, "dot_rows_q8_0_f32/avx2"));
    let f = k.format_mut(Format::Q5_0);
    f.dot_rows = Some(named!(dot_rows_q5_0, "dot_rows_q5_0_f32/avx2"));
    let f = k.format_mut(Format::Q5_1);
    f.dot_rows = Some(named!(dot_rows_q5_1, "dot_rows_q5_1_f32/avx2"));
    let f = k.format_mut(Format::IQ4_NL);
    f.dot_rows = Some(named!(dot_rows_iq4_nl, "dot_rows_iq4_nl_f32/avx2"));
    if backend == Backend::Avx512Vnni {
        let f = k.format_mut(Format::Q4_0);
        f.dot_rows = Some(named!(avx512_rows_q4_0, "dot_rows_q4_0_f32/avx512"));
        let f = k.format_mut(Format::Q4_1);
        f.dot_rows = Some(named!(avx512_rows_q4_1, "dot_rows_q4_1_f32/avx512"));
        let f = k.format_mut(Format::Q8_0);
        f.dot_rows = Some(named!(avx512_rows_q8_0, "dot_rows_q8_0_f32/avx512"));
        let f = k.format_mut(Format::IQ4_NL);
        f.dot_rows = Some(named!(avx512_rows_iq4_nl, "dot_rows_iq4_nl_f32/avx512"));
        let f = k.format_mut(Format::Q5_0);
        f.dot_rows = Some(named!(avx512_rows_q5_0, "dot_rows_q5_0_f32/avx512"));
        let f = k.format_mut(Format::Q5_1);
        f.dot_rows = Some(named!(avx512_rows_q5_1, "dot_rows_q5_1_f32/avx512"));
    }
    use crate::dispatch::Named;
    let gemm = |f, name| Some(Named { f, name });
    let gemms = match backend {
        Backend::AvxVnni => [
            gemm(avxvnni_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/avxvnni"),
            gemm(avxvnni_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/avxvnni"),
            gemm(avxvnni_wrap::gemm_q8_0 as _, "gemm_q8_0_q8/avxvnni"),
            gemm(avxvnni_wrap::gemm_q5_0 as _, "gemm_q5_0_q8/avxvnni"),
            gemm(avxvnni_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/avxvnni"),
            gemm(avxvnni_wrap::gemm_iq4_nl as _, "gemm_iq4_nl_q8/avxvnni"),
        ],
        Backend::Avx512Vnni => [
            gemm(avx512vnni_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/avx512vnni"),
            gemm(avx512vnni_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/avx512vnni"),
            gemm(gemm_q8_0_avx512vnni as _, "gemm_q8_0_q8/avx512vnni"),
            gemm(gemm_q5_0_avx512vnni as _, "gemm_q5_0_q8/avx512vnni"),
            gemm(avx512vnni_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/avx512vnni"),
            gemm(
                avx512vnni_wrap::gemm_iq4_nl as _,
                "gemm_iq4_nl_q8/avx512vnni",
            ),
        ],
        _ => [
            gemm(avx2_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/avx2"),
            gemm(avx2_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/avx2"),
            gemm(avx2_wrap::gemm_q8_0 as _, "gemm_q8_0_q8/avx2"),
            gemm(avx2_wrap::gemm_q5_0 as _, "gemm_q5_0_q8/avx2"),
            gemm(avx2_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/avx2"),
            gemm(avx2_wrap::gemm_iq4_nl as _, "gemm_iq4_nl_q8/avx2"),
        ],
    };
    for (format, g) in crate::arch::BLOCK32_FORMATS.into_iter().zip(gemms) {
        k.format_mut(format).gemm_q8 = g;
    }
}

// Wrapper notes: as in the parent module, these are reachable only through `install`, which
// runs after `detected(backend)`; every body enables `avx2,fma,f16c`, and the VNNI int8 bodies
// are installed only for the backend that detected their extra features.

fn gemm_f32_wrapper(a: &[f32], m: usize, b: &[f32], n: usize, y: &mut [f32], ldy: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(a.len() % m, 0, "a is whole rows");
    let k = a.len() / m;
    assert_eq!(b.len(), n * k, "b has n rows of a's width");
    assert!(ldy >= m && y.len() >= (n - 1) * ldy + m);
    let k8 = k - k % GEMM_F32_LANES;
    // SAFETY: installed only by `install` after detection (see the wrapper notes).
    unsafe { gemm_f32(a, m, b, n, k, k8, y, ldy) };
    if k8 < k {
        for t in 0..n {
            for r in 0..m {
                let (ar, bt) = (&a[r * k + k8..(r + 1) * k], &b[t * k + k8..(t + 1) * k]);
                y[t * ldy + r] += scalar::dot_f32(ar, bt);
            }
        }
    }
}

dot_rows_wrapper!(
    dot_rows_q4_0,
    BlockQ4_0,
    "Q4_0",
    32,
    dot_rows_q4_0_f32,
    above PRESCALE_MAX => super::dot_q4_0_f32,
);
dot_rows_wrapper!(
    dot_rows_q4_1,
    BlockQ4_1,
    "Q4_1",
    32,
    dot_rows_q4_1_f32,
    above PRESCALE_MAX => super::dot_q4_1_f32,
);
dot_rows_wrapper!(dot_rows_q8_0, BlockQ8_0, "Q8_0", 32, dot_rows_q8_0_f32);
dot_rows_wrapper!(dot_rows_q5_0, BlockQ5_0, "Q5_0", 32, dot_rows_q5_0_f32);
dot_rows_wrapper!(dot_rows_q5_1, BlockQ5_1, "Q5_1", 32, dot_rows_q5_1_f32);
dot_rows_wrapper!(
    dot_rows_iq4_nl,
    BlockIQ4_NL,
    "IQ4_NL",
    32,
    dot_rows_iq4_nl_f32
);

// The AVX-512 row kernels: installed only for the AVX512-VNNI backend, whose detection
// includes `avx512f` (and `avx512bw` and `avx512vl`, which Q5_0's also enables).
dot_rows_wrapper!(
    avx512_rows_q4_0,
    BlockQ4_0,
    "Q4_0",
    32,
    super::avx512::dot_rows_q4_0_f32,
    above PRESCALE_MAX => super::dot_q4_0_f32,
);
dot_rows_wrapper!(
    avx512_rows_q4_1,
    BlockQ4_1,
    "Q4_1",
    32,
    super::avx512::dot_rows_q4_1_f32,
    above PRESCALE_MAX => super::dot_q4_1_f32,
);
dot_rows_wrapper!(
    avx512_rows_q8_0,
    BlockQ8_0,
    "Q8_0",
    32,
    super::avx512::dot_rows_q8_0_f32,
    above PRESCALE_MAX => super::dot_q8_0_f32,
);
dot_rows_wrapper!(
    avx512_rows_iq4_nl,
    BlockIQ4_NL,
    "IQ4_NL",
    32,
    super::avx512::dot_rows_iq4_nl_f32,
    above PRESCALE_MAX => super::dot_iq4_nl_f32,
);
dot_rows_wrapper!(
    avx512_rows_q5_0,
    BlockQ5_0,
    "Q5_0",
    32,
    super::avx512::dot_rows_q5_0_f32,
    above PRESCALE_MAX => super::dot_q5_0_f32,
);
dot_rows_wrapper!(
    avx512_rows_q5_1,
    BlockQ5_1,
    "Q5_1",
    32,
    super::avx512::dot_rows_q5_1_f32,
    above PRESCALE_MAX => super::dot_q5_1_f32,
);

macro_rules! gemm_q8_wrappers {
    ($wrap:ident => $body:ident) => {
        mod $wrap {
            use crate::blocks::{
                as_blocks, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
            };
            use crate::scalar::{gemm_q8_blocks, BlockQ8Act};

            macro_rules! one {
                ($name:ident, $block:ty, $kernel:ident) => {
                    pub(super) fn $name(
                        w: &[u8],
                        m: usize,
                        xq: &[u8],
                        n: usize,
                        y: &mut [f32],
                        ldy: usize,
                    ) {
                        if m == 0 || n == 0 {
                            return;
                        }
                        let (blocks, kb) = gemm_q8_blocks::<$block>(w, m, xq.len(), n, y, ldy);
                        let acts: &[BlockQ8Act] =
                            as_blocks(xq).expect("activations are whole act blocks");
                        // SAFETY: installed only by `install`, for this body's backend, after
                        // detection (see the wrapper notes).
                        unsafe { super::$body::$kernel(blocks, m, kb, acts, n, y, ldy) }
                    }
                };
            }
            one!(gemm_q4_0, BlockQ4_0, gemm_q4_0_q8);
            one!(gemm_q4_1, BlockQ4_1, gemm_q4_1_q8);
            one!(gemm_q8_0, BlockQ8_0, gemm_q8_0_q8);
            one!(gemm_q5_0, BlockQ5_0, gemm_q5_0_q8);
            one!(gemm_q5_1, BlockQ5_1, gemm_q5_1_q8);
            one!(gemm_iq4_nl, BlockIQ4_NL, gemm_iq4_nl_q8);
        }
    };
}

gemm_q8_wrappers!(avx2_wrap => avx2_int8);
gemm_q8_wrappers!(avxvnni_wrap => avxvnni);
gemm_q8_wrappers!(avx512vnni_wrap => avx512vnni);

/// Q5_0 × int8 on the AVX512-VNNI backend: one token (decode) on the 512-bit
/// `q5_0_512_int8::gemv_q5_0_q8`, batches on the 256-bit tiles.
fn gemm_q5_0_avx512vnni(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    if n != 1 {
        return avx512vnni_wrap::gemm_q5_0(w, m, xq, n, y, ldy);
    }
    if m == 0 {
        return;
    }
    let (blocks, kb) = crate::scalar::gemm_q8_blocks::<BlockQ5_0>(w, m, xq.len(), n, y, ldy);
    let acts: &[crate::scalar::BlockQ8Act] =
        crate::blocks::as_blocks(xq).expect("activations are whole act blocks");
    // SAFETY: installed only by `install` for the AVX512-VNNI backend, after `detected`
    // confirmed AVX2, FMA, F16C, AVX-512F/BW/VL and AVX512-VNNI; the shapes were checked by
    // `gemm_q8_blocks`.
    unsafe { super::q5_0_512_int8::gemv_q5_0_q8(blocks, m, kb, acts, y) }
}

/// Q8_0 × int8 on the AVX512-VNNI backend: one token (decode, above all the tied output heads)
/// on the 512-bit `q8_0_512_int8::gemv_q8_0_q8`, batches on the 256-bit tiles.
fn gemm_q8_0_avx512vnni(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    if n != 1 {
        return avx512vnni_wrap::gemm_q8_0(w, m, xq, n, y, ldy);
    }
    if m == 0 {
        return;
    }
    let (blocks, kb) = crate::scalar::gemm_q8_blocks::<BlockQ8_0>(w, m, xq.len(), n, y, ldy);
    let acts: &[crate::scalar::BlockQ8Act] =
        crate::blocks::as_blocks(xq).expect("activations are whole act blocks");
    // SAFETY: installed only by `install` for the AVX512-VNNI backend, after `detected`
    // confirmed AVX2, FMA, F16C, AVX-512F/BW/VL and AVX512-VNNI; the shapes were checked by
    // `gemm_q8_blocks`.
    unsafe { super::q8_0_512_int8::gemv_q8_0_q8(blocks, m, kb, acts, y) }
}
