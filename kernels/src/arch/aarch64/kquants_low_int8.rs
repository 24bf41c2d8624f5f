//! Int8 dot products of Q3_K and Q2_K rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro over `kquants_int8.rs`'s per-ISA helpers: NEON (`smull`/`smlal2` + pairwise adds) and
//! the dot product extension (`sdot`).
//!
//! Bit-identical to `scalar::dot_q3_k_q8` / `scalar::dot_q2_k_q8`, by Q6_K's scheme: each
//! 16-element sub-block's products reach four exact i32 lanes, `addp` trees give the sixteen
//! sub-block sums, the integer sub-block scales multiply them exactly, pairs add to one exact
//! i32 per activation block, and the float part is the reference's (one product per
//! activation block, the eight-lane sum in `sum8_tree`'s order, the super-block scale). Q3_K's
//! codes are −4..=3, Q2_K's 0..=3 (signed bytes either way); Q2_K's min term is the same tree
//! over the activations' sums (`1·a`) times the four-bit mins. No saturation: an i16 pair of
//! `smull` products is at most 2·4·127.

macro_rules! kquant_low_int8_dots {
    ($features:literal, $($helpers:ident)::+) => {
        use core::arch::aarch64::*;

        use $($helpers)::+::{hsum4_i32, isum16, per_block, sum8_tree};
        use super::super::kquants_low::{q2_k_codes, q3_k_codes, q3_k_scales_i8};
        use super::super::neon::load_i8x16;
        use crate::blocks::{BlockQ2_K, BlockQ3_K};
        use crate::scalar::BlockQ8Act;

        /// Sixteen signed bytes as four vectors of four i32.
        #[inline]
        #[target_feature(enable = $features)]
        fn i8x16_to_i32(v: int8x16_t) -> [int32x4_t; 4] {
            let (lo, hi) = (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v));
            [
                vmovl_s16(vget_low_s16(lo)),
                vmovl_high_s16(lo),
                vmovl_s16(vget_low_s16(hi)),
                vmovl_high_s16(hi),
            ]
        }

        /// One exact i32 per activation block (two vectors of four): the sixteen sub-block
        /// sums `v` (four lanes each) times their `scales`, each block's pair added.
        #[inline]
        #[target_feature(enable = $features)]
        fn per_act_block(v: &[int32x4_t; 16], scales: int8x16_t) -> [int32x4_t; 2] {
            let sc = i8x16_to_i32(scales);
            let m: [int32x4_t; 4] = core::array::from_fn(|i| {
                vmulq_s32(hsum4_i32([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]]), sc[i])
            });
            [vpaddq_s32(m[0], m[1]), vpaddq_s32(m[2], m[3])]
        }

        /// The 16 activations of sub-block `s` (half `s % 2` of activation block `s / 2`).
        #[inline]
        #[target_feature(enable = $features)]
        fn acts16(a: &[BlockQ8Act], s: usize) -> int8x16_t {
            load_i8x16(&a[s / 2].qs[16 * (s % 2)..])
        }

        /// Q3_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q3_k_q8(blocks: &[BlockQ3_K], acts: &[BlockQ8Act]) -> f32 {
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let v: [int32x4_t; 16] =
                    core::array::from_fn(|s| isum16(q3_k_codes(b, s), acts16(a, s)));
                let isum = per_act_block(&v, q3_k_scales_i8(b));
                let p = [0, 1]
                    .map(|h| vmulq_f32(per_block(a, 4 * h, BlockQ8Act::d), vcvtq_f32_s32(isum[h])));
                sum += b.d.to_f32() * sum8_tree(p);
            }
            sum
        }

        /// Q2_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q2_k_q8(blocks: &[BlockQ2_K], acts: &[BlockQ8Act]) -> f32 {
            let ones = vdupq_n_s8(1);
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let mut v = [vdupq_n_s32(0); 16];
                let mut t = [vdupq_n_s32(0); 16];
                for s in 0..16 {
                    let x = acts16(a, s);
                    v[s] = isum16(vreinterpretq_s8_u8(q2_k_codes(b, s)), x);
                    t[s] = isum16(ones, x);
                }
                // SAFETY: `scales` is 16 bytes.
                let sc = unsafe { vld1q_u8(b.scales.as_ptr()) };
                let (sc, m) = (vandq_u8(sc, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(sc));
                let isum = per_act_block(&v, vreinterpretq_s8_u8(sc));
                let msum = per_act_block(&t, vreinterpretq_s8_u8(m));
                let d = [0, 1].map(|h| per_block(a, 4 * h, BlockQ8Act::d));
                let p = [0, 1].map(|h| vmulq_f32(d[h], vcvtq_f32_s32(isum[h])));
                let q = [0, 1].map(|h| vmulq_f32(d[h], vcvtq_f32_s32(msum[h])));
                sum += b.d.to_f32() * sum8_tree(p) - b.dmin.to_f32() * sum8_tree(q);
            }
            sum
        }
    };
}

/// NEON: widening multiplies into i16 pairs, pairwise-added into i32.
pub(crate) mod neon {
    kquant_low_int8_dots!("neon", super::super::kquants_int8::neon);
}

/// Dot product extension: `sdot`.
pub(crate) mod dotprod {
    kquant_low_int8_dots!("neon,dotprod", super::super::kquants_int8::dotprod);
}
