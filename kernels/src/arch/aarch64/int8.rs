//! Int8 dot products of the 32-weight block formats' rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)), one copy per instruction set generated from one
//! macro: NEON (`smull`/`smlal2` + `sadalp`) and the ARMv8.2 dot product extension (`sdot`).
//!
//! Per block the 32 products reach four exact i32 partial sums; those are converted to f32
//! and scaled by `d_w·d_a` into a float accumulator (no horizontal sum per block).

macro_rules! int8_dots {
    ($features:literal, $isum:ident) => {
        use core::arch::aarch64::*;

        use super::super::neon::{block_codes, f16, load_i8x16, lut16, lut4, nibbles};
        use crate::arch::int8_blocks::Block;
        use crate::blocks::{
            BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le,
        };
        use crate::scalar::{BlockQ8Act, Q4_0_VALUES};

        /// The activation codes of a block as two vectors.
        #[inline]
        #[target_feature(enable = $features)]
        fn act(a: &BlockQ8Act) -> [int8x16_t; 2] {
            [load_i8x16(&a.qs), load_i8x16(&a.qs[16..])]
        }

        /// `acc + isum · d_w · d_a`.
        #[inline]
        #[target_feature(enable = $features)]
        fn scale_add(acc: float32x4_t, isum: int32x4_t, b: F16Le, a: &BlockQ8Act) -> float32x4_t {
            vfmaq_n_f32(acc, vcvtq_f32_s32(isum), f16(b) * a.d())
        }

        /// Folds `step` over the blocks into two accumulators, even and odd blocks, so one
        /// block's FMA need not wait for the previous block's; returns their sum.
        #[inline]
        #[target_feature(enable = $features)]
        fn fold2<B>(
            blocks: &[B],
            acts: &[BlockQ8Act],
            step: impl Fn(float32x4_t, &B, &BlockQ8Act) -> float32x4_t,
        ) -> float32x4_t {
            let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let (mut bs, mut xs) = (blocks.chunks_exact(2), acts.chunks_exact(2));
            for (b, a) in (&mut bs).zip(&mut xs) {
                acc0 = step(acc0, &b[0], &a[0]);
                acc1 = step(acc1, &b[1], &a[1]);
            }
            if let (Some(b), Some(a)) = (bs.remainder().first(), xs.remainder().first()) {
                acc0 = step(acc0, b, a);
            }
            vaddq_f32(acc0, acc1)
        }

        /// Q4_0 row · int8 activations: codes through the `tbl` codebook, then as Q8_0.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q4_0_q8(blocks: &[BlockQ4_0], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(&Q4_0_VALUES);
            vaddvq_f32(fold2(blocks, acts, |acc, b, a| {
                let (lo, hi) = lut4(lut, &b.qs);
                scale_add(acc, $isum([lo, hi], act(a)), b.d, a)
            }))
        }

        /// Q4_1 row · int8 activations: codes 0..15 as they are; the offset adds `m·s` per
        /// block.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q4_1_q8(blocks: &[BlockQ4_1], acts: &[BlockQ8Act]) -> f32 {
            let mut ms = 0.0f32;
            for (b, a) in blocks.iter().zip(acts) {
                ms += f16(b.m) * a.s();
            }
            let qa = fold2(blocks, acts, |acc, b, a| {
                let (lo, hi) = nibbles(&b.qs);
                let w = [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)];
                scale_add(acc, $isum(w, act(a)), b.d, a)
            });
            vaddvq_f32(qa) + ms
        }

        /// A row of 32-weight blocks · int8 activations through [`block_codes`] (signed ×
        /// signed, so unsigned codes need nothing special), with the offset's `m·s` per block
        /// for the formats that have one.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot_codes_q8<B: Block>(blocks: &[B], acts: &[BlockQ8Act]) -> f32 {
            let lut = lut16(B::FMT.lut());
            let mut ms = 0.0f32;
            if B::FMT.has_m() {
                for (b, a) in blocks.iter().zip(acts) {
                    ms += f16(b.m()) * a.s();
                }
            }
            let qa = fold2(blocks, acts, |acc, b, a| {
                scale_add(acc, $isum(block_codes(lut, b), act(a)), b.d(), a)
            });
            vaddvq_f32(qa) + ms
        }

        /// Q5_0 row · int8 activations: codes `q − 16` in [−16, 15].
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q5_0_q8(blocks: &[BlockQ5_0], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// Q5_1 row · int8 activations: codes 0..=31, and the offset's `m·s`.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q5_1_q8(blocks: &[BlockQ5_1], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// IQ4_NL row · int8 activations: codes through the IQ4_NL codebook (values in
        /// [−127, 113]).
        #[target_feature(enable = $features)]
        pub(crate) fn dot_iq4_nl_q8(blocks: &[BlockIQ4_NL], acts: &[BlockQ8Act]) -> f32 {
            dot_codes_q8(blocks, acts)
        }

        /// Q8_0 row · int8 activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q8_0_q8(blocks: &[BlockQ8_0], acts: &[BlockQ8Act]) -> f32 {
            vaddvq_f32(fold2(blocks, acts, |acc, b, a| {
                let w = [load_i8x16(&b.qs), load_i8x16(&b.qs[16..])];
                scale_add(acc, $isum(w, act(a)), b.d, a)
            }))
        }
    };
}

/// NEON: widening multiplies into i16 pairs, pairwise-accumulated into i32.
pub(crate) mod neon {
    use super::super::neon::isum_mull;

    int8_dots!("neon", isum_mull);
}

/// Dot product extension: `sdot`, four i8 products straight into each i32 lane.
pub(crate) mod dotprod {
    int8_dots!("neon,dotprod", isum_sdot);

    /// `acc + ` the four-way i8 dot of `a` and `b` per i32 lane (`sdot`).
    ///
    /// Inline assembly because Rust's `vdotq_s32` intrinsic is not stable yet.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: this function enables `dotprod`, so its callers run only where SDOT was
        // detected; the instruction reads and writes the named registers only.
        unsafe {
            core::arch::asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// `acc + ` the four-way i8 dot of `a` and dword `L` of `b` per i32 lane (`sdot`'s
    /// by-element form, `b.4b[L]`): every lane meets the same four bytes of `b`, with no
    /// broadcast of them first.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) fn sdot_lane<const L: i32>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        const { assert!(L >= 0 && L < 4, "a dword of a 16-byte vector") };
        let mut acc = acc;
        // SAFETY: as for `sdot`; the lane index is a constant in 0..4.
        unsafe {
            core::arch::asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.4b[{l}]",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                l = const L,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// Σ w·a over 32 elements as four exact i32 partial sums (the int8 GEMM tiles use it
    /// too).
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) fn isum_sdot(w: [int8x16_t; 2], a: [int8x16_t; 2]) -> int32x4_t {
        sdot(sdot(vdupq_n_s32(0), w[0], a[0]), w[1], a[1])
    }
}
