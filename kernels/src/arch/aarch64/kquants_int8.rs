//! Int8 dot products of Q4_K, Q5_K, Q6_K and IQ4_XS rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro: NEON (`smull`/`smlal2` + pairwise adds) and the dot product extension (`sdot`).
//!
//! Bit-identical to `scalar::dot_{q4_k,q5_k,q6_k,iq4_xs}_q8`: the products of each
//! 16-element run reach four exact i32 lanes; `addp` trees turn them into per-sub-block sums,
//! the integer sub-block scales multiply them exactly, and the float part is the reference's:
//! one product per activation block, the eight-lane sum in `sum8_tree`'s order, the
//! super-block scale, a running scalar sum. No saturation: an i16 pair of `smull` products is
//! at most 2·127·127 (IQ4_XS's codebook values reach −127).

macro_rules! kquant_int8_dots {
    ($features:literal, $isum16:ident) => {
        use core::arch::aarch64::*;

        use super::super::kquants::{iq4_xs_values, q4_k_nibbles, q5_k_codes, q5_k_qh, q6_k_codes};
        use super::super::neon::{load_i8x16, lut16};
        use crate::blocks::{BlockIQ4_XS, BlockQ4_K, BlockQ5_K, BlockQ6_K, F16Le};
        use crate::scalar::{iq4_xs_scales, scales_mins_k4, BlockQ8Act, IQ4_NL_VALUES};

        /// `[Σv0, Σv1, Σv2, Σv3]` (exact: integer pairwise adds).
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn hsum4_i32(v: [int32x4_t; 4]) -> int32x4_t {
            vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
        }

        /// Σ p over two vectors of four, in `sum8_tree`'s order: `t = lo + hi` lane-wise, then
        /// `(t0 + t2) + (t1 + t3)`.
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn sum8_tree(p: [float32x4_t; 2]) -> f32 {
            let t = vaddq_f32(p[0], p[1]);
            let u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
            vget_lane_f32::<0>(u) + vget_lane_f32::<1>(u)
        }

        /// Four floats, one per activation block `a[o..o + 4]`, from `f`.
        #[inline]
        #[target_feature(enable = $features)]
        pub(crate) fn per_block(
            a: &[BlockQ8Act],
            o: usize,
            f: impl Fn(&BlockQ8Act) -> f32,
        ) -> float32x4_t {
            let v = [f(&a[o]), f(&a[o + 1]), f(&a[o + 2]), f(&a[o + 3])];
            // SAFETY: `v` holds four floats.
            unsafe { vld1q_f32(v.as_ptr()) }
        }

        /// Eight bytes as two vectors of four i32.
        #[inline]
        #[target_feature(enable = $features)]
        fn u8x8_to_i32(b: [u8; 8]) -> [int32x4_t; 2] {
            let w = vmovl_u8(vcreate_u8(u64::from_le_bytes(b)));
            [
                vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w))),
                vreinterpretq_s32_u32(vmovl_high_u16(w)),
            ]
        }

        /// Σ w·a over a 32-element sub-block (`w` two vectors) and activation block `a`, as
        /// four exact i32 partial sums.
        #[inline]
        #[target_feature(enable = $features)]
        fn isum32(w: [int8x16_t; 2], a: &BlockQ8Act) -> int32x4_t {
            vaddq_s32(
                $isum16(w[0], load_i8x16(&a.qs)),
                $isum16(w[1], load_i8x16(&a.qs[16..])),
            )
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
                |b, c| q5_k_codes(&b.qs[32 * c..], q5_k_qh(b), c),
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
            codes: impl Fn(&B, usize) -> ([int8x16_t; 2], [int8x16_t; 2]),
        ) -> f32 {
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let mut v = [vdupq_n_s32(0); 8];
                for c in 0..4 {
                    let (lo, hi) = codes(b, c);
                    for (s, w) in [lo, hi].into_iter().enumerate() {
                        v[2 * c + s] = isum32(w, &a[2 * c + s]);
                    }
                }
                let isum = [
                    hsum4_i32([v[0], v[1], v[2], v[3]]),
                    hsum4_i32([v[4], v[5], v[6], v[7]]),
                ];
                let (d, dmin, scales) = fields(b);
                let (sc, m) = scales_mins_k4(&scales);
                let (sc, m) = (u8x8_to_i32(sc), u8x8_to_i32(m));
                let p = [0, 1].map(|h| {
                    let scaled = vcvtq_f32_s32(vmulq_s32(isum[h], sc[h]));
                    vmulq_f32(per_block(a, 4 * h, BlockQ8Act::d), scaled)
                });
                let q = [0, 1]
                    .map(|h| vmulq_f32(per_block(a, 4 * h, BlockQ8Act::s), vcvtq_f32_s32(m[h])));
                sum += d.to_f32() * sum8_tree(p) - dmin.to_f32() * sum8_tree(q);
            }
            sum
        }

        /// IQ4_XS row · int8 activations (`acts` holds eight blocks per super-block): the
        /// codebook values through `tbl`, the signed sub-block scales multiplying the exact
        /// per-sub-block sums.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_iq4_xs_q8(blocks: &[BlockIQ4_XS], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(&IQ4_NL_VALUES);
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                let v: [int32x4_t; 8] =
                    core::array::from_fn(|j| isum32(iq4_xs_values(lut, b, j), &a[j]));
                let isum = [
                    hsum4_i32([v[0], v[1], v[2], v[3]]),
                    hsum4_i32([v[4], v[5], v[6], v[7]]),
                ];
                let sc = vmovl_s8(vcreate_s8(u64::from_le_bytes(
                    iq4_xs_scales(b).map(|s| s as u8),
                )));
                let sc = [vmovl_s16(vget_low_s16(sc)), vmovl_high_s16(sc)];
                let p = [0, 1].map(|h| {
                    let scaled = vcvtq_f32_s32(vmulq_s32(isum[h], sc[h]));
                    vmulq_f32(per_block(a, 4 * h, BlockQ8Act::d), scaled)
                });
                sum += b.d.to_f32() * sum8_tree(p);
            }
            sum
        }

        /// Q6_K row · int8 activations (`acts` holds eight blocks per super-block).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q6_k_q8(blocks: &[BlockQ6_K], acts: &[BlockQ8Act]) -> f32 {
            let mut sum = 0.0f32;
            for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
                // Four i32 lanes per 16-element sub-block s.
                let mut v = [vdupq_n_s32(0); 16];
                for h in 0..2 {
                    for o in [0, 16] {
                        let q = q6_k_codes(&b.ql[64 * h + o..], &b.qh[32 * h + o..]);
                        for (k, w) in q.into_iter().enumerate() {
                            let x = load_i8x16(&a[4 * h + k].qs[o..]);
                            v[8 * h + 2 * k + o / 16] = $isum16(w, x);
                        }
                    }
                }
                // SAFETY: `scales` is 16 bytes.
                let sc = unsafe { vld1q_s8(b.scales.as_ptr()) };
                let sc = [vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc)];
                let sc = [
                    vmovl_s16(vget_low_s16(sc[0])),
                    vmovl_high_s16(sc[0]),
                    vmovl_s16(vget_low_s16(sc[1])),
                    vmovl_high_s16(sc[1]),
                ];
                // Scaled sub-block sums s0..s16, then each activation block's pair added.
                let m: [int32x4_t; 4] = core::array::from_fn(|i| {
                    vmulq_s32(
                        hsum4_i32([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]]),
                        sc[i],
                    )
                });
                let isum = [vpaddq_s32(m[0], m[1]), vpaddq_s32(m[2], m[3])];
                let p = [0, 1]
                    .map(|h| vmulq_f32(per_block(a, 4 * h, BlockQ8Act::d), vcvtq_f32_s32(isum[h])));
                sum += b.d.to_f32() * sum8_tree(p);
            }
            sum
        }
    };
}

/// NEON: widening multiplies into i16 pairs, pairwise-added into i32.
pub(crate) mod neon {
    kquant_int8_dots!("neon", isum16);

    /// Σ w·a over 16 elements as four exact i32 partial sums.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(crate) fn isum16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
        vpaddlq_s16(vmlal_high_s8(
            vmull_s8(vget_low_s8(w), vget_low_s8(a)),
            w,
            a,
        ))
    }
}

/// Dot product extension: `sdot`, four i8 products straight into each i32 lane.
pub(crate) mod dotprod {
    use super::super::int8::dotprod::sdot;

    kquant_int8_dots!("neon,dotprod", isum16);

    /// Σ w·a over 16 elements as four exact i32 partial sums.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) fn isum16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
        sdot(vdupq_n_s32(0), w, a)
    }
}
