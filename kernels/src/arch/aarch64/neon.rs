//! NEON bodies (every ARMv8-A core): f32 vector kernels, the 32-weight block formats (Q4_0,
//! Q4_1, Q8_0, Q5_0, Q5_1, IQ4_NL) against f32 activations, dequantization, and activation
//! quantization for the int8 path.
//!
//! Q5 codes are decoded in registers: each byte of `qh` is copied to eight lanes and tested
//! against its lane's bit (`cmtst`), giving a byte mask merged into the nibbles with one
//! `bic`/`and` and `orr`: for Q5_0 `nibble | (0xF0 & !h)` is `q − 16` as an int8 in one step.
//! IQ4_NL's codes go through its codebook with the same `tbl` as Q4_0's.
//!
//! Every function enables `neon` and is reached only through the wrappers in the parent
//! module, installed after detection. Block kernels take whole blocks; `dot_f32` and `axpy`
//! take whole lanes ([`DOT_F32_LANES`], [`AXPY_LANES`]) and ignore any remainder.

use core::arch::aarch64::*;
use core::arch::asm;

use crate::arch::int8_blocks::{Block, Fmt};
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le};
use crate::scalar::{act_scale, BlockQ8Act, Q4_0_VALUES};

/// Floats [`dot_f32`] consumes per step.
pub(crate) const DOT_F32_LANES: usize = 16;
/// Floats [`axpy`] consumes per step.
pub(crate) const AXPY_LANES: usize = 4;

// ---- helpers -----------------------------------------------------------------------------

/// An f16 scale as f32: `fcvt s, h` (base ARMv8 floating point; exact, subnormals included).
/// Inline assembly because the `float16x4_t` conversion intrinsics need the `fp16` feature.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn f16(h: F16Le) -> f32 {
    let bits = u16::from_le_bytes(h.0);
    let out: f32;
    // SAFETY: FCVT (half to single) exists on every AArch64 core with floating point, which
    // NEON implies; it only reads and writes the named registers.
    unsafe {
        asm!(
            "fcvt {o:s}, {i:h}",
            i = in(vreg) bits,
            o = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The first 16 floats of `x` as four vectors.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load16(x: &[f32]) -> [float32x4_t; 4] {
    assert!(x.len() >= 16);
    let p = x.as_ptr();
    // SAFETY: x holds at least 16 floats; the loads read x[0..16].
    unsafe {
        [
            vld1q_f32(p),
            vld1q_f32(p.add(4)),
            vld1q_f32(p.add(8)),
            vld1q_f32(p.add(12)),
        ]
    }
}

/// Stores four vectors to the first 16 floats of `out`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn store16(out: &mut [f32], v: [float32x4_t; 4]) {
    assert!(out.len() >= 16);
    let p = out.as_mut_ptr();
    // SAFETY: out holds at least 16 floats, exclusively borrowed; the stores write out[0..16].
    unsafe {
        vst1q_f32(p, v[0]);
        vst1q_f32(p.add(4), v[1]);
        vst1q_f32(p.add(8), v[2]);
        vst1q_f32(p.add(12), v[3]);
    }
}

/// 16 signed bytes as a vector.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_i8x16(b: &[i8]) -> int8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: b holds at least 16 bytes; the load reads b[0..16].
    unsafe { vld1q_s8(b.as_ptr()) }
}

/// The 4-bit codes of a Q4 block as (elements 0..16, elements 16..32), one byte each.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: the reference covers 16 readable bytes.
    let q = unsafe { vld1q_u8(qs.as_ptr()) };
    (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q))
}

/// A 16-entry int8 codebook, ready for `tbl`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn lut16(lut: &[i8; 16]) -> int8x16_t {
    load_i8x16(lut)
}

/// A Q4 block's codes mapped through a 16-entry codebook (`tbl`): elements 0..16, 16..32.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn lut4(lut: int8x16_t, qs: &[u8; 16]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = nibbles(qs);
    (vqtbl1q_s8(lut, lo), vqtbl1q_s8(lut, hi))
}

/// The fifth bits of a Q5 block as byte masks in element order (elements 0..16, 16..32): byte
/// `j` is 0xFF when bit `j` of `qh` is set, else 0.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn q5_high_mask(qh: &[u8; 4]) -> [uint8x16_t; 2] {
    let bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let spread = |a: u8, b: u8| vtstq_u8(vcombine_u8(vdup_n_u8(a), vdup_n_u8(b)), bits);
    [spread(qh[0], qh[1]), spread(qh[2], qh[3])]
}

/// A 32-weight block's codes as signed bytes in element order (elements 0..16, 16..32):
/// Q4_0 and IQ4_NL through `lut` (the format's codebook, [`Fmt::lut`]), Q4_1 and Q5_1 their
/// unsigned codes (at most 31: valid int8), Q5_0 `q − 16`, Q8_0 as stored.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn block_codes<B: Block>(lut: int8x16_t, blk: &B) -> [int8x16_t; 2] {
    match B::FMT {
        Fmt::Q4_0 | Fmt::IQ4_NL => {
            let (lo, hi) = lut4(lut, blk.qs16());
            [lo, hi]
        }
        Fmt::Q4_1 => {
            let (lo, hi) = nibbles(blk.qs16());
            [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)]
        }
        Fmt::Q8_0 => [load_i8x16(blk.qs32()), load_i8x16(&blk.qs32()[16..])],
        Fmt::Q5_0 | Fmt::Q5_1 => {
            let (lo, hi) = nibbles(blk.qs16());
            let h = q5_high_mask(blk.qh());
            let merge = |q: uint8x16_t, h: uint8x16_t| {
                // nibble | 0xF0 is nibble − 16 as an int8; nibble | 0x10 is nibble + 16.
                let high = if B::FMT == Fmt::Q5_0 {
                    vbicq_u8(vdupq_n_u8(0xF0), h)
                } else {
                    vandq_u8(h, vdupq_n_u8(0x10))
                };
                vreinterpretq_s8_u8(vorrq_u8(q, high))
            };
            [merge(lo, h[0]), merge(hi, h[1])]
        }
    }
}

/// 16 signed bytes as four vectors of 4 floats.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn i8x16_to_f32(v: int8x16_t) -> [float32x4_t; 4] {
    let (lo, hi) = (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v));
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
        vcvtq_f32_s32(vmovl_high_s16(lo)),
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
        vcvtq_f32_s32(vmovl_high_s16(hi)),
    ]
}

/// Lane-wise partial sums of `w · x` over 16 elements.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn dot16(w: [float32x4_t; 4], x: [float32x4_t; 4]) -> float32x4_t {
    let p = vfmaq_f32(vmulq_f32(w[0], x[0]), w[2], x[2]);
    let q = vfmaq_f32(vmulq_f32(w[1], x[1]), w[3], x[3]);
    vaddq_f32(p, q)
}

/// Sum of the four vectors.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn sum4(v: [float32x4_t; 4]) -> float32x4_t {
    vaddq_f32(vaddq_f32(v[0], v[1]), vaddq_f32(v[2], v[3]))
}

// ---- f32 vectors -------------------------------------------------------------------------

/// `Σ a·b` over the whole [`DOT_F32_LANES`]-float chunks of `a` and `b`.
#[target_feature(enable = "neon")]
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    for (a, b) in a
        .chunks_exact(DOT_F32_LANES)
        .zip(b.chunks_exact(DOT_F32_LANES))
    {
        let (va, vb) = (load16(a), load16(b));
        for k in 0..4 {
            acc[k] = vfmaq_f32(acc[k], va[k], vb[k]);
        }
    }
    vaddvq_f32(sum4(acc))
}

/// `y += a·x` over the whole [`AXPY_LANES`]-float chunks (one rounding per element: FMA).
#[target_feature(enable = "neon")]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y
        .chunks_exact_mut(AXPY_LANES)
        .zip(x.chunks_exact(AXPY_LANES))
    {
        // SAFETY: both chunks hold 4 floats, `y` exclusively borrowed.
        unsafe {
            let v = vfmaq_n_f32(vld1q_f32(y.as_ptr()), vld1q_f32(x.as_ptr()), a);
            vst1q_f32(y.as_mut_ptr(), v);
        }
    }
}

// ---- weights · f32 activations -------------------------------------------------------------

/// Q4_0 row · f32: codes through the `tbl` codebook, widened to f32, FMA with `x`, one scale
/// per block.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q4_0_f32(blocks: &[BlockQ4_0], x: &[f32]) -> f32 {
    let lut = lut16(&Q4_0_VALUES);
    let mut acc = vdupq_n_f32(0.0);
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let (lo, hi) = lut4(lut, &b.qs);
        let p = vaddq_f32(
            dot16(i8x16_to_f32(lo), load16(x)),
            dot16(i8x16_to_f32(hi), load16(&x[16..])),
        );
        acc = vfmaq_n_f32(acc, p, f16(b.d));
    }
    vaddvq_f32(acc)
}

/// Q4_1 row · f32: `Σ d·(Σ q·x) + m·(Σ x)` per block, the two sums in separate accumulators.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q4_1_f32(blocks: &[BlockQ4_1], x: &[f32]) -> f32 {
    let (mut acc_d, mut acc_m) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let (lo, hi) = nibbles(&b.qs);
        let (x0, x1) = (load16(x), load16(&x[16..]));
        let p = vaddq_f32(
            dot16(i8x16_to_f32(vreinterpretq_s8_u8(lo)), x0),
            dot16(i8x16_to_f32(vreinterpretq_s8_u8(hi)), x1),
        );
        acc_d = vfmaq_n_f32(acc_d, p, f16(b.d));
        acc_m = vfmaq_n_f32(acc_m, vaddq_f32(sum4(x0), sum4(x1)), f16(b.m));
    }
    vaddvq_f32(vaddq_f32(acc_d, acc_m))
}

/// Q8_0 row · f32: int8 codes widened to f32, FMA with `x`, one scale per block.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q8_0_f32(blocks: &[BlockQ8_0], x: &[f32]) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let p = vaddq_f32(
            dot16(i8x16_to_f32(load_i8x16(&b.qs)), load16(x)),
            dot16(i8x16_to_f32(load_i8x16(&b.qs[16..])), load16(&x[16..])),
        );
        acc = vfmaq_n_f32(acc, p, f16(b.d));
    }
    vaddvq_f32(acc)
}

/// A row of 32-weight blocks · f32 through [`block_codes`]: one scale per block, and for the
/// formats with an offset `Σ d·(Σ q·x) + m·(Σ x)` with the two sums in separate accumulators.
#[inline]
#[target_feature(enable = "neon")]
fn dot_codes_f32<B: Block>(blocks: &[B], x: &[f32]) -> f32 {
    let lut = lut16(B::FMT.lut());
    let (mut acc_d, mut acc_m) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let [lo, hi] = block_codes(lut, b);
        let (x0, x1) = (load16(x), load16(&x[16..]));
        let p = vaddq_f32(dot16(i8x16_to_f32(lo), x0), dot16(i8x16_to_f32(hi), x1));
        acc_d = vfmaq_n_f32(acc_d, p, f16(b.d()));
        if B::FMT.has_m() {
            acc_m = vfmaq_n_f32(acc_m, vaddq_f32(sum4(x0), sum4(x1)), f16(b.m()));
        }
    }
    vaddvq_f32(vaddq_f32(acc_d, acc_m))
}

/// Q5_0 row · f32.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q5_0_f32(blocks: &[BlockQ5_0], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

/// Q5_1 row · f32.
#[target_feature(enable = "neon")]
pub(crate) fn dot_q5_1_f32(blocks: &[BlockQ5_1], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

/// IQ4_NL row · f32.
#[target_feature(enable = "neon")]
pub(crate) fn dot_iq4_nl_f32(blocks: &[BlockIQ4_NL], x: &[f32]) -> f32 {
    dot_codes_f32(blocks, x)
}

// ---- dequantization ----------------------------------------------------------------------
// Bit-identical to the scalar reference: each value is a small integer times an f16 (exact in
// f32), plus for Q4_1 and Q5_1 one rounded addition, which FMA performs identically.

/// Q4_0 row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    let lut = lut16(&Q4_0_VALUES);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = f16(b.d);
        let (lo, hi) = lut4(lut, &b.qs);
        store16(o, i8x16_to_f32(lo).map(|w| vmulq_n_f32(w, d)));
        store16(&mut o[16..], i8x16_to_f32(hi).map(|w| vmulq_n_f32(w, d)));
    }
}

/// Q4_1 row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16(b.d), vdupq_n_f32(f16(b.m)));
        let (lo, hi) = nibbles(&b.qs);
        let lo = i8x16_to_f32(vreinterpretq_s8_u8(lo));
        let hi = i8x16_to_f32(vreinterpretq_s8_u8(hi));
        store16(o, lo.map(|q| vfmaq_n_f32(m, q, d)));
        store16(&mut o[16..], hi.map(|q| vfmaq_n_f32(m, q, d)));
    }
}

/// Q8_0 row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = f16(b.d);
        let lo = i8x16_to_f32(load_i8x16(&b.qs));
        let hi = i8x16_to_f32(load_i8x16(&b.qs[16..]));
        store16(o, lo.map(|w| vmulq_n_f32(w, d)));
        store16(&mut o[16..], hi.map(|w| vmulq_n_f32(w, d)));
    }
}

/// A row of 32-weight blocks → f32 through [`block_codes`]: `q·d`, or `q·d + m` in one FMA.
#[inline]
#[target_feature(enable = "neon")]
fn dequant_codes<B: Block>(blocks: &[B], out: &mut [f32]) {
    let lut = lut16(B::FMT.lut());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16(b.d()), vdupq_n_f32(f16(b.m())));
        let [lo, hi] = block_codes(lut, b).map(|c| i8x16_to_f32(c));
        let value = |q: float32x4_t| {
            if B::FMT.has_m() {
                vfmaq_n_f32(m, q, d)
            } else {
                vmulq_n_f32(q, d)
            }
        };
        store16(o, lo.map(value));
        store16(&mut o[16..], hi.map(value));
    }
}

/// Q5_0 row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q5_0(blocks: &[BlockQ5_0], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

/// Q5_1 row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_q5_1(blocks: &[BlockQ5_1], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

/// IQ4_NL row → f32.
#[target_feature(enable = "neon")]
pub(crate) fn dequant_iq4_nl(blocks: &[BlockIQ4_NL], out: &mut [f32]) {
    dequant_codes(blocks, out)
}

// ---- activation quantization -------------------------------------------------------------

/// f32 → [`BlockQ8Act`], byte-identical to `scalar::quantize_act_q8` for finite inputs: the
/// same `act_scale`, the same product `x·id`, and its rounding `trunc(|v| + 0.5)` (`fcvtzs`
/// truncates) with the sign restored.
#[target_feature(enable = "neon")]
pub(crate) fn quantize_act_q8(x: &[f32], out: &mut [BlockQ8Act]) {
    let half = vdupq_n_f32(0.5);
    let zero = vdupq_n_f32(0.0);
    let (lo, hi) = (vdupq_n_s32(-127), vdupq_n_s32(127));
    for (b, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let (v0, v1) = (load16(x), load16(&x[16..]));
        let m = |v: [float32x4_t; 4]| {
            let a = v.map(|v| vabsq_f32(v));
            vmaxq_f32(vmaxq_f32(a[0], a[1]), vmaxq_f32(a[2], a[3]))
        };
        let (d, id) = act_scale(vmaxvq_f32(vmaxq_f32(m(v0), m(v1))));
        let quant = |v: float32x4_t| {
            let s = vmulq_n_f32(v, id);
            let t = vcvtq_s32_f32(vaddq_f32(vabsq_f32(s), half));
            let t = vbslq_s32(vcltq_f32(s, zero), vnegq_s32(t), t);
            vmaxq_s32(vminq_s32(t, hi), lo)
        };
        let (q0, q1) = (v0.map(quant), v1.map(quant));
        let sum = vaddvq_s32(vaddq_s32(
            vaddq_s32(vaddq_s32(q0[0], q0[1]), vaddq_s32(q0[2], q0[3])),
            vaddq_s32(vaddq_s32(q1[0], q1[1]), vaddq_s32(q1[2], q1[3])),
        ));
        let narrow = |q: [int32x4_t; 4]| {
            let a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
            let b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vcombine_s8(vmovn_s16(a), vmovn_s16(b))
        };
        // SAFETY: `b.qs` is 32 bytes, exclusively borrowed; the stores write qs[0..32].
        unsafe {
            vst1q_s8(b.qs.as_mut_ptr(), narrow(q0));
            vst1q_s8(b.qs.as_mut_ptr().add(16), narrow(q1));
        }
        b.d = d.to_le_bytes();
        b.s = (d * sum as f32).to_le_bytes();
    }
}

// ---- int8 dot products ---------------------------------------------------------------------

/// Σ w·a over 32 elements as four exact i32 partial sums (`smull` + `smlal2`, `sadalp`): a
/// lane of the i16 stage adds two products, at most 2·128·127 = 32512, so nothing wraps while
/// activation codes stay in [−127, 127].
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn isum_mull(w: [int8x16_t; 2], a: [int8x16_t; 2]) -> int32x4_t {
    let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w[0]), vget_low_s8(a[0])), w[0], a[0]);
    let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w[1]), vget_low_s8(a[1])), w[1], a[1]);
    vpadalq_s16(vpaddlq_s16(p0), p1)
}
