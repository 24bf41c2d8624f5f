//! The 256-weight kernels (the k-quants Q4_K, Q5_K, Q6_K, Q3_K and Q2_K, and IQ4_XS, which
//! shares their super-block: row · f32, several rows · f32, row · int8 activations, rows × tokens of int8
//! activations, and dequantization) of every backend against the scalar reference: one
//! generic suite instantiated per [`Backend`] (skipped, with a note, only when this CPU or
//! build lacks it). Run the NEON instances under qemu: `QEMU_CPU=cortex-a53` and
//! `QEMU_CPU=max`.
//!
//! Inputs: random blocks (every byte random, so every six-bit scale and min, every code and
//! every int8 sub-block scale occurs), all-zero blocks, blocks of maximal codes and scales
//! (IQ4_XS: also the most negative scale and value, −32·−127), alternating codes, super-block
//! scales 0, −0, ±65504 and f16 subnormals; activations ordinary, large, tiny, all zero and
//! with negative zeros; rows of 1, 2, 3, 5, 9 and 16 blocks (and 17 for the row kernels). Int8
//! activations: those the quantizer writes for each of these, codes ±127, and activation-block
//! scales and sums 0, −0, ±65504 and subnormal.
//!
//! # Error budgets
//!
//! | kernel          | budget vs scalar reference                               | why |
//! |-----------------|----------------------------------------------------------|-----|
//! | `dequant_q4_k`  | bit-identical                                            | (1) |
//! | `dequant_q6_k`  | bit-identical                                            | (1) |
//! | `dequant_q5_k`  | bit-identical                                            | (1) |
//! | `dequant_iq4_xs`| bit-identical                                            | (1) |
//! | `dequant_q3_k`  | bit-identical                                            | (1) |
//! | `dequant_q2_k`  | bit-identical                                            | (1) |
//! | `dot_q4_k_f32`  | `2·γ(K)·Σ(|d·sc·q·x| + |dmin·m·x|)`, K = n/32 + 48       | (2) |
//! | `dot_q6_k_f32`  | `2·γ(K)·Σ|d·scale·(q − 32)·x|`, K = n/16 + 48            | (2) |
//! | `dot_q5_k_f32`  | as `dot_q4_k_f32`                                        | (2) |
//! | `dot_iq4_xs_f32`| `2·γ(K)·Σ|d·(sc − 32)·T[q]·x|`, K = n/32 + 48            | (2) |
//! | `dot_q3_k_f32`  | `2·γ(K)·Σ|d·(sc − 32)·q·x|`, K = n/16 + 48               | (2) |
//! | `dot_q2_k_f32`  | `2·γ(K)·Σ(|d·sc·q·x| + |dmin·m·x|)`, K = n/16 + 48       | (2) |
//! | `dot_rows_*`    | as the row dot of its format, per row                    | (2) |
//! | `dot_q4_k_q8`   | bit-identical (NaN = NaN)                                | (3) |
//! | `dot_q6_k_q8`   | bit-identical (NaN = NaN)                                | (3) |
//! | `dot_q5_k_q8`   | bit-identical (NaN = NaN)                                | (3) |
//! | `dot_iq4_xs_q8` | bit-identical (NaN = NaN)                                | (3) |
//! | `dot_q3_k_q8`   | bit-identical (NaN = NaN)                                | (3) |
//! | `dot_q2_k_q8`   | bit-identical (NaN = NaN)                                | (3) |
//! | `gemm_*_q8`     | bit-identical to the reference row dot, per element      | (3) |
//! | int8 vs f32 dot | `Σ_blocks (d_a/2)(1 + 10⁻⁴)·Σ|w| + 2·γ(n/32 + 48)·Σ|w|(|x| + d_a)` | (4) |
//!
//! (1) Every backend computes the reference's f32 operations in the same order without
//!     fusing: the step `d·sc` (Q6_K: `d·scale`), its product with the code, and for Q4_K, Q5_K
//!     and Q2_K the subtraction of `dmin·m`; IQ4_XS: `d·(sc − 32)`, then its product with `T[q]`. (The
//!     products are exact anyway: an f16 times a code of at most 8 bits, times another of at
//!     most 6, fits in 24 bits.)
//! (2) Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1 and §2.2, as in
//!     `simd_kernels.rs` note (4): each term passes through at most K roundings in either
//!     evaluation, so each is within `γ(K)·Σ|terms|` of the exact value, the two within twice
//!     that. Q4_K's reference: product 1, a sequential sum over the 32-element sub-block
//!     ≤ 31, the step and its application 2, the subtraction of the min term 1, the running
//!     sum over n/32 sub-blocks; the SIMD paths have shorter trees (≤ 3 within a sub-block,
//!     n/64 per accumulator, ≤ 6 to combine the lanes and accumulators). Q6_K's reference: 1
//!     + 15 over a 16-element sub-block + 2 + n/16; Q3_K's the same, Q2_K's that plus the min
//!     term's 1. Q5_K's is Q4_K's, IQ4_XS's Q4_K's without the min. K = n/32 + 48 and n/16 + 48 bound every backend. Plus `2n · 2^-149` for
//!     products that could underflow.
//! (3) The integer part (per activation block one exact i32, scaled by the integer sub-block
//!     scales) cannot round, and every backend performs the reference's float operations in
//!     its order (`scalar::dot_q4_k_q8`): so the results are equal bit for bit, NaN included.
//! (4) Both paths approximate `Σ w·x` for the exact weights `w` (`d·sc·q − dmin·m`; `d·scale·
//!     (q − 32)`); the int8 path uses `x̂ = d_a·q_a` instead of `x`, and the activation
//!     quantizer's rounding leaves `|x − x̂| ≤ (d_a/2)(1 + 508u)` (`x·(1/d_a)` rounds twice
//!     before the rounding to an integer), hence the first term. Each path's float rounding is
//!     within `γ(K)·Σ|w|·max(|x|, |x̂|)` of its exact sum (note (2); the int8 path has fewer
//!     roundings per term: K = n/256 + 8), hence the second. The test also checks that the
//!     bound stays below 5 % of `Σ|w·x|`.

mod common;
use common::*;
use tern_kernels::blocks::{
    as_bytes, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, F16Le,
};
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

/// A row of `n` Q5_K weights.
fn q5_k_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockQ5_K> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let (d, dmin) = (scale(&mut rng, s), scale(&mut rng, s));
            let (scales, qh, qs) = match s {
                Style::Zero => ([0; 12], [0; 32], [0; 128]),
                // Code 31 everywhere, scales and mins 63.
                Style::Max => ([0xFF; 12], [0xFF; 32], [0xFF; 128]),
                // Codes 0 and 31 alternating along every sub-block.
                Style::Alternate => (
                    rng.bytes(),
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                ),
                Style::Random | Style::Extreme => (rng.bytes(), rng.bytes(), rng.bytes()),
            };
            BlockQ5_K {
                d,
                dmin,
                scales,
                qh,
                qs,
            }
        })
        .collect();
    as_bytes(&blocks).to_vec()
}

/// A row of `n` IQ4_XS weights.
fn iq4_xs_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockIQ4_XS> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let d = scale(&mut rng, s);
            let (scales_h, scales_l, qs) = match s {
                Style::Zero => ([0; 2], [0; 4], [0; 128]),
                // Either end: scale 63 (+31) times T[15] = 113, or scale 0 (−32) times
                // T[0] = −127 (the largest integer product, 32·127).
                Style::Max => [
                    ([0xFF; 2], [0xFF; 4], [0xFF; 128]),
                    ([0; 2], [0; 4], [0; 128]),
                ][rng.below(2) as usize],
                // Codebook ends alternating along every sub-block.
                Style::Alternate => (
                    rng.bytes(),
                    rng.bytes(),
                    core::array::from_fn(|l| [0x0F, 0xF0][l % 2]),
                ),
                Style::Random | Style::Extreme => (rng.bytes(), rng.bytes(), rng.bytes()),
            };
            BlockIQ4_XS {
                d,
                scales_h,
                scales_l,
                qs,
            }
        })
        .collect();
    as_bytes(&blocks).to_vec()
}

/// A row of `n` Q3_K weights.
fn q3_k_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockQ3_K> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let d = scale(&mut rng, s);
            let (hmask, qs, scales): ([u8; 32], [u8; 64], [u8; 12]) = match s {
                Style::Zero => ([0; 32], [0; 64], [0; 12]),
                // Either code +3 with scale +31 everywhere, or code −4 with scale −32 (the
                // largest magnitudes), under a nonzero adversarial scale.
                Style::Max => {
                    let b = [0xFF, 0x00][rng.below(2) as usize];
                    ([b; 32], [b; 64], [b; 12])
                }
                // Codes −4 and +3 alternating along each sub-block, random scales.
                Style::Alternate => (
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                    core::array::from_fn(|l| [0x00, 0xFF][l % 2]),
                    rng.bytes(),
                ),
                Style::Random | Style::Extreme => (rng.bytes(), rng.bytes(), rng.bytes()),
            };
            BlockQ3_K {
                hmask,
                qs,
                scales,
                d,
            }
        })
        .collect();
    as_bytes(&blocks).to_vec()
}

/// A row of `n` Q2_K weights.
fn q2_k_row(n: usize, seed: u64, adversarial: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks: Vec<BlockQ2_K> = (0..n / 256)
        .map(|_| {
            let s = style(&mut rng, adversarial);
            let (d, dmin) = (scale(&mut rng, s), scale(&mut rng, s));
            let (scales, qs): ([u8; 16], [u8; 64]) = match s {
                Style::Zero => ([0; 16], [0; 64]),
                // Scales, mins and codes all maximal (15, 15, 3).
                Style::Max => ([0xFF; 16], [0xFF; 64]),
                // Codes 0 and 3 alternating along each sub-block, random scales and mins.
                Style::Alternate => (rng.bytes(), core::array::from_fn(|l| [0x00, 0xFF][l % 2])),
                Style::Random | Style::Extreme => (rng.bytes(), rng.bytes()),
            };
            BlockQ2_K {
                scales,
                qs,
                d,
                dmin,
            }
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
    k4_terms(row, false)
}

/// `(|d·sc·q|, |dmin·m|)` per element of a Q5_K row, in f64.
fn q5_k_terms(row: &[u8]) -> Vec<(f64, f64)> {
    k4_terms(row, true)
}

/// `(|d·sc·q|, |dmin·m|)` per element of a Q4_K row, or of a Q5_K row (`fifth_bit`: the 32
/// `qh` bytes before the nibbles, bit j of `qh[l]` the fifth bit of element 32j + l).
fn k4_terms(row: &[u8], fifth_bit: bool) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let qs_at = if fifth_bit { 48 } else { 16 };
    for b in row.chunks_exact(qs_at + 128) {
        let d = F16Le([b[0], b[1]]).to_f32() as f64;
        let dmin = F16Le([b[2], b[3]]).to_f32() as f64;
        let s = &b[4..16];
        let qs = &b[qs_at..];
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
            let mut q = if high { byte >> 4 } else { byte & 0x0F };
            if fifth_bit {
                q |= ((b[16 + l] >> j) & 1) << 4;
            }
            out.push(((d * sc as f64 * q as f64).abs(), (dmin * m as f64).abs()));
        }
    }
    out
}

/// `(|d·sc·q|, |dmin·m|)` per element of a Q2_K row, in f64.
fn q2_k_terms(row: &[u8]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for b in row.chunks_exact(84) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let d = F16Le([b[80], b[81]]).to_f32() as f64;
        let dmin = F16Le([b[82], b[83]]).to_f32() as f64;
        for e in 0..256 {
            let (sc, m) = (scales[e / 16] & 0x0F, scales[e / 16] >> 4);
            let q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            out.push(((d * sc as f64 * q as f64).abs(), (dmin * m as f64).abs()));
        }
    }
    out
}

// ---- suites --------------------------------------------------------------------------------

type RowFn = fn(usize, u64, bool) -> Vec<u8>;
type RowDot = fn(&[u8], &[f32]) -> f32;
type Terms = fn(&[u8]) -> Vec<f64>;

/// `|w|` per element from the scalar dequantization (exact for Q6_K, IQ4_XS and Q3_K, module
/// note (1)): the magnitudes of those formats' terms.
fn dequant_abs(format: Format, row: &[u8]) -> Vec<f64> {
    let n = row.len() / format.block_bytes() * 256;
    let mut w = vec![0.0f32; n];
    Kernels::scalar().dequant(format, row, &mut w);
    w.iter().map(|v| v.abs() as f64).collect()
}

/// Each format with its row generator, reference row dot, per-element term magnitudes (`|w|`
/// plus the min term where there is one) and the length of the sub-blocks its sums run over.
fn f32_cases() -> [(Format, RowFn, RowDot, Terms, usize); 6] {
    [
        (
            Format::Q4_K,
            q4_k_row,
            scalar::dot_q4_k_f32,
            |row| q4_k_terms(row).iter().map(|(w, m)| w + m).collect(),
            32,
        ),
        (
            Format::Q5_K,
            q5_k_row,
            scalar::dot_q5_k_f32,
            |row| q5_k_terms(row).iter().map(|(w, m)| w + m).collect(),
            32,
        ),
        (
            Format::Q6_K,
            q6_k_row,
            scalar::dot_q6_k_f32,
            |row| dequant_abs(Format::Q6_K, row),
            16,
        ),
        (
            Format::IQ4_XS,
            iq4_xs_row,
            scalar::dot_iq4_xs_f32,
            |row| dequant_abs(Format::IQ4_XS, row),
            32,
        ),
        (
            Format::Q3_K,
            q3_k_row,
            scalar::dot_q3_k_f32,
            |row| dequant_abs(Format::Q3_K, row),
            16,
        ),
        (
            Format::Q2_K,
            q2_k_row,
            scalar::dot_q2_k_f32,
            |row| q2_k_terms(row).iter().map(|(w, m)| w + m).collect(),
            16,
        ),
    ]
}

/// The row dot agrees with the reference within the budget of module note (2).
fn check_dot(k: &Kernels) {
    for (format, make_row, reference, terms, sub) in f32_cases() {
        let fk = k.format(format);
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = make_row(n, 100 + i as u64, adversarial);
                let terms = terms(&row);
                for (name, x) in activations(n, 200 + i as u64) {
                    let abs: f64 = terms
                        .iter()
                        .zip(&x)
                        .map(|(w, x)| w * (*x as f64).abs())
                        .sum();
                    let got = (fk.dot.f)(&row, &x);
                    let want = reference(&row, &x);
                    let what = format!("{} n={n} adversarial={adversarial} x={name}", fk.dot.name);
                    assert_close(&what, got, want, budget(n / sub + 48, abs, n));
                }
            }
        }
    }
}

fn check_dequant(k: &Kernels) {
    for (format, make_row, ..) in f32_cases() {
        let fk = k.format(format);
        let reference = Kernels::scalar().format(format).dequant;
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = make_row(n, 500 + i as u64, adversarial);
                let (mut got, mut want) = (vec![f32::NAN; n], vec![0.0; n]);
                (fk.dequant.f)(&row, &mut got);
                (reference.f)(&row, &mut want);
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

/// `dot_rows` on 1..=9 and 13 rows (whole groups of four and every remainder) agrees with the
/// reference row dot on each row, within that dot's budget (module note (2)); on rows of
/// 17 blocks (4352 weights), wider than the AVX-512 row kernels take (they hand such rows to
/// the single-row kernel), on 1 and 5 rows; and on Qwen2.5-0.5B's ffn_down width (19 blocks)
/// and one row wider than the x86_64 AVX-512 Q6_K kernel's transposed-activation buffer (8192),
/// which takes another path.
fn check_dot_rows(k: &Kernels) {
    const WIDE: usize = 17 * 256;
    for (format, make_row, reference, terms, sub) in f32_cases() {
        let rows_k = k
            .format(format)
            .dot_rows
            .expect("k-quants have a row kernel");
        for (i, &n) in LENGTHS.iter().chain(&[WIDE, 4864, 8448]).enumerate() {
            let counts: &[usize] = if n == WIDE {
                &[1, 5]
            } else {
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 13]
            };
            for &m in counts {
                let rows: Vec<Vec<u8>> = (0..m)
                    .map(|r| make_row(n, 1100 + (i * 16 + r) as u64, r % 3 == 2))
                    .collect();
                let w: Vec<u8> = rows.concat();
                for (name, x) in activations(n, 1200 + i as u64) {
                    let mut y = vec![f32::NAN; m];
                    (rows_k.f)(&w, &x, &mut y);
                    for (r, row) in rows.iter().enumerate() {
                        let abs: f64 = terms(row)
                            .iter()
                            .zip(&x)
                            .map(|(w, x)| w * (*x as f64).abs())
                            .sum();
                        let what = format!("{} n={n} rows={m} row {r} x={name}", rows_k.name);
                        let want = reference(row, &x);
                        assert_close(&what, y[r], want, budget(n / sub + 48, abs, n));
                    }
                }
            }
        }
        // Activations near the top of f32's range (2^100) on ordinary rows, whose reference
        // sums stay finite: a kernel that scales its partial sums up (the AVX-512 Q6_K one
        // carries 2^24 in its codes) must not overflow where the reference does not.
        for (i, &n) in [256usize, 4864].iter().enumerate() {
            for m in [1, 5] {
                let rows: Vec<Vec<u8>> = (0..m)
                    .map(|r| make_row(n, 1300 + (i * 16 + r) as u64, false))
                    .collect();
                let w: Vec<u8> = rows.concat();
                let (_, base) = activations(n, 1400 + i as u64).swap_remove(0);
                let x: Vec<f32> = base.iter().map(|v| v * 2f32.powi(100)).collect();
                let mut y = vec![f32::NAN; m];
                (rows_k.f)(&w, &x, &mut y);
                for (r, row) in rows.iter().enumerate() {
                    let abs: f64 = terms(row)
                        .iter()
                        .zip(&x)
                        .map(|(w, x)| w * (*x as f64).abs())
                        .sum();
                    let what = format!("{} n={n} rows={m} row {r} x=2^100·uniform", rows_k.name);
                    let want = reference(row, &x);
                    assert!(want.is_finite(), "{what}: the reference overflowed");
                    assert_close(&what, y[r], want, budget(n / sub + 48, abs, n));
                }
            }
        }
    }
}

// ---- int8 activations ----------------------------------------------------------------------

/// Activation-block scales and sums for the adversarial int8 inputs: zero, negative zero, f16's
/// extremes (so products with f16 weight scales reach f32 infinity), subnormals, ordinary.
const ACT_SCALES: [f32; 8] = [
    0.0,
    -0.0,
    65504.0,
    -65504.0,
    1.0e-40,
    5.9604645e-8,
    1.0,
    0.0123,
];

/// `n` activations as int8 blocks: those `quantize_act_q8` writes for each of [`activations`]
/// (ordinary, large, tiny, negative zeros), then raw blocks with codes ±127 and random, and
/// adversarial scales and sums (which no quantizer writes, but the kernels must still agree).
fn int8_activations(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, x) in activations(n, seed) {
        let mut xq = vec![0u8; scalar::act_q8_bytes(n)];
        scalar::quantize_act_q8(&x, &mut xq);
        out.push((format!("quantized {name}"), xq));
    }
    let mut rng = Rng::new(seed ^ 0x5A5A);
    for what in ["codes ±127", "random codes, adversarial scales"] {
        let blocks: Vec<scalar::BlockQ8Act> = (0..n / 32)
            .map(|_| {
                let qs = core::array::from_fn(|_| match what {
                    "codes ±127" => [127, -127][rng.below(2) as usize],
                    _ => (rng.below(255) as i32 - 127) as i8,
                });
                scalar::BlockQ8Act {
                    d: rng.pick(&ACT_SCALES).to_le_bytes(),
                    s: rng.pick(&ACT_SCALES).to_le_bytes(),
                    qs,
                }
            })
            .collect();
        out.push((what.to_string(), as_bytes(&blocks).to_vec()));
    }
    out
}

/// Bit equality, any NaN equal to any NaN (infinite scales can make `∞ − ∞`).
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

type Int8Dot = fn(&[u8], &[u8]) -> f32;

/// Every format with its row generator and int8 reference.
fn int8_cases() -> [(Format, RowFn, Int8Dot); 6] {
    [
        (Format::Q4_K, q4_k_row, scalar::dot_q4_k_q8),
        (Format::Q5_K, q5_k_row, scalar::dot_q5_k_q8),
        (Format::Q6_K, q6_k_row, scalar::dot_q6_k_q8),
        (Format::IQ4_XS, iq4_xs_row, scalar::dot_iq4_xs_q8),
        (Format::Q3_K, q3_k_row, scalar::dot_q3_k_q8),
        (Format::Q2_K, q2_k_row, scalar::dot_q2_k_q8),
    ]
}

/// `dot_q8` is bit-identical to the reference (module note (3)).
fn check_dot_q8(k: &Kernels) {
    for (format, make_row, reference) in int8_cases() {
        let dot = k.format(format).dot_q8.expect("k-quants have an int8 dot");
        for (i, &n) in LENGTHS.iter().enumerate() {
            for adversarial in [false, true] {
                let row = make_row(n, 600 + i as u64, adversarial);
                for (name, xq) in int8_activations(n, 700 + i as u64) {
                    let (got, want) = ((dot.f)(&row, &xq), reference(&row, &xq));
                    assert!(
                        same_f32(got, want),
                        "{} n={n} adversarial={adversarial} x={name}: {got:e} vs {want:e}",
                        dot.name
                    );
                }
            }
        }
    }
}

/// `gemm_q8` (rows × tokens, into a strided output) is bit-identical to the reference row dot
/// element by element, and leaves the stride's padding alone.
fn check_gemm_q8(k: &Kernels) {
    for (format, make_row, reference) in int8_cases() {
        let gemm = k
            .format(format)
            .gemm_q8
            .expect("k-quants have an int8 GEMM");
        // 17 blocks and 67 rows: more super-blocks and rows than the AVX-512 GEMMs prepare
        // activations for at once (16 and 64), so partial sums carry across runs and row blocks.
        let shapes: [(usize, &[(usize, usize)]); 3] = [
            (256, &[(1, 1), (3, 1), (4, 2), (5, 3), (9, 4)]),
            (768, &[(1, 1), (3, 1), (4, 2), (5, 3), (9, 4)]),
            (4352, &[(67, 2)]),
        ];
        for (n_cols, mn) in shapes {
            for &(m, n) in mn {
                let w: Vec<u8> = (0..m)
                    .flat_map(|r| make_row(n_cols, 800 + r as u64, r % 2 == 1))
                    .collect();
                let xq: Vec<u8> = (0..n)
                    .flat_map(|t| {
                        let acts = int8_activations(n_cols, 900 + t as u64);
                        acts[t % acts.len()].1.clone()
                    })
                    .collect();
                let ldy = m + 3;
                let mut y = vec![f32::NAN; n * ldy];
                (gemm.f)(&w, m, &xq, n, &mut y, ldy);
                let (rb, qb) = (w.len() / m, xq.len() / n);
                for t in 0..n {
                    for r in 0..ldy {
                        let got = y[t * ldy + r];
                        if r >= m {
                            assert!(got.is_nan(), "{}: padding written", gemm.name);
                            continue;
                        }
                        let want = reference(&w[r * rb..][..rb], &xq[t * qb..][..qb]);
                        assert!(
                            same_f32(got, want),
                            "{} {n_cols} cols m={m} n={n} row {r} token {t}: {got:e} vs {want:e}",
                            gemm.name
                        );
                    }
                }
            }
        }
    }
}

/// The int8 path against the f32 dot on quantized random weights (IQ4_XS, which has no
/// quantizer: random blocks with typical scales) and ordinary activations, within the bound of
/// module note (4).
fn check_int8_tracks_f32(k: &Kernels) {
    type Quantize = fn(&[f32], &mut [u8]);
    let quantizers: [(Format, Option<Quantize>); 6] = [
        (Format::Q4_K, Some(scalar::quantize_q4_k)),
        (Format::Q5_K, Some(scalar::quantize_q5_k)),
        (Format::Q6_K, Some(scalar::quantize_q6_k)),
        (Format::IQ4_XS, None),
        (Format::Q3_K, Some(scalar::quantize_q3_k)),
        (Format::Q2_K, Some(scalar::quantize_q2_k)),
    ];
    for ((format, quantize), (case, .., terms, _)) in quantizers.into_iter().zip(f32_cases()) {
        assert_eq!(format, case, "quantizers in f32_cases order");
        let fk = k.format(format);
        let dot_q8 = fk.dot_q8.expect("k-quants have an int8 dot");
        for (i, &n) in LENGTHS.iter().enumerate() {
            let mut rng = Rng::new(1000 + i as u64);
            let wf: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let x: Vec<f32> = (0..n).map(|_| 4.0 * rng.f32()).collect();
            let row = match quantize {
                Some(quantize) => {
                    let mut row = vec![0u8; n / 256 * format.block_bytes()];
                    quantize(&wf, &mut row);
                    row
                }
                None => iq4_xs_row(n, 1000 + i as u64, false),
            };
            let mut xq = vec![0u8; scalar::act_q8_bytes(n)];
            (k.quantize_act_q8.f)(&x, &mut xq);
            let acts: &[scalar::BlockQ8Act] = tern_kernels::blocks::as_blocks(&xq).unwrap();
            // |w| per element (with the min term for Q4_K, Q5_K and Q2_K).
            let w_abs = terms(&row);
            let mut rounding = 0.0f64;
            let mut abs = 0.0f64;
            for ((w, x), a) in w_abs.chunks(32).zip(x.chunks(32)).zip(acts) {
                let d_a = a.d() as f64;
                rounding += d_a / 2.0 * (1.0 + 1e-4) * w.iter().sum::<f64>();
                abs += w
                    .iter()
                    .zip(x)
                    .map(|(w, x)| w * (x.abs() as f64 + d_a))
                    .sum::<f64>();
            }
            let bound = rounding + budget(n / 32 + 48, abs, n);
            let got = (dot_q8.f)(&row, &xq);
            let want = (fk.dot.f)(&row, &x);
            assert_close(
                &format!("{} vs {} n={n}", dot_q8.name, fk.dot.name),
                got,
                want,
                bound,
            );
            // And the bound is not vacuous: it is a small fraction of the magnitude.
            assert!(
                bound < 0.05 * abs,
                "{}: bound {bound} vs Σ|w·x| {abs}",
                dot_q8.name
            );
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
    for (format, fmt) in [
        (Format::Q4_K, "q4_k"),
        (Format::Q5_K, "q5_k"),
        (Format::Q6_K, "q6_k"),
        (Format::IQ4_XS, "iq4_xs"),
        (Format::Q3_K, "q3_k"),
        (Format::Q2_K, "q2_k"),
    ] {
        let fk = k.format(format);
        assert_eq!(fk.dot.name, format!("dot_{fmt}_f32/{isa}"));
        assert_eq!(fk.dequant.name, format!("dequant_{fmt}/{isa}"));
        let int8 = match backend {
            Backend::AvxVnni => "avxvnni",
            Backend::Avx512Vnni => "avx512vnni",
            Backend::NeonDotprod | Backend::NeonI8mm => "dotprod",
            _ => isa,
        };
        assert_eq!(fk.dot_q8.unwrap().name, format!("dot_{fmt}_q8/{int8}"));
        assert_eq!(fk.gemm_q8.unwrap().name, format!("gemm_{fmt}_q8/{int8}"));
        let rows = match (backend, format) {
            (
                Backend::Avx512Vnni,
                Format::Q4_K | Format::Q5_K | Format::IQ4_XS | Format::Q3_K | Format::Q2_K,
            ) => "avx512",
            (Backend::Avx512Vnni, Format::Q6_K) if has_vbmi() => "avx512",
            _ => isa,
        };
        let rows_name = fk.dot_rows.unwrap().name;
        assert_eq!(rows_name, format!("dot_rows_{fmt}_f32/{rows}"));
    }
}

/// Whether this CPU has AVX512-VBMI, which the AVX-512 Q6_K row kernel needs.
fn has_vbmi() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `f` panics.
fn panics<T>(f: impl FnOnce() -> T) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
}

/// Rows that are not whole blocks, or lengths that disagree, panic in every backend as in
/// the reference (the wrappers check before any body runs).
fn check_lengths_panic(k: &Kernels) {
    for (format, ..) in f32_cases() {
        let bytes = format.block_bytes();
        let fk = k.format(format);
        let row = vec![0u8; 2 * bytes];
        let x = vec![0.0f32; 512];
        let rows_k = fk.dot_rows.unwrap();
        assert!(
            panics(|| (rows_k.f)(&row, &x[..256], &mut [0.0; 1])),
            "{}: x too short",
            rows_k.name
        );
        assert!(
            panics(|| (rows_k.f)(&row[1..], &x, &mut [0.0; 1])),
            "{}: partial block",
            rows_k.name
        );
        let dot_q8 = fk.dot_q8.unwrap();
        let xq = vec![0u8; scalar::act_q8_bytes(512)];
        assert!(
            panics(|| (dot_q8.f)(&row, &xq[..scalar::act_q8_bytes(256)])),
            "{}: too few activation blocks",
            dot_q8.name
        );
        assert!(
            panics(|| (dot_q8.f)(&row, &xq[1..])),
            "{}: partial activation block",
            dot_q8.name
        );
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
            fn dot_within_budget() {
                kernels($backend).map(|k| check_dot(&k));
            }
            #[test]
            fn dequant_bit_identical() {
                kernels($backend).map(|k| check_dequant(&k));
            }
            #[test]
            fn dot_rows_match_row_dot() {
                kernels($backend).map(|k| check_dot_rows(&k));
            }
            #[test]
            fn dot_q8_bit_identical() {
                kernels($backend).map(|k| check_dot_q8(&k));
            }
            #[test]
            fn gemm_q8_bit_identical() {
                kernels($backend).map(|k| check_gemm_q8(&k));
            }
            #[test]
            fn int8_tracks_f32() {
                kernels($backend).map(|k| check_int8_tracks_f32(&k));
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
