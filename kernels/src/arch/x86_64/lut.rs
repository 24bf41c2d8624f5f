//! The table exp on AVX2 + FMA (see `scalar::lut` for the method and its error bound): the 16
//! table entries live in two registers, looked up with two `vpermps` and a blend on bit 3 of
//! the index; softmax, SwiGLU and the tanh GeGLU built on it, eight lanes at a time.
//!
//! Bodies take whole lanes ([`LUT_LANES`]); the wrappers (`lut_wrappers!`) hand the tail to the
//! scalar reference.

use core::arch::x86_64::*;

use crate::scalar::{
    EXP_LUT, EXP_LUT_LN2_HI, EXP_LUT_LN2_LO, EXP_LUT_MAX, EXP_LUT_MIN, EXP_LUT_SCALE, GELU_TANH_C,
    GELU_TANH_K,
};

/// Floats the bodies consume per step.
pub(super) const LUT_LANES: usize = 8;

/// `exp` of eight lanes through the table.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn exp8(x: __m256) -> __m256 {
    let (lo_t, hi_t) = (&EXP_LUT[..8], &EXP_LUT[8..]);
    // SAFETY: both halves of the table hold 8 floats; the loads are unaligned.
    let (t_lo, t_hi) = unsafe {
        (
            _mm256_loadu_ps(lo_t.as_ptr()),
            _mm256_loadu_ps(hi_t.as_ptr()),
        )
    };
    let (min, max) = (_mm256_set1_ps(EXP_LUT_MIN), _mm256_set1_ps(EXP_LUT_MAX));
    let xc = _mm256_min_ps(_mm256_max_ps(x, min), max);
    let kf = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(EXP_LUT_SCALE),
    ));
    let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(EXP_LUT_LN2_HI), xc);
    let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(EXP_LUT_LN2_LO), r);
    let p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0 / 6.0), _mm256_set1_ps(0.5));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
    let k = _mm256_cvtps_epi32(kf);
    // vpermps uses the low three bits of each index; bit 3 (moved to the sign) picks the half.
    let t = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t_lo, k),
        _mm256_permutevar8x32_ps(t_hi, k),
        _mm256_castsi256_ps(_mm256_slli_epi32::<28>(k)),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_srai_epi32::<4>(k));
    let y = _mm256_mul_ps(
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(t), e)),
        p,
    );
    // Flush below the range, saturate above it, keep NaN.
    let y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, min), y);
    let y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, max),
    );
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// `x[i] = exp(x[i])` over whole lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn exp(x: &mut [f32]) {
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 8 floats, exclusively borrowed; unaligned accesses.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr()))) };
    }
}

/// Maximum of whole lanes (`-∞` for none).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn max(x: &[f32]) -> f32 {
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in x.chunks_exact(LUT_LANES) {
        // SAFETY: the chunk holds 8 floats; the load is unaligned.
        m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(c.as_ptr()) });
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `x[i] = exp(x[i] − max)` over whole lanes; returns their sum.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let m = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 8 floats, exclusively borrowed; unaligned accesses.
        unsafe {
            let v = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m));
            _mm256_storeu_ps(c.as_mut_ptr(), v);
            sum = _mm256_add_ps(sum, v);
        }
    }
    super::avx2::hsum(sum)
}

/// `x[i] *= s` over whole lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scale(x: &mut [f32], s: f32) {
    let s = _mm256_set1_ps(s);
    for c in x.chunks_exact_mut(LUT_LANES) {
        // SAFETY: the chunk holds 8 floats, exclusively borrowed; unaligned accesses.
        unsafe {
            _mm256_storeu_ps(
                c.as_mut_ptr(),
                _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), s),
            )
        };
    }
}

/// `gate[i] = gate[i] / (1 + exp(−gate[i])) · up[i]` over whole lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) {
    let one = _mm256_set1_ps(1.0);
    let neg = _mm256_set1_ps(-0.0);
    for (g, u) in gate
        .chunks_exact_mut(LUT_LANES)
        .zip(up.chunks_exact(LUT_LANES))
    {
        // SAFETY: both chunks hold 8 floats, `g` exclusively borrowed; unaligned accesses.
        unsafe {
            let gv = _mm256_loadu_ps(g.as_ptr());
            let e = exp8(_mm256_xor_ps(gv, neg));
            let s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(
                g.as_mut_ptr(),
                _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())),
            );
        }
    }
}

/// `gate[i] = gate[i] / (1 + exp(−2K·(g + C·g³))) · up[i]` over whole lanes (the tanh GELU,
/// `scalar::gelu_tanh_glu_lut_f32`, in its operation order).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gelu(gate: &mut [f32], up: &[f32]) {
    let one = _mm256_set1_ps(1.0);
    let k = _mm256_set1_ps(-2.0 * GELU_TANH_K);
    let c = _mm256_set1_ps(GELU_TANH_C);
    for (g, u) in gate
        .chunks_exact_mut(LUT_LANES)
        .zip(up.chunks_exact(LUT_LANES))
    {
        // SAFETY: both chunks hold 8 floats, `g` exclusively borrowed; unaligned accesses.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr());
            // Unfused, as the reference rounds: C·x, ·x, ·x, + x, · (−2K).
            let x3 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(c, x), x), x);
            let z = _mm256_mul_ps(k, _mm256_add_ps(x, x3));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, exp8(z)));
            _mm256_storeu_ps(
                g.as_mut_ptr(),
                _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())),
            );
        }
    }
}

// ---- install and safe wrappers ---------------------------------------------------------------
// Wrapper notes: reachable only through `install`, which the parent calls after
// `detected(backend)` for a backend that includes AVX2 + FMA + F16C, all these bodies enable.

lut_wrappers!(self);

/// Puts the table-exp kernels in `k` (every x86_64 backend: they need only AVX2 + FMA).
pub(super) fn install(k: &mut crate::dispatch::Kernels) {
    k.exp = named!(exp_lut, "exp_lut_f32/avx2");
    k.softmax = named!(softmax_lut, "softmax_lut_f32/avx2");
    k.swiglu = named!(swiglu_lut, "swiglu_lut_f32/avx2");
    k.gelu = named!(gelu_lut, "gelu_tanh_glu_lut_f32/avx2");
}
