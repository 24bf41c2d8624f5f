//! Int8 dot products of Q4_K, Q5_K, Q6_K and IQ4_XS rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro: AVX2 (`vpmaddubsw` + `vpmaddwd`), AVX-VNNI and AVX512-VNNI/VL (`vpdpbusd`, 256-bit).
//!
//! Bit-identical to `scalar::dot_{q4_k,q5_k,q6_k,iq4_xs}_q8`: each activation block's
//! products reach eight exact i32 lanes (lane i holds elements 4i..4i + 4, so lanes 0..4 are
//! the first 16 elements); a `vphaddd` tree turns the eight blocks of a super-block into one
//! vector of per-block sums, the integer sub-block scales multiply them exactly (`vpmulld`),
//! the blocks' scales and sums arrive by `vgatherdps` (5–7 % faster than eight inserts), and
//! the float part is the reference's: one product per block, the eight-lane sum in
//! `sum8_tree`'s order (`hsum`), the super-block scale, a running scalar sum.
//!
//! No saturation: Q4_K codes are 0..=15 (a `vpmaddubsw` pair ≤ 2·15·127), Q5_K's 0..=31; Q6_K
//! codes are −32..=31 and IQ4_XS's codebook values −127..=113, multiplied through the sign
//! trick (`|w|` times `a` carrying `w`'s sign, a pair ≤ 2·127·127). IQ4_XS's signed sub-block
//! scales multiply the sums as Q6_K's do (`vpmulld`, exact: below 2²⁴).

macro_rules! kquant_int8_dots {
    ($features:literal, $dot_u8_i8:ident) => {
        use core::arch::x86_64::*;

        use super::super::avx2::{f16x8, hsum, load_i8x32, lut16};
        use super::super::kquants::{
            iq4_xs_scales8, iq4_xs_values, q4_k_nibbles, q5_k_codes, q6_k_half,
        };
        use crate::blocks::{BlockIQ4_XS, BlockQ4_K, BlockQ5_K, BlockQ6_K, F16Le};
        use crate::scalar::{scales_mins_k4, BlockQ8Act, IQ4_NL_VALUES};

        /// `[v0.lo, v1.lo, v2.lo, v3.lo | v0.hi, v1.hi, v2.hi, v3.hi]`: the sums of the low
        /// four lanes (first 128 bits) of each of `v`, then of the high four.
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn hsum_halves4(v: [__m256i; 4]) -> __m256i {
            _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]))
        }

        /// `[lo(a) + hi(a) | lo(b) + hi(b)]` for 128-bit halves.
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn add_halves(a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(a, b),
                _mm256_permute2x128_si256::<0x31>(a, b),
            )
        }

        /// The f32 field at byte `offset` (0: `d`, 4: `s`) of each of the eight activation
        /// blocks `a[..8]`, by one gather (the blocks are 40 bytes apart).
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn per_block<const OFFSET: usize>(a: &[BlockQ8Act]) -> __m256 {
            assert!(a.len() >= 8 && OFFSET <= 4);
            let s = core::mem::size_of::<BlockQ8Act>() as i32;
            let idx = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
            // SAFETY: lane i reads the 4 bytes at offset 40·i + OFFSET ≤ 40·7 + 4 of `a`,
            // inside its eight blocks (asserted); unaligned f32 reads are allowed.
            unsafe { _mm256_i32gather_ps::<1>(a.as_ptr().cast::<u8>().add(OFFSET).cast(), idx) }
        }

        /// Eight bytes as eight u32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        fn u8x8_to_i32(b: [u8; 8]) -> __m256i {
            _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(i64::from_le_bytes(b)))
        }

        /// Sub-block j's sum in lane j, from eight vectors of eight partial sums (one per
        /// sub-block): the per-block halves, then lo + hi.
        #[inline]
        #[target_feature(enable = $features)]
        fn sub_block_sums(v: [__m256i; 8]) -> __m256i {
            let lo = hsum_halves4([v[0], v[1], v[2], v[3]]);
            let hi = hsum_halves4([v[4], v[5], v[6], v[7]]);
            add_halves(lo, hi)
        }

        /// Q4_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q4_k_q8(blocks: &[BlockQ4_K], acts: &[BlockQ8Act]) -> f32 {
            dot_k4_q8(
                blocks,
                acts,
                |b| (b.d, b.dmin, b.scales),
                |b, c| q4_k_nibbles(&b.qs[32 * c..]),
            )
        }

        /// Q5_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q5_k_q8(blocks: &[BlockQ5_K], acts: &[BlockQ8Act]) -> f32 {
            dot_k4_q8(
                blocks,
                acts,
                |b| (b.d, b.dmin, b.scales),
                |b, c| {
                    q5_k_codes(
                        &b.qs[32 * c..],
                        // SAFETY: `qh` is 32 bytes; the load is unaligned.
                        unsafe { _mm256_loadu_si256(b.qh.as_ptr().cast()) },
                        c,
                    )
                },
            )
        }

        /// Q4_K / Q5_K row · int8 activations, with `fields(b)` the block's `d`, `dmin` and
        /// packed scales and `codes(b, c)` chunk `c`'s unsigned codes (sub-blocks 2c, 2c + 1).
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_k4_q8<B>(
            blocks: &[B],
            acts: &[BlockQ8Act],
            fields: impl Fn(&B) -> (F16Le, F16Le, [u8; 12]),
            codes: impl Fn(&B, usize) -> (__m256i, __m256i),
        ) -> f32 {
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let mut v = [_mm256_setzero_si256(); 8];
                for c in 0..4 {
                    let (lo, hi) = codes(b, c);
                    v[2 * c] = $dot_u8_i8(lo, load_i8x32(&a[2 * c].qs));
                    v[2 * c + 1] = $dot_u8_i8(hi, load_i8x32(&a[2 * c + 1].qs));
                }
                let isum = sub_block_sums(v);
                let (d, dmin, scales) = fields(b);
                let (sc, m) = scales_mins_k4(&scales);
                let scaled = _mm256_cvtepi32_ps(_mm256_mullo_epi32(isum, u8x8_to_i32(sc)));
                let p = _mm256_mul_ps(per_block::<0>(a), scaled);
                let mins = _mm256_cvtepi32_ps(u8x8_to_i32(m));
                let q = _mm256_mul_ps(per_block::<4>(a), mins);
                let (d, dmin) = (_mm256_cvtss_f32(f16x8(d)), _mm256_cvtss_f32(f16x8(dmin)));
                sum += d * hsum(p) - dmin * hsum(q);
            }
            sum
        }

        /// IQ4_XS row · int8 activations (`acts` holds eight blocks per super-block): the
        /// codebook values through `vpshufb`, the signed sub-block scales by `vpmulld`.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_iq4_xs_q8(blocks: &[BlockIQ4_XS], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(&IQ4_NL_VALUES);
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let v: [__m256i; 8] = core::array::from_fn(|j| {
                    let (w, x) = (iq4_xs_values(lut, b, j), load_i8x32(&a[j].qs));
                    $dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
                });
                let sc = iq4_xs_scales8(b);
                let scaled = _mm256_cvtepi32_ps(_mm256_mullo_epi32(sub_block_sums(v), sc));
                let d = _mm256_cvtss_f32(f16x8(b.d));
                sum += d * hsum(_mm256_mul_ps(per_block::<0>(a), scaled));
            }
            sum
        }

        /// Q6_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q6_k_q8(blocks: &[BlockQ6_K], acts: &[BlockQ8Act]) -> f32 {
            // Scales in the order of `hsum_halves4`'s lanes: [0, 2, 4, 6, 1, 3, 5, 7] for
            // blocks 0..4, the same plus 8 for blocks 4..8.
            let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let mut v = [_mm256_setzero_si256(); 8];
                for h in 0..2 {
                    let q = q6_k_half(&b.ql[64 * h..], &b.qh[32 * h..]);
                    for (k, w) in q.into_iter().enumerate() {
                        let x = load_i8x32(&a[4 * h + k].qs);
                        v[4 * h + k] = $dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
                    }
                }
                // Lanes: 16-element sub-block sums [s0, s2, s4, s6 | s1, s3, s5, s7] (and
                // s8..s16 likewise), times their scales, then each block's pair added.
                // SAFETY: `scales` is 16 bytes; the load is unaligned.
                let sc = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
                let sc = _mm_shuffle_epi8(sc, order);
                let (sc_lo, sc_hi) = (
                    _mm256_cvtepi8_epi32(sc),
                    _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc, sc)),
                );
                let lo = _mm256_mullo_epi32(hsum_halves4([v[0], v[1], v[2], v[3]]), sc_lo);
                let hi = _mm256_mullo_epi32(hsum_halves4([v[4], v[5], v[6], v[7]]), sc_hi);
                let isum = add_halves(lo, hi);
                let p = _mm256_mul_ps(per_block::<0>(a), _mm256_cvtepi32_ps(isum));
                sum += b.d.to_f32() * hsum(p);
            }
            sum
        }
    };
}

/// AVX2: `vpmaddubsw` (u8·i8 pairs → i16) then `vpmaddwd` with ones (pairs → i32).
pub(crate) mod avx2 {
    kquant_int8_dots!("avx2,fma,f16c", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32 (exact while a pair sum stays within i16).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

/// AVX-VNNI: `vpdpbusd` (VEX), four u8·i8 products straight into i32.
pub(crate) mod avxvnni {
    kquant_int8_dots!("avx2,fma,f16c,avxvnni", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32, without intermediate saturation.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(crate) fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    }
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
pub(crate) mod avx512vnni {
    kquant_int8_dots!("avx2,fma,f16c,avx512vnni,avx512vl", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32, without intermediate saturation.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(crate) fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
}
