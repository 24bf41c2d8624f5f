//! ggml's quantizer building blocks, ported operation for operation (every `a*b*c` is
//! `(a*b)*c`, no fused multiply-add), shared by the quantizers that reproduce ggml's bytes:
//! Q4_K and Q6_K (`kquants.rs`), Q5_K (`kquants5.rs`), Q3_K and Q2_K (`kquants_low.rs`) and
//! IQ4_NL (`iq4_nl.rs`).
//!
//! Hand-written rather than generic over the callers' block types: each function is one of
//! ggml's `static` helpers in `ggml-quants.c`, kept checkable against it line by line.

/// Groups whose largest magnitude is below this quantize to zero (ggml's `GROUP_MAX_EPS`).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: `v` rounded to the nearest integer, ties to even, by adding 1.5·2²³
/// (so the f32 addition does the rounding) and reading the low mantissa bits. Exact for
/// |v| ≤ 2²² − 1; outside that (and for NaN) it returns what ggml's returns, the same bit
/// manipulation.
#[inline(always)]
pub(super) fn nearest_int(v: f32) -> i32 {
    let biased = v + 12_582_912.0;
    (biased.to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// ggml's `make_qkx2_quants`: a scale and a min for the weights `x` (importance `weights`),
/// codes `l[i]` in `0..=nmax`, returned as `(scale, −min)`, so that `x[i] ≈ scale·l[i] + min`
/// with `min ≤ 0`; `laux` is scratch of `x`'s length.
///
/// Starts from the range `[min(x_min, 0), x_max]` split in `nmax` steps, then tries the
/// `nstep + 1` step counts `nmax + rmin + rdelta·k`: for each it rounds the codes, fits scale
/// and min by weighted least squares (the min clamped to at most 0, the scale refitted then),
/// and keeps the fit of least weighted error: absolute deviation if `use_mad` (Q2_K), squared
/// otherwise (Q5_K).
#[expect(
    clippy::too_many_arguments,
    reason = "ggml's signature, to keep the port checkable"
)]
pub(super) fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    assert!(n > 0 && weights.len() == n && l.len() == n && laux.len() == n);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let code = |v: f32| nearest_int(v).clamp(0, nmax) as u8;
    let error = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        l[i] = code(iscale * (x[i] - min));
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * error(diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let li = code(iscale * (x[i] - min));
            laux[i] = li;
            let (w, lf) = (weights[i], li as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * error(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` as `quantize_row_q6_K_ref` calls it (`rmse_type` 1, no importance
/// weights, so each weight counts `x²`): a signed scale for the weights `x` and codes `l[i]` in
/// `0..2·nmax`, so that `x[i] ≈ scale·(l[i] − nmax)`.
///
/// Starts from the scale that maps the weight of largest magnitude to code `−nmax` (its sign
/// kept, so that one reaches the unpaired end of `−nmax..nmax`), fits the scale to the rounded
/// codes by weighted least squares, then tries the 18 step counts `nmax + 0.1·k`, `k` in
/// `−9..=9` without 0, keeping the codes and fit of largest `(Σ w·x·l)² / Σ w·l²` (least
/// weighted squared error). A group whose largest magnitude is below [`GROUP_MAX_EPS`] gets
/// scale 0 and codes 0.
pub(super) fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [u8]) -> f32 {
    assert_eq!(x.len(), l.len());
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Σ w·x·l and Σ w·l² with w = x², each product in ggml's order.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let lf = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, l: &mut [u8]| {
        for (&v, l) in x.iter().zip(l.iter_mut()) {
            *l = (code(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    //! Corner cases. Agreement with ggml's own quantizers is `tests/formats_reference.rs`.

    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (v, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.49, -2),
            (3.49, 3),
            (3.7, 4),
            (-3.51, -4),
            (-3.7, -4),
            (0.0, 0),
            (31.0, 31),
            (4_194_303.0, 4_194_303),
            (-4_194_303.0, -4_194_303),
        ] {
            assert_eq!(nearest_int(v), want, "{v}");
        }
    }

    #[test]
    fn make_qkx2_quants_constant_and_ramp() {
        for use_mad in [true, false] {
            let (mut l, mut laux) = ([9u8; 16], [0u8; 16]);
            // Constant positive: min clamps to 0, range [0, 3]: scale 1, codes 3.
            let x = [3.0f32; 16];
            let w = x.map(f32::abs);
            let (s, m) = make_qkx2_quants(&x, &w, 3, &mut l, &mut laux, -0.5, 0.1, 15, use_mad);
            assert_eq!((s, m), (1.0, 0.0));
            assert_eq!(l, [3; 16]);
            // An exact four-level ramp is fitted exactly.
            let x: [f32; 16] = core::array::from_fn(|i| (i % 4) as f32 * 0.5 - 1.0);
            let w = x.map(f32::abs);
            let (s, m) = make_qkx2_quants(&x, &w, 3, &mut l, &mut laux, -0.5, 0.1, 15, use_mad);
            assert_eq!((s, m), (0.5, 1.0), "use_mad {use_mad}");
            let want: [u8; 16] = core::array::from_fn(|i| (i % 4) as u8);
            assert_eq!(l, want);
        }
    }

    #[test]
    fn make_qx_quants_zero_and_exact_levels() {
        let mut l = [9u8; 16];
        assert_eq!(make_qx_quants(&[0.0; 16], 32, &mut l), 0.0);
        assert_eq!(l, [0; 16]);
        // Weights −2, −1.75, …, 1.75: the largest magnitude, −2, maps to code −32, so every
        // weight is a code times 1/16 and the least-squares fit is exact.
        let x: [f32; 16] = core::array::from_fn(|i| (i as f32 - 8.0) * 0.25);
        let s = make_qx_quants(&x, 32, &mut l);
        for (&v, &q) in x.iter().zip(&l) {
            assert_eq!(s * (q as f32 - 32.0), v, "scale {s}");
        }
    }
}
