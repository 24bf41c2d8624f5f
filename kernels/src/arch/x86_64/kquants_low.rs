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
//! The multi-row kernels take [`ROWS`] rows per step, each 32-float run of `x` loaded once for
//! all of them (and, for Q2_K, its two 16-float sums, for the min term), prefetching the rows
//! ahead as `gemm.rs` does.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx2::{f16x8, hsum, i8x16_to_f32, load32, store32};
use super::gemm::{prefetch_ahead, prefetch_head, store_rows, PRESCALE_MAX};
use super::kquants::{i8x32_to_f32, load_u8x32};
use crate::blocks::{BlockQ2_K, BlockQ3_K};

/// Rows per step of the row kernels: four. The kernels are bound by widening codes to floats,
/// which sharing `x` does not relieve, but four rows measured slightly faster than two on the
/// 576x1536 bench shape (Zen 4, loaded machine: Q3_K 4.88 against 4.76 GB/s, Q2_K 4.01
/// against 3.73).
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

/// Per sub-block `(d·sc, dmin·m)`: the scalar reference's f32 products, eight at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q2_k_steps(b: &BlockQ2_K) -> ([f32; 16], [f32; 16]) {
    // SAFETY: `scales` is 16 bytes; the load is unaligned.
    let s = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
    let low = _mm_set1_epi8(0x0F);
    let (sc, m) = (
        _mm_and_si128(s, low),
        _mm_and_si128(_mm_srli_epi16::<4>(s), low),
    );
    let (mut steps, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    for (out, codes, scale) in [(&mut steps, sc, b.d), (&mut mins, m, b.dmin)] {
        let scale = f16x8(scale);
        // Codes below 16 read the same as signed bytes.
        let [lo, hi] = i8x16_to_f32(codes);
        // SAFETY: `out` holds 16 floats, exclusively borrowed; the stores are unaligned.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(scale, lo));
            _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_mul_ps(scale, hi));
        }
    }
    (steps, mins)
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

/// `R` Q2_K rows · `x`: per 16-element sub-block and row
/// `acc += (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)`, the two sums of `x` shared by the rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q2_k<const R: usize>(w: &[BlockQ2_K], kb: usize, x: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && x.len() >= 256 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 16], [f32; 16]); R] =
            core::array::from_fn(|r| q2_k_steps(&w[r * kb + b]));
        for i in 0..8 {
            let xv = load32(&x[256 * b + 32 * i..]);
            let sx = [_mm256_add_ps(xv[0], xv[1]), _mm256_add_ps(xv[2], xv[3])];
            for r in 0..R {
                let q = i8x32_to_f32(q2_k_codes(&w[r * kb + b], i / 4, i % 4));
                let p = [
                    _mm256_fmadd_ps(q[1], xv[1], _mm256_mul_ps(q[0], xv[0])),
                    _mm256_fmadd_ps(q[3], xv[3], _mm256_mul_ps(q[2], xv[2])),
                ];
                for s in 0..2 {
                    let (step, min) = (steps[r].0[2 * i + s], steps[r].1[2 * i + s]);
                    acc[r] = _mm256_fmadd_ps(p[s], _mm256_set1_ps(step), acc[r]);
                    acc[r] = _mm256_fnmadd_ps(sx[s], _mm256_set1_ps(min), acc[r]);
                }
            }
        }
    }
    acc
}

/// Most floats [`with_sub_sums`] writes: a row of [`PRESCALE_MAX`] activations and the sums of
/// its 16-element sub-blocks.
const WITH_SUMS_MAX: usize = PRESCALE_MAX + PRESCALE_MAX / 16;

/// `x` (a multiple of 256 long, at most [`PRESCALE_MAX`]) followed by the sum of each of its
/// 16-element sub-blocks, written into `buf`, of which it returns the initialized part: the
/// sums every Q2_K row's min term multiplies, computed once per call rather than per row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn with_sub_sums<'a>(x: &[f32], buf: &'a mut [MaybeUninit<f32>; WITH_SUMS_MAX]) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(256));
    let n = x.len();
    for (i, &v) in x.iter().enumerate() {
        buf[i] = MaybeUninit::new(v);
    }
    for (s, sub) in x.chunks_exact(16).enumerate() {
        // SAFETY: `sub` is 16 floats; the loads are unaligned.
        let (a, b) = unsafe {
            (
                _mm256_loadu_ps(sub.as_ptr()),
                _mm256_loadu_ps(sub.as_ptr().add(8)),
            )
        };
        buf[n + s] = MaybeUninit::new(hsum(_mm256_add_ps(a, b)));
    }
    // SAFETY: the loops wrote the first n + n / 16 entries, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(buf.as_ptr().cast(), n + n / 16) }
}

/// `R` Q2_K rows · `xs` ([`with_sub_sums`]: `x`, then its sub-block sums): per 16-element
/// sub-block and row `acc += (d·sc)·(Σ q·x)`, and per super-block and row the min term
/// `acc −= (dmin·m)·(Σ x)` as two 8-lane products over the precomputed sums (instead of one
/// per sub-block). The FMA ports bound this kernel, so the fourteen products saved per
/// super-block and row measured 3.8 → 4.8 GB/s (44 → 56–57 % of Q4_0's) on the 576x1536 and
/// 2048x2048 bench shapes (Zen 4, loaded machine).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_q2_k_sums<const R: usize>(w: &[BlockQ2_K], kb: usize, xs: &[f32]) -> [__m256; R] {
    assert!(w.len() >= R * kb && xs.len() >= 272 * kb);
    let (x, sx) = xs.split_at(256 * kb);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..kb {
        let steps: [([f32; 16], [f32; 16]); R] =
            core::array::from_fn(|r| q2_k_steps(&w[r * kb + b]));
        // SAFETY: 16·b + 16 ≤ 16·kb ≤ sx.len() (asserted); the loads are unaligned.
        let sxv = unsafe {
            [
                _mm256_loadu_ps(sx.as_ptr().add(16 * b)),
                _mm256_loadu_ps(sx.as_ptr().add(16 * b + 8)),
            ]
        };
        for r in 0..R {
            for (h, &sv) in sxv.iter().enumerate() {
                // SAFETY: `steps[r].1` holds 16 floats; the load is unaligned.
                let min = unsafe { _mm256_loadu_ps(steps[r].1.as_ptr().add(8 * h)) };
                acc[r] = _mm256_fnmadd_ps(min, sv, acc[r]);
            }
        }
        for i in 0..8 {
            let xv = load32(&x[256 * b + 32 * i..]);
            for r in 0..R {
                let q = i8x32_to_f32(q2_k_codes(&w[r * kb + b], i / 4, i % 4));
                let p = [
                    _mm256_fmadd_ps(q[1], xv[1], _mm256_mul_ps(q[0], xv[0])),
                    _mm256_fmadd_ps(q[3], xv[3], _mm256_mul_ps(q[2], xv[2])),
                ];
                for (s, &ps) in p.iter().enumerate() {
                    let step = _mm256_set1_ps(steps[r].0[2 * i + s]);
                    acc[r] = _mm256_fmadd_ps(ps, step, acc[r]);
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

/// Q2_K row · f32: the one-row case of the row kernel.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q2_k_f32(blocks: &[BlockQ2_K], x: &[f32]) -> f32 {
    hsum(rows_q2_k::<1>(blocks, blocks.len(), x)[0])
}

dot_rows_driver!("avx2,fma,f16c", pub(crate) dot_rows_q3_k_f32, BlockQ3_K, rows_q3_k, store_rows);
dot_rows_driver!(
    "avx2,fma,f16c",
    pub(crate) dot_rows_q2_k_f32,
    BlockQ2_K,
    rows_q2_k_sums,
    store_rows,
    prescale = with_sub_sums[WITH_SUMS_MAX]
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
