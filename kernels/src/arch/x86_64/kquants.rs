//! AVX2 + FMA + F16C bodies for the 256-weight formats (the k-quants Q4_K, Q5_K and Q6_K, and
//! IQ4_XS) against f32 activations, and their dequantization.
//!
//! Every function enables `avx2,fma,f16c` and is reached only through the wrappers in the
//! parent module, installed after detection. Bodies take whole 256-weight blocks.
//!
//! The per-sub-block steps (`d·sc`, `dmin·m`, `d·scale`, `d·(sc − 32)`) are the scalar
//! reference's own f32 products, computed once per block; the codes are unpacked with byte
//! shuffles and masks (Q5_K's fifth bit by a compare, IQ4_XS's codebook by one `vpshufb` per
//! 32 codes, as Q4_0's int8 kernels look codes up), widened to f32 and multiplied (dequant) or
//! fused into the dot with `x` (dot). Q4_K and Q5_K share one dot and one dequant body over
//! their code unpacking.
//!
//! The multi-row kernels (`dot_rows_*`, decoding's matrix-vector product) take [`ROWS`] rows
//! per step: each 32-float run of `x` is loaded once for all of them (and, for Q4_K, summed
//! once for the min term), and the rows ahead are prefetched as in `gemm.rs`. On L2/L3-sized
//! matrices they run at the single-row kernels' speed (see [`ROWS`]); the prefetch is for
//! matrices streamed from memory.

use core::arch::x86_64::*;

use super::avx2::{dot32, f16x8, hsum, i8x16_to_f32, load32, store32};
use super::avx2::{load_16, lut16};
use super::gemm::{prefetch_ahead, prefetch_head, store_rows};
use crate::blocks::{BlockIQ4_XS, BlockQ4_K, BlockQ5_K, BlockQ6_K, F16Le};
use crate::scalar::{scales_mins_k4, IQ4_NL_VALUES};

// ---- helpers -----------------------------------------------------------------------------

/// The first 32 bytes of `b` as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_u8x32(b: &[u8]) -> __m256i {
    assert!(b.len() >= 32);
    // SAFETY: b holds at least 32 bytes; the unaligned load reads b[0..32].
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// 32 signed bytes as four vectors of 8 floats, in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn i8x32_to_f32(v: __m256i) -> [__m256; 4] {
    let [a, b] = i8x16_to_f32(_mm256_castsi256_si128(v));
    let [c, d] = i8x16_to_f32(_mm256_extracti128_si256::<1>(v));
    [a, b, c, d]
}

/// Sum of 32 floats as 8 lane-wise partial sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum32(x: [__m256; 4]) -> __m256 {
    _mm256_add_ps(_mm256_add_ps(x[0], x[1]), _mm256_add_ps(x[2], x[3]))
}

// ---- Q4_K --------------------------------------------------------------------------------

/// Per sub-block `d·sc` and `dmin·m`: the same f32 products as the scalar reference, eight
/// at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4_k_steps(b: &BlockQ4_K) -> ([f32; 8], [f32; 8]) {
    k4_steps(b.d, b.dmin, &b.scales)
}

/// [`q4_k_steps`] of a Q5_K block (the same scale fields).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q5_k_steps(b: &BlockQ5_K) -> ([f32; 8], [f32; 8]) {
    k4_steps(b.d, b.dmin, &b.scales)
}

/// Per sub-block `d·sc` and `dmin·m` from Q4_K's scale fields.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_steps(d: F16Le, dmin: F16Le, scales: &[u8; 12]) -> ([f32; 8], [f32; 8]) {
    let (sc, m) = scales_mins_k4(scales);
    let (mut steps, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    for (out, codes, scale) in [(&mut steps, sc, d), (&mut mins, m, dmin)] {
        let codes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(i64::from_le_bytes(codes)));
        let v = _mm256_mul_ps(f16x8(scale), _mm256_cvtepi32_ps(codes));
        // SAFETY: `out` holds 8 floats, exclusively borrowed; the store is unaligned.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    }
    (steps, mins)
}

/// One 32-byte chunk of Q4_K codes as (low nibbles, high nibbles): elements `64c..64c+32`
/// and `64c+32..64c+64` of the block, one byte each. Nibbles are below 16, so the bytes read
/// the same as signed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q4_k_nibbles(qs: &[u8]) -> (__m256i, __m256i) {
    let q = load_u8x32(qs);
    let m = _mm256_set1_epi8(0x0F);
    // The 16-bit shift moves the next byte's low bits into bits 4..8; the mask drops them.
    (
        _mm256_and_si256(q, m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m),
    )
}

/// One 32-byte chunk `c` of Q5_K codes as (sub-block 2c, sub-block 2c + 1), one byte each:
/// [`q4_k_nibbles`] of the chunk's `qs`, with bit `2c` (`2c + 1`) of each `qh` byte (all 32 in
/// `qh`) as the fifth bit, moved into place by a compare (no shift port).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q5_k_codes(qs: &[u8], qh: __m256i, c: usize) -> (__m256i, __m256i) {
    let (lo, hi) = q4_k_nibbles(qs);
    let fifth = |k: usize| {
        let bit = _mm256_set1_epi8((1u8 << k) as i8);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(16))
    };
    (
        _mm256_or_si256(lo, fifth(2 * c)),
        _mm256_or_si256(hi, fifth(2 * c + 1)),
    )
}

/// Q4_K row · f32: see [`dot_k4`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_k_f32(blocks: &[BlockQ4_K], x: &[f32]) -> f32 {
    dot_k4(
        blocks,
        x,
        |b| q4_k_steps(b),
        |b, c| q4_k_nibbles(&b.qs[32 * c..]),
    )
}

/// Q5_K row · f32: see [`dot_k4`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_k_f32(blocks: &[BlockQ5_K], x: &[f32]) -> f32 {
    dot_k4(
        blocks,
        x,
        |b| q5_k_steps(b),
        |b, c| q5_k_codes(&b.qs[32 * c..], load_u8x32(&b.qh), c),
    )
}

/// Q4_K / Q5_K row · f32, with `steps(b)` the per-sub-block `(d·sc, dmin·m)` and `codes(b, c)`
/// chunk `c`'s codes: per sub-block `(d·sc)·(Σ q·x)` and `(dmin·m)·(Σ x)` into separate
/// accumulators (two of each, low and high nibbles, to halve the FMA dependency chains),
/// subtracted once at the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_k4<B>(
    blocks: &[B],
    x: &[f32],
    steps: impl Fn(&B) -> ([f32; 8], [f32; 8]),
    codes: impl Fn(&B, usize) -> (__m256i, __m256i),
) -> f32 {
    let mut acc_d = [_mm256_setzero_ps(); 2];
    let mut acc_m = [_mm256_setzero_ps(); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let (steps, mins) = steps(b);
        for (c, x) in x.chunks_exact(64).enumerate() {
            let (lo, hi) = codes(b, c);
            for (s, (q, x)) in [(lo, x), (hi, &x[32..])].into_iter().enumerate() {
                let j = 2 * c + s;
                let x = load32(x);
                let qx = dot32(i8x32_to_f32(q), x);
                acc_d[s] = _mm256_fmadd_ps(qx, _mm256_set1_ps(steps[j]), acc_d[s]);
                acc_m[s] = _mm256_fmadd_ps(sum32(x), _mm256_set1_ps(mins[j]), acc_m[s]);
            }
        }
    }
    hsum(_mm256_add_ps(acc_d[0], acc_d[1])) - hsum(_mm256_add_ps(acc_m[0], acc_m[1]))
}

/// Q4_K row → f32: see [`dequant_k4`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q4_k(blocks: &[BlockQ4_K], out: &mut [f32]) {
    dequant_k4(
        blocks,
        out,
        |b| q4_k_steps(b),
        |b, c| q4_k_nibbles(&b.qs[32 * c..]),
    )
}

/// Q5_K row → f32: see [`dequant_k4`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q5_k(blocks: &[BlockQ5_K], out: &mut [f32]) {
    dequant_k4(
        blocks,
        out,
        |b| q5_k_steps(b),
        |b, c| q5_k_codes(&b.qs[32 * c..], load_u8x32(&b.qh), c),
    )
}

/// Q4_K / Q5_K row → f32 (`steps` and `codes` as in [`dot_k4`]), bit-identical to the
/// reference: `step·q`, then `− min`, the reference's two operations unfused (`step·q` is
/// exact, so a fused form would agree too, but the same operations need no argument).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_k4<B>(
    blocks: &[B],
    out: &mut [f32],
    steps: impl Fn(&B) -> ([f32; 8], [f32; 8]),
    codes: impl Fn(&B, usize) -> (__m256i, __m256i),
) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let (steps, mins) = steps(b);
        for (c, o) in o.chunks_exact_mut(64).enumerate() {
            let (lo, hi) = codes(b, c);
            let (o_lo, o_hi) = o.split_at_mut(32);
            for (s, (q, o)) in [(lo, o_lo), (hi, o_hi)].into_iter().enumerate() {
                let (step, min) = (
                    _mm256_set1_ps(steps[2 * c + s]),
                    _mm256_set1_ps(mins[2 * c + s]),
                );
                let w = i8x32_to_f32(q).map(|q| _mm256_sub_ps(_mm256_mul_ps(step, q), min));
                store32(o, w);
            }
        }
    }
}

// ---- Q6_K --------------------------------------------------------------------------------

/// Per sub-block `d·scale`: the same f32 products as the scalar reference.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_steps(b: &BlockQ6_K) -> [f32; 16] {
    let d = b.d.to_f32();
    b.scales.map(|s| d * s as f32)
}

/// One half (128 elements) of a Q6_K block's codes minus 32, from its 64 `ql` and 32 `qh`
/// bytes: vector k holds elements `32k..32k+32` of the half as signed bytes in −32..=31
/// (low nibbles of `ql[0..32]`, of `ql[32..64]`, their high nibbles, each with two bits of
/// `qh`, pair k).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q6_k_half(ql: &[u8], qh: &[u8]) -> [__m256i; 4] {
    let (a, b, h) = (load_u8x32(ql), load_u8x32(&ql[32..]), load_u8x32(qh));
    let low = _mm256_set1_epi8(0x0F);
    // Pair k of `qh` moved to bits 4..6. The shifts are 16-bit (AVX2 has no byte shift);
    // the masks drop what crosses from the neighbouring byte.
    let top = |v: __m256i| _mm256_and_si256(v, _mm256_set1_epi8(0x30));
    let q = [
        _mm256_or_si256(_mm256_and_si256(a, low), top(_mm256_slli_epi16::<4>(h))),
        _mm256_or_si256(_mm256_and_si256(b, low), top(_mm256_slli_epi16::<2>(h))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(a), low), top(h)),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(b), low),
            top(_mm256_srli_epi16::<2>(h)),
        ),
    ];
    q.map(|q| _mm256_sub_epi8(q, _mm256_set1_epi8(32)))
}

/// Q6_K row · f32: per 16-element sub-block `(d·scale)·(Σ (q − 32)·x)`, the even and odd
/// sub-blocks in separate accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k_f32(blocks: &[BlockQ6_K], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let steps = q6_k_steps(b);
        for (h, x) in x.chunks_exact(128).enumerate() {
            let q = q6_k_half(&b.ql[64 * h..], &b.qh[32 * h..]);
            for (k, (q, x)) in q.into_iter().zip(x.chunks_exact(32)).enumerate() {
                // Elements 0..16 of the vector are sub-block j, 16..32 sub-block j + 1.
                let j = 8 * h + 2 * k;
                let (w, x) = (i8x32_to_f32(q), load32(x));
                let p0 = _mm256_fmadd_ps(w[1], x[1], _mm256_mul_ps(w[0], x[0]));
                let p1 = _mm256_fmadd_ps(w[3], x[3], _mm256_mul_ps(w[2], x[2]));
                acc[0] = _mm256_fmadd_ps(p0, _mm256_set1_ps(steps[j]), acc[0]);
                acc[1] = _mm256_fmadd_ps(p1, _mm256_set1_ps(steps[j + 1]), acc[1]);
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q6_K row → f32, bit-identical to the reference: `(d·scale)·(q − 32)`, the same two
/// products (both exact: an f16 times an int8 fits 18 bits, times a 6-bit code 24).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q6_k(blocks: &[BlockQ6_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = q6_k_steps(b);
        for (h, o) in o.chunks_exact_mut(128).enumerate() {
            let q = q6_k_half(&b.ql[64 * h..], &b.qh[32 * h..]);
            for (k, (q, o)) in q.into_iter().zip(o.chunks_exact_mut(32)).enumerate() {
                let j = 8 * h + 2 * k;
                let (s0, s1) = (_mm256_set1_ps(steps[j]), _mm256_set1_ps(steps[j + 1]));
                let w = i8x32_to_f32(q);
                store32(
                    o,
                    [
                        _mm256_mul_ps(s0, w[0]),
                        _mm256_mul_ps(s0, w[1]),
                        _mm256_mul_ps(s1, w[2]),
                        _mm256_mul_ps(s1, w[3]),
                    ],
                );
            }
        }
    }
}

// ---- IQ4_XS -------------------------------------------------------------------------------

/// Sub-block `j` of an IQ4_XS block as 32 signed bytes in element order: its 16 code bytes'
/// nibbles (Q4_0's order: low nibbles, then high) looked up in IQ4_NL's codebook by one
/// `vpshufb`. The code bytes are loaded into both 128-bit lanes at once and the high lane's
/// dwords shifted right by 4, so one mask leaves the low nibbles in the low lane and the high
/// ones in the high lane (a byte's bits shifted in from the next byte land above bit 3): two
/// operations instead of `nibbles256`'s four.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn iq4_xs_values(lut: __m256i, b: &BlockIQ4_XS, j: usize) -> __m256i {
    let q = _mm256_broadcastsi128_si256(load_16(&b.qs.as_chunks::<16>().0[j]));
    let shifts = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    let idx = _mm256_and_si256(_mm256_srlv_epi32(q, shifts), _mm256_set1_epi8(0x0F));
    _mm256_shuffle_epi8(lut, idx)
}

/// The eight sub-block scales `sc − 32` of an IQ4_XS block as i32 lanes
/// (`scalar::iq4_xs_scales`, eight at a time): scale `j`'s low four bits are nibble `j` of
/// `scales_l` read as a little-endian word, its high two bits bits `2j..2j + 2` of `scales_h`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn iq4_xs_scales8(b: &BlockIQ4_XS) -> __m256i {
    let low = _mm256_set1_epi32(u32::from_le_bytes(b.scales_l) as i32);
    let high = _mm256_set1_epi32(u16::from_le_bytes(b.scales_h) as i32);
    let low = _mm256_srlv_epi32(low, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    let high = _mm256_srlv_epi32(high, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    let sc = _mm256_or_si256(
        _mm256_and_si256(low, _mm256_set1_epi32(0x0F)),
        _mm256_slli_epi32::<4>(_mm256_and_si256(high, _mm256_set1_epi32(3))),
    );
    _mm256_sub_epi32(sc, _mm256_set1_epi32(32))
}

/// `scalar::iq4_xs_steps` eight lanes at a time: `d·(sc − 32)`, the reference's product (exact: f16
/// times 6 bits).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn iq4_xs_steps8(b: &BlockIQ4_XS) -> [f32; 8] {
    let sc = _mm256_cvtepi32_ps(iq4_xs_scales8(b));
    let mut out = [0.0f32; 8];
    // SAFETY: `out` holds 8 floats, exclusively borrowed; the store is unaligned.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(f16x8(b.d), sc)) };
    out
}

/// IQ4_XS row · f32: per sub-block `(d·(sc − 32))·(Σ T[q]·x)`, even and odd sub-blocks in
/// separate accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_xs_f32(blocks: &[BlockIQ4_XS], x: &[f32]) -> f32 {
    let lut = lut16(&IQ4_NL_VALUES);
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, x) in blocks.iter().zip(x.chunks_exact(256)) {
        let steps = iq4_xs_steps8(b);
        for (j, x) in x.chunks_exact(32).enumerate() {
            let qx = dot32(i8x32_to_f32(iq4_xs_values(lut, b, j)), load32(x));
            acc[j % 2] = _mm256_fmadd_ps(qx, _mm256_set1_ps(steps[j]), acc[j % 2]);
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// IQ4_XS row → f32, bit-identical to the reference: `(d·(sc − 32))·T[q]`, the same two
/// products.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_iq4_xs(blocks: &[BlockIQ4_XS], out: &mut [f32]) {
    let lut = lut16(&IQ4_NL_VALUES);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = iq4_xs_steps8(b);
        for (j, o) in o.chunks_exact_mut(32).enumerate() {
            let step = _mm256_set1_ps(steps[j]);
            let w = i8x32_to_f32(iq4_xs_values(lut, b, j)).map(|v| _mm256_mul_ps(step, v));
            store32(o, w);
        }
    }
}

// ---- several rows · f32 --------------------------------------------------------------------

/// Rows per step of the k-quant row kernels: two, not `gemm.rs`'s four. These kernels are
/// bound by turning codes into floats (a conversion and an FMA per eight weights on the same
/// two ports), which sharing `x` does not relieve; four rows measured up to 10 % slower than
/// the single-row dot on the 9 MB 8192 × 2048 matrix, two at par (noisy shared machine).
const ROWS: usize = 2;

/// 32 Q4_K codes of sub-block `2c + s` as four vectors of eight floats, from the chunk's 32
/// bytes `qs`: bytes zero-extended to i32 lanes, masked to the low nibble (`q`) or to the high
/// one left in place (`16·q`, which the caller's step divided by 16 undoes): masks run on any
/// vector port, shifts would compete with the conversions and FMAs for two.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_sub_f32(qs: &[u8], mask: __m256i) -> [__m256; 4] {
    assert!(qs.len() >= 32);
    core::array::from_fn(|i| {
        // SAFETY: qs holds at least 32 bytes; the load reads qs[8i..8i + 8].
        let v = unsafe { _mm_loadl_epi64(qs.as_ptr().add(8 * i).cast()) };
        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_cvtepu8_epi32(v), mask))
    })
}

/// `R` Q4_K rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows. The high-nibble
/// sub-blocks see `16·q` and `d·sc/16` (exact: a power of two, and `d·sc/16 ≥ 2⁻²⁸` stays
/// normal).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q4_k<const R: usize>(w: &[BlockQ4_K], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let masks = [_mm256_set1_epi32(0x0F), _mm256_set1_epi32(0xF0)];
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q4_k_steps(&w[r * kb + b]));
        for c in 0..4 {
            for (s, unit) in [1.0f32, 1.0 / 16.0].into_iter().enumerate() {
                let j = 2 * c + s;
                let xv = load32(&x[256 * b + 32 * j..]);
                let sx = sum32(xv);
                for r in 0..R {
                    let q = q4_k_sub_f32(&w[r * kb + b].qs[32 * c..], masks[s]);
                    let (step, min) = (steps[r].0[j] * unit, steps[r].1[j]);
                    acc[r] = _mm256_fmadd_ps(dot32(q, xv), _mm256_set1_ps(step), acc[r]);
                    acc[r] = _mm256_fnmadd_ps(sx, _mm256_set1_ps(min), acc[r]);
                }
            }
        }
    }
    acc
}

/// Vector `k` (elements `32k..32k + 32`) of a Q6_K half's codes minus 32, as `q6_k_half`
/// computes all four.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_vec(ql: &[u8], qh: &[u8], k: usize) -> __m256i {
    let low = _mm256_set1_epi8(0x0F);
    let top = |v: __m256i| _mm256_and_si256(v, _mm256_set1_epi8(0x30));
    let (l, h) = (load_u8x32(&ql[32 * (k % 2)..]), load_u8x32(qh));
    let l = if k < 2 { l } else { _mm256_srli_epi16::<4>(l) };
    let h = match k {
        0 => _mm256_slli_epi16::<4>(h),
        1 => _mm256_slli_epi16::<2>(h),
        2 => h,
        _ => _mm256_srli_epi16::<2>(h),
    };
    let q = _mm256_or_si256(_mm256_and_si256(l, low), top(h));
    _mm256_sub_epi8(q, _mm256_set1_epi8(32))
}

/// `R` Q6_K rows (`kb` blocks each, back to back in `w`) · `x`: per 16-element sub-block and
/// row `acc += (d·scale)·(Σ (q − 32)·x)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q6_k<const R: usize>(w: &[BlockQ6_K], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [[f32; 16]; R] = core::array::from_fn(|r| q6_k_steps(&w[r * kb + b]));
        for h in 0..2 {
            for k in 0..4 {
                let xv = load32(&x[256 * b + 128 * h + 32 * k..]);
                let j = 8 * h + 2 * k;
                for r in 0..R {
                    let blk = &w[r * kb + b];
                    let q = i8x32_to_f32(q6_k_vec(&blk.ql[64 * h..], &blk.qh[32 * h..], k));
                    let p0 = _mm256_fmadd_ps(q[1], xv[1], _mm256_mul_ps(q[0], xv[0]));
                    let p1 = _mm256_fmadd_ps(q[3], xv[3], _mm256_mul_ps(q[2], xv[2]));
                    acc[r] = _mm256_fmadd_ps(p0, _mm256_set1_ps(steps[r][j]), acc[r]);
                    acc[r] = _mm256_fmadd_ps(p1, _mm256_set1_ps(steps[r][j + 1]), acc[r]);
                }
            }
        }
    }
    acc
}

/// `R` Q5_K rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, `Σ x` shared by the rows, the codes built as
/// bytes ([`q5_k_codes`]) and widened.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q5_k<const R: usize>(w: &[BlockQ5_K], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 8], [f32; 8]); R] = core::array::from_fn(|r| q5_k_steps(&w[r * kb + b]));
        for c in 0..4 {
            let xc = &x[256 * b + 64 * c..];
            let xv = [load32(xc), load32(&xc[32..])];
            let sx = [sum32(xv[0]), sum32(xv[1])];
            for r in 0..R {
                let blk = &w[r * kb + b];
                let (lo, hi) = q5_k_codes(&blk.qs[32 * c..], load_u8x32(&blk.qh), c);
                for (s, q) in [lo, hi].into_iter().enumerate() {
                    let (step, min) = (steps[r].0[2 * c + s], steps[r].1[2 * c + s]);
                    let qx = dot32(i8x32_to_f32(q), xv[s]);
                    acc[r] = _mm256_fmadd_ps(qx, _mm256_set1_ps(step), acc[r]);
                    acc[r] = _mm256_fnmadd_ps(sx[s], _mm256_set1_ps(min), acc[r]);
                }
            }
        }
    }
    acc
}

/// `R` IQ4_XS rows (`kb` blocks each, back to back in `w`) · `x`: per sub-block and row
/// `acc += (d·(sc − 32))·(Σ T[q]·x)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_iq4_xs<const R: usize>(w: &[BlockIQ4_XS], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let lut = lut16(&IQ4_NL_VALUES);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [[f32; 8]; R] = core::array::from_fn(|r| iq4_xs_steps8(&w[r * kb + b]));
        for j in 0..8 {
            let xv = load32(&x[256 * b + 32 * j..]);
            for r in 0..R {
                let q = i8x32_to_f32(iq4_xs_values(lut, &w[r * kb + b], j));
                acc[r] = _mm256_fmadd_ps(dot32(q, xv), _mm256_set1_ps(steps[r][j]), acc[r]);
            }
        }
    }
    acc
}

dot_rows_driver!("avx2,fma,f16c", pub(crate) dot_rows_q4_k_f32, BlockQ4_K, rows_q4_k, store_rows);
dot_rows_driver!("avx2,fma,f16c", pub(crate) dot_rows_q5_k_f32, BlockQ5_K, rows_q5_k, store_rows);
/// IQ4_XS's row driver, four rows per step: unlike the k-quants above, its rows share whole
/// 32-float runs of `x` per sub-block, and four rows measured faster than two (6.85 against
/// 6.6 GB/s on the 576x1536 bench shape, Zen 4).
mod iq4_xs_rows {
    use super::{prefetch_ahead, prefetch_head, rows_iq4_xs, store_rows, BlockIQ4_XS};

    /// Rows per step.
    const ROWS: usize = 4;

    dot_rows_driver!(
        "avx2,fma,f16c",
        pub(crate) dot_rows_iq4_xs_f32,
        BlockIQ4_XS,
        rows_iq4_xs,
        store_rows
    );
}
pub(crate) use iq4_xs_rows::dot_rows_iq4_xs_f32;
dot_rows_driver!("avx2,fma,f16c", pub(crate) dot_rows_q6_k_f32, BlockQ6_K, rows_q6_k, store_rows);
