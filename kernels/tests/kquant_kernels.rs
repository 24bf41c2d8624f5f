//! The k-quant kernels (Q4_K, Q6_K: row · f32 and dequantization) of every backend against
//! the scalar reference: one generic suite instantiated per [`Backend`] (skipped, with a note,
//! only when this CPU or build lacks it). Run the NEON instances under qemu:
//! `QEMU_CPU=cortex-a53` and `QEMU_CPU=max`.
//!
//! Inputs: random blocks (every byte random, so every six-bit scale and min, every code and
//! every int8 sub-block scale occurs), all-zero blocks, blocks of maximal codes and scales,
//! alternating codes, super-block scales 0, −0, ±65504 and f16 subnormals; activations
//! ordinary, large, tiny, all zero and with negative zeros; rows of 1, 2, 3, 5, 9 and 16
//! blocks.
//!
//! # Error budgets
//!
//! | kernel          | budget vs scalar reference                               | why |
//! |-----------------|----------------------------------------------------------|-----|
//! | `dequant_q4_k`  | bit-identical                                            | (1) |
//! | `dequant_q6_k`  | bit-identical                                            | (1) |
//! | `dot_q4_k_f32`  | `2·γ(K)·Σ(|d·sc·q·x| + |dmin·m·x|)`, K = n/32 + 48       | (2) |
//! | `dot_q6_k_f32`  | `2·γ(K)·Σ|d·scale·(q − 32)·x|`, K = n/16 + 48            | (2) |
//!
//! (1) Every backend computes the reference's f32 operations in the same order without
//!     fusing: the step `d·sc` (Q6_K: `d·scale`), its product with the code, and for Q4_K the
//!     subtraction of `dmin·m`. (The products are exact anyway: an f16 times a code of at
//!     most 8 bits, times another of at most 6, fits in 24 bits.)
//! (2) Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1 and §2.2, as in
//!     `simd_kernels.rs` note (4): each term passes through at most K roundings in either
//!     evaluation, so each is within `γ(K)·Σ|terms|` of the exact value, the two within twice
//!     that. Q4_K's reference: product 1, a sequential sum over the 32-element sub-block
//!     ≤ 31, the step and its application 2, the subtraction of the min term 1, the running
//!     sum over n/32 sub-blocks; the SIMD paths have shorter trees (≤ 3 within a sub-block,
//!     n/64 per accumulator, ≤ 6 to combine the lanes and accumulators). Q6_K's reference: 1
//!     + 15 over a 16-element sub-block + 2 + n/16. K = n/32 + 48 and n/16 + 48 bound every
//!     backend. Plus `2n · 2^-149` for products that could underflow.

mod common;
use common::*;
use tern_kernels::blocks::{as_bytes, BlockQ4_K, BlockQ6_K, F16Le};
use tern_kernels::scalar;
use tern_kernels::{Backend, Format, Kernels};

// ---- inputs --------------------------------------------------------------------------------

/// Row lengths: 1, 2, 3, 5, 9 and 16 blocks of 256.
const LENGTHS: [usize; 6] = [256, 512, 768, 1280, 2304, 4096];

/// Super-block scales: zero, negative zero, f16 extremes, f16 subnormals, ordinary.
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

/// How a block is drawn.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Every byte random, small random super-block scales: a typical block.
    Random,
    /// Every byte zero (scales, codes and super-block scales).
    Zero,
    /// Every code and sub-block scale maximal (all bytes 0xFF), adversarial super-block scales.
    Max,
    /// Codes alternating smallest / largest, random sub-block scales, adversarial scales.
    Alternate,
    /// Random bytes with adversarial super-block scales.
    Extreme,
}

const STYLES: [Style; 5] = [
    Style::Random,
    Style::Zero,
    Style::Max,
    Style::Alternate,
    Style::Extreme,
];

/// Per block a style: always [`Style::Random`] unless `adversarial`, then any of [`STYLES`].
fn style(rng: &mut Rng, adversarial: bool) -> Style {
    if adversarial {
        rng.pick(&STYLES)
    } else {
        Style::Random
    }
}

/// A super-block scale for `style`.
fn scale(rng: &mut Rng, style: Style) -> F16Le {
    F16Le::from_f32(match style {
        Style::Random => 0.001 + 0.05 * rng.f32().abs(),
        Style::Zero => 0.0,
        _ => rng.pick(&SCALES),
    })
}

/// A row of `n` Q4_K weights.
fn q4_k_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockQ4_K> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let (d, dmin) = (scale(&mut rng, s), scale(&mut rng, s));
            let (scales, qs) = match s {
                Style::Zero => ([0; 12], [0; 128]),
                Style::Max => ([0xFF; 12], [0xFF; 128]),
                // Nibbles 0 and 15 alternate along every sub-block and between low and high.
                Style::Alternate => (rng.bytes(), core::array::from_fn(|l| [0x0F, 0xF0][l % 2])),
                Style::Random | Style::Extreme => (rng.bytes(), rng.bytes()),
            };
            BlockQ4_K {
                d,
                dmin,
                scales,
                qs,
            }
        })
        .collect();
    as_bytes(&blocks).to_vec()
}

/// A row of `n` Q6_K weights.
fn q6_k_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockQ6_K> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let d = scale(&mut rng, s);
            let (ql, qh, scales): ([u8; 128], [u8; 64], [i8; 16]) = match s {
                Style::Zero => ([0; 128], [0; 64], [0; 16]),
                // Code 63 (+31) everywhere; int8 scales at both extremes.
                Style::Max => (
                    [0xFF; 128],
                    [0xFF; 64],
                    [[127, -128][rng.below(2) as usize]; 16],
                ),
                // Codes 0 (−32) and 63 (+31) alternating along each sub-block.
                Style::Alternate => (
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                    rng.bytes::<16>().map(|b| b as i8),
                ),
                Style::Random | Style::Extreme => {
                    (rng.bytes(), rng.bytes(), rng.bytes::<16>().map(|b| b as i8))
                }
            };
            BlockQ6_K { ql, qh, scales, d }
        })
        .collect();
    as_bytes(&blocks).to_vec()
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
        ("all -0", vec![-0.0; n]),
    ]
}

// ---- the terms of the sums, decoded here from the layout in `blocks.rs` ---------------------

/// `(|d·sc·q|, |dmin·m|)` per element of a Q4_K row, in f64.
fn q4_k_terms(row: &[u8]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for b in row.chunks_exact(144) {
        let d = F16Le([b[0], b[1]]).to_f32() as f64;
        let dmin = F16Le([b[2], b[3]]).to_f32() as f64;
        let s = &b[4..16];
        let qs = &b[16..144];
        for e in 0..256 {
            let j = e / 32;
            let (sc, m) = if j < 4 {
                (s[j] & 63, s[j + 4] & 63)
            } else {
                (
                    (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
                    (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                )
            };
            let (c, l, high) = (e / 64, e % 32, (e % 64) >= 32);
            let byte = qs[32 * c + l];
            let q = if high { byte >> 4 } else { byte & 0x0F };
            out.push(((d * sc as f64 * q as f64).abs(), (dmin * m as f64).abs()));
        }
    }
    out
}

// ---- suites --------------------------------------------------------------------------------

fn check_dot_q4_k(k: &Kernels) {
    let fk = k.format(Format::Q4_K);
    for (i, &n) in LENGTHS.iter().enumerate() {
        for adversarial in [false, true] {
            let row = q4_k_row(n, 100 + i as u64, adversarial);
            let terms = q4_k_terms(&row);
            for (name, x) in activations(n, 200 + i as u64) {
                let abs: f64 = terms
                    .iter()
                    .zip(&x)
                    .map(|(&(w, m), &x)| (w + m) * (x as f64).abs())
                    .sum();
                let got = (fk.dot.f)(&row, &x);
                let want = scalar::dot_q4_k_f32(&row, &x);
                let what = format!("{} n={n} adversarial={adversarial} x={name}", fk.dot.name);
                assert_close(&what, got, want, budget(n / 32 + 48, abs, n));
            }
        }
    }
}

fn check_dot_q6_k(k: &Kernels) {
    let fk = k.format(Format::Q6_K);
    for (i, &n) in LENGTHS.iter().enumerate() {
        for adversarial in [false, true] {
            let row = q6_k_row(n, 300 + i as u64, adversarial);
            // The dequantized weights are exact (module note (1)): they are the terms' weights.
            let mut w = vec![0.0f32; n];
            scalar::dequant_q6_k(&row, &mut w);
            for (name, x) in activations(n, 400 + i as u64) {
                let abs: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(&w, &x)| (w as f64 * x as f64).abs())
                    .sum();
                let got = (fk.dot.f)(&row, &x);
                let want = scalar::dot_q6_k_f32(&row, &x);
                let what = format!("{} n={n} adversarial={adversarial} x={name}", fk.dot.name);
                assert_close(&what, got, want, budget(n / 16 + 48, abs, n));
            }
        }
    }
}

fn check_dequant(k: &Kernels) {
    type Row = fn(usize, u64, bool) -> Vec<u8>;
    type Dequant = fn(&[u8], &mut [f32]);
    let cases: [(Format, Row, Dequant); 2] = [
        (Format::Q4_K, q4_k_row, scalar::dequant_q4_k),
        (Format::Q6_K, q6_k_row, scalar::dequant_q6_k),
    ];
    for (format, make_row, reference) in cases {
        let fk = k.format(format);
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = make_row(n, 500 + i as u64, adversarial);
                let (mut got, mut want) = (vec![f32::NAN; n], vec![0.0; n]);
                (fk.dequant.f)(&row, &mut got);
                reference(&row, &mut want);
                for j in 0..n {
                    assert_eq!(
                        got[j].to_bits(),
                        want[j].to_bits(),
                        "{} n={n} adversarial={adversarial} element {j}: {} vs {}",
                        fk.dequant.name,
                        got[j],
                        want[j]
                    );
                }
            }
        }
    }
}

/// Slot names say which backend filled them.
fn check_names(k: &Kernels, backend: Backend) {
    let isa = match backend {
        Backend::Scalar => "scalar",
        Backend::Avx2 | Backend::AvxVnni | Backend::Avx512Vnni => "avx2",
        _ => "neon",
    };
    assert_eq!(k.backend(), backend);
    for (format, fmt) in [(Format::Q4_K, "q4_k"), (Format::Q6_K, "q6_k")] {
        let fk = k.format(format);
        assert_eq!(fk.dot.name, format!("dot_{fmt}_f32/{isa}"));
        assert_eq!(fk.dequant.name, format!("dequant_{fmt}/{isa}"));
    }
}

/// Whether `f` panics.
fn panics<T>(f: impl FnOnce() -> T) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
}

/// Rows that are not whole blocks, or lengths that disagree, panic in every backend as in
/// the reference (the wrappers check before any body runs).
fn check_lengths_panic(k: &Kernels) {
    for (format, bytes) in [(Format::Q4_K, 144), (Format::Q6_K, 210)] {
        let fk = k.format(format);
        let row = vec![0u8; 2 * bytes];
        let x = vec![0.0f32; 512];
        let names = format!("{} / {}", fk.dot.name, fk.dequant.name);
        assert!(
            panics(|| (fk.dot.f)(&row, &x[..256])),
            "{names}: x too short"
        );
        assert!(
            panics(|| (fk.dot.f)(&row[1..], &x)),
            "{names}: partial block"
        );
        assert!(
            panics(|| (fk.dequant.f)(&row, &mut vec![0.0; 511])),
            "{names}: out too short"
        );
    }
}

macro_rules! suite {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn dot_q4_k_rows() {
                kernels($backend).map(|k| check_dot_q4_k(&k));
            }
            #[test]
            fn dot_q6_k_rows() {
                kernels($backend).map(|k| check_dot_q6_k(&k));
            }
            #[test]
            fn dequant_bit_identical() {
                kernels($backend).map(|k| check_dequant(&k));
            }
            #[test]
            fn slot_names() {
                kernels($backend).map(|k| check_names(&k, $backend));
            }
            #[test]
            fn bad_lengths_panic() {
                kernels($backend).map(|k| check_lengths_panic(&k));
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
