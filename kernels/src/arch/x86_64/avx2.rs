//! AVX2 + FMA + F16C bodies: f32 vector kernels, the 32-weight block formats (Q4_0, Q4_1,
//! Q8_0, Q5_0, Q5_1, IQ4_NL) against f32 activations, dequantization, and activation
//! quantization for the int8 path.
//!
//! Q5 codes are decoded in registers: the 32 fifth bits of `qh` become a byte mask (each byte
//! of `qh` copied to eight lanes by `vpshufb`, tested against its lane's bit), merged into the
//! nibbles with one `and`/`andnot` and `or`: for Q5_0 `nibble | (!h & 0xF0)` is `q − 16` as an
//! int8 in one step. IQ4_NL's codes go through its codebook with the same `vpshufb` as Q4_0's.
//!
//! Every function enables `avx2,fma,f16c` and is reached only through the wrappers in the
//! parent module, installed after detection. Block kernels take whole blocks; `dot_f32` and
//! `axpy` take whole lanes ([`DOT_F32_LANES`], [`AXPY_LANES`]) and ignore any remainder.

use core::arch::x86_64::*;

use crate::arch::int8_blocks::{Block, Fmt};
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le};
use crate::scalar::{act_scale, BlockQ8Act, Q4_0_VALUES};

/// Floats [`dot_f32`] consumes per step.
pub(crate) const DOT_F32_LANES: usize = 32;
/// Floats [`axpy`] consumes per step.
pub(crate) const AXPY_LANES: usize = 8;

// ---- helpers -----------------------------------------------------------------------------

/// An f16 scale as f32 in all 8 lanes (F16C `vcvtph2ps`; exact, subnormals included).
///
/// Broadcasting before converting keeps every lane defined: converting one lane lets the
/// compiler merge the half into whatever register is free (`vpinsrw`), often the running
/// accumulator, which chains every block's scale behind the previous block's FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16x8(h: F16Le) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes(h.0)))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Maximum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// Sum of the 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
}

/// The first 32 floats of `x` as four vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32(x: &[f32]) -> [__m256; 4] {
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

/// Stores four vectors to the first 32 floats of `out`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store32(out: &mut [f32], v: [__m256; 4]) {
    assert!(out.len() >= 32);
    let p = out.as_mut_ptr();
    // SAFETY: out holds at least 32 floats, exclusively borrowed; the stores write out[0..32].
    unsafe {
        _mm256_storeu_ps(p, v[0]);
        _mm256_storeu_ps(p.add(8), v[1]);
        _mm256_storeu_ps(p.add(16), v[2]);
        _mm256_storeu_ps(p.add(24), v[3]);
    }
}

/// 16 bytes as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_16(b: &[u8; 16]) -> __m128i {
    // SAFETY: the reference covers 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// 32 signed bytes as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_i8x32(b: &[i8; 32]) -> __m256i {
    // SAFETY: the reference covers 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// A 16-entry int8 codebook in both 128-bit lanes, ready for `vpshufb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn lut16(lut: &[i8; 16]) -> __m256i {
    // SAFETY: the reference covers 16 readable bytes; the load is unaligned.
    _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(lut.as_ptr().cast()) })
}

/// The 4-bit codes of a Q4 block as (elements 0..16, elements 16..32), one byte each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(qs: &[u8; 16]) -> (__m128i, __m128i) {
    let q = load_16(qs);
    let m = _mm_set1_epi8(0x0F);
    (
        _mm_and_si128(q, m),
        _mm_and_si128(_mm_srli_epi16::<4>(q), m),
    )
}

/// The 4-bit codes of a Q4 block as 32 bytes in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles256(qs: &[u8; 16]) -> __m256i {
    let (lo, hi) = nibbles(qs);
    _mm256_set_m128i(hi, lo)
}

/// The fifth bits of a Q5 block as a byte mask in element order: byte `j` is 0xFF when bit `j`
/// of `qh` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q5_high_mask(qh: &[u8; 4]) -> __m256i {
    let v = _mm256_set1_epi32(i32::from_le_bytes(*qh));
    // Byte j takes byte j / 8 of qh (`vpshufb` indexes within each 128-bit lane, and both
    // lanes hold all four bytes).
    #[rustfmt::skip]
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, spread), bits), bits)
}

/// A 32-weight block's codes as 32 bytes in element order, in the form the int8 dots take:
/// Q4_0 and IQ4_NL through `lut` (the format's codebook, [`Fmt::lut`]), Q4_1 and Q5_1 their
/// unsigned codes, Q5_0 `q − 16`, Q8_0 as stored.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn block_codes<B: Block>(lut: __m256i, blk: &B) -> __m256i {
    match B::FMT {
        Fmt::Q4_0 | Fmt::IQ4_NL => _mm256_shuffle_epi8(lut, nibbles256(blk.qs16())),
        Fmt::Q4_1 => nibbles256(blk.qs16()),
        Fmt::Q8_0 => load_i8x32(blk.qs32()),
        // nibble | 0xF0 is nibble − 16 as an int8; nibble | 0 is (nibble + 16) − 16.
        Fmt::Q5_0 => _mm256_or_si256(
            nibbles256(blk.qs16()),
            _mm256_andnot_si256(q5_high_mask(blk.qh()), _mm256_set1_epi8(0xF0u8 as i8)),
        ),
        Fmt::Q5_1 => _mm256_or_si256(
            nibbles256(blk.qs16()),
            _mm256_and_si256(q5_high_mask(blk.qh()), _mm256_set1_epi8(0x10)),
        ),
    }
}

/// 32 signed bytes as four vectors of 8 floats, in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn i8x32_to_f32(v: __m256i) -> [__m256; 4] {
    let [a, b] = i8x16_to_f32(_mm256_castsi256_si128(v));
    let [c, d] = i8x16_to_f32(_mm256_extracti128_si256::<1>(v));
    [a, b, c, d]
}

/// 16 signed bytes as two vectors of 8 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn i8x16_to_f32(v: __m128i) -> [__m256; 2] {
    [
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v))),
    ]
}

/// A Q4 block's codes mapped through a 16-entry codebook (`vpshufb`), as 32 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lut4_f32(lut: __m256i, qs: &[u8; 16]) -> [__m256; 4] {
    let (lo, hi) = nibbles(qs);
    let lut = _mm256_castsi256_si128(lut);
    let [a, b] = i8x16_to_f32(_mm_shuffle_epi8(lut, lo));
    let [c, d] = i8x16_to_f32(_mm_shuffle_epi8(lut, hi));
    [a, b, c, d]
}

/// Lane-wise partial sums of `w · x` over 32 elements.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot32(w: [__m256; 4], x: [__m256; 4]) -> __m256 {
    let p = _mm256_fmadd_ps(w[2], x[2], _mm256_mul_ps(w[0], x[0]));
    let q = _mm256_fmadd_ps(w[3], x[3], _mm256_mul_ps(w[1], x[1]));
    _mm256_add_ps(p, q)
}

// ---- f32 vectors -------------------------------------------------------------------------

/// `Σ a·b` over the whole [`DOT_F32_LANES`]-float chunks of `a` and `b`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    for (a, b) in a
        .chunks_exact(DOT_F32_LANES)
        .zip(b.chunks_exact(DOT_F32_LANES))
    {
        let (va, vb) = (load32(a), load32(b));
        for k in 0..4 {
            acc[k] = _mm256_fmadd_ps(va[k], vb[k], acc[k]);
        }
    }
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}

/// `y += a·x` over the whole [`AXPY_LANES`]-float chunks (one rounding per element: FMA).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let va = _mm256_set1_ps(a);
    for (y, x) in y
        .chunks_exact_mut(AXPY_LANES)
        .zip(x.chunks_exact(AXPY_LANES))
    {
        // SAFETY: both chunks hold 8 floats, `y` exclusively borrowed; unaligned accesses.
        unsafe {
            let v = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
            _mm256_storeu_ps(y.as_mut_ptr(), v);
        }
    }
}

// ---- weights · f32 activations -------------------------------------------------------------

/// Q4_0 row · f32: codes through the `vpshufb` codebook, widened to f32, FMA with `x`, one
/// scale per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_0_f32(blocks: &[BlockQ4_0], x: &[f32]) -> f32 {
    let lut = lut16(&Q4_0_VALUES);
    let mut acc = _mm256_setzero_ps();
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let p = dot32(lut4_f32(lut, &b.qs), load32(x));
        acc = _mm256_fmadd_ps(p, f16x8(b.d), acc);
    }
    hsum(acc)
}

/// Q4_1 row · f32: `Σ d·(Σ q·x) + m·(Σ x)` per block, the two sums in separate accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_1_f32(blocks: &[BlockQ4_1], x: &[f32]) -> f32 {
    let (mut acc_d, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let (lo, hi) = nibbles(&b.qs);
        let [q0, q1] = i8x16_to_f32(lo);
        let [q2, q3] = i8x16_to_f32(hi);
        let x = load32(x);
        let sx = _mm256_add_ps(_mm256_add_ps(x[0], x[1]), _mm256_add_ps(x[2], x[3]));
        acc_d = _mm256_fmadd_ps(dot32([q0, q1, q2, q3], x), f16x8(b.d), acc_d);
        acc_m = _mm256_fmadd_ps(sx, f16x8(b.m), acc_m);
    }
    hsum(_mm256_add_ps(acc_d, acc_m))
}

/// Q8_0 row · f32: int8 codes widened to f32, FMA with `x`, one scale per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q8_0_f32(blocks: &[BlockQ8_0], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let w = load_i8x32(&b.qs);
        let [w0, w1] = i8x16_to_f32(_mm256_castsi256_si128(w));
        let [w2, w3] = i8x16_to_f32(_mm256_extracti128_si256::<1>(w));
        let p = dot32([w0, w1, w2, w3], load32(x));
        acc = _mm256_fmadd_ps(p, f16x8(b.d), acc);
    }
    hsum(acc)
}

/// A row of 32-weight blocks · f32 through [`block_codes`]: one scale per block, and for the
/// formats with an offset `Σ d·(Σ q·x) + m·(Σ x)` with the two sums in separate accumulators.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_codes_f32<B: Block>(blocks: &[B], x: &[f32]) -> f32 {
    let lut = lut16(B::FMT.lut());
    let (mut acc_d, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let x = load32(x);
        let p = dot32(i8x32_to_f32(block_codes(lut, b)), x);
        acc_d = _mm256_fmadd_ps(p, f16x8(b.d()), acc_d);
        if B::FMT.has_m() {
            let sx = _mm256_add_ps(_mm256_add_ps(x[0], x[1]), _mm256_add_ps(x[2], x[3]));
            acc_m = _mm256_fmadd_ps(sx, f16x8(b.m()), acc_m);
        }
    }
    hsum(_mm256_add_ps(acc_d, acc_m))
}

/// Q5_0 row · f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_0_f32(blocks: &[BlockQ5_0], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

/// Q5_1 row · f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_1_f32(blocks: &[BlockQ5_1], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

/// IQ4_NL row · f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl_f32(blocks: &[BlockIQ4_NL], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

// ---- dequantization ----------------------------------------------------------------------
// Bit-identical to the scalar reference: each value is a small integer times an f16 (exact in
// f32), plus for Q4_1 and Q5_1 one rounded addition, which FMA performs identically.

/// Q4_0 row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    let lut = lut16(&Q4_0_VALUES);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = f16x8(b.d);
        store32(o, lut4_f32(lut, &b.qs).map(|w| _mm256_mul_ps(w, d)));
    }
}

/// Q4_1 row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16x8(b.d), f16x8(b.m));
        let (lo, hi) = nibbles(&b.qs);
        let [q0, q1] = i8x16_to_f32(lo);
        let [q2, q3] = i8x16_to_f32(hi);
        store32(o, [q0, q1, q2, q3].map(|q| _mm256_fmadd_ps(q, d, m)));
    }
}

/// Q8_0 row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = f16x8(b.d);
        let w = load_i8x32(&b.qs);
        let [w0, w1] = i8x16_to_f32(_mm256_castsi256_si128(w));
        let [w2, w3] = i8x16_to_f32(_mm256_extracti128_si256::<1>(w));
        store32(o, [w0, w1, w2, w3].map(|w| _mm256_mul_ps(w, d)));
    }
}

/// A row of 32-weight blocks → f32 through [`block_codes`]: `q·d`, or `q·d + m` in one FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_codes<B: Block>(blocks: &[B], out: &mut [f32]) {
    let lut = lut16(B::FMT.lut());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16x8(b.d()), f16x8(b.m()));
        let q = i8x32_to_f32(block_codes(lut, b));
        if B::FMT.has_m() {
            store32(o, q.map(|q| _mm256_fmadd_ps(q, d, m)));
        } else {
            store32(o, q.map(|q| _mm256_mul_ps(q, d)));
        }
    }
}

/// Q5_0 row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

/// Q5_1 row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q5_1(blocks: &[BlockQ5_1], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

/// IQ4_NL row → f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_iq4_nl(blocks: &[BlockIQ4_NL], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

// ---- activation quantization -------------------------------------------------------------

/// f32 → [`BlockQ8Act`], byte-identical to `scalar::quantize_act_q8` for finite inputs: the
/// same `act_scale`, the same product `x·id`, and its rounding `trunc(|v| + 0.5)` with the
/// sign restored, done with `vcvttps2dq` and `vpsignd`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_act_q8(x: &[f32], out: &mut [BlockQ8Act]) {
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
    for (b, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let v = load32(x);
        let a = v.map(|v| _mm256_andnot_ps(sign, v));
        let amax = hmax(_mm256_max_ps(
            _mm256_max_ps(a[0], a[1]),
            _mm256_max_ps(a[2], a[3]),
        ));
        let (d, id) = act_scale(amax);
        let vid = _mm256_set1_ps(id);
        let q = v.map(|v| {
            let s = _mm256_mul_ps(v, vid);
            let t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_andnot_ps(sign, s), half));
            let t = _mm256_sign_epi32(t, _mm256_castps_si256(s));
            _mm256_max_epi32(_mm256_min_epi32(t, hi), lo)
        });
        let sum = hsum_i32(_mm256_add_epi32(
            _mm256_add_epi32(q[0], q[1]),
            _mm256_add_epi32(q[2], q[3]),
        ));
        // Packing works per 128-bit lane: dword k of the result holds q[k % 4][4·(k / 4)..];
        // the permutation restores element order.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `b.qs` is 32 bytes, exclusively borrowed; the store is unaligned.
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), p) };
        b.d = d.to_le_bytes();
        b.s = (d * sum as f32).to_le_bytes();
    }
}
