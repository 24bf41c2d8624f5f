//! Int8 dot products of Q3_K and Q2_K rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro over `kquants_int8.rs`'s per-ISA helpers: AVX2 (`vpmaddubsw` + `vpmaddwd`), AVX-VNNI
//! and AVX512-VNNI/VL (`vpdpbusd`, 256-bit).
//!
//! Bit-identical to `scalar::dot_q3_k_q8` / `scalar::dot_q2_k_q8`, by Q6_K's scheme
//! (`kquants_int8.rs`): activation block k meets 32 codes (sub-blocks 2k and 2k + 1) in eight
//! exact i32 lanes, lanes 0..4 being sub-block 2k; a `vphaddd` tree gives per-sub-block sums
//! `[s0, s2, s4, s6 | s1, s3, s5, s7]` per four blocks, the integer sub-block scales in that
//! order multiply them exactly, and the pairs add to one exact i32 per activation block. The
//! float part is the reference's: one product by the block's scale, the eight-lane sum in
//! `sum8_tree`'s order, the super-block scale.
//!
//! Q3_K's codes are −4..=3 and go through the sign trick (`|w|` times `a` carrying `w`'s sign,
//! a `vpmaddubsw` pair ≤ 2·4·127). Q2_K's are 0..=3 (unsigned as they are); its min term needs
//! the activations' sum over each 16-element sub-block, the same tree over `1·a`, times the
//! four-bit mins.

macro_rules! kquant_low_int8_dots {
    ($features:literal, $($helpers:ident)::+) => {
        use core::arch::x86_64::*;

        use $($helpers)::+::{add_halves, dot_u8_i8, hsum_halves4, per_block};
        use super::super::avx2::{f16x8, hsum, load_i8x32};
        use super::super::kquants_low::{q2_k_codes, q3_k_codes, q3_k_scales_i8};
        use crate::blocks::{BlockQ2_K, BlockQ3_K};
        use crate::scalar::BlockQ8Act;

        /// Sub-block scales in the order of `hsum_halves4`'s lanes: `[0, 2, 4, 6, 1, 3, 5, 7]`
        /// for blocks 0..4, the same plus 8 for blocks 4..8.
        #[inline]
        #[target_feature(enable = $features)]
        fn lane_order(scales: __m128i) -> __m128i {
            let order = _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
            _mm_shuffle_epi8(scales, order)
        }

        /// One exact i32 per activation block: `Σ_s scale_s · v_s` over its two sub-blocks,
        /// from the eight blocks' lane sums `v` and the sixteen scales in [`lane_order`] as
        /// eight-lane i32 vectors for blocks 0..4 and 4..8.
        #[inline]
        #[target_feature(enable = $features)]
        fn per_act_block(v: &[__m256i; 8], lo: __m256i, hi: __m256i) -> __m256i {
            let l = _mm256_mullo_epi32(hsum_halves4([v[0], v[1], v[2], v[3]]), lo);
            let h = _mm256_mullo_epi32(hsum_halves4([v[4], v[5], v[6], v[7]]), hi);
            add_halves(l, h)
        }

        /// Q3_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q3_k_q8(blocks: &[BlockQ3_K], acts: &[BlockQ8Act]) -> f32 {
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let v: [__m256i; 8] = core::array::from_fn(|k| {
                    let w = q3_k_codes(b, k / 4, k % 4);
                    let x = load_i8x32(&a[k].qs);
                    dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
                });
                let sc = lane_order(q3_k_scales_i8(b));
                let isum = per_act_block(
                    &v,
                    _mm256_cvtepi8_epi32(sc),
                    _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc, sc)),
                );
                let p = _mm256_mul_ps(per_block::<0>(a), _mm256_cvtepi32_ps(isum));
                sum += _mm256_cvtss_f32(f16x8(b.d)) * hsum(p);
            }
            sum
        }

        /// Q2_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q2_k_q8(blocks: &[BlockQ2_K], acts: &[BlockQ8Act]) -> f32 {
            let ones = _mm256_set1_epi8(1);
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let mut v = [_mm256_setzero_si256(); 8];
                let mut t = [_mm256_setzero_si256(); 8];
                for k in 0..8 {
                    let x = load_i8x32(&a[k].qs);
                    v[k] = dot_u8_i8(q2_k_codes(b, k / 4, k % 4), x);
                    t[k] = dot_u8_i8(ones, x);
                }
                // SAFETY: `scales` is 16 bytes; the load is unaligned.
                let s = lane_order(unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) });
                let sc = _mm_and_si128(s, _mm_set1_epi8(0x0F));
                let m = _mm_and_si128(_mm_srli_epi16::<4>(s), _mm_set1_epi8(0x0F));
                let widen = |v: __m128i| {
                    (
                        _mm256_cvtepu8_epi32(v),
                        _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(v, v)),
                    )
                };
                let ((sc_lo, sc_hi), (m_lo, m_hi)) = (widen(sc), widen(m));
                let isum = per_act_block(&v, sc_lo, sc_hi);
                let msum = per_act_block(&t, m_lo, m_hi);
                let d_a = per_block::<0>(a);
                let p = _mm256_mul_ps(d_a, _mm256_cvtepi32_ps(isum));
                let q = _mm256_mul_ps(d_a, _mm256_cvtepi32_ps(msum));
                let (d, dmin) = (_mm256_cvtss_f32(f16x8(b.d)), _mm256_cvtss_f32(f16x8(b.dmin)));
                sum += d * hsum(p) - dmin * hsum(q);
            }
            sum
        }
    };
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`.
pub(crate) mod avx2 {
    kquant_low_int8_dots!("avx2,fma,f16c", super::super::kquants_int8::avx2);
}

/// AVX-VNNI: `vpdpbusd` (VEX).
pub(crate) mod avxvnni {
    kquant_low_int8_dots!("avx2,fma,f16c,avxvnni", super::super::kquants_int8::avxvnni);
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
pub(crate) mod avx512vnni {
    kquant_low_int8_dots!(
        "avx2,fma,f16c,avx512vnni,avx512vl",
        super::super::kquants_int8::avx512vnni
    );
}
