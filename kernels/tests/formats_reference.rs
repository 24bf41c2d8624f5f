//! The k-quant and ternary kernels against independent implementations: gguf-py's numpy
//! `gguf.quants`, and for the k-quant quantizers ggml's own library (see
//! `reference/make_quant_fixtures.py`, which wrote `quant_fixtures.json`).
//!
//! - Dequantization must match gguf-py bit for bit (NaN matching NaN). Both compute the same
//!   IEEE products in the same order without fused multiply-adds, so there is no reason for
//!   even a 1-ulp difference.
//! - Dot products are checked against `Σ w·x` over the reference's dequantized weights `w`,
//!   within the bound derived at [`dot_bound`].
//! - TQ1_0 / TQ2_0 / Q5_0 / Q5_1 quantization must reproduce gguf-py's bytes exactly (ggml's
//!   `_ref` rule), Q3_K / Q2_K / Q5_K / Q4_K / Q6_K quantization the bytes of ggml's own
//!   `quantize_row_q{3,2,5,4,6}_K_ref` (called by the fixture script through ctypes: gguf-py has
//!   no k-quant quantizer).
//! - Real data: the first rows of three Q5_0 tensors of Qwen2.5-Coder 0.5B Q4_K_M
//!   (`reference/real_tensor_fixtures.json`) dequantize exactly as gguf-py dequantizes them.

use tern_kernels::blocks::F16Le;
use tern_kernels::{scalar, Format, Kernels};

const FIXTURES: &str = include_str!("reference/quant_fixtures.json");
const REAL_FIXTURES: &str = include_str!("reference/real_tensor_fixtures.json");

/// One line of the fixture file.
struct Case {
    format: Format,
    name: String,
    bytes: Vec<u8>,
    /// gguf-py's dequantization of `bytes` (dequant cases).
    dequant: Option<Vec<f32>>,
    /// The f32 row gguf-py quantized into `bytes` (quantize cases).
    input: Option<Vec<f32>>,
}

/// The value of `"key": "…"` in a fixture line (all values are strings without escapes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": \"");
    let start = line.find(&pat)? + pat.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

fn hex_bytes(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex_f32s(s: &str) -> Vec<f32> {
    hex_bytes(s)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn format_named(name: &str) -> Format {
    Format::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("unknown format {name}"))
}

fn cases() -> Vec<Case> {
    let cases = parse(FIXTURES);
    assert!(
        cases.len() >= 170,
        "fixture file lost cases: {}",
        cases.len()
    );
    cases
}

fn parse(fixtures: &str) -> Vec<Case> {
    fixtures
        .lines()
        .filter(|l| l.starts_with("{\"format\""))
        .map(|l| Case {
            format: format_named(field(l, "format").expect("format")),
            name: field(l, "name").expect("name").to_string(),
            bytes: hex_bytes(field(l, "bytes").expect("bytes")),
            dequant: field(l, "dequant_f32_le").map(hex_f32s),
            input: field(l, "input_f32_le").map(hex_f32s),
        })
        .collect()
}

/// Deterministic xorshift values in [-1, 1).
fn randoms(n: usize, seed: u64) -> Vec<f32> {
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

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// `c` dequantizes to gguf-py's values bit for bit (NaN for NaN) with `k`.
fn check_dequant(k: &Kernels, c: &Case, expected: &[f32]) {
    let f = c.format;
    assert_eq!(
        c.bytes.len(),
        f.row_bytes(expected.len()).unwrap(),
        "{}",
        c.name
    );
    let mut got = vec![f32::from_bits(0x7FC0_1234); expected.len()];
    k.dequant(f, &c.bytes, &mut got);
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| !same_bits(got[i], expected[i]))
        .collect();
    assert!(
        bad.is_empty(),
        "{} {} {}: {} of {} differ, first at {}: {:e} vs gguf-py {:e}",
        k.format(f).dequant.name,
        f.name(),
        c.name,
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        expected[bad[0]]
    );
}

/// Rows of real Q5_0 tensors, on every backend this CPU has.
#[test]
fn real_q5_0_rows_match_gguf_py_bit_for_bit() {
    let cases = parse(REAL_FIXTURES);
    assert_eq!(cases.len(), 3);
    for backend in tern_kernels::Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            continue;
        };
        for c in &cases {
            assert_eq!(c.format, Format::Q5_0);
            let expected = c.dequant.as_ref().expect("dequant case");
            assert!(expected.len() >= 896 && expected.iter().any(|&v| v != 0.0));
            check_dequant(&k, c, expected);
        }
    }
}

#[test]
fn dequant_matches_gguf_py_bit_for_bit() {
    let mut per_format = [0usize; Format::COUNT];
    for c in cases() {
        let Some(expected) = &c.dequant else { continue };
        for k in [Kernels::scalar(), Kernels::best()] {
            check_dequant(&k, &c, expected);
        }
        per_format[c.format.index()] += 1;
    }
    let formats = [
        Format::Q4_K,
        Format::Q5_K,
        Format::Q6_K,
        Format::IQ4_XS,
        Format::TQ1_0,
        Format::TQ2_0,
        Format::Q5_0,
        Format::Q5_1,
        Format::IQ4_NL,
        Format::Q3_K,
        Format::Q2_K,
    ];
    for f in formats {
        assert!(per_format[f.index()] >= 10, "{} has few cases", f.name());
    }
}

/// Bound on |dot − Σ w·x| (w the reference's dequantized weights, the sum exact).
///
/// A weight is `w = fl(fl(s·q) − m)` for its sub-block's f32 step `s` and offset `m` (m = 0
/// except in Q4_K, Q5_K, Q5_1 and Q2_K), computed identically by the kernel and the reference. So
/// `|w − (s·q − m)| ≤ u·(2|s·q| + |m|)`. The kernel evaluates `Σ_sub s·fl(Σ q·x) − m·fl(Σ x)`:
/// each term passes through at most `L` roundings in the sub-block sum (products and adds), 2
/// more for the scaling and the subtraction, and `S` in the running total over the row's `S`
/// sub-blocks, so it is within `γ_k·Σ (|s·q| + |m|)·|x|` of the exact value, `k = L + S + 2`.
/// With `|s·q| ≤ |w| + |m|` (to first order) both parts fit in
/// `(k + 1)·u·Σ (2|w| + 3|m|)·|x|`; we allow `k + 4` for the second-order terms, and an
/// absolute `k·2⁻¹⁴⁹` in case anything is subnormal.
fn dot_bound(f: Format, row: &[u8], w: &[f32], x: &[f32]) -> f64 {
    let sub_len = match f {
        Format::Q4_K
        | Format::Q5_K
        | Format::IQ4_XS
        | Format::Q5_0
        | Format::Q5_1
        | Format::IQ4_NL => 32,
        Format::Q6_K | Format::Q3_K | Format::Q2_K => 16,
        Format::TQ1_0 | Format::TQ2_0 => 256,
        Format::I2_S => 128,
        _ => unreachable!(),
    };
    let k = (sub_len + w.len() / sub_len + 6) as f64;
    let offsets = offsets(f, row, w.len());
    let mag: f64 = w
        .iter()
        .zip(&offsets)
        .zip(x)
        .map(|((w, m), x)| (2.0 * (*w as f64).abs() + 3.0 * m.abs()) * (*x as f64).abs())
        .sum();
    k * f64::from(f32::EPSILON) / 2.0 * mag + k * 2f64.powi(-149)
}

/// The offset `m` of each weight: `dmin·min` of its Q4_K / Q5_K or Q2_K sub-block, Q5_1's
/// block `m` (its sign does not matter to the bound), 0 for the other formats. Decoded here
/// independently of the kernel (ggml's `get_scale_min_k4`, Q2_K's high nibbles), for the bound
/// only.
fn offsets(f: Format, row: &[u8], n: usize) -> Vec<f64> {
    if f == Format::Q5_1 {
        return row
            .chunks_exact(24)
            .flat_map(|b| [F16Le([b[2], b[3]]).to_f32() as f64; 32])
            .collect();
    }
    if f == Format::Q2_K {
        let mut out = Vec::with_capacity(n);
        for b in row.chunks_exact(84) {
            let dmin = F16Le([b[82], b[83]]).to_f32() as f64;
            for s in &b[..16] {
                out.extend([dmin * (s >> 4) as f64; 16]);
            }
        }
        return out;
    }
    if !matches!(f, Format::Q4_K | Format::Q5_K) {
        return vec![0.0; n];
    }
    let mut out = Vec::with_capacity(n);
    for b in row.chunks_exact(f.block_bytes()) {
        let dmin = F16Le([b[2], b[3]]).to_f32() as f64;
        let s = &b[4..16];
        for j in 0..8 {
            let m = if j < 4 {
                s[j + 4] & 63
            } else {
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4)
            };
            out.extend([dmin * m as f64; 32]);
        }
    }
    out
}

#[test]
fn dot_matches_reference_dequant_within_bound() {
    for (label, k) in [("scalar", Kernels::scalar()), ("best", Kernels::best())] {
        let mut checked = 0;
        for (i, c) in cases().iter().enumerate() {
            let Some(w) = &c.dequant else { continue };
            let f = c.format;
            let x = randoms(w.len(), 7 + i as u64);
            let got = k.dot(f, &c.bytes, &x);
            if w.iter().any(|v| !v.is_finite()) {
                assert!(
                    !got.is_finite(),
                    "{label} {} {}: finite {got}",
                    f.name(),
                    c.name
                );
                continue;
            }
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let bound = dot_bound(f, &c.bytes, w, &x);
            assert!(
                (got as f64 - exact).abs() <= bound,
                "{label} {} {}: dot {got} vs {exact} (bound {bound:e})",
                f.name(),
                c.name
            );
            checked += 1;
        }
        assert!(checked >= 100, "{label}: only {checked} dot cases");
    }
}

#[test]
fn quantize_matches_reference_bytes() {
    let mut checked = 0;
    for c in cases() {
        let Some(x) = &c.input else { continue };
        let mut got = vec![0xA5u8; c.bytes.len()];
        match c.format {
            Format::TQ1_0 => scalar::quantize_tq1_0(x, &mut got),
            Format::TQ2_0 => scalar::quantize_tq2_0(x, &mut got),
            Format::Q5_0 => scalar::quantize_q5_0(x, &mut got),
            Format::Q5_1 => scalar::quantize_q5_1(x, &mut got),
            Format::Q3_K => scalar::quantize_q3_k(x, &mut got),
            Format::Q2_K => scalar::quantize_q2_k(x, &mut got),
            Format::Q5_K => scalar::quantize_q5_k(x, &mut got),
            Format::Q4_K => scalar::quantize_q4_k(x, &mut got),
            Format::Q6_K => scalar::quantize_q6_k(x, &mut got),
            f => panic!("no quantize fixture expected for {}", f.name()),
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != c.bytes[i]) {
            panic!(
                "{} {}: byte {i} is {:#04x}, the reference wrote {:#04x}",
                c.format.name(),
                c.name,
                got[i],
                c.bytes[i]
            );
        }
        checked += 1;
    }
    // TQ1_0, TQ2_0, Q5_0 and Q5_1 5 each, Q5_K 10, Q3_K and Q2_K 12 each, Q4_K and Q6_K 17 each.
    assert_eq!(checked, 4 * 5 + 10 + 2 * 12 + 2 * 17);
}

#[test]
fn table_and_geometry_of_new_formats() {
    use core::mem::size_of;
    use tern_kernels::blocks::{
        BlockI2_S, BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_0, BlockQ5_1,
        BlockQ5_K, BlockQ6_K, BlockTQ1_0, BlockTQ2_0,
    };
    let geometry = [
        (
            Format::Q4_K,
            256,
            size_of::<BlockQ4_K>(),
            "dot_q4_k_f32/scalar",
        ),
        (
            Format::Q5_K,
            256,
            size_of::<BlockQ5_K>(),
            "dot_q5_k_f32/scalar",
        ),
        (
            Format::Q6_K,
            256,
            size_of::<BlockQ6_K>(),
            "dot_q6_k_f32/scalar",
        ),
        (
            Format::Q3_K,
            256,
            size_of::<BlockQ3_K>(),
            "dot_q3_k_f32/scalar",
        ),
        (
            Format::Q2_K,
            256,
            size_of::<BlockQ2_K>(),
            "dot_q2_k_f32/scalar",
        ),
        (
            Format::IQ4_XS,
            256,
            size_of::<BlockIQ4_XS>(),
            "dot_iq4_xs_f32/scalar",
        ),
        (
            Format::TQ1_0,
            256,
            size_of::<BlockTQ1_0>(),
            "dot_tq1_0_f32/scalar",
        ),
        (
            Format::TQ2_0,
            256,
            size_of::<BlockTQ2_0>(),
            "dot_tq2_0_f32/scalar",
        ),
        (
            Format::I2_S,
            128,
            size_of::<BlockI2_S>(),
            "dot_i2_s_f32_unscaled/scalar",
        ),
        (
            Format::Q5_0,
            32,
            size_of::<BlockQ5_0>(),
            "dot_q5_0_f32/scalar",
        ),
        (
            Format::Q5_1,
            32,
            size_of::<BlockQ5_1>(),
            "dot_q5_1_f32/scalar",
        ),
        (
            Format::IQ4_NL,
            32,
            size_of::<BlockIQ4_NL>(),
            "dot_iq4_nl_f32/scalar",
        ),
    ];
    let k = Kernels::scalar();
    for (f, len, bytes, dot_name) in geometry {
        assert_eq!(
            (f.block_len(), f.block_bytes()),
            (len, bytes),
            "{}",
            f.name()
        );
        assert_eq!(Format::ALL[f.index()], f);
        assert_eq!(k.format(f).dot.name, dot_name);
        assert_eq!(f.row_bytes(3 * len), Some(3 * bytes));
        assert_eq!(f.row_bytes(len + 1), None);
    }
    assert_eq!(Format::I2_S.row_bytes(2560), Some(640));
}
