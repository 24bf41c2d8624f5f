//! The scalar kernels against hand-built blocks (element order, formulas) and each other.

use super::*;
use crate::blocks::{
    as_bytes, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le,
};

extern crate alloc;
use alloc::vec;
use alloc::vec::Vec;

/// Deterministic xorshift values in [-1, 1) (the scalar modules' unit tests share it).
pub(super) fn randoms(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[test]
fn q4_0_element_order_and_values() {
    // Byte j: low nibble = element j, high nibble = element j + 16.
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | ((15 - j as u8) << 4);
    }
    let b = BlockQ4_0 {
        d: F16Le::from_f32(0.5),
        qs,
    };
    let mut out = [0.0f32; 32];
    dequant_q4_0(as_bytes(&[b]), &mut out);
    for j in 0..16 {
        assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(out[j + 16], ((15 - j) as f32 - 8.0) * 0.5);
    }
}

#[test]
fn q4_1_element_order_and_values() {
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | (3 << 4);
    }
    let b = BlockQ4_1 {
        d: F16Le::from_f32(2.0),
        m: F16Le::from_f32(-1.0),
        qs,
    };
    let mut out = [0.0f32; 32];
    dequant_q4_1(as_bytes(&[b]), &mut out);
    for j in 0..16 {
        assert_eq!(out[j], j as f32 * 2.0 - 1.0);
        assert_eq!(out[j + 16], 3.0 * 2.0 - 1.0);
    }
}

#[test]
fn q5_element_order_and_values() {
    // Byte j: low nibble = element j, high nibble = element j + 16; qh bit j = element j's
    // fifth bit. Element j gets code (j | (j odd) << 4), element j + 16 code 15 − j | 16.
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | ((15 - j as u8) << 4);
        qh |= ((j as u32) & 1) << j | 1 << (j + 16);
    }
    let code = |e: usize| {
        if e < 16 {
            e | (e & 1) << 4
        } else {
            (31 - e) | 16
        }
    };
    let b0 = BlockQ5_0 {
        d: F16Le::from_f32(0.5),
        qh: qh.to_le_bytes(),
        qs,
    };
    let b1 = BlockQ5_1 {
        d: F16Le::from_f32(2.0),
        m: F16Le::from_f32(-1.0),
        qh: qh.to_le_bytes(),
        qs,
    };
    let (mut out0, mut out1) = ([0.0f32; 32], [0.0f32; 32]);
    dequant_q5_0(as_bytes(&[b0]), &mut out0);
    dequant_q5_1(as_bytes(&[b1]), &mut out1);
    for e in 0..32 {
        assert_eq!(out0[e], (code(e) as f32 - 16.0) * 0.5, "Q5_0 element {e}");
        assert_eq!(out1[e], code(e) as f32 * 2.0 - 1.0, "Q5_1 element {e}");
    }
}

#[test]
fn iq4_nl_every_code() {
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | ((15 - j as u8) << 4);
    }
    let b = BlockIQ4_NL {
        d: F16Le::from_f32(0.25),
        qs,
    };
    let mut out = [0.0f32; 32];
    dequant_iq4_nl(as_bytes(&[b]), &mut out);
    for j in 0..16 {
        assert_eq!(out[j], IQ4_NL_VALUES[j] as f32 * 0.25);
        assert_eq!(out[j + 16], IQ4_NL_VALUES[15 - j] as f32 * 0.25);
    }
    assert!(IQ4_NL_VALUES.windows(2).all(|p| p[0] < p[1]), "sorted");
}

#[test]
fn q8_0_values_including_extremes() {
    let mut qs = [0i8; 32];
    qs[0] = -128;
    qs[1] = 127;
    qs[2] = -1;
    let b = BlockQ8_0 {
        d: F16Le::from_f32(0.25),
        qs,
    };
    let mut out = [0.0f32; 32];
    dequant_q8_0(as_bytes(&[b]), &mut out);
    assert_eq!(&out[..3], &[-32.0, 31.75, -0.25]);
    assert!(out[3..].iter().all(|&v| v == 0.0));
}

/// Dot products equal the dot of the dequantized row, up to f32 summation order.
fn check_dot_matches_dequant(
    dequant: fn(&[u8], &mut [f32]),
    dot: fn(&[u8], &[f32]) -> f32,
    row: &[u8],
    n: usize,
) {
    let x = randoms(n, 99);
    let mut w = vec![0.0; n];
    dequant(row, &mut w);
    let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
    let bound: f64 = w
        .iter()
        .zip(&x)
        .map(|(a, b)| (*a as f64 * *b as f64).abs())
        .sum::<f64>()
        * 1e-5
        + 1e-6;
    let got = dot(row, &x) as f64;
    assert!(
        (got - exact).abs() <= bound,
        "dot {got} vs {exact} (bound {bound})"
    );
}

#[test]
fn quantize_roundtrip_and_dot_products() {
    for &n in &[32usize, 64, 96, 576, 1536] {
        let x: Vec<f32> = randoms(n, n as u64).iter().map(|v| v * 3.0).collect();
        let mut back = vec![0.0; n];

        let mut q40 = vec![0u8; n / 32 * 18];
        quantize_q4_0(&x, &mut q40);
        dequant_q4_0(&q40, &mut back);
        // Q4_0's step is max|x|/8 per block and its codes span −8..7 step: values of the sign
        // opposite to the largest clamp at 7 steps, so the error reaches one whole step there.
        for (b, (a, r)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(r) {
                assert!(
                    (u - v).abs() <= amax / 8.0 + amax / 2048.0 + 1e-6,
                    "Q4_0 block {b}: {u} vs {v}"
                );
            }
        }
        check_dot_matches_dequant(dequant_q4_0, dot_q4_0_f32, &q40, n);

        let mut q41 = vec![0u8; n / 32 * 20];
        quantize_q4_1(&x, &mut q41);
        dequant_q4_1(&q41, &mut back);
        for (a, r) in x.chunks(32).zip(back.chunks(32)) {
            let (lo, hi) = a
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            for (u, v) in a.iter().zip(r) {
                assert!(
                    (u - v).abs() <= (hi - lo) / 30.0 * 1.01 + 2e-3,
                    "Q4_1: {u} vs {v}"
                );
            }
        }
        check_dot_matches_dequant(dequant_q4_1, dot_q4_1_f32, &q41, n);

        let mut q8 = vec![0u8; n / 32 * 34];
        quantize_q8_0(&x, &mut q8);
        dequant_q8_0(&q8, &mut back);
        for (a, r) in x.chunks(32).zip(back.chunks(32)) {
            let amax = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(r) {
                // Half a step, plus the f16 rounding of the scale (2^-11 relative) times 127.
                assert!(
                    (u - v).abs() <= amax / 254.0 + amax / 2048.0 + 1e-6,
                    "Q8_0: {u} vs {v}"
                );
            }
        }
        check_dot_matches_dequant(dequant_q8_0, dot_q8_0_f32, &q8, n);

        // Q5_0: step max|x|/16, codes −16..15: as Q4_0, the far side clamps at 15 steps.
        let mut q50 = vec![0u8; n / 32 * 22];
        quantize_q5_0(&x, &mut q50);
        dequant_q5_0(&q50, &mut back);
        for (a, r) in x.chunks(32).zip(back.chunks(32)) {
            let amax = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(r) {
                assert!(
                    (u - v).abs() <= amax / 16.0 + amax / 2048.0 + 1e-6,
                    "Q5_0: {u} vs {v}"
                );
            }
        }
        check_dot_matches_dequant(dequant_q5_0, dot_q5_0_f32, &q50, n);

        let mut q51 = vec![0u8; n / 32 * 24];
        quantize_q5_1(&x, &mut q51);
        dequant_q5_1(&q51, &mut back);
        for (a, r) in x.chunks(32).zip(back.chunks(32)) {
            let (lo, hi) = a
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            for (u, v) in a.iter().zip(r) {
                assert!(
                    (u - v).abs() <= (hi - lo) / 62.0 * 1.01 + 2e-3,
                    "Q5_1: {u} vs {v}"
                );
            }
        }
        check_dot_matches_dequant(dequant_q5_1, dot_q5_1_f32, &q51, n);

        // IQ4_NL: the codebook's widest gap is 24 (89 → 113) at the scale max|x|/113 or
        // near it, so an element errs by at most about 12/113 of the block max, plus the slack
        // of the scale search (which may shrink the scale by up to 7/127).
        let mut iq4 = vec![0u8; n / 32 * 18];
        quantize_iq4_nl(&x, &mut iq4);
        dequant_iq4_nl(&iq4, &mut back);
        for (a, r) in x.chunks(32).zip(back.chunks(32)) {
            let amax = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(r) {
                assert!((u - v).abs() <= amax * 0.15, "IQ4_NL: {u} vs {v}");
            }
        }
        check_dot_matches_dequant(dequant_iq4_nl, dot_iq4_nl_f32, &iq4, n);
    }
}

#[test]
fn zero_blocks_quantize_to_zero() {
    let x = [0.0f32; 64];
    type Codec = (usize, fn(&[f32], &mut [u8]), fn(&[u8], &mut [f32]));
    let codecs: [Codec; 4] = [
        (18, quantize_q4_0, dequant_q4_0),
        (22, quantize_q5_0, dequant_q5_0),
        (24, quantize_q5_1, dequant_q5_1),
        (18, quantize_iq4_nl, dequant_iq4_nl),
    ];
    for (bytes, quantize, dequant) in codecs {
        let mut q = vec![0xAAu8; 2 * bytes];
        quantize(&x, &mut q);
        let mut back = [1.0f32; 64];
        dequant(&q, &mut back);
        assert!(back.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn float_formats() {
    let vals = [1.0f32, -2.5, 0.0, 65504.0];
    let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    let bf16_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    let mut out = [0.0f32; 4];
    dequant_f32(&f32_bytes, &mut out);
    assert_eq!(out, vals);
    dequant_f16(&f16_bytes, &mut out);
    assert_eq!(out, vals);
    dequant_bf16(&bf16_bytes, &mut out);
    assert_eq!(&out[..3], &vals[..3]);
    let x = [1.0f32, 1.0, 1.0, 0.0];
    assert_eq!(dot_f32_f32(&f32_bytes, &x), -1.5);
    assert_eq!(dot_f16_f32(&f16_bytes, &x), -1.5);
    assert_eq!(dot_bf16_f32(&bf16_bytes, &x), -1.5);
}

#[test]
fn softmax_is_stable_and_normalized() {
    let mut x = [1000.0f32, 1000.0, -1000.0, f32::NEG_INFINITY];
    softmax(&mut x);
    assert_eq!(x, [0.5, 0.5, 0.0, 0.0]);
    let mut masked = [f32::NEG_INFINITY; 3];
    softmax(&mut masked);
    assert_eq!(masked, [0.0; 3]);
    let mut r = randoms(1000, 5);
    softmax(&mut r);
    let s: f32 = r.iter().sum();
    assert!((s - 1.0).abs() < 1e-5 && r.iter().all(|&p| (0.0..=1.0).contains(&p)));
}

#[test]
fn rope_pairs_and_partial_rotation() {
    // A quarter turn maps (1, 0) to (0, 1).
    let (c, s) = ([0.0f32], [1.0f32]);
    let mut x = [1.0f32, 0.0, 7.0];
    rope(&mut x, &c, &s, false);
    assert_eq!(x, [0.0, 1.0, 7.0]);
    let mut y = [1.0f32, 5.0, 0.0, 6.0];
    rope(&mut y, &[0.0, 1.0], &[1.0, 0.0], true);
    // NEOX pairs (0, 2) and (1, 3); pair (1, 3) has angle 0.
    assert_eq!(y, [0.0, 5.0, 1.0, 6.0]);
}

#[test]
fn rmsnorm_and_swiglu() {
    let mut out = [0.0f32; 2];
    rmsnorm(&mut out, &[3.0, 4.0], &[1.0, 2.0], 0.0);
    let r = (12.5f32).sqrt();
    assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    let mut g = [0.0f32, 10.0];
    swiglu(&mut g, &[5.0, 2.0]);
    assert_eq!(g[0], 0.0);
    assert!((g[1] - 2.0 * 10.0 / (1.0 + (-10.0f32).exp())).abs() < 1e-5);
}

#[test]
fn dot_f32_handles_tails() {
    for n in [0usize, 1, 7, 8, 9, 63, 64, 65] {
        let a = randoms(n, 1);
        let b = randoms(n, 2);
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_f32(&a, &b) - exact).abs() < 1e-4, "n = {n}");
    }
}
