//! Int8 dot products of the 32-weight block formats' rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro: AVX2 (`vpmaddubsw` + `vpmaddwd`), AVX-VNNI and AVX512-VNNI/VL (`vpdpbusd`, 256-bit).
//!
//! Per block the 32 products reach eight exact i32 partial sums; those are converted to f32
//! and scaled by `d_w·d_a` into a float accumulator (no horizontal sum per block).
//!
//! `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs with i16 saturation, so
//! signed weights use the sign trick: `|w|` (as u8; |−128| = 128) times `a` carrying `w`'s
//! sign. A pair then reaches at most 2·128·127 = 32512 < 32767 because activation codes are
//! in [−127, 127]: never saturated, so the sums are exact.

macro_rules! int8_dots {
    ($features:literal, $dot_u8_i8:ident) => {
        use core::arch::x86_64::*;

        use super::super::avx2::{block_codes, f16x8, hsum, load_i8x32, lut16, nibbles256};
        use crate::arch::int8_blocks::Block;
        use crate::blocks::{
            BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le,
        };
        use crate::scalar::{BlockQ8Act, Q4_0_VALUES};

        /// Σ w·a as eight i32 partial sums, for signed `w` and `a` in [−127, 127].
        #[inline]
        #[target_feature(enable = $features)]
        fn isum_signed(w: __m256i, a: __m256i) -> __m256i {
            $dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
        }

        /// `acc + isum · d_w · d_a`.
        #[inline]
        #[target_feature(enable = $features)]
        fn scale_add(acc: __m256, isum: __m256i, b: F16Le, a: &BlockQ8Act) -> __m256 {
            let scale = _mm256_mul_ps(f16x8(b), _mm256_set1_ps(a.d()));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc)
        }

        /// Folds `step` over the blocks into two accumulators, even and odd blocks, so one
        /// block's FMA need not wait for the previous block's; returns their sum.
        #[inline]
        #[target_feature(enable = $features)]
        fn fold2<B>(
            blocks: &[B],
            acts: &[BlockQ8Act],
            step: impl Fn(__m256, &B, &BlockQ8Act) -> __m256,
        ) -> __m256 {
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut bs, mut xs) = (blocks.chunks_exact(2), acts.chunks_exact(2));
            for (b, a) in (&mut bs).zip(&mut xs) {
                acc0 = step(acc0, &b[0], &a[0]);
                acc1 = step(acc1, &b[1], &a[1]);
            }
            if let (Some(b), Some(a)) = (bs.remainder().first(), xs.remainder().first()) {
                acc0 = step(acc0, b, a);
            }
            _mm256_add_ps(acc0, acc1)
        }

        /// Q4_0 row · int8 activations: codes through the `vpshufb` codebook, then as Q8_0.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q4_0_q8(blocks: &[BlockQ4_0], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(&Q4_0_VALUES);
            hsum(fold2(blocks, acts, |acc, b, a| {
                let w = _mm256_shuffle_epi8(lut, nibbles256(&b.qs));
                scale_add(acc, isum_signed(w, load_i8x32(&a.qs)), b.d, a)
            }))
        }

        /// Q4_1 row · int8 activations: unsigned codes need no sign trick; the offset adds
        /// `m·s` per block, accumulated in every lane of a second vector (lane 0 is used).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q4_1_q8(blocks: &[BlockQ4_1], acts: &[BlockQ8Act]) -> f32 {
            let ms = fold2(blocks, acts, |ms, b, a| {
                _mm256_fmadd_ps(f16x8(b.m), _mm256_set1_ps(a.s()), ms)
            });
            let qa = fold2(blocks, acts, |acc, b, a| {
                let isum = $dot_u8_i8(nibbles256(&b.qs), load_i8x32(&a.qs));
                scale_add(acc, isum, b.d, a)
            });
            hsum(qa) + _mm256_cvtss_f32(ms)
        }

        /// A row of 32-weight blocks · int8 activations through [`block_codes`]: signed
        /// codes with the sign trick, unsigned ones (with an offset `m·s` per block, as in
        /// [`dot_q4_1_q8`]) as they are.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_codes_q8<B: Block>(blocks: &[B], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(B::FMT.lut());
            let qa = fold2(blocks, acts, |acc, b, a| {
                let (w, x) = (block_codes(lut, b), load_i8x32(&a.qs));
                let isum = if B::FMT.signed() {
                    isum_signed(w, x)
                } else {
                    $dot_u8_i8(w, x)
                };
                scale_add(acc, isum, b.d(), a)
            });
            if !B::FMT.has_m() {
                return hsum(qa);
            }
            let ms = fold2(blocks, acts, |ms, b, a| {
                _mm256_fmadd_ps(f16x8(b.m()), _mm256_set1_ps(a.s()), ms)
            });
            hsum(qa) + _mm256_cvtss_f32(ms)
        }

        /// Q5_0 row · int8 activations: codes `q − 16` in [−16, 15], with the sign trick.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q5_0_q8(blocks: &[BlockQ5_0], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// Q5_1 row · int8 activations: unsigned codes 0..=31, and the offset's `m·s`.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q5_1_q8(blocks: &[BlockQ5_1], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// IQ4_NL row · int8 activations: codes through the IQ4_NL codebook (values in
        /// [−127, 113]), then as Q8_0.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_iq4_nl_q8(blocks: &[BlockIQ4_NL], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// Q8_0 row · int8 activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q8_0_q8(blocks: &[BlockQ8_0], acts: &[BlockQ8Act]) -> f32 {
            hsum(fold2(blocks, acts, |acc, b, a| {
                scale_add(
                    acc,
                    isum_signed(load_i8x32(&b.qs), load_i8x32(&a.qs)),
                    b.d,
                    a,
                )
            }))
        }
    };
}

/// AVX2: `vpmaddubsw` (u8·i8 pairs → i16) then `vpmaddwd` with ones (pairs → i32).
pub(crate) mod avx2 {
    int8_dots!("avx2,fma,f16c", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32 (exact while a pair sum stays within i16).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

/// AVX-VNNI: `vpdpbusd` (VEX), four u8·i8 products straight into i32.
pub(crate) mod avxvnni {
    int8_dots!("avx2,fma,f16c,avxvnni", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32, without intermediate saturation.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
    }
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
pub(crate) mod avx512vnni {
    int8_dots!("avx2,fma,f16c,avx512vnni,avx512vl", dot_u8_i8);

    /// Σ u·s in groups of four as eight i32, without intermediate saturation.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
}
