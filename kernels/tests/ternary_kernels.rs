//! Ternary × per-token int8 kernels, every backend against the scalar reference: one generic
//! suite instantiated per [`Backend`] (skipped, with a note, when this CPU or build lacks it).
//! Run the NEON instances under qemu: `QEMU_CPU=cortex-a53` (no dotprod) and `QEMU_CPU=max`.
//!
//! # Error budget: none
//!
//! Every ternary integer kernel promises the same bits as the reference (the exactness
//! contract of `scalar::ternary_int8`): per block an exact integer, then a fixed order of f32
//! operations. So every comparison here is `to_bits` equality, over random and adversarial
//! inputs: all −1 / all +1 / all 0 / alternating weights, the never-written code 3, activation
//! codes −128 and 127 everywhere, f16 scales 0, −0, ±65504 and subnormals, row lengths of one
//! block and odd numbers of blocks, partial tiles, 1..=9 rows and 1..=5 tokens.

mod common;
use common::*;
use tern_kernels::blocks::{as_bytes, BlockI2_S, BlockTQ1_0, BlockTQ2_0, F16Le};
use tern_kernels::scalar::{self, lut_tables_bytes, lut_tile_bytes, ActQ8Row, LUT_TILE_ROWS};
use tern_kernels::{Backend, Format, Kernels};

const FORMATS: [Format; 3] = [Format::TQ1_0, Format::TQ2_0, Format::I2_S];

/// Block scales: zero, negative zero, f16 extremes and subnormals, ordinary.
const SCALES: [f32; 8] = [
    0.0,
    -0.0,
    65504.0,
    -65504.0,
    5.9604645e-8,
    3.0517578e-5,
    1.0,
    0.0123,
];

/// How a block's weights are drawn.
#[derive(Clone, Copy, Debug)]
enum Weights {
    Random,
    AllMinus,
    AllPlus,
    AllZero,
    Alternate,
    /// Random 2-bit codes including 3 (TQ2_0 and I2_S only; reads as +2).
    WithThree,
}

const PATTERNS: [Weights; 6] = [
    Weights::Random,
    Weights::AllMinus,
    Weights::AllPlus,
    Weights::AllZero,
    Weights::Alternate,
    Weights::WithThree,
];

fn code(rng: &mut Rng, w: Weights, j: usize) -> u8 {
    match w {
        Weights::Random => rng.below(3) as u8,
        Weights::AllMinus => 0,
        Weights::AllPlus => 2,
        Weights::AllZero => 1,
        Weights::Alternate => [0, 2][j % 2],
        Weights::WithThree => rng.below(4) as u8,
    }
}

/// A TQ1_0 byte from five trits (first most significant).
fn tq1_byte(t: [u8; 5]) -> u8 {
    let v = t.iter().fold(0u16, |v, &t| v * 3 + t as u16);
    (v * 256).div_ceil(243) as u8
}

/// A row of `n` weights in `format`, block styles drawn per block (`lut_safe`: no code 3).
fn weight_row(format: Format, n: usize, rng: &mut Rng, lut_safe: bool) -> Vec<u8> {
    let mut row = Vec::new();
    for _ in 0..n / format.block_len() {
        let mut w = PATTERNS[rng.below(PATTERNS.len() as u64) as usize];
        if matches!(w, Weights::WithThree) && (lut_safe || format == Format::TQ1_0) {
            w = Weights::Random;
        }
        let d = if rng.below(2) == 0 {
            F16Le::from_f32(SCALES[rng.below(SCALES.len() as u64) as usize])
        } else {
            F16Le::from_f32(0.001 + (rng.below(1000) as f32) * 1e-4)
        };
        let mut c = [0u8; 256];
        for (j, c) in c.iter_mut().enumerate() {
            *c = code(rng, w, j);
        }
        match format {
            Format::TQ2_0 => {
                let mut qs = [0u8; 64];
                for h in 0..2 {
                    for m in 0..32 {
                        qs[32 * h + m] =
                            (0..4).fold(0, |b, n| b | c[128 * h + 32 * n + m] << (2 * n));
                    }
                }
                row.extend_from_slice(as_bytes(&[BlockTQ2_0 { qs, d }]));
            }
            Format::TQ1_0 => {
                let mut b = BlockTQ1_0 {
                    qs: [0; 48],
                    qh: [0; 4],
                    d,
                };
                for m in 0..32 {
                    b.qs[m] = tq1_byte(core::array::from_fn(|n| c[32 * n + m]));
                }
                for m in 0..16 {
                    b.qs[32 + m] = tq1_byte(core::array::from_fn(|n| c[160 + 16 * n + m]));
                }
                for j in 0..4 {
                    b.qh[j] = tq1_byte([c[240 + j], c[244 + j], c[248 + j], c[252 + j], 0]);
                }
                // Now and then a non-canonical byte: any byte decodes to trits 0..=2.
                if rng.below(4) == 0 {
                    b.qs[rng.below(48) as usize] = rng.next() as u8;
                }
                row.extend_from_slice(as_bytes(&[b]));
            }
            _ => {
                let mut qs = [0u8; 32];
                for (p, q) in qs.iter_mut().enumerate() {
                    *q = (0..4).fold(0, |b, k| b | c[p + 32 * k] << (6 - 2 * k));
                }
                row.extend_from_slice(as_bytes(&[BlockI2_S { qs }]));
            }
        }
    }
    row
}

/// Owned activation codes and sums of one token.
struct Act {
    qs: Vec<i8>,
    sums: Vec<i32>,
}

impl Act {
    fn view(&self) -> ActQ8Row<'_> {
        ActQ8Row::new(&self.qs, &self.sums)
    }
}

fn act(n: usize, rng: &mut Rng, style: u64) -> Act {
    let qs: Vec<i8> = (0..n)
        .map(|j| match style {
            0 => -128,
            1 => 127,
            2 => [127, -128][j % 2],
            3 => 0,
            _ => rng.next() as i8,
        })
        .collect();
    let sums = qs
        .chunks(128)
        .map(|c| c.iter().map(|&q| q as i32).sum())
        .collect();
    Act { qs, sums }
}

/// Row lengths: 1..=5 and 7 blocks of 256 (odd counts included), and model widths.
const LENGTHS: [usize; 8] = [256, 512, 768, 1024, 1280, 1792, 1536, 4096];

// ---- suites --------------------------------------------------------------------------------

fn same(what: &str, got: f32, want: f32) {
    assert!(
        got.to_bits() == want.to_bits(),
        "{what}: {got:e} vs reference {want:e}"
    );
}

fn check_dot_q8row(k: &Kernels) {
    let reference = Kernels::scalar();
    let mut rng = Rng::new(1);
    for format in FORMATS {
        let slot = k.format(format).dot_q8_row.expect("ternary int8 kernel");
        let want = reference.format(format).dot_q8_row.unwrap().f;
        let mut lengths = LENGTHS.to_vec();
        if format == Format::I2_S {
            lengths.extend([128, 384, 640]); // I2_S blocks are 128: odd block counts
        }
        for &n in &lengths {
            for trial in 0..12u64 {
                let row = weight_row(format, n, &mut rng, false);
                let a = act(n, &mut rng, trial % 6);
                let what = format!("{} n={n} trial={trial}", slot.name);
                same(&what, (slot.f)(&row, &a.view()), want(&row, &a.view()));
            }
        }
    }
}

fn check_unpack(k: &Kernels) {
    let reference = Kernels::scalar();
    let mut rng = Rng::new(2);
    for format in FORMATS {
        let slot = k.format(format).unpack.expect("unpack kernel");
        let want = reference.format(format).unpack.unwrap().f;
        for &n in &LENGTHS {
            let row = weight_row(format, n, &mut rng, false);
            let nb = if format == Format::I2_S { 0 } else { n / 256 };
            let (mut c1, mut s1) = (vec![0xEEu8; n], vec![f32::NAN; nb]);
            let (mut c2, mut s2) = (vec![0u8; n], vec![0.0; nb]);
            (slot.f)(&row, &mut c1, &mut s1);
            want(&row, &mut c2, &mut s2);
            assert!(c1 == c2, "{} n={n}: codes differ", slot.name);
            assert!(
                s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} n={n}: scales differ",
                slot.name
            );
        }
    }
}

/// Unpacked codes and block scales of `rows` random rows.
fn unpacked(
    format: Format,
    rows: usize,
    n: usize,
    rng: &mut Rng,
    lut_safe: bool,
) -> (Vec<Vec<u8>>, Vec<u8>, Vec<f32>) {
    let unpack = Kernels::scalar().format(format).unpack.unwrap().f;
    let nb = if format == Format::I2_S { 0 } else { n / 256 };
    let mut raw = Vec::new();
    let (mut codes, mut scales) = (vec![0u8; rows * n], vec![0.0f32; rows * nb]);
    for r in 0..rows {
        let row = weight_row(format, n, rng, lut_safe);
        unpack(
            &row,
            &mut codes[r * n..(r + 1) * n],
            &mut scales[r * nb..(r + 1) * nb],
        );
        raw.push(row);
    }
    (raw, codes, scales)
}

fn check_gemm(k: &Kernels) {
    let reference = Kernels::scalar();
    let mut rng = Rng::new(3);
    for format in FORMATS {
        let dot = reference.format(format).dot_q8_row.unwrap().f;
        for (rows, tokens, n) in [
            (1, 1, 256),
            (9, 5, 512),
            (4, 2, 768),
            (5, 3, 1536),
            (3, 4, 256),
        ] {
            let (raw, codes, scales) = unpacked(format, rows, n, &mut rng, false);
            let owned: Vec<Act> = (0..tokens)
                .map(|t| act(n, &mut rng, t as u64 + 2))
                .collect();
            let acts: Vec<ActQ8Row<'_>> = owned.iter().map(Act::view).collect();
            let mut got = vec![f32::NAN; rows * tokens];
            let mut want = vec![0.0f32; rows * tokens];
            (k.ternary.gemm_codes.f)(&codes, rows, &scales, &acts, &mut got);
            (reference.ternary.gemm_codes.f)(&codes, rows, &scales, &acts, &mut want);
            for t in 0..tokens {
                for r in 0..rows {
                    let what = format!(
                        "{} {} rows={rows} n={n} r={r} t={t}",
                        k.ternary.gemm_codes.name,
                        format.name()
                    );
                    same(&what, got[t * rows + r], want[t * rows + r]);
                    same(&what, got[t * rows + r], dot(&raw[r], &acts[t]));
                }
            }
        }
    }
}

fn check_lut_tables(k: &Kernels) {
    let mut rng = Rng::new(4);
    for n in [2usize, 128, 4096] {
        for style in 0..6 {
            let a = act(n.max(128), &mut rng, style);
            let qs = &a.qs[..n];
            let (mut got, mut want) = (
                vec![0xAAu8; lut_tables_bytes(n)],
                vec![0u8; lut_tables_bytes(n)],
            );
            (k.ternary.lut_tables.f)(qs, &mut got);
            scalar::lut_tables(qs, &mut want);
            assert!(
                got == want,
                "{} n={n} style={style}",
                k.ternary.lut_tables.name
            );
        }
    }
}

/// Every backend's LUT GEMV against the scalar LUT and against the reference integer dot of
/// the original rows: same bits.
fn check_lut_gemv(k: &Kernels) {
    let reference = Kernels::scalar();
    let mut rng = Rng::new(5);
    for format in FORMATS {
        let dot = reference.format(format).dot_q8_row.unwrap().f;
        for (rows, n) in [
            (32usize, 256usize),
            (7, 512),
            (32, 1536),
            (19, 1280),
            (1, 4096),
        ] {
            let (raw, codes, scales) = unpacked(format, rows, n, &mut rng, true);
            let mut tile = vec![0u8; lut_tile_bytes(n)];
            assert!(scalar::lut_pack_tile(&codes, rows, &mut tile));
            let nb = if format == Format::I2_S { 0 } else { n / 256 };
            let mut tscales = vec![0.0f32; LUT_TILE_ROWS * nb];
            for r in 0..rows {
                for b in 0..nb {
                    tscales[LUT_TILE_ROWS * b + r] = scales[r * nb + b];
                }
            }
            for style in 0..6 {
                let a = act(n, &mut rng, style);
                let mut tables = vec![0u8; lut_tables_bytes(n)];
                scalar::lut_tables(&a.qs, &mut tables);
                let (mut got, mut want) = ([f32::NAN; 32], [0.0f32; 32]);
                (k.ternary.lut_gemv.f)(&tile, &tables, &tscales, &mut got);
                (reference.ternary.lut_gemv.f)(&tile, &tables, &tscales, &mut want);
                for r in 0..LUT_TILE_ROWS {
                    let what = format!(
                        "{} {} rows={rows} n={n} style={style} r={r}",
                        k.ternary.lut_gemv.name,
                        format.name()
                    );
                    same(&what, got[r], want[r]);
                    if r < rows {
                        same(&what, got[r], dot(&raw[r], &a.view()));
                    }
                }
            }
        }
    }
}

/// Tiles decode back to the codes they were packed from, padding rows as zero weights.
fn check_lut_unpack(k: &Kernels) {
    let mut rng = Rng::new(6);
    for (rows, n) in [(32usize, 128usize), (5, 768), (32, 4096)] {
        let codes: Vec<u8> = (0..rows * n).map(|_| rng.below(3) as u8).collect();
        let mut tile = vec![0u8; lut_tile_bytes(n)];
        assert!(scalar::lut_pack_tile(&codes, rows, &mut tile));
        let mut got = vec![0xEEu8; LUT_TILE_ROWS * n];
        (k.ternary.lut_unpack.f)(&tile, &mut got);
        let mut want = vec![0u8; LUT_TILE_ROWS * n];
        scalar::lut_unpack_tile(&tile, &mut want);
        assert!(
            got == want,
            "{} rows={rows} n={n}",
            k.ternary.lut_unpack.name
        );
        assert!(got[..rows * n] == codes[..]);
    }
}

/// The per-token quantizer writes the reference's bytes and step: ordinary, large, tiny and
/// subnormal values, exact halves of a step, negative zeros, NaN (code 0), infinity (`None`).
fn check_quantize_act_row(k: &Kernels) {
    let mut rng = Rng::new(7);
    for n in [128usize, 384, 1536, 4096] {
        let base: Vec<f32> = (0..n)
            .map(|_| (rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        let mut halves: Vec<f32> = (0..n).map(|j| (j % 255) as f32 - 127.0 + 0.5).collect();
        halves[0] = 127.0; // step 1: every other value is an exact half
        let mut nan = base.clone();
        nan[n / 3] = f32::NAN;
        let mut inf = base.clone();
        inf[n - 1] = f32::NEG_INFINITY;
        let cases: Vec<(&str, Vec<f32>)> = vec![
            ("uniform", base.clone()),
            ("large", base.iter().map(|v| v * 3.0e4).collect()),
            ("tiny", base.iter().map(|v| v * 1.0e-30).collect()),
            ("subnormal", base.iter().map(|v| v * 1.0e-39).collect()),
            ("halves", halves),
            (
                "negative zeros",
                base.iter()
                    .enumerate()
                    .map(|(j, &v)| if j.is_multiple_of(3) { -0.0 } else { v })
                    .collect(),
            ),
            ("zero", vec![0.0; n]),
            ("nan", nan),
            ("inf", inf),
        ];
        for (name, x) in cases {
            let (mut q1, mut s1) = (vec![0x55i8; n], vec![7i32; n / 128]);
            let (mut q2, mut s2) = (vec![0i8; n], vec![0i32; n / 128]);
            let d1 = (k.ternary.quantize_act_row.f)(&x, &mut q1, &mut s1);
            let d2 = scalar::quantize_act_q8_row(&x, &mut q2, &mut s2);
            let what = format!("{} n={n} x={name}", k.ternary.quantize_act_row.name);
            assert_eq!(d1.map(f32::to_bits), d2.map(f32::to_bits), "{what}: step");
            if d2.is_some() {
                assert!(q1 == q2 && s1 == s2, "{what}: codes or sums differ");
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
    for format in FORMATS {
        let f = k.format(format);
        assert_eq!(suffix(f.dot_q8_row.unwrap().name), int8_isa);
        assert_eq!(suffix(f.unpack.unwrap().name), vec_isa);
    }
    assert_eq!(suffix(k.ternary.gemm_codes.name), int8_isa);
    assert_eq!(suffix(k.ternary.lut_tables.name), vec_isa);
    assert_eq!(suffix(k.ternary.lut_gemv.name), vec_isa);
    assert_eq!(suffix(k.ternary.lut_unpack.name), vec_isa);
    assert_eq!(suffix(k.ternary.quantize_act_row.name), vec_isa);
}

macro_rules! suite {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn dot_q8row_bit_identical() {
                kernels($backend).map(|k| check_dot_q8row(&k));
            }
            #[test]
            fn unpack_identical() {
                kernels($backend).map(|k| check_unpack(&k));
            }
            #[test]
            fn gemm_codes_bit_identical() {
                kernels($backend).map(|k| check_gemm(&k));
            }
            #[test]
            fn lut_tables_byte_identical() {
                kernels($backend).map(|k| check_lut_tables(&k));
            }
            #[test]
            fn lut_gemv_bit_identical() {
                kernels($backend).map(|k| check_lut_gemv(&k));
            }
            #[test]
            fn lut_unpack_identical() {
                kernels($backend).map(|k| check_lut_unpack(&k));
            }
            #[test]
            fn quantize_act_row_byte_identical() {
                kernels($backend).map(|k| check_quantize_act_row(&k));
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
