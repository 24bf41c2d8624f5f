//! AVX2 + FMA + F16C bodies for Q3_K and Q2_K against f32 activations, and their
//! dequantization.
//!
//! Every function enables `avx2,fma,f16c` and is reached only through the wrappers in the
//! parent module, installed after detection. Bodies take whole 256-weight blocks.
//!
//! Both formats keep their codes in 2-bit planes: 32 bytes per half-block, pair k of byte l
//! being element `32k + l` of the half, so one 32-byte load and a 16-bit shift by `2k` give the
//! 32 codes of elements `32k..32k + 32` in element order, one byte each (the first 16 are one
//! sub-block, the last 16 the next). Q3_K takes its high bits from `hmask` the same way: bit
//! `e / 32` of byte `e % 32`. The per-sub-block steps (`d·(sc − 32)`; `d·sc`, `dmin·m`) are the
//! scalar reference's own f32 products, computed once per block; the codes are widened to f32
//! and multiplied (dequant) or fused into the dot with `x`.
//!
//! The multi-row kernels take [`ROWS`] rows per step, prefetching the rows ahead as `gemm.rs`
//! does. Q3_K's loads each 32-float run of `x` once for all of them.
//!
//! Q2_K never widens its codes byte by byte: a code left in place in its byte is `q·4^k`, an
//! `and` away, and the power of two goes into the scale (exact). Its row kernel reads `x`
//! transposed once per call ([`transpose_q2_k`]) so that each lane of a vector belongs to one
//! sub-block for the whole half-block: a code costs an `and`, a conversion and an FMA, and the
//! sixteen sub-block steps apply once per block, as vectors (4.3–4.8 → 6.0 GB/s, 50–57 → 70–72 %
//! of Q4_0's, on the 576x1536 and 2048x2048 bench shapes; Zen 4). The one-row dot, which cannot
//! pay for a transposition, keeps element order and folds the step into the integer code with
//! one `vpmaddwd` ([`dot_block_q2_k`]; 2.4 → 4.0 GB/s, 30 → 49–51 %).

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx2::{f16x8, hsum, i8x16_to_f32, load32, store32};
use super::gemm::{prefetch_ahead, prefetch_head, store_rows, PRESCALE_MAX};
use super::kquants::{i8x32_to_f32, load_u8x32};
use crate::blocks::{BlockQ2_K, BlockQ3_K, F16Le};

/// Rows per step of the row kernels: four. Q3_K's is bound by widening codes to floats, which
/// sharing `x` does not relieve, but four rows measured slightly faster than two on the
/// 576x1536 bench shape (Zen 4, loaded machine: 4.88 against 4.76 GB/s).
const ROWS: usize = 4;

// ---- codes ---------------------------------------------------------------------------------

/// Pair `k` (bits `2k..2k + 2`) of each byte of `plane`, one code 0..=3 per byte. The 16-bit
/// shift moves bits across bytes; the mask drops them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pair(plane: __m256i, k: usize) -> __m256i {
    let shifted = match k {
        0 => plane,
        1 => _mm256_srli_epi16::<2>(plane),
        2 => _mm256_srli_epi16::<4>(plane),
        _ => _mm256_srli_epi16::<6>(plane),
    };
    _mm256_and_si256(shifted, _mm256_set1_epi8(3))
}

/// Elements `32k..32k + 32` of half `h` of a Q2_K block: codes 0..=3, one byte each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q2_k_codes(b: &BlockQ2_K, h: usize, k: usize) -> __m256i {
    pair(load_u8x32(&b.qs[32 * h..]), k)
}

/// Elements `128h + 32k..128h + 32k + 32` of a Q3_K block as signed bytes in −4..=3: the low
/// pair minus 4 where bit `4h + k` of `hmask` is clear.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q3_k_codes(b: &BlockQ3_K, h: usize, k: usize) -> __m256i {
    let low = pair(load_u8x32(&b.qs[32 * h..]), k);
    let bit = _mm256_set1_epi8((1u8 << (4 * h + k)) as i8);
    let clear = _mm256_cmpeq_epi8(
        _mm256_and_si256(load_u8x32(&b.hmask), bit),
        _mm256_setzero_si256(),
    );
    _mm256_sub_epi8(low, _mm256_and_si256(clear, _mm256_set1_epi8(4)))
}

/// Elements `128h + 32k..128h + 32k + 32` of a Q3_K block as unsigned bytes `u = q + 4` in
/// 0..8: the low pair, plus 4 where bit `4h + k` of `hmask` is set. One 16-bit shift moves
/// that bit of each byte to bit 2 (bits shifted in from the neighbouring byte are masked off),
/// so the high bit costs a shift, a mask and an or, and `Σ u·a` needs no sign trick (the int8
/// GEMMs subtract `4·Σ a` per sub-block from prepared activation sums).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q3_k_codes_u(b: &BlockQ3_K, h: usize, k: usize) -> __m256i {
    let low = pair(load_u8x32(&b.qs[32 * h..]), k);
    let hm = load_u8x32(&b.hmask);
    let at2 = match 4 * h + k {
        0 => _mm256_slli_epi16::<2>(hm),
        1 => _mm256_slli_epi16::<1>(hm),
        2 => hm,
        3 => _mm256_srli_epi16::<1>(hm),
        4 => _mm256_srli_epi16::<2>(hm),
        5 => _mm256_srli_epi16::<3>(hm),
        6 => _mm256_srli_epi16::<4>(hm),
        _ => _mm256_srli_epi16::<5>(hm),
    };
    _mm256_or_si256(low, _mm256_and_si256(at2, _mm256_set1_epi8(4)))
}

// ---- steps ---------------------------------------------------------------------------------

/// The sixteen Q3_K sub-block scales `sc − 32` as signed bytes: `scalar::q3_k_scale_codes`
/// in seven vector operations rather than its word arithmetic and a store read back. With
/// `s = scales[0..8]` and the word `c = scales[8..12]`: the low nibbles are `s & 15` (scales
/// 0..8) beside `s >> 4 & 15` (8..16); the top two bits of scale `j` are byte `j % 4` of
/// dword `j / 4` of `[c, c, c, c] >> [0, 2, 4, 6]`, masked to two bits and moved to bits 4..6.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q3_k_scales_i8(b: &BlockQ3_K) -> __m128i {
    let sc = &b.scales;
    // SAFETY: `scales` is 12 readable bytes; this reads its first 8, unaligned.
    let s = unsafe { _mm_loadl_epi64(sc.as_ptr().cast()) };
    let c = i32::from_le_bytes([sc[8], sc[9], sc[10], sc[11]]);
    let low = _mm_set1_epi8(0x0F);
    let nibbles = _mm_unpacklo_epi64(
        _mm_and_si128(s, low),
        _mm_and_si128(_mm_srli_epi16::<4>(s), low),
    );
    let top = _mm_srlv_epi32(_mm_set1_epi32(c), _mm_setr_epi32(0, 2, 4, 6));
    let top = _mm_slli_epi16::<4>(_mm_and_si128(top, _mm_set1_epi8(3)));
    _mm_sub_epi8(_mm_or_si128(nibbles, top), _mm_set1_epi8(32))
}

/// Per sub-block `d·(sc − 32)`: the scalar reference's f32 products, eight at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q3_k_steps(b: &BlockQ3_K) -> [f32; 16] {
    let d = f16x8(b.d);
    let [lo, hi] = i8x16_to_f32(q3_k_scales_i8(b));
    let mut out = [0.0f32; 16];
    // SAFETY: `out` holds 16 floats, exclusively borrowed; the stores are unaligned.
    unsafe {
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(d, lo));
        _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_mul_ps(d, hi));
    }
    out
}

/// `scale` times each of 16 four-bit codes (`codes`, one per byte), the reference's f32
/// products, as two vectors of eight.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scaled_nibbles(codes: __m128i, scale: F16Le) -> [__m256; 2] {
    let scale = f16x8(scale);
    // Codes below 16 read the same as signed bytes.
    i8x16_to_f32(codes).map(|v| _mm256_mul_ps(scale, v))
}

/// Q2_K's per-sub-block offsets `dmin·m` (the reference's products), sub-blocks 0..8 and
/// 8..16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_min_steps(b: &BlockQ2_K) -> [__m256; 2] {
    // SAFETY: `scales` is 16 bytes; the load is unaligned.
    let s = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
    let m = _mm_and_si128(_mm_srli_epi16::<4>(s), _mm_set1_epi8(0x0F));
    scaled_nibbles(m, b.dmin)
}

/// Per sub-block `(d·sc, dmin·m)`: the scalar reference's f32 products, eight at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q2_k_steps(b: &BlockQ2_K) -> ([f32; 16], [f32; 16]) {
    // SAFETY: `scales` is 16 bytes; the load is unaligned.
    let s = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
    let sc = _mm_and_si128(s, _mm_set1_epi8(0x0F));
    let (mut steps, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    for (out, v) in [
        (&mut steps, scaled_nibbles(sc, b.d)),
        (&mut mins, q2_k_min_steps(b)),
    ] {
        // SAFETY: `out` holds 16 floats, exclusively borrowed; the stores are unaligned.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), v[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), v[1]);
        }
    }
    (steps, mins)
}

/// A block's 16 sub-block bytes reordered so that byte `4i + k` is sub-block `2k + i` (and
/// byte `8 + 4i + k` sub-block `8 + 2k + i`): the lane order of the row kernels' transposed
/// `x` and of the int8 GEMMs' sub-block trees.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn sub_block_lanes(bytes: __m128i) -> __m128i {
    let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    _mm_shuffle_epi8(bytes, order)
}

// ---- dequantization ------------------------------------------------------------------------

/// Q3_K row → f32, bit-identical to the reference: `step·q`, one (exact) product.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q3_k(blocks: &[BlockQ3_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let steps = q3_k_steps(b);
        for (i, o) in o.chunks_exact_mut(32).enumerate() {
            let (h, k) = (i / 4, i % 4);
            let q = i8x32_to_f32(q3_k_codes(b, h, k));
            let (s0, s1) = (
                _mm256_set1_ps(steps[2 * i]),
                _mm256_set1_ps(steps[2 * i + 1]),
            );
            store32(
                o,
                [
                    _mm256_mul_ps(s0, q[0]),
                    _mm256_mul_ps(s0, q[1]),
                    _mm256_mul_ps(s1, q[2]),
                    _mm256_mul_ps(s1, q[3]),
                ],
            );
        }
    }
}

/// Q2_K row → f32, bit-identical to the reference: `step·q`, then `− min`, unfused.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dequant_q2_k(blocks: &[BlockQ2_K], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(256)) {
        let (steps, mins) = q2_k_steps(b);
        for (i, o) in o.chunks_exact_mut(32).enumerate() {
            let q = i8x32_to_f32(q2_k_codes(b, i / 4, i % 4));
            let w: [__m256; 4] = core::array::from_fn(|v| {
                let j = 2 * i + v / 2;
                let step = _mm256_set1_ps(steps[j]);
                _mm256_sub_ps(_mm256_mul_ps(step, q[v]), _mm256_set1_ps(mins[j]))
            });
            store32(o, w);
        }
    }
}

// ---- rows · f32 ----------------------------------------------------------------------------

/// `R` Q3_K rows (`kb` blocks each, back to back in `w`) · `x`: per 16-element sub-block and
/// row `acc += (d·(sc − 32))·(Σ q·x)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q3_k<const R: usize>(w: &[BlockQ3_K], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [[f32; 16]; R] = core::array::from_fn(|r| q3_k_steps(&w[r * kb + b]));
        for i in 0..8 {
            let xv = load32(&x[256 * b + 32 * i..]);
            for r in 0..R {
                let q = i8x32_to_f32(q3_k_codes(&w[r * kb + b], i / 4, i % 4));
                let p0 = _mm256_fmadd_ps(q[1], xv[1], _mm256_mul_ps(q[0], xv[0]));
                let p1 = _mm256_fmadd_ps(q[3], xv[3], _mm256_mul_ps(q[2], xv[2]));
                acc[r] = _mm256_fmadd_ps(p0, _mm256_set1_ps(steps[r][2 * i]), acc[r]);
                acc[r] = _mm256_fmadd_ps(p1, _mm256_set1_ps(steps[r][2 * i + 1]), acc[r]);
            }
        }
    }
    acc
}

/// `vpshufb` indices putting bytes `0..8` (`SPREAD[0]`) or `8..16` (`SPREAD[1]`) of a 16-byte
/// chunk held in both 128-bit lanes into the low byte of dwords `0..8`, the other bytes zero.
const SPREAD: [[i8; 32]; 2] = {
    let mut t = [[-1i8; 32]; 2]; // pshufb: a set top bit writes zero
    let mut j = 0;
    while j < 8 {
        t[0][4 * j] = j as i8;
        t[1][4 * j] = 8 + j as i8;
        j += 1;
    }
    t
};

/// Bytes `16c..16c + 16` of `qs` (`c < 4`), each in the low byte of a dword, in two vectors
/// of eight: one broadcast load and two `vpshufb`, shared by the four codes each byte holds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn spread_chunk(qs: &[u8; 64], c: usize) -> [__m256i; 2] {
    assert!(c < 4);
    // SAFETY: 16c + 16 ≤ 64 bytes of `qs` are readable; the load is unaligned.
    let q = unsafe { _mm_loadu_si128(qs.as_ptr().add(16 * c).cast()) };
    let q = _mm256_broadcastsi128_si256(q);
    // SAFETY: each table holds 32 bytes; the loads are unaligned.
    let idx = SPREAD.map(|t| unsafe { _mm256_loadu_si256(t.as_ptr().cast()) });
    [
        _mm256_shuffle_epi8(q, idx[0]),
        _mm256_shuffle_epi8(q, idx[1]),
    ]
}

/// Q2_K's per-sub-block integer factors `sc·4^(3 − k)` (`k = s % 8 / 2`, the code's pair in
/// its byte) as dwords: a code left in place is `q·4^k`, so each product `(q·4^k)·(sc·4^(3−k))`
/// is the exact integer `64·q·sc` (at most 2880) and the block's scale is `d/64`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_factors(b: &BlockQ2_K) -> [i32; 16] {
    // SAFETY: `scales` is 16 bytes; the load is unaligned.
    let s = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
    let sc = _mm_and_si128(s, _mm_set1_epi8(0x0F));
    let shifts = _mm256_setr_epi32(6, 6, 4, 4, 2, 2, 0, 0);
    let mut out = [0i32; 16];
    for (h, v) in [sc, _mm_unpackhi_epi64(sc, sc)].into_iter().enumerate() {
        let w = _mm256_sllv_epi32(_mm256_cvtepu8_epi32(v), shifts);
        // SAFETY: `out` holds 16 dwords, exclusively borrowed; the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * h).cast(), w) };
    }
    out
}

/// One Q2_K block · the 256 floats at `x` as 8 lane-wise partial sums of `(d/64)·Σ 64·q·sc·x
/// − Σ (dmin·m)·x`.
///
/// Chunk `c = 2h + i` of `qs` holds in byte `l` the codes of elements `128h + 32k + 16i + l`
/// (sub-block `8h + 2k + i`, `k = 0..4`): one [`spread_chunk`], then per code pair `k` and
/// eight elements an `and` (the code stays `q·4^k`), a `vpmaddwd` by the sub-block's factor
/// ([`q2_k_factors`]; both operands' high words are zero), a conversion and an FMA with `x`.
/// The min term adds the sub-block's two vectors of `x` and multiplies them by `dmin·m`.
///
/// # Safety
/// `x` points at 256 readable floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_block_q2_k(b: &BlockQ2_K, x: *const f32) -> __m256 {
    let factors = q2_k_factors(b);
    let (_, mins) = q2_k_steps(b);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_min = _mm256_setzero_ps();
    for c in 0..4 {
        let (h, i) = (c / 2, c % 2);
        let spread = spread_chunk(&b.qs, c);
        for k in 0..4 {
            let s = 8 * h + 2 * k + i;
            let mask = _mm256_set1_epi32(3 << (2 * k));
            let f = _mm256_set1_epi32(factors[s]);
            // SAFETY: 128h + 32k + 16i + 16 ≤ 256 (the caller's contract); unaligned loads.
            let xv = unsafe {
                let p = x.add(128 * h + 32 * k + 16 * i);
                [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
            };
            for v in 0..2 {
                let z = _mm256_madd_epi16(_mm256_and_si256(spread[v], mask), f);
                let a = (2 * k + v) % 4;
                acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(z), xv[v], acc[a]);
            }
            let sx = _mm256_add_ps(xv[0], xv[1]);
            acc_min = _mm256_fmadd_ps(sx, _mm256_set1_ps(mins[s]), acc_min);
        }
    }
    let p = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let d64 = _mm256_mul_ps(f16x8(b.d), _mm256_set1_ps(1.0 / 64.0));
    _mm256_fmsub_ps(p, d64, acc_min)
}

/// `vpshufb` indices for [`rows_q2_k`] (one row per three-byte group; see [`byte_triples`]).
const GROUPS: [[i8; 32]; 6] = byte_triples::<32>();

/// `vpshufb` indices over `N` bytes (whole 128-bit lanes): group `g` puts bytes `3g..3g + 3` of
/// each lane into bytes 0..3 of each of its dwords, byte 3 zero; group 5 byte 15 alone. The
/// Q2_K and Q3_K row kernels of both widths gather their codes' bytes with them.
pub(super) const fn byte_triples<const N: usize>() -> [[i8; N]; 6] {
    let mut t = [[-1i8; N]; 6]; // pshufb: a set top bit writes zero
    let mut g = 0;
    while g < 6 {
        let mut d = 0;
        while d < N / 4 {
            let mut b = 0;
            while b < 3 && 3 * g + b < 16 {
                t[g][4 * d + b] = (3 * g + b) as i8;
                b += 1;
            }
            d += 1;
        }
        g += 1;
    }
    t
}

/// Floats the row kernels' transpositions of `x` (this module's and `kquants_low512.rs`'s
/// `transpose_q2_k`) write per block: its 256 activations, then the sums of its 16 sub-blocks.
pub(super) const T_BLOCK: usize = 272;

/// Most floats a transposition writes (the wrappers send wider rows to the one-row dots).
pub(super) const T_MAX: usize = PRESCALE_MAX / 256 * T_BLOCK;

/// `x` (a multiple of 256 long, at most [`PRESCALE_MAX`]) in the order [`rows_q2_k`] reads it,
/// written into `buf`, of which it returns the initialized part: per block, float
/// `8(16h + t) + 4i + k` is element `128h + 32k + 16i + t` (lane `4i + k` of the vector for
/// position `t` of half `h`), followed by the sums of the block's 16 sub-blocks in element
/// order (for the min term). Once per call, for every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose_q2_k<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; T_MAX]) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(256));
    for (xb, out) in x.chunks_exact(256).zip(buf.chunks_exact_mut(T_BLOCK)) {
        transpose_sub_blocks(xb, out, |h, i, t| 8 * (16 * h + t) + 4 * i);
        for (s, sub) in xb.chunks_exact(16).enumerate() {
            // SAFETY: `sub` is 16 floats; the loads are unaligned.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(sub.as_ptr()),
                    _mm256_loadu_ps(sub.as_ptr().add(8)),
                )
            };
            out[256 + s] = MaybeUninit::new(hsum(_mm256_add_ps(a, b)));
        }
    }
    let n = x.len() / 256 * T_BLOCK;
    // SAFETY: the loop wrote the first n floats, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(buf.as_ptr().cast(), n) }
}

/// For each half `h`, parity `i` and position `t` of a 256-float block `xb`, the four floats
/// `xb[128h + 32k + 16i + t]` (`k = 0..4`) written in order at `out[at(h, i, t)..]`: the
/// transposition the Q2_K and Q3_K row kernels read `x` in, as 4 × 4 transposes (four loads,
/// eight shuffles and four stores per 16 floats).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn transpose_sub_blocks(
    xb: &[f32],
    out: &mut [MaybeUninit<f32>],
    at: impl Fn(usize, usize, usize) -> usize,
) {
    assert!(xb.len() >= 256);
    for h in 0..2 {
        for i in 0..2 {
            for m in 0..4 {
                // SAFETY: 128h + 32k + 16i + 4m + 4 ≤ 256 ≤ xb.len(); unaligned loads.
                let r: [__m128; 4] = core::array::from_fn(|k| unsafe {
                    _mm_loadu_ps(xb.as_ptr().add(128 * h + 32 * k + 16 * i + 4 * m))
                });
                let (a, b) = (_mm_unpacklo_ps(r[0], r[1]), _mm_unpacklo_ps(r[2], r[3]));
                let (c, d) = (_mm_unpackhi_ps(r[0], r[1]), _mm_unpackhi_ps(r[2], r[3]));
                let cols = [
                    _mm_movelh_ps(a, b),
                    _mm_movehl_ps(b, a),
                    _mm_movelh_ps(c, d),
                    _mm_movehl_ps(d, c),
                ];
                for (j, v) in cols.into_iter().enumerate() {
                    let o = &mut out[at(h, i, 4 * m + j)..][..4];
                    // SAFETY: `o` is 4 floats, exclusively borrowed; the store is unaligned.
                    unsafe { _mm_storeu_ps(o.as_mut_ptr().cast(), v) };
                }
            }
        }
    }
}

/// Per half `h` of a Q2_K block, the steps `d·sc·4^−k` in lane order `4i + k` (sub-block
/// `8h + 2k + i`): the reference's products `d·sc`, scaled by powers of two (exact), for codes
/// taken in place as `q·4^k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_lane_steps(b: &BlockQ2_K) -> [__m256; 2] {
    // SAFETY: `scales` is 16 bytes; the load is unaligned.
    let s = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
    let sc = _mm_and_si128(sub_block_lanes(s), _mm_set1_epi8(0x0F));
    let d = f16x8(b.d);
    let pow = _mm256_setr_ps(1.0, 0.25, 0.0625, 0.015625, 1.0, 0.25, 0.0625, 0.015625);
    [sc, _mm_unpackhi_epi64(sc, sc)].map(|v| {
        let step = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)));
        _mm256_mul_ps(step, pow)
    })
}

/// `R` Q2_K rows (`kb` blocks each, back to back in `w`) · `xt` ([`transpose_q2_k`]).
///
/// Lane `4i + k` of every vector belongs to sub-block `8h + 2k + i`, so a half-block's 128
/// products accumulate lane by lane and its eight steps apply at once, in one FMA per
/// accumulator. The 32 code bytes of half `h` load as they lie (lane `i` holds bytes
/// `16i..16i + 16`, positions `t` of sub-blocks `8h + 2k + i`); per group of three positions
/// one `vpshufb` puts a lane's three bytes into each of its dwords, then per position an
/// `and` keeps the dword's code as `q·4^k·2^(8b)` (`b` the byte; exact, at most 3·2^22), a
/// conversion and an FMA with `x`, into one accumulator per `b` (scaled by `2^−8b` with the
/// step). The min term: two 8-lane products with the precomputed sub-block sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q2_k<const R: usize>(w: &[BlockQ2_K], kb: usize, xt: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && xt.len() >= T_BLOCK * kb);
    // SAFETY: each table holds 32 bytes; the loads are unaligned.
    let idx = GROUPS.map(|t| unsafe { _mm256_loadu_si256(t.as_ptr().cast()) });
    let fields = _mm256_setr_epi32(3, 12, 48, 192, 3, 12, 48, 192);
    let masks = [
        fields,
        _mm256_slli_epi32::<8>(fields),
        _mm256_slli_epi32::<16>(fields),
    ];
    let byte = [1.0, 1.0 / 256.0, 1.0 / 65536.0].map(|v| _mm256_set1_ps(v));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let xb = &xt[T_BLOCK * b..T_BLOCK * (b + 1)];
        // SAFETY: floats 256..272 of the block's 272; the loads are unaligned.
        let sums = unsafe {
            [
                _mm256_loadu_ps(xb.as_ptr().add(256)),
                _mm256_loadu_ps(xb.as_ptr().add(264)),
            ]
        };
        for r in 0..R {
            let blk = &w[r * kb + b];
            for (m, sum) in q2_k_min_steps(blk).into_iter().zip(sums) {
                acc[r] = _mm256_fnmadd_ps(m, sum, acc[r]);
            }
            let steps = q2_k_lane_steps(blk);
            for (h, &step) in steps.iter().enumerate() {
                let q = load_u8x32(&blk.qs[32 * h..]);
                let mut part = [_mm256_setzero_ps(); 3];
                for (g, &ix) in idx.iter().enumerate() {
                    let spread = _mm256_shuffle_epi8(q, ix);
                    for (j, &mask) in masks.iter().enumerate().take(16 - 3 * g) {
                        let t = 3 * g + j;
                        let code = _mm256_cvtepi32_ps(_mm256_and_si256(spread, mask));
                        // SAFETY: 8(16h + t) + 8 ≤ 256 floats of the block; unaligned load.
                        let xv = unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * (16 * h + t))) };
                        part[j] = _mm256_fmadd_ps(code, xv, part[j]);
                    }
                }
                for (p, s) in part.into_iter().zip(byte) {
                    acc[r] = _mm256_fmadd_ps(p, _mm256_mul_ps(step, s), acc[r]);
                }
            }
        }
    }
    acc
}

/// Q3_K row · f32: the one-row case of the row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q3_k_f32(blocks: &[BlockQ3_K], x: &[f32]) -> f32 {
    hsum(rows_q3_k::<1>(blocks, blocks.len(), x)[0])
}

/// Q2_K row · f32, block by block ([`dot_block_q2_k`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q2_k_f32(blocks: &[BlockQ2_K], x: &[f32]) -> f32 {
    assert!(x.len() >= 256 * blocks.len());
    let mut acc = _mm256_setzero_ps();
    for (b, blk) in blocks.iter().enumerate() {
        // SAFETY: 256·b + 256 ≤ x.len() (asserted).
        acc = _mm256_add_ps(acc, unsafe { dot_block_q2_k(blk, x.as_ptr().add(256 * b)) });
    }
    hsum(acc)
}

dot_rows_driver!("avx2,fma,f16c", pub(crate) dot_rows_q3_k_f32, BlockQ3_K, rows_q3_k, store_rows);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(crate) dot_rows_q2_k_f32,
    BlockQ2_K,
    rows_q2_k,
    store_rows,
    prescale = transpose_q2_k[T_MAX]
);

#[cfg(test)]
mod tests {
    //! The vector scale decoding against the scalar reference's; the kernels that use it are
    //! checked against the reference in `tests/kquant_kernels.rs`.

    use super::*;
    use crate::blocks::F16Le;

    #[test]
    fn q3_k_scales_every_byte_in_every_position() {
        let features = ["avx2", "fma", "f16c"].map(|f| match f {
            "avx2" => std::is_x86_feature_detected!("avx2"),
            "fma" => std::is_x86_feature_detected!("fma"),
            _ => std::is_x86_feature_detected!("f16c"),
        });
        if features.contains(&false) {
            return;
        }
        for pos in 0..12 {
            for v in 0..=255u8 {
                let mut scales: [u8; 12] =
                    core::array::from_fn(|i| (i as u8).wrapping_mul(151) ^ 0xA5);
                scales[pos] = v;
                let b = BlockQ3_K {
                    hmask: [0; 32],
                    qs: [0; 64],
                    scales,
                    d: F16Le::from_f32(1.0),
                };
                let mut got = [0i8; 16];
                // SAFETY: AVX2, FMA and F16C (the body's features) were detected above;
                // `got` holds 16 bytes and the store is unaligned.
                unsafe { _mm_storeu_si128(got.as_mut_ptr().cast(), q3_k_scales_i8(&b)) };
                assert_eq!(got, crate::scalar::q3_k_scales(&scales), "byte {pos} = {v}");
            }
        }
    }
}
