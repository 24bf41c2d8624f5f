//! Every backend against the scalar reference: one generic suite per kernel, instantiated for
//! each [`Backend`] (skipped, with a note, only when this CPU or build lacks it). Run the NEON
//! instances under qemu: `QEMU_CPU=cortex-a53` (no dotprod, no i8mm) and `QEMU_CPU=max`.
//!
//! # Error budgets
//!
//! | kernel                     | budget vs scalar reference                        | why |
//! |----------------------------|---------------------------------------------------|-----|
//! | `dequant_*`                | bit-identical                                     | (1) |
//! | `quantize_act_q8`          | byte-identical (finite inputs)                    | (2) |
//! | `dot_q8` on dyadic inputs  | identical                                         | (3) |
//! | `dot_q8` on real inputs    | `2·γ(K)·Σ|d_w·w·d_a·a|`, K = blocks + 48          | (4) |
//! | `dot` (row · f32)          | `2·γ(K)·Σ|w·x|` (Q4_1: `|q·d·x| + |m·x|`), K = blocks + 48 | (4) |
//! | `dot_f32`                  | `2·γ(K)·Σ|a·b|`, K = n/8 + 16                     | (4) |
//! | `axpy`                     | `3ε·(|y| + |a·x|)` per element                    | (5) |
//! | `gemm_q8` of every NEON backend | bit-identical to `scalar::gemm_i8`            | (6) |
//!
//! (1) Each value is a small integer times an f16 scale, exact in f32; Q4_1 adds `m` with one
//!     rounding, the same whether fused or not because the product is exact.
//! (2) Every backend computes the same `act_scale`, the same product `x·id` and the same
//!     `trunc(|v| + 0.5)` rounding, so the codes and the f32 `d`, `s` agree bit for bit.
//! (3) The integer part is exact in every backend. With power-of-two scales every product
//!     and every partial sum is an integer multiple of the smallest unit below 2^24 units, so
//!     every f32 operation is exact in any order; any difference would be an integer error.
//! (4) Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1 and §2.2: a sum of
//!     products evaluated in any order, with or without FMA, in which each term passes
//!     through at most K roundings on its way to the result (its depth in the evaluation
//!     tree, counting its product and scalings), is within `γ(K)·Σ|terms|` of the exact value,
//!     `γ(K) = Kε/(1 − Kε)`, `ε = 2^-24`. Both the backend and the reference obey it, hence
//!     the factor 2. Row dots: product 1, within-block sums ≤ 32, block scale ≤ 2 (the
//!     `d_w·d_a` product and its application), Q4_1's `+ m` term 2, across blocks ≤ blocks
//!     (one running sum per lane), lane reduction ≤ 4: K = blocks + 48 is an upper bound for
//!     every backend and the reference. `dot_f32`: the reference runs 8 sums of n/8 terms and
//!     reduces in 3 levels plus a tail of ≤ 7; the SIMD paths run 16 or 32 lanes: K = n/8 + 16.
//!     Plus `2n · 2^-149` for products that could underflow.
//! (5) The reference rounds `a·x` and then the sum, FMA rounds once: each within `ε` of its
//!     operand magnitudes.
//! (6) NEON's int8 tiles fold each (row, token) block dot to one exact integer (`addp` of the
//!     `sdot`/`sadalp` lanes, or one `smmla` lane) and run `scalar::gemm_i8`'s f32 steps in
//!     its order (see `arch/aarch64/gemm.rs`), so the GGUF layout and the repacked one give
//!     the same bits; against `dot_q8` they keep the budget of (4). The shapes include row
//!     counts that are not multiples of the 4-row tile and 1..16 tokens (both tile widths).

mod common;
use common::*;
use tern_kernels::blocks::{
    as_blocks, as_bytes, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le,
};
use tern_kernels::scalar::{self, act_q8_bytes, BlockQ8Act};
use tern_kernels::{Backend, Format, Kernels};

// ---- inputs --------------------------------------------------------------------------------

/// Lengths every kernel sees: 32·k for k = 1..=9, and real model widths.
const LENGTHS: [usize; 12] = [32, 64, 96, 128, 160, 192, 224, 256, 288, 576, 1536, 4096];

/// Scales a block may get: zero, negative zero, f16 extremes, f16 subnormals, ordinary.
const SCALES: [f32; 9] = [
    0.0,
    -0.0,
    65504.0,      // f16 max
    -65504.0,     //
    5.9604645e-8, // smallest f16 subnormal, 2^-24
    3.0517578e-5, // f16 subnormal, 2^-15
    1.0,
    -0.5,
    0.0123,
];

/// How a block's codes are drawn.
#[derive(Clone, Copy)]
enum Codes {
    Random,
    /// Every code the smallest (Q4 nibble 0, Q8 −128).
    Min,
    /// Every code the largest (Q4 nibble 15, Q8 127).
    Max,
    /// Smallest and largest alternating.
    Alternate,
}

/// Per block: either typical (random codes and a small random scale) or adversarial (a
/// pattern from [`Codes`] and a scale from [`SCALES`]); `adversarial` picks how often.
fn block_style(rng: &mut Rng, adversarial: bool) -> (Codes, f32, f32) {
    let typical = (
        Codes::Random,
        0.001 + 0.05 * rng.f32().abs(),
        0.1 * rng.f32(),
    );
    if !adversarial || rng.below(2) == 0 {
        return typical;
    }
    let codes = [Codes::Random, Codes::Min, Codes::Max, Codes::Alternate][rng.below(4) as usize];
    let d = SCALES[rng.below(SCALES.len() as u64) as usize];
    let m = SCALES[rng.below(SCALES.len() as u64) as usize];
    (codes, d, m)
}

fn code(rng: &mut Rng, codes: Codes, j: usize, lo: i32, hi: i32) -> i32 {
    match codes {
        Codes::Random => lo + rng.below((hi - lo + 1) as u64) as i32,
        Codes::Min => lo,
        Codes::Max => hi,
        Codes::Alternate => [lo, hi][j % 2],
    }
}

fn q4_codes(rng: &mut Rng, codes: Codes) -> [u8; 16] {
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = code(rng, codes, j, 0, 15) as u8;
        let hi = code(rng, codes, j + 1, 0, 15) as u8;
        *q = lo | (hi << 4);
    }
    qs
}

/// The 32 codes of a Q5 block (every code 0..=31 reachable) as `(qh, qs)`.
fn q5_codes(rng: &mut Rng, codes: Codes) -> ([u8; 4], [u8; 16]) {
    let q: [u8; 32] = core::array::from_fn(|j| code(rng, codes, j, 0, 31) as u8);
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 15) | (q[j + 16] & 15) << 4;
        qh |= ((q[j] >> 4) as u32) << j | ((q[j + 16] >> 4) as u32) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

/// A row of `n` weights in `format` (one of [`TESTED`]).
fn weight_row(format: Format, n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut row = Vec::new();
    for _ in 0..n / 32 {
        let (codes, d, m) = block_style(&mut rng, adversarial);
        let d = F16Le::from_f32(d);
        match format {
            Format::Q4_0 => row.extend_from_slice(as_bytes(&[BlockQ4_0 {
                d,
                qs: q4_codes(&mut rng, codes),
            }])),
            Format::Q4_1 => row.extend_from_slice(as_bytes(&[BlockQ4_1 {
                d,
                m: F16Le::from_f32(m),
                qs: q4_codes(&mut rng, codes),
            }])),
            Format::Q8_0 => {
                let mut qs = [0i8; 32];
                for (j, q) in qs.iter_mut().enumerate() {
                    *q = code(&mut rng, codes, j, -128, 127) as i8;
                }
                row.extend_from_slice(as_bytes(&[BlockQ8_0 { d, qs }]));
            }
            Format::Q5_0 => {
                let (qh, qs) = q5_codes(&mut rng, codes);
                row.extend_from_slice(as_bytes(&[BlockQ5_0 { d, qh, qs }]));
            }
            Format::Q5_1 => {
                let (qh, qs) = q5_codes(&mut rng, codes);
                let m = F16Le::from_f32(m);
                row.extend_from_slice(as_bytes(&[BlockQ5_1 { d, m, qh, qs }]));
            }
            Format::IQ4_NL => row.extend_from_slice(as_bytes(&[BlockIQ4_NL {
                d,
                qs: q4_codes(&mut rng, codes),
            }])),
            _ => unreachable!("not a tested format"),
        }
    }
    row
}

/// Activation vectors of length `n`: ordinary, large, tiny, and with negative zeros.
fn activations(n: usize, seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    let base: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
    let mut signed_zeros = base.clone();
    for v in signed_zeros.iter_mut().step_by(3) {
        *v = -0.0;
    }
    vec![
        ("uniform", base.clone()),
        ("large", base.iter().map(|v| v * 3.0e4).collect()),
        ("tiny", base.iter().map(|v| v * 1.0e-20).collect()),
        ("negative zeros", signed_zeros),
        ("zero", vec![0.0; n]),
    ]
}

/// The 32-weight block formats.
const TESTED: [Format; 6] = [
    Format::Q4_0,
    Format::Q4_1,
    Format::Q8_0,
    Format::Q5_0,
    Format::Q5_1,
    Format::IQ4_NL,
];

fn scalar_dequant(format: Format) -> fn(&[u8], &mut [f32]) {
    Kernels::scalar().format(format).dequant.f
}

/// Whether `format`'s values are `q·d + m` (Q4_1, Q5_1).
fn has_m(format: Format) -> bool {
    matches!(format, Format::Q4_1 | Format::Q5_1)
}

/// The offset `m` of block `b` of `row` (the f16 at byte 2 of the block), or 0 for formats
/// without one.
fn block_m(format: Format, row: &[u8], b: usize) -> f32 {
    if !has_m(format) {
        return 0.0;
    }
    let at = b * format.block_bytes() + 2;
    F16Le([row[at], row[at + 1]]).to_f32()
}

// ---- suites --------------------------------------------------------------------------------

fn check_dot_f32(k: &Kernels) {
    let mut rng = Rng::new(1);
    let lengths = (0..=70).chain([255, 1000, 4096]);
    for n in lengths {
        for scale in [1.0f32, 1e4, 1e-10] {
            let a: Vec<f32> = (0..n).map(|_| rng.f32() * scale).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let abs: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let got = (k.dot_f32.f)(&a, &b);
            let want = scalar::dot_f32(&a, &b);
            let what = format!("{} n={n} scale={scale}", k.dot_f32.name);
            assert_close(&what, got, want, budget(n / 8 + 16, abs, n));
        }
    }
}

fn check_axpy(k: &Kernels) {
    let mut rng = Rng::new(2);
    for n in (0..=70).chain([1000]) {
        let a = rng.f32() * 3.0;
        let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let y0: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let (mut got, mut want) = (y0.clone(), y0.clone());
        (k.axpy.f)(&mut got, a, &x);
        scalar::axpy(&mut want, a, &x);
        for i in 0..n {
            let bound = 3.0 * EPS * ((y0[i] as f64).abs() + (a as f64 * x[i] as f64).abs());
            assert_close(
                &format!("{} n={n} i={i}", k.axpy.name),
                got[i],
                want[i],
                bound,
            );
        }
    }
}

fn check_dot(k: &Kernels) {
    for format in TESTED {
        let fk = k.format(format);
        let reference = Kernels::scalar().format(format).dot.f;
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = weight_row(format, n, 100 + i as u64, adversarial);
                let mut w = vec![0.0; n];
                scalar_dequant(format)(&row, &mut w);
                let m: Vec<f32> = (0..n).map(|j| block_m(format, &row, j / 32)).collect();
                for (name, x) in activations(n, 200 + i as u64) {
                    // Q4_1's terms are q·d·x and m·x: both counted.
                    let abs: f64 = (0..n)
                        .map(|j| {
                            let qd = w[j] as f64 - m[j] as f64;
                            (qd * x[j] as f64).abs() + (m[j] as f64 * x[j] as f64).abs()
                        })
                        .sum();
                    let got = (fk.dot.f)(&row, &x);
                    let want = reference(&row, &x);
                    let what = format!("{} n={n} adversarial={adversarial} x={name}", fk.dot.name);
                    assert_close(&what, got, want, budget(n / 32 + 48, abs, n));
                }
            }
        }
    }
}

fn check_dequant(k: &Kernels) {
    for format in TESTED {
        let fk = k.format(format);
        for (i, &n) in LENGTHS.iter().enumerate() {
            let row = weight_row(format, n, 300 + i as u64, true);
            let (mut got, mut want) = (vec![f32::NAN; n], vec![0.0; n]);
            (fk.dequant.f)(&row, &mut got);
            scalar_dequant(format)(&row, &mut want);
            for j in 0..n {
                assert_eq!(
                    got[j].to_bits(),
                    want[j].to_bits(),
                    "{} n={n} element {j}: {} vs {}",
                    fk.dequant.name,
                    got[j],
                    want[j]
                );
            }
        }
    }
}

fn check_quantize_act(k: &Kernels) {
    for (i, &n) in LENGTHS.iter().enumerate() {
        let mut cases = activations(n, 400 + i as u64);
        // Exact halves around d = 1 (amax 127), and a block whose 1/d overflows.
        let mut halves: Vec<f32> = (0..n).map(|j| (j % 255) as f32 - 127.0 + 0.5).collect();
        for b in halves.chunks_mut(32) {
            b[0] = 127.0;
        }
        cases.push(("halves", halves));
        let mut subnormal = vec![0.0f32; n];
        subnormal[0] = 1e-40;
        subnormal[1] = -1e-41;
        cases.push(("subnormal", subnormal));
        for (name, x) in cases {
            let (mut got, mut want) = (vec![0xAAu8; act_q8_bytes(n)], vec![0u8; act_q8_bytes(n)]);
            (k.quantize_act_q8.f)(&x, &mut got);
            scalar::quantize_act_q8(&x, &mut want);
            assert!(
                got == want,
                "{} n={n} x={name}: bytes differ from the reference",
                k.quantize_act_q8.name
            );
        }
    }
}

/// Activation blocks with power-of-two scale 2^-6 and codes in [−127, 127].
fn dyadic_acts(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let d = 1.0f32 / 64.0;
    let mut out = Vec::new();
    for _ in 0..n / 32 {
        let codes =
            [Codes::Random, Codes::Min, Codes::Max, Codes::Alternate][rng.below(4) as usize];
        let mut qs = [0i8; 32];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = code(&mut rng, codes, j, -127, 127) as i8;
        }
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        let b = BlockQ8Act {
            d: d.to_le_bytes(),
            s: (d * sum as f32).to_le_bytes(),
            qs,
        };
        out.extend_from_slice(as_bytes(&[b]));
    }
    out
}

/// A weight row with power-of-two scales (±2^-4, and 0) whose products with `acts` keep every
/// partial sum below 2^24 units of 2^-10, so every f32 operation is exact.
fn dyadic_row(format: Format, n: usize, seed: u64) -> Option<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut row = weight_row(format, n, seed, true);
    let mut total = 0i64;
    let acts = dyadic_acts(n, seed);
    let acts: &[BlockQ8Act] = as_blocks(&acts).unwrap();
    // Every format's `d` is the f16 at byte 0 of its block, `m` (Q4_1, Q5_1) the one at byte 2.
    let bb = format.block_bytes();
    let dyadic = [1.0 / 16.0, -1.0 / 16.0, 0.0];
    for block in row.chunks_exact_mut(bb) {
        block[0..2].copy_from_slice(&F16Le::from_f32(dyadic[rng.below(3) as usize]).0);
        if has_m(format) {
            block[2..4].copy_from_slice(&F16Le::from_f32(dyadic[rng.below(3) as usize]).0);
        }
    }
    // Σ (|q·d| + |m|)·|a| in units of 2^-4 · 2^-6 (|w − m| = |q·d| for the offset formats;
    // both are whole multiples of 2^-4, exact in f32).
    let mut w = vec![0.0f32; n];
    scalar_dequant(format)(&row, &mut w);
    for (j, &wj) in w.iter().enumerate() {
        let m = block_m(format, &row, j / 32);
        let units = (((wj - m).abs() + m.abs()) * 16.0) as i64;
        total += units * (acts[j / 32].qs[j % 32] as i64).abs();
    }
    (total < 1 << 24).then_some(row)
}

fn check_dot_q8_exact(k: &Kernels) {
    for format in TESTED {
        let slot = k.format(format).dot_q8.expect("int8 kernel");
        let reference = Kernels::scalar().format(format).dot_q8.unwrap().f;
        let mut checked = 0;
        for (i, &n) in LENGTHS.iter().enumerate() {
            for seed in 0..16u64 {
                let seed = 500 + 100 * i as u64 + seed;
                let Some(row) = dyadic_row(format, n, seed) else {
                    continue; // partial sums could exceed 2^24 units: not exact in f32
                };
                let acts = dyadic_acts(n, seed);
                let (got, want) = ((slot.f)(&row, &acts), reference(&row, &acts));
                assert!(
                    got == want,
                    "{} n={n} seed={seed}: {got} vs {want}",
                    slot.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 120, "{}: only {checked} exact cases", slot.name);
    }
}

fn check_dot_q8(k: &Kernels) {
    for format in TESTED {
        let slot = k.format(format).dot_q8.expect("int8 kernel");
        let reference = Kernels::scalar().format(format).dot_q8.unwrap().f;
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = weight_row(format, n, 600 + i as u64, adversarial);
                for (name, x) in activations(n, 700 + i as u64) {
                    let mut xq = vec![0u8; act_q8_bytes(n)];
                    scalar::quantize_act_q8(&x, &mut xq);
                    let acts: &[BlockQ8Act] = as_blocks(&xq).unwrap();
                    let mut w = vec![0.0; n];
                    scalar_dequant(format)(&row, &mut w);
                    // Terms d_w·d_a·q·a (Q4_1, Q5_1: q·d·d_a·a and m·d_a·a), bounded via
                    // |w|·|a·d_a| with w the dequantized weight plus |m| for the offset formats.
                    let m = |b: usize| block_m(format, &row, b);
                    let abs: f64 = (0..n)
                        .map(|j| {
                            let a = acts[j / 32].d() as f64 * acts[j / 32].qs[j % 32] as f64;
                            let mb = m(j / 32) as f64;
                            ((w[j] as f64 - mb).abs() + mb.abs()) * a.abs()
                        })
                        .sum();
                    let got = (slot.f)(&row, &xq);
                    let want = reference(&row, &xq);
                    let what = format!("{} n={n} adversarial={adversarial} x={name}", slot.name);
                    assert_close(&what, got, want, budget(n / 32 + 48, abs, n));
                }
            }
        }
    }
}

/// Rows per call the multi-row tests try: remainders around the 4-row step, and more.
const ROW_COUNTS: [usize; 8] = [1, 2, 3, 4, 5, 7, 8, 13];

/// `rows` weight rows of `format`, back to back, each `n` wide.
fn weight_rows(format: Format, rows: usize, n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    (0..rows)
        .flat_map(|r| weight_row(format, n, seed * 31 + r as u64, adversarial))
        .collect()
}

/// `Σ |terms|` of one row dot as [`check_dot`] counts them (Q4_1: `|q·d·x| + |m·x|`).
fn row_abs_sum(format: Format, row: &[u8], x: &[f32]) -> f64 {
    let n = x.len();
    let mut w = vec![0.0; n];
    scalar_dequant(format)(row, &mut w);
    (0..n)
        .map(|j| {
            let m = block_m(format, row, j / 32) as f64;
            ((w[j] as f64 - m) * x[j] as f64).abs() + (m * x[j] as f64).abs()
        })
        .sum()
}

fn check_dot_rows(k: &Kernels) {
    for format in TESTED {
        let slot = k.format(format).dot_rows.expect("multi-row kernel");
        let reference = Kernels::scalar().format(format).dot.f;
        // 4128: wider than the x86_64 kernels' pre-scaled activation buffer.
        for (i, &n) in [32usize, 64, 96, 288, 576, 4128].iter().enumerate() {
            for &rows in &ROW_COUNTS {
                for adversarial in [false, true] {
                    let w = weight_rows(format, rows, n, 800 + i as u64, adversarial);
                    let rb = w.len() / rows;
                    for (name, x) in activations(n, 900 + i as u64) {
                        let mut y = vec![f32::NAN; rows];
                        (slot.f)(&w, &x, &mut y);
                        for (r, row) in w.chunks_exact(rb).enumerate() {
                            let what = format!(
                                "{} n={n} rows={rows} row {r} adversarial={adversarial} x={name}",
                                slot.name
                            );
                            let bound = budget(n / 32 + 48, row_abs_sum(format, row, &x), n);
                            assert_close(&what, y[r], reference(row, &x), bound);
                            // A row's result must not depend on the rows around it: threads
                            // and streamed slices split matrices anywhere.
                            let mut alone = [f32::NAN];
                            (slot.f)(row, &x, &mut alone);
                            assert_eq!(alone[0].to_bits(), y[r].to_bits(), "{what}: alone");
                        }
                    }
                }
            }
        }
    }
}

/// `(m, n)` shapes of the GEMM tests: tile remainders on both sides.
const GEMM_SHAPES: [(usize, usize); 10] = [
    (1, 1),
    (4, 1),
    (5, 1),
    (1, 2),
    (4, 2),
    (3, 3),
    (8, 5),
    (9, 4),
    (13, 7),
    (4, 16),
];

fn check_gemm_q8_exact(k: &Kernels) {
    for format in TESTED {
        let slot = k.format(format).gemm_q8.expect("int8 GEMM");
        let reference = Kernels::scalar().format(format).dot_q8.unwrap().f;
        let mut checked = 0;
        for (i, &kw) in [32usize, 96, 288, 576, 2080].iter().enumerate() {
            for (s, &(m, n)) in GEMM_SHAPES.iter().enumerate() {
                let seed = 1000 + 100 * i as u64 + s as u64;
                let rows: Vec<Vec<u8>> = (0..m)
                    .filter_map(|r| dyadic_row(format, kw, seed + 7 * r as u64))
                    .collect();
                if rows.len() < m {
                    continue; // partial sums could exceed 2^24 units: not exact in f32
                }
                let w: Vec<u8> = rows.concat();
                // Every row was checked against the activations of its own seed; reuse them.
                let xq: Vec<u8> = (0..n)
                    .flat_map(|t| dyadic_acts(kw, seed + 7 * (t % m) as u64))
                    .collect();
                let qb = xq.len() / n;
                let ldy = m + 3;
                let mut y = vec![f32::NAN; (n - 1) * ldy + m];
                (slot.f)(&w, m, &xq, n, &mut y, ldy);
                for t in 0..n {
                    for r in 0..m {
                        let want = reference(&rows[r], &xq[t * qb..(t + 1) * qb]);
                        let got = y[t * ldy + r];
                        if (t % m) == r {
                            assert!(
                                got == want,
                                "{} k={kw} m={m} n={n} ({r}, {t}): {got} vs {want}",
                                slot.name
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked >= 40, "{}: only {checked} exact cases", slot.name);
    }
}

fn check_gemm_q8(k: &Kernels) {
    for format in TESTED {
        let slot = k.format(format).gemm_q8.expect("int8 GEMM");
        let reference = Kernels::scalar().format(format).dot_q8.unwrap().f;
        // 2080 = 65 blocks: more than one 64-block panel of the x86_64 batched kernel.
        for (i, &kw) in [32usize, 64, 96, 576, 2080].iter().enumerate() {
            for &(m, n) in &GEMM_SHAPES {
                for adversarial in [false, true] {
                    let w = weight_rows(format, m, kw, 1100 + i as u64, adversarial);
                    let rb = w.len() / m;
                    let acts = activations(kw, 1200 + i as u64);
                    let x: Vec<f32> = (0..n)
                        .flat_map(|t| acts[t % acts.len()].1.clone())
                        .collect();
                    let qb = act_q8_bytes(kw);
                    let mut xq = vec![0u8; n * qb];
                    for (xt, qt) in x.chunks_exact(kw).zip(xq.chunks_exact_mut(qb)) {
                        scalar::quantize_act_q8(xt, qt);
                    }
                    let mut y = vec![f32::NAN; n * m];
                    (slot.f)(&w, m, &xq, n, &mut y, m);
                    // (6): NEON's tiles run `scalar::gemm_i8` (the repacked layout's product).
                    let bitwise = matches!(
                        k.backend(),
                        Backend::Neon | Backend::NeonDotprod | Backend::NeonI8mm
                    );
                    let mut by_i8 = vec![f32::NAN; n * m];
                    if bitwise {
                        Kernels::scalar().gemm_i8(format, &w, m, &xq, n, &mut by_i8, m);
                    }
                    for t in 0..n {
                        let xqt = &xq[t * qb..(t + 1) * qb];
                        let a: &[BlockQ8Act] = as_blocks(xqt).unwrap();
                        let xd: Vec<f32> = (0..kw)
                            .map(|j| a[j / 32].d() * a[j / 32].qs[j % 32] as f32)
                            .collect();
                        for (r, row) in w.chunks_exact(rb).enumerate() {
                            let what = format!(
                                "{} k={kw} m={m} n={n} ({r}, {t}) adversarial={adversarial}",
                                slot.name
                            );
                            let (got, want) = (y[t * m + r], reference(row, xqt));
                            if bitwise {
                                let exact = by_i8[t * m + r];
                                let same = got.to_bits() == exact.to_bits();
                                assert!(
                                    same || got.is_nan() && exact.is_nan(),
                                    "{what}: {got:e} vs gemm_i8 {exact:e}, not bit-identical"
                                );
                            }
                            let bound = budget(kw / 32 + 48, row_abs_sum(format, row, &xd), kw);
                            assert_close(&what, got, want, bound);
                        }
                    }
                }
            }
        }
    }
}

fn check_gemm_f32(k: &Kernels) {
    let mut rng = Rng::new(3);
    for kw in [0usize, 1, 7, 8, 9, 31, 64, 579] {
        for &(m, n) in &GEMM_SHAPES {
            for scale in [1.0f32, 1e-10, 3e4] {
                let a: Vec<f32> = (0..m * kw).map(|_| rng.f32() * scale).collect();
                let b: Vec<f32> = (0..n * kw).map(|_| rng.f32()).collect();
                let ldy = m + 2;
                let mut y = vec![f32::NAN; (n - 1) * ldy + m];
                (k.gemm_f32.f)(&a, m, &b, n, &mut y, ldy);
                for t in 0..n {
                    for r in 0..m {
                        let (ar, bt) = (&a[r * kw..(r + 1) * kw], &b[t * kw..(t + 1) * kw]);
                        let abs: f64 = ar
                            .iter()
                            .zip(bt)
                            .map(|(x, y)| (*x as f64 * *y as f64).abs())
                            .sum();
                        let what = format!(
                            "{} k={kw} m={m} n={n} ({r}, {t}) scale={scale}",
                            k.gemm_f32.name
                        );
                        assert_close(
                            &what,
                            y[t * ldy + r],
                            scalar::dot_f32(ar, bt),
                            budget(kw / 8 + 16, abs, kw),
                        );
                    }
                }
            }
        }
    }
}

// ---- table exp, softmax, SwiGLU ------------------------------------------------------------

/// The table exp of one input against the exact one: the documented relative bound, or the
/// documented flush / saturation / NaN outside the range.
fn check_exp_value(name: &str, x: f32, got: f32) {
    if x.is_nan() {
        assert!(got.is_nan(), "{name}: exp(NaN) = {got}");
    } else if x < scalar::EXP_LUT_MIN {
        assert_eq!(got, 0.0, "{name}: exp({x}) below the range");
    } else if x > scalar::EXP_LUT_MAX {
        assert_eq!(got, f32::INFINITY, "{name}: exp({x}) above the range");
    } else {
        let exact = (x as f64).exp();
        let rel = (got as f64 - exact).abs() / exact;
        assert!(
            rel <= scalar::EXP_LUT_MAX_REL_ERROR,
            "{name}: exp({x}) = {got:e}, exact {exact:e}, relative error {rel:e}"
        );
    }
}

/// Every f16 bit pattern (as f32: the whole f16 range, infinities, NaNs, subnormals), and a
/// dense sweep of f32 inputs in [−90, 90] (every 2^6-th bit pattern; every 2^9-th on aarch64,
/// where CI runs under qemu: still 10 or more inputs per table step of ln 2/16), in slices whose lengths
/// leave tails.
fn check_exp(k: &Kernels) {
    let f16s = (0..=u16::MAX).map(|h| half::f16::from_bits(h).to_f32());
    let stride = if cfg!(target_arch = "aarch64") {
        512
    } else {
        64
    };
    let dense = (0..1u32 << 31)
        .step_by(stride)
        .map(f32::from_bits)
        .filter(|x| *x <= 90.0)
        .flat_map(|x| [x, -x]);
    let inputs: Vec<f32> = f16s.chain(dense).collect();
    let mut out = inputs.clone();
    for chunk in out.chunks_mut(1021) {
        (k.exp.f)(chunk);
    }
    for (&x, &got) in inputs.iter().zip(&out) {
        check_exp_value(k.exp.name, x, got);
    }
}

/// Softmax rows against a float64 softmax of the same f32 inputs. Per probability the bound
/// adds: the table exp of its own term and of the sum's terms (`E` each), the rounding of
/// `x − max` (`ε·|x − max|`, which `exp` turns into that much relative error), the summation
/// (`γ(n)`) and the final reciprocal and product (`2ε`); terms below `EXP_LUT_MIN` may flush
/// to 0.
fn check_softmax(k: &Kernels) {
    let mut rng = Rng::new(5);
    let e = scalar::EXP_LUT_MAX_REL_ERROR;
    for n in (0..=70).chain([255, 1000, 4097]) {
        for spread in [1.0f32, 10.0, 100.0] {
            let mut x: Vec<f32> = (0..n).map(|_| rng.f32() * spread).collect();
            if n > 3 {
                x[1] = f32::NEG_INFINITY; // a masked position
                x[2] = x[0]; // ties
            }
            let mut got = x.clone();
            (k.softmax.f)(&mut got);
            if n == 0 {
                continue;
            }
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let ex: Vec<f64> = x.iter().map(|&v| (v as f64 - max as f64).exp()).collect();
            let sum: f64 = ex.iter().sum();
            let worst_term = x
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| EPS * (v - max).abs() as f64)
                .fold(0.0, f64::max);
            // Terms below EXP_LUT_MIN flush to 0: each loses at most exp(EXP_LUT_MIN).
            let flushed = (scalar::EXP_LUT_MIN as f64).exp() + 2.0 * F32_TINY;
            let total: f64 = got.iter().map(|&p| p as f64).sum();
            assert!(
                (total - 1.0).abs() <= 2.0 * e + gamma(n + 4),
                "{} n={n}: Σ = {total}",
                k.softmax.name
            );
            for i in 0..n {
                if !x[i].is_finite() {
                    assert_eq!(
                        got[i], 0.0,
                        "{} n={n}: a masked position gets 0",
                        k.softmax.name
                    );
                    continue;
                }
                let want = ex[i] / sum;
                let bound =
                    (2.0 * e + EPS * (x[i] - max).abs() as f64 + worst_term + gamma(n) + 2.0 * EPS)
                        * want
                        + flushed / sum;
                assert!(
                    (0.0..=1.0).contains(&got[i]) && (got[i] as f64 - want).abs() <= bound,
                    "{} n={n} spread={spread} i={i}: {} vs {want:e} ± {bound:e}",
                    k.softmax.name,
                    got[i]
                );
            }
        }
        let mut masked = vec![f32::NEG_INFINITY; n];
        (k.softmax.f)(&mut masked);
        assert!(
            masked.iter().all(|&p| p == 0.0),
            "{}: a masked row is zeros",
            k.softmax.name
        );
    }
}

/// SwiGLU against float64: the table exp's `E` enters `1 + exp(−g)` at most relatively, then
/// the sum, the division and the product round once each. Where `exp(−g)` saturates to `+∞`
/// (`g < −EXP_LUT_MAX`) the result is 0 instead of a magnitude below `|g·u|·e^−88`.
fn check_swiglu(k: &Kernels) {
    let mut rng = Rng::new(6);
    let e = scalar::EXP_LUT_MAX_REL_ERROR;
    for n in (0..=70).chain([1536]) {
        for spread in [1.0f32, 8.0, 120.0] {
            let g0: Vec<f32> = (0..n).map(|_| rng.f32() * spread).collect();
            let u: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0).collect();
            let mut got = g0.clone();
            (k.swiglu.f)(&mut got, &u);
            for i in 0..n {
                let (g, uu) = (g0[i] as f64, u[i] as f64);
                let want = g / (1.0 + (-g).exp()) * uu;
                let saturated = (g * uu).abs() * (-(scalar::EXP_LUT_MAX as f64)).exp();
                let bound = (e + 4.0 * EPS) * want.abs() + saturated + F32_TINY;
                assert!(
                    (got[i] as f64 - want).abs() <= bound,
                    "{} n={n} i={i}: silu({g})·{uu} = {} vs {want:e}",
                    k.swiglu.name,
                    got[i]
                );
            }
        }
    }
}

/// The tanh GeGLU against float64 `0.5·g·(1 + tanh(y))·u`: the table exp's `E` and the
/// argument's rounding (five roundings of `z = −2y`, each relative to `|z|`, which the exp
/// turns into a relative error `5ε·|z|` of `exp(z)`) enter `1 + exp(z)` at most relatively,
/// then the sum, the division and the product round once each. Where `exp(z)` saturates to
/// `+∞` (`z > EXP_LUT_MAX`) the result is 0 instead of a magnitude below `|g·u|·e^−88`.
fn check_gelu(k: &Kernels) {
    let mut rng = Rng::new(16);
    let e = scalar::EXP_LUT_MAX_REL_ERROR;
    for n in (0..=70).chain([2048]) {
        for spread in [1.0f32, 4.0, 12.0, 1e4] {
            let mut g0: Vec<f32> = (0..n).map(|_| rng.f32() * spread).collect();
            if n > 8 {
                g0[..6].copy_from_slice(&[0.0, -0.0, 1e-30, -1e-30, 1e38, -1e38]);
            }
            let u: Vec<f32> = (0..n).map(|_| rng.f32() * 2.0).collect();
            let mut got = g0.clone();
            (k.gelu.f)(&mut got, &u);
            for i in 0..n {
                let (g, uu) = (g0[i] as f64, u[i] as f64);
                let y = (2.0f64 / core::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
                let want = 0.5 * g * (1.0 + y.tanh()) * uu;
                // σ(2y) for large |y|, where 1 + tanh(y) cancels in float64 too.
                let want = if y < -10.0 {
                    g * (2.0 * y).exp() * uu
                } else {
                    want
                };
                let saturated = (g * uu).abs() * (-(scalar::EXP_LUT_MAX as f64)).exp();
                let z = (2.0 * y).abs().min(f32::MAX as f64);
                let bound = (e + 5.0 * EPS * z + 4.0 * EPS) * want.abs() + saturated + F32_TINY;
                assert!(
                    (got[i] as f64 - want).abs() <= bound,
                    "{} n={n} i={i}: gelu({g})·{uu} = {} vs {want:e}",
                    k.gelu.name,
                    got[i]
                );
            }
        }
    }
}

/// Slot names say which backend filled them.
fn check_names(k: &Kernels, backend: Backend) {
    let suffix = |name: &str| name.rsplit('/').next().unwrap().to_string();
    let vec_isa = match backend {
        Backend::Scalar => "scalar",
        Backend::Avx2 | Backend::AvxVnni | Backend::Avx512Vnni => "avx2",
        _ => "neon",
    };
    let int8_isa = match backend {
        Backend::NeonDotprod | Backend::NeonI8mm => "dotprod",
        Backend::AvxVnni | Backend::Avx512Vnni => backend.name(),
        _ => vec_isa,
    };
    // Only the batched GEMMs use the matrix multiply extension.
    let gemm_isa = match backend {
        Backend::NeonI8mm => "i8mm",
        _ => int8_isa,
    };
    assert_eq!(k.backend(), backend);
    assert_eq!(suffix(k.dot_f32.name), vec_isa);
    assert_eq!(suffix(k.axpy.name), vec_isa);
    assert_eq!(suffix(k.quantize_act_q8.name), vec_isa);
    assert_eq!(suffix(k.gemm_f32.name), vec_isa);
    assert_eq!(suffix(k.exp.name), vec_isa);
    assert_eq!(suffix(k.softmax.name), vec_isa);
    assert_eq!(suffix(k.swiglu.name), vec_isa);
    assert_eq!(suffix(k.gelu.name), vec_isa);
    for format in TESTED {
        let fk = k.format(format);
        assert_eq!(suffix(fk.dot.name), vec_isa);
        assert_eq!(suffix(fk.dequant.name), vec_isa);
        assert_eq!(suffix(fk.dot_q8.unwrap().name), int8_isa);
        // CPUs with AVX-512 get its row kernels (the f32 decoding path).
        let rows_isa = match backend {
            Backend::Avx512Vnni => "avx512",
            _ => vec_isa,
        };
        assert_eq!(suffix(fk.dot_rows.unwrap().name), rows_isa);
        assert_eq!(suffix(fk.gemm_q8.unwrap().name), gemm_isa);
    }
}

macro_rules! suite {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn dot_f32_tails() {
                kernels($backend).map(|k| check_dot_f32(&k));
            }
            #[test]
            fn axpy_tails() {
                kernels($backend).map(|k| check_axpy(&k));
            }
            #[test]
            fn dot_rows_f32() {
                kernels($backend).map(|k| check_dot(&k));
            }
            #[test]
            fn dequant_bit_identical() {
                kernels($backend).map(|k| check_dequant(&k));
            }
            #[test]
            fn quantize_act_byte_identical() {
                kernels($backend).map(|k| check_quantize_act(&k));
            }
            #[test]
            fn dot_q8_exact_integers() {
                kernels($backend).map(|k| check_dot_q8_exact(&k));
            }
            #[test]
            fn dot_q8_rows() {
                kernels($backend).map(|k| check_dot_q8(&k));
            }
            #[test]
            fn multi_row_dots_f32() {
                kernels($backend).map(|k| check_dot_rows(&k));
            }
            #[test]
            fn gemm_q8_exact_integers() {
                kernels($backend).map(|k| check_gemm_q8_exact(&k));
            }
            #[test]
            fn gemm_q8_tiles() {
                kernels($backend).map(|k| check_gemm_q8(&k));
            }
            #[test]
            fn gemm_f32_tiles() {
                kernels($backend).map(|k| check_gemm_f32(&k));
            }
            #[test]
            fn exp_lut_sweep() {
                kernels($backend).map(|k| check_exp(&k));
            }
            #[test]
            fn softmax_lut_rows() {
                kernels($backend).map(|k| check_softmax(&k));
            }
            #[test]
            fn swiglu_lut_values() {
                kernels($backend).map(|k| check_swiglu(&k));
            }

            #[test]
            fn gelu_lut_values() {
                kernels($backend).map(|k| check_gelu(&k));
            }
            #[test]
            fn slot_names() {
                kernels($backend).map(|k| check_names(&k, $backend));
            }
        }
    )*};
}

suite! {
    scalar_backend => Backend::Scalar,
    avx2 => Backend::Avx2,
    avxvnni => Backend::AvxVnni,
    avx512vnni => Backend::Avx512Vnni,
    neon => Backend::Neon,
    neon_dotprod => Backend::NeonDotprod,
    neon_i8mm => Backend::NeonI8mm,
}

// ---- selection -----------------------------------------------------------------------------

/// What this test detects independently of the crate: the backend `best` must pick. With the
/// crate's `std` feature that is run-time detection; without, the compile-time target features
/// (`RUSTFLAGS="-C target-feature=+avx2,+fma,+f16c" cargo test --no-default-features`).
// Without `std` the checks are compile-time constants, which clippy would fold.
#[cfg_attr(
    not(feature = "std"),
    allow(
        clippy::eq_op,
        clippy::nonminimal_bool,
        reason = "which constants fold depends on the target features the test is built with"
    )
)]
fn expected_best() -> Backend {
    #[cfg(feature = "std")]
    macro_rules! has {
        ($f:tt) => {{
            #[cfg(target_arch = "x86_64")]
            let on = std::is_x86_feature_detected!($f);
            #[cfg(target_arch = "aarch64")]
            let on = std::arch::is_aarch64_feature_detected!($f);
            on
        }};
    }
    #[cfg(not(feature = "std"))]
    macro_rules! has {
        ($f:tt) => {
            cfg!(target_feature = $f)
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if avx2 && has!("avx512vnni") && has!("avx512vl") && has!("avx512f") {
            return Backend::Avx512Vnni;
        }
        if avx2 && has!("avxvnni") {
            return Backend::AvxVnni;
        }
        if avx2 {
            return Backend::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if has!("neon") && has!("dotprod") && has!("i8mm") {
            return Backend::NeonI8mm;
        }
        if has!("neon") && has!("dotprod") {
            return Backend::NeonDotprod;
        }
        if has!("neon") {
            return Backend::Neon;
        }
    }
    Backend::Scalar
}

#[test]
fn best_follows_detection() {
    let best = Kernels::best();
    println!("best backend: {}", best.backend().name());
    assert_eq!(best.backend(), expected_best());
    for b in Backend::ALL {
        assert_eq!(b.is_available(), Kernels::with_backend(b).is_some());
        assert_eq!(Backend::from_name(b.name()), Some(b));
    }
    // Without the dot product extension no `sdot` kernel may be installed anywhere.
    #[cfg(target_arch = "aarch64")]
    if !std::arch::is_aarch64_feature_detected!("dotprod") {
        assert!(Kernels::with_backend(Backend::NeonDotprod).is_none());
        for f in TESTED {
            assert!(!best.format(f).dot_q8.unwrap().name.contains("dotprod"));
        }
    }
    // Without the int8 matrix multiply extension no `smmla` kernel may be installed anywhere.
    #[cfg(target_arch = "aarch64")]
    if !std::arch::is_aarch64_feature_detected!("i8mm") {
        assert!(Kernels::with_backend(Backend::NeonI8mm).is_none());
        for f in TESTED {
            assert!(!best.format(f).gemm_q8.unwrap().name.contains("i8mm"));
        }
    }
}
