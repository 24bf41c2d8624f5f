//! The table exp on NEON (see `scalar::lut` for the method and its error bound): the 16 table
//! entries (64 bytes) live in four registers and one `tbl` looks up four floats by byte
//! indices; softmax, SwiGLU and the tanh GeGLU built on it, four lanes at a time.
//!
//! Bodies take whole lanes ([`LUT_LANES`]); the wrappers (`lut_wrappers!`) hand the tail to the
//! scalar reference.

use core::arch::aarch64::*;

use crate::scalar::{
    EXP_LUT, EXP_LUT_LN2_HI, EXP_LUT_LN2_LO, EXP_LUT_MAX, EXP_LUT_MIN, EXP_LUT_SCALE, GELU_TANH_C,
    GELU_TANH_K,
};

/// Floats the bodies consume per step.
pub(super) const LUT_LANES: usize = 4;

/// The table as four registers of bytes, for `tbl`.
#[inline]
#[target_feature(enable = "neon")]
fn table() -> uint8x16x4_t {
    let p = EXP_LUT.as_ptr().cast::<u8>();
    // SAFETY: the table is 64 bytes; each load reads 16 of them.
    unsafe {
        uint8x16x4_t(
            vld1q_u8(p),
            vld1q_u8(p.add(16)),
            vld1q_u8(p.add(32)),
            vld1q_u8(p.add(48)),
        )
    }
}

/// `exp` of four lanes through the table `t`.
#[inline]
#[target_feature(enable = "neon")]
fn exp4(t: &uint8x16x4_t, x: float32x4_t) -> float32x4_t {
    let (min, max) = (vdupq_n_f32(EXP_LUT_MIN), vdupq_n_f32(EXP_LUT_MAX));
    let xc = vminq_f32(vmaxq_f32(x, min), max);
    let kf = vrndnq_f32(vmulq_n_f32(xc, EXP_LUT_SCALE));
    let r = vfmsq_f32(xc, kf, vdupq_n_f32(EXP_LUT_LN2_HI));
    let r = vfmsq_f32(r, kf, vdupq_n_f32(EXP_LUT_LN2_LO));
    let p = vfmaq_f32(vdupq_n_f32(0.5), r, vdupq_n_f32(1.0 / 6.0));
    let p = vfmaq_f32(vdupq_n_f32(1.0), p, r);
    let p = vfmaq_f32(vdupq_n_f32(1.0), p, r);
    let k = vcvtq_s32_f32(kf);
    // Byte indices 4j..4j + 4 of entry j = k & 15, in every lane.
    let j4 = vshlq_n_u32::<2>(vandq_u32(vreinterpretq_u32_s32(k), vdupq_n_u32(15)));
    let idx = vmlaq_u32(vdupq_n_u32(0x0302_0100), j4, vdupq_n_u32(0x0101_0101));
    let entry = vreinterpretq_s32_u8(vqtbl4q_u8(*t, vreinterpretq_u8_u32(idx)));
    let e = vshlq_n_s32::<23>(vshrq_n_s32::<4>(k));
    let y = vmulq_f32(vreinterpretq_f32_s32(vaddq_s32(entry, e)), p);
    // Flush below the range, saturate above it, keep NaN.
    let y = vbslq_f32(vcltq_f32(x, min), vdupq_n_f32(0.0), y);
    let y = vbslq_f32(vcgtq_f32(x, max), vdupq_n_f32(f32::INFINITY), y);
    vbslq_f32(vceqq_f32(x, x), y, x)
}

/// `x[i] = exp(x[i])` over whole lanes.
#[target_feature(enable = "neon")]
pub(super) fn exp(x: &mut [f32]) {
    let t = table();
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 4 floats, exclusively borrowed.
        unsafe { vst1q_f32(c.as_mut_ptr(), exp4(&t, vld1q_f32(c.as_ptr()))) };
    }
}

/// Maximum of whole lanes (`-∞` for none).
#[target_feature(enable = "neon")]
pub(super) fn max(x: &[f32]) -> f32 {
    let mut m = vdupq_n_f32(f32::NEG_INFINITY);
    for c in x.chunks_exact(LUT_LANES) {
        // SAFETY: the chunk holds 4 floats.
        m = vmaxq_f32(m, unsafe { vld1q_f32(c.as_ptr()) });
    }
    vmaxvq_f32(m)
}

/// `x[i] = exp(x[i] − max)` over whole lanes; returns their sum.
#[target_feature(enable = "neon")]
pub(super) fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let t = table();
    let m = vdupq_n_f32(max);
    let mut sum = vdupq_n_f32(0.0);
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 4 floats, exclusively borrowed.
        unsafe {
            let v = exp4(&t, vsubq_f32(vld1q_f32(c.as_ptr()), m));
            vst1q_f32(c.as_mut_ptr(), v);
            sum = vaddq_f32(sum, v);
        }
    }
    vaddvq_f32(sum)
}

/// `x[i] *= s` over whole lanes.
#[target_feature(enable = "neon")]
pub(super) fn scale(x: &mut [f32], s: f32) {
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 4 floats, exclusively borrowed.
        unsafe { vst1q_f32(c.as_mut_ptr(), vmulq_n_f32(vld1q_f32(c.as_ptr()), s)) };
    }
}

/// `gate[i] = gate[i] / (1 + exp(−gate[i])) · up[i]` over whole lanes.
#[target_feature(enable = "neon")]
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) {
    let t = table();
    let one = vdupq_n_f32(1.0);
    for (g, u) in gate
        .chunks_exact_mut(LUT_LANES)
        .zip(up.chunks_exact(LUT_LANES))
    {
        // SAFETY: both chunks hold 4 floats, `g` exclusively borrowed.
        unsafe {
            let gv = vld1q_f32(g.as_ptr());
            let s = vdivq_f32(gv, vaddq_f32(one, exp4(&t, vnegq_f32(gv))));
            vst1q_f32(g.as_mut_ptr(), vmulq_f32(s, vld1q_f32(u.as_ptr())));
        }
    }
}

/// `gate[i] = gate[i] / (1 + exp(−2K·(g + C·g³))) · up[i]` over whole lanes (the tanh GELU,
/// `scalar::gelu_tanh_glu_lut_f32`, in its operation order).
#[target_feature(enable = "neon")]
pub(super) fn gelu(gate: &mut [f32], up: &[f32]) {
    let t = table();
    let one = vdupq_n_f32(1.0);
    let k = vdupq_n_f32(-2.0 * GELU_TANH_K);
    let c = vdupq_n_f32(GELU_TANH_C);
    for (g, u) in gate
        .chunks_exact_mut(LUT_LANES)
        .zip(up.chunks_exact(LUT_LANES))
    {
        // SAFETY: both chunks hold 4 floats, `g` exclusively borrowed.
        unsafe {
            let x = vld1q_f32(g.as_ptr());
            // Unfused, as the reference rounds: C·x, ·x, ·x, + x, · (−2K).
            let x3 = vmulq_f32(vmulq_f32(vmulq_f32(c, x), x), x);
            let z = vmulq_f32(k, vaddq_f32(x, x3));
            let s = vdivq_f32(x, vaddq_f32(one, exp4(&t, z)));
            vst1q_f32(g.as_mut_ptr(), vmulq_f32(s, vld1q_f32(u.as_ptr())));
        }
    }
}

// ---- install and safe wrappers ---------------------------------------------------------------
// Wrapper notes: reachable only through `install`, which the parent calls after
// `detected(backend)` for a backend that includes NEON, the only feature these bodies enable.

lut_wrappers!(self);

/// Puts the table-exp kernels in `k` (both aarch64 backends).
pub(super) fn install(k: &mut crate::dispatch::Kernels) {
    k.exp = named!(exp_lut, "exp_lut_f32/neon");
    k.softmax = named!(softmax_lut, "softmax_lut_f32/neon");
    k.swiglu = named!(swiglu_lut, "swiglu_lut_f32/neon");
    k.gelu = named!(gelu_lut, "gelu_tanh_glu_lut_f32/neon");
}
