//! Table-based `exp` for softmax and SiLU: a 16-entry table of `2^(i/16)` and exponent-field
//! arithmetic, with a cubic for the remainder.
//!
//! ```text
//! exp(x) = 2^(x/ln2) = 2^e · 2^(j/16) · exp(r)      k = round(16·x/ln2), e = k >> 4, j = k & 15
//!                                                 r = x − k·ln2/16,   |r| ≤ ln2/32 ≈ 0.0217
//! 2^e · 2^(j/16)  = bits(EXP_LUT[j]) + (e << 23)   (the table entry's exponent field, shifted)
//! exp(r) ≈ 1 + r + r²/2 + r³/6                    (truncation ≤ r⁴/24·e^r < 1e-8)
//! ```
//!
//! The table has 16 entries so SIMD code keeps it in registers (two `vpermps` on AVX2, one
//! `tbl` over four registers on NEON): a lookup is one or two instructions, no memory access.
//! `r` is computed with `ln2/16` split in a high part exact in f32 and a low part
//! (Cody–Waite), so the reduction adds no error beyond one rounding.
//!
//! **Accuracy: relative error at most [`EXP_LUT_MAX_REL_ERROR`] (2·10⁻⁷, about 3.4 ulp) for
//! every result it does not flush**, asserted by a dense sweep against f64 `exp` in the tests
//! (which measure 1.7·10⁻⁷): the table entries are rounded (½ ulp), the cubic truncates below
//! 10⁻⁸, and the reduction, the Horner steps and the final product round a few times more.
//! Inputs below [`EXP_LUT_MIN`] return 0 (results near the subnormal range: irrelevant to a
//! softmax, whose largest term is 1, and to SiLU); above [`EXP_LUT_MAX`], `+∞`; NaN stays
//! NaN. Between the two every result is a normal f32 and the exponent field never overflows.
//!
//! Every backend evaluates the same steps (with or without fused multiply-adds), so all stay
//! within the same bound; their results may differ in the last bits.

use core::f32::consts::SQRT_2;

/// Upper bound of the relative error of [`exp_lut_f32`] (and of every backend's vector exp)
/// against the exact `exp`, for results that are not flushed to 0 or `+∞`.
pub const EXP_LUT_MAX_REL_ERROR: f64 = 2.0e-7;

/// Below this, [`exp_lut_f32`] returns 0 (`exp(−87) ≈ 1.6·10⁻³⁸`, just above the smallest
/// normal f32, so every result it does compute is normal).
pub const EXP_LUT_MIN: f32 = -87.0;
/// Above this, [`exp_lut_f32`] returns `+∞` (`exp(88) ≈ 1.7·10³⁸`, just below `f32::MAX`, so
/// the exponent arithmetic never overflows).
pub const EXP_LUT_MAX: f32 = 88.0;

/// `2^(i/16)` for `i` in `0..16`, rounded to nearest f32.
#[rustfmt::skip]
pub const EXP_LUT: [f32; 16] = [
    1.0,       1.0442737, 1.0905077, 1.1387886,
    1.1892071, 1.2418578, 1.2968396, 1.3542556,
    SQRT_2,    1.4768262, 1.5422108, 1.6104903,
    1.6817929, 1.7562522, 1.8340081, 1.9152066,
];

/// `16 / ln 2`: the scale that turns `x` into table steps.
pub const EXP_LUT_SCALE: f32 = 23.08312;
/// `ln 2 / 16`, high part: 12 significant bits, so `k · EXP_LUT_LN2_HI` is exact for every
/// step count `|k| < 2^12` the clamped range produces.
pub const EXP_LUT_LN2_HI: f32 = 0.043319702;
/// `ln 2 / 16 − EXP_LUT_LN2_HI`.
pub const EXP_LUT_LN2_LO: f32 = 1.9966365e-6;

/// Rounds to the nearest integer, ties to even, for `|v| < 2^22` (adding and subtracting
/// 1.5·2^23 leaves exactly the integer part in the mantissa).
#[inline(always)]
fn round_nearest(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (v + MAGIC) - MAGIC
}

/// `exp(x)` through the 16-entry table (see the module docs for the method and its error).
#[inline]
pub fn exp_lut_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < EXP_LUT_MIN {
        return 0.0;
    }
    if x > EXP_LUT_MAX {
        return f32::INFINITY;
    }
    let kf = round_nearest(x * EXP_LUT_SCALE);
    let k = kf as i32;
    let r = (x - kf * EXP_LUT_LN2_HI) - kf * EXP_LUT_LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0)));
    let e = ((k >> 4) as u32) << 23;
    f32::from_bits(EXP_LUT[(k & 15) as usize].to_bits().wrapping_add(e)) * p
}

/// `x[i] = exp(x[i])` with [`exp_lut_f32`].
pub fn exp_lut_f32_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = exp_lut_f32(*v);
    }
}

/// Softmax in place with [`exp_lut_f32`]: subtracts the maximum first (so no term
/// overflows), normalizes by the sum; an all-`-∞` (fully masked) row becomes zeros. Each
/// probability is within `2·EXP_LUT_MAX_REL_ERROR` (plus the sum's rounding) of the exact
/// softmax's, relatively.
pub fn softmax_lut_f32(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = exp_lut_f32(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The SwiGLU product with SiLU through [`exp_lut_f32`]:
/// `gate[i] = gate[i] / (1 + exp(−gate[i])) · up[i]`.
pub fn swiglu_lut_f32(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp_lut_f32(-*g)) * u;
    }
}

/// `√(2/π)`, the tanh GELU's inner scale.
pub const GELU_TANH_K: f32 = 0.797_884_6;
/// The tanh GELU's cubic coefficient.
pub const GELU_TANH_C: f32 = 0.044_715;

/// GeGLU with the tanh GELU through [`exp_lut_f32`]: `gate[i] = gelu(gate[i]) · up[i]` with
/// `gelu(x) = 0.5·x·(1 + tanh(y))`, `y = √(2/π)·(x + 0.044715·x³)`, computed as
/// `x / (1 + exp(−2y))` (the same function: `(1 + tanh y)/2 = 1/(1 + e^{−2y})`). One table
/// exp per element instead of a libm `tanhf`, and no cancellation in `1 + tanh(y)` for
/// negative `x`: relative error within [`EXP_LUT_MAX_REL_ERROR`] plus a few roundings per unit
/// of `|2y|` (the argument's own rounding), see `check_gelu` in `tests/simd_kernels.rs`.
pub fn gelu_tanh_glu_lut_f32(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let z = -2.0 * GELU_TANH_K * (x + GELU_TANH_C * x * x * x);
        *g = x / (1.0 + exp_lut_f32(z)) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and constants are what their docs say.
    #[test]
    fn constants() {
        for (i, &t) in EXP_LUT.iter().enumerate() {
            let exact = libm::exp2(i as f64 / 16.0);
            assert_eq!(t, exact as f32, "entry {i}");
        }
        let ln2_16 = core::f64::consts::LN_2 / 16.0;
        assert_eq!(EXP_LUT_SCALE, (1.0 / ln2_16) as f32);
        assert!((EXP_LUT_LN2_HI as f64 + EXP_LUT_LN2_LO as f64 - ln2_16).abs() < 2e-13);
        // The high part has at most 12 significant bits: k·hi is exact for |k| < 2^12.
        assert_eq!(EXP_LUT_LN2_HI.to_bits() & 0xFFF, 0);
        assert!(libm::exp(EXP_LUT_MIN as f64) > f32::MIN_POSITIVE as f64);
        assert!(libm::exp(EXP_LUT_MAX as f64) < f32::MAX as f64 / 2.0);
    }

    /// The documented bound, over a dense sweep of the whole finite range: every f32 bit
    /// pattern in steps of 64 ulp (about 67 million inputs), plus every input within 2^16 ulp
    /// of 0, of the thresholds and of the table's breakpoints near zero.
    #[test]
    fn relative_error_within_documented_bound() {
        let mut worst = (0.0f64, 0.0f32);
        let mut check = |x: f32| {
            let got = exp_lut_f32(x);
            if x < EXP_LUT_MIN {
                assert_eq!(got, 0.0, "x = {x}");
                return;
            }
            if x > EXP_LUT_MAX {
                assert_eq!(got, f32::INFINITY, "x = {x}");
                return;
            }
            let exact = libm::exp(x as f64);
            let rel = (got as f64 - exact).abs() / exact;
            if rel > worst.0 {
                worst = (rel, x);
            }
        };
        // Every 2^6-th f32; every 2^9-th on aarch64, where CI runs this under qemu.
        let stride = if cfg!(target_arch = "aarch64") {
            512
        } else {
            64
        };
        for bits in (0..=u32::MAX).step_by(stride) {
            let x = f32::from_bits(bits);
            if x.is_finite() && x.abs() < 100.0 {
                check(x);
            }
        }
        for centre in [
            0.0f32,
            EXP_LUT_MIN,
            EXP_LUT_MAX,
            0.021_660,
            -0.021_660,
            1.0,
            -1.0,
        ] {
            let c = centre.to_bits() as i64;
            for d in -65536i64..=65536 {
                check(f32::from_bits((c + d).clamp(0, u32::MAX as i64) as u32));
                check(-f32::from_bits((c + d).clamp(0, u32::MAX as i64) as u32));
            }
        }
        std::println!("max relative error {:e} at x = {}", worst.0, worst.1);
        assert!(
            worst.0 <= EXP_LUT_MAX_REL_ERROR,
            "max relative error {:e} at x = {}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(exp_lut_f32(0.0), 1.0);
        assert_eq!(exp_lut_f32(-0.0), 1.0);
        assert_eq!(exp_lut_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_lut_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_lut_f32(f32::NAN).is_nan());
        assert_eq!(exp_lut_f32(-100.0), 0.0);
        assert_eq!(exp_lut_f32(100.0), f32::INFINITY);
    }

    #[test]
    fn softmax_lut_sums_to_one_and_tracks_exact() {
        let mut x: [f32; 7] = [1.0, -2.0, 3.5, 0.0, -30.0, 3.5, 10.0];
        let mut exact = x;
        softmax_lut_f32(&mut x);
        super::super::softmax(&mut exact);
        let sum: f32 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        for (a, b) in x.iter().zip(&exact) {
            assert!((a - b).abs() <= 1e-6 * b.abs() + 1e-30, "{a} vs {b}");
        }
        let mut masked = [f32::NEG_INFINITY; 4];
        softmax_lut_f32(&mut masked);
        assert_eq!(masked, [0.0; 4]);
    }

    #[test]
    fn gelu_lut_tracks_libm() {
        let g: [f32; 9] = [-100.0, -10.0, -3.0, -1.0, -0.0, 0.5, 3.0, 20.0, 100.0];
        let u = [1.5f32; 9];
        let (mut a, mut b) = (g, g);
        gelu_tanh_glu_lut_f32(&mut a, &u);
        super::super::gelu_tanh_glu(&mut b, &u);
        for (x, y) in a.iter().zip(&b) {
            // 1e-6 relative, or the libm form's own cancellation in 1 + tanh for x ≪ 0.
            assert!((x - y).abs() <= 1e-6 * y.abs() + 1e-6, "{x} vs {y}");
        }
    }

    #[test]
    fn swiglu_lut_tracks_exact() {
        let g: [f32; 8] = [-100.0, -10.0, -1.0, -0.0, 0.5, 3.0, 20.0, 100.0];
        let u = [1.5f32; 8];
        let (mut a, mut b) = (g, g);
        swiglu_lut_f32(&mut a, &u);
        super::super::swiglu(&mut b, &u);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * y.abs() + 1e-30, "{x} vs {y}");
        }
    }
}
