//! F16 row kernels of every backend this CPU runs, against the scalar reference; and the f16
//! activation path (`scalar::act_f16`): every backend's kernels bit for bit against the
//! scalar reference, the reference against the exact product within the contract's error
//! bound, and which backends install the FEAT_FP16 kernels.
//!
//! Run the NEON instances under qemu: `QEMU_CPU=max` (has FEAT_FP16) and `QEMU_CPU=cortex-a53`
//! (has not: no `fp16` kernel may be installed).

mod common;

use common::{same_bits, Rng};
use half::f16;
use tern_kernels::scalar::{act_f16_bytes, BlockF16Act};
use tern_kernels::{scalar, Backend, Format, Kernels};

/// Deterministic halves covering normal values, ±max, subnormals, zeros and −0.
fn halves(n: usize, seed: u32) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .flat_map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let bits: u16 = match i % 11 {
                0 => 0x7BFF,                                            // 65504
                1 => 0xFBFF,                                            // −65504
                2 => 0x0001,                                            // smallest subnormal
                3 => 0x8000,                                            // −0
                4 => 0x03FF,                                            // largest subnormal
                _ => (s as u16) & 0x7BFF | ((s >> 16) as u16 & 0x8000), // finite
            };
            bits.to_le_bytes()
        })
        .collect()
}

fn floats(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn f16_dot_and_dequant_match_scalar_on_every_backend() {
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            eprintln!("skipping {}: not supported by this CPU", backend.name());
            continue;
        };
        let fk = k.format(Format::F16);
        for n in (0..70).chain([576, 1536, 4096]) {
            // One byte in: F16 rows may sit at odd addresses.
            let mut buf = vec![0u8; 2 * n + 1];
            buf[1..].copy_from_slice(&halves(n, n as u32 + 7));
            let row = &buf[1..];
            let x = floats(n, n as u32 + 3);
            let mut want = vec![0.0f32; n];
            scalar::dequant_f16(row, &mut want);
            let mut got = vec![1.0f32; n];
            (fk.dequant.f)(row, &mut got);
            // Conversion is exact in every backend: bit-identical.
            assert!(
                want.iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} dequant n={n}",
                fk.dequant.name
            );
            // Dot: orders differ; bound 2·γ(n)·Σ|w·x| with γ(n) = n·u/(1 − n·u), u = 2⁻²⁴
            // (Higham's summation bound, doubled for the two different orders).
            let exact: f64 = want
                .iter()
                .zip(&x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let mag: f64 = want
                .iter()
                .zip(&x)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let u = 2f64.powi(-24) * n.max(1) as f64;
            let bound = 2.0 * u / (1.0 - u) * mag + 1e-30;
            let got = (fk.dot.f)(row, &x) as f64;
            assert!(
                (got - exact).abs() <= bound,
                "{} n={n}: {got} vs {exact} (bound {bound})",
                fk.dot.name
            );
        }
    }
}

/// The multi-row kernel (decoding's F16 output head) against the scalar single-row dot, row by
/// row, on every backend: widths around the 8-, 16- and 32-half steps of the SIMD bodies (the
/// tails go to the scalar reference), row counts around the four-row step, halves with ±max,
/// subnormals and −0. Both sum in different orders: bound 2·γ(n)·Σ|w·x| as above, against the
/// exact product in f64 (so the SIMD result is compared with the truth, not with the scalar
/// result's own error).
#[test]
fn f16_dot_rows_match_scalar_on_every_backend() {
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            eprintln!("skipping {}: not supported by this CPU", backend.name());
            continue;
        };
        let slot = k
            .format(Format::F16)
            .dot_rows
            .expect("every backend has an F16 row kernel");
        for n in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63, 96, 1536, 1544] {
            for rows in [0usize, 1, 2, 3, 4, 5, 7, 8, 9] {
                let w = halves(n * rows, (n * 31 + rows) as u32 + 5);
                let x = floats(n, n as u32 + 11);
                let mut y = vec![f32::NAN; rows];
                (slot.f)(&w, &x, &mut y);
                for (r, row) in w.chunks_exact(2 * n).enumerate() {
                    let mut vals = vec![0.0f32; n];
                    scalar::dequant_f16(&row[..2 * n], &mut vals);
                    let exact: f64 = vals
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let mag: f64 = vals
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| (*a as f64 * *b as f64).abs())
                        .sum();
                    let u = 2f64.powi(-24) * n.max(1) as f64;
                    let bound = 2.0 * u / (1.0 - u) * mag + 1e-30;
                    assert!(
                        (y[r] as f64 - exact).abs() <= bound,
                        "{} n={n} rows={rows} row {r}: {} vs {exact} (bound {bound})",
                        slot.name,
                        y[r]
                    );
                }
            }
        }
    }
}

// ---- f16 activations -----------------------------------------------------------------------

/// The formats with f16-activation kernels.
const F16_ACT: [Format; 6] = [
    Format::Q4_0,
    Format::Q4_1,
    Format::Q8_0,
    Format::Q5_0,
    Format::Q5_1,
    Format::IQ4_NL,
];

/// Whether `format`'s values are `q·d + m`, with `m` the f16 at byte 2 of the block.
fn has_m(format: Format) -> bool {
    matches!(format, Format::Q4_1 | Format::Q5_1)
}

/// Half bit patterns the weight scales are drawn from: ordinary values, the smallest
/// subnormal, the largest half, zero and −0.
fn scale_bits(rng: &mut Rng, wild: bool) -> u16 {
    if wild {
        match rng.below(6) {
            0 => 0x0001, // 2^-24
            1 => 0x7BFF, // 65504
            2 => 0xFBFF, // -65504
            3 => 0x0000,
            4 => 0x8000, // -0
            _ => f16::from_f32(rng.f32() * 2.0).to_bits(),
        }
    } else {
        f16::from_f32(rng.f32() * 0.1).to_bits()
    }
}

/// One row of `nb` blocks of `format`: random codes, plus zero-scale blocks and maximal blocks
/// (every code its largest or smallest: 4- or 5-bit 31/15 or 0, int8 −128 or 127); with `wild`,
/// scales at the f16 extremes.
fn weight_row(format: Format, nb: usize, rng: &mut Rng, wild: bool) -> Vec<u8> {
    let mut row = Vec::new();
    for _ in 0..nb {
        let kind = rng.below(5);
        let mut d = scale_bits(rng, wild);
        if kind == 0 {
            d = 0;
        }
        row.extend(d.to_le_bytes());
        if has_m(format) {
            row.extend(scale_bits(rng, wild).to_le_bytes());
        }
        // Q5: the 4 bytes of fifth bits, then the nibbles.
        let qh = if matches!(format, Format::Q5_0 | Format::Q5_1) {
            4
        } else {
            0
        };
        let n = if format == Format::Q8_0 { 32 } else { 16 + qh };
        for _ in 0..n {
            row.push(match (kind, format) {
                (1, Format::Q8_0) => 0x80, // −128
                (2, Format::Q8_0) => 0x7F,
                (1, _) => 0xFF,
                (2, _) => 0x00,
                _ => rng.next() as u8,
            });
        }
    }
    row
}

/// `nb` blocks of activations, each of one magnitude: ordinary values, tiny, huge, around the
/// f16 range limits (65504, 65520 and beyond, 2^-24), f32 subnormals, all zeros, with
/// scattered −0 and exact ±65504. With `wild`, also magnitudes whose products overflow f32.
fn activations(nb: usize, rng: &mut Rng, wild: bool) -> Vec<f32> {
    let mags: &[f32] = if wild {
        &[
            1.0, 1e-30, 1e30, 65504.0, 65520.0, 7e4, 6e-8, 1e-40, 3e38, 0.0,
        ]
    } else {
        &[
            1.0, 3.0, 1e-3, 1e3, 65504.0, 65520.0, 7e4, 6e-8, 1e-20, 1e20, 0.0,
        ]
    };
    let mut x = Vec::new();
    for _ in 0..nb {
        let mag = rng.pick(mags);
        for _ in 0..32 {
            x.push(match rng.below(16) {
                0 => -0.0,
                1 => 65504.0_f32.min(mag.max(1.0)),
                2 => -65504.0_f32.min(mag.max(1.0)),
                _ => rng.f32() * mag,
            });
        }
    }
    x
}

/// Conversion writes the same bytes on every backend (the SIMD paths only where the CPU has
/// FEAT_FP16; elsewhere the slot is the reference itself).
#[test]
fn quantize_act_f16_matches_scalar_bytes_on_every_backend() {
    let mut rng = Rng::new(41);
    for backend in Backend::ALL {
        let Some(k) = common::kernels(backend) else {
            continue;
        };
        for nb in [1usize, 2, 3, 5, 18, 48] {
            for wild in [false, true] {
                let x = activations(nb, &mut rng, wild);
                let mut want = vec![0u8; act_f16_bytes(x.len())];
                // Written one byte in: an odd address.
                let mut got = vec![0xAAu8; want.len() + 1];
                scalar::quantize_act_f16(&x, &mut want);
                (k.quantize_act_f16.f)(&x, &mut got[1..]);
                assert_eq!(
                    got[1..],
                    want,
                    "{} nb={nb} wild={wild}",
                    k.quantize_act_f16.name
                );
            }
        }
    }
}

/// The contract is bit-exact: every backend's `dot_f16` equals the emulating reference bit for
/// bit (NaN for NaN), on odd and even block counts, zero and maximal blocks, scales from 2⁻²⁴
/// to ±65504 and −0, activations from f32 subnormals past f16's range to 3e38, and rows and
/// activation blocks at odd addresses.
#[test]
fn dot_f16_matches_scalar_bit_for_bit_on_every_backend() {
    let mut rng = Rng::new(43);
    let mut checked = 0;
    for backend in Backend::ALL {
        let Some(k) = common::kernels(backend) else {
            continue;
        };
        for format in F16_ACT {
            let Some(slot) = k.format(format).dot_f16 else {
                continue;
            };
            let reference = Kernels::scalar().format(format).dot_f16.unwrap();
            for nb in [1usize, 2, 3, 5, 7, 8, 17, 18, 48] {
                for wild in [false, true] {
                    for _ in 0..8 {
                        let row = weight_row(format, nb, &mut rng, wild);
                        let x = activations(nb, &mut rng, wild);
                        // One byte in: blocks have alignment 1 and may sit at odd addresses.
                        let mut buf = vec![0u8; act_f16_bytes(x.len()) + 1];
                        let xh = &mut buf[1..];
                        (k.quantize_act_f16.f)(&x, xh);
                        let mut rbuf = vec![0u8; row.len() + 1];
                        rbuf[1..].copy_from_slice(&row);
                        let row = &rbuf[1..];
                        let (got, want) = ((slot.f)(row, xh), (reference.f)(row, xh));
                        assert!(
                            same_bits(got, want),
                            "{} nb={nb} wild={wild}: {got:e} vs reference {want:e}",
                            slot.name
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} rows checked");
}

/// The parts of the bound for one row, in f64: `[exact d-part Σ d·code·x, Σ|d·code·x|,
/// exact offset part Σ m·x (Q4_1), Σ|m·x|, Σ_blocks |d|·d_a·Σ|code|, Σ_blocks |d|·d_a,
/// Σ_blocks |m|·d_a]`.
fn bound_parts(format: Format, row: &[u8], x: &[f32]) -> [f64; 7] {
    let bb = format.block_bytes();
    let mut p = [0.0f64; 7];
    for (blk, x) in row.chunks_exact(bb).zip(x.chunks_exact(32)) {
        let h = |i: usize| f16::from_bits(u16::from_le_bytes([blk[i], blk[i + 1]])).to_f64();
        let d = h(0);
        let nibble = |i: usize| (blk[bb - 16 + i % 16] >> (4 * (i / 16))) & 0x0F;
        let fifth = |i: usize| {
            (u32::from_le_bytes([blk[bb - 20], blk[bb - 19], blk[bb - 18], blk[bb - 17]]) >> i) & 1
        };
        let codes: Vec<f64> = match format {
            Format::Q4_0 => (0..32).map(|i| nibble(i) as f64 - 8.0).collect(),
            Format::Q4_1 => (0..32).map(|i| nibble(i) as f64).collect(),
            Format::Q5_0 => (0..32)
                .map(|i| (nibble(i) as u32 | fifth(i) << 4) as f64 - 16.0)
                .collect(),
            Format::Q5_1 => (0..32)
                .map(|i| (nibble(i) as u32 | fifth(i) << 4) as f64)
                .collect(),
            Format::IQ4_NL => (0..32)
                .map(|i| scalar::IQ4_NL_VALUES[nibble(i) as usize] as f64)
                .collect(),
            _ => blk[2..].iter().map(|&q| q as i8 as f64).collect(),
        };
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d_a = scalar::act_f16_scale(amax).0 as f64;
        for (c, &xi) in codes.iter().zip(x) {
            p[0] += d * c * xi as f64;
            p[1] += (d * c * xi as f64).abs();
            p[4] += (d * c).abs() * d_a;
        }
        p[5] += d.abs() * d_a;
        if has_m(format) {
            let m = h(2);
            for &xi in x {
                p[2] += m * xi as f64;
                p[3] += (m * xi as f64).abs();
            }
            p[6] += m.abs() * d_a;
        }
    }
    p
}

/// The reference stays within the error bound its module docs derive, against the exact
/// product: per block the activation rounding (`u₁₆·|x|`, or `d_a·2⁻²⁵` below f16's normal
/// range), four f16 roundings per lane (`γ₄` of the lane's `Σ|w·h|`, plus `2⁻²⁵` each in the
/// subnormal range), then `n_blocks + 4` f32 roundings on everything; Q4_1's offset term adds
/// the rounding of `s` (`u₁₆·Σ|x|` and the f32 tree sum). Magnitudes stay inside f32's range.
#[test]
fn dot_f16_reference_within_the_contract_bound() {
    let u16r = 2f64.powi(-11);
    let g4 = 4.0 * u16r / (1.0 - 4.0 * u16r);
    let mut rng = Rng::new(47);
    for format in F16_ACT {
        let dot = Kernels::scalar().format(format).dot_f16.unwrap();
        for nb in [1usize, 3, 5, 18, 48] {
            for _ in 0..40 {
                let row = weight_row(format, nb, &mut rng, false);
                let x = activations(nb, &mut rng, false);
                let mut xh = vec![0u8; act_f16_bytes(x.len())];
                scalar::quantize_act_f16(&x, &mut xh);
                let got = (dot.f)(&row, &xh) as f64;
                let [exact_d, abs_d, exact_m, abs_m, w_da, d_da, m_da] =
                    bound_parts(format, &row, &x);
                // Activation rounding and the lanes' four f16 roundings (2⁻²⁵ each, 8 lanes,
                // in the subnormal range).
                let f16_err = (u16r + g4 * (1.0 + u16r)) * abs_d
                    + w_da * (1.0 + g4) * 2f64.powi(-25)
                    + d_da * 2f64.powi(-20);
                // `s`: the activations' rounding, then the f32 tree (depth 5).
                let m_err = u16r * abs_m
                    + m_da * 32.0 * 2f64.powi(-25)
                    + common::gamma(5) * abs_m * (1.0 + u16r);
                let g32 = common::gamma(nb + 6);
                let bound = (f16_err + m_err) * (1.0 + g32)
                    + g32 * (abs_d + abs_m) * (1.0 + 6.0 * u16r)
                    + 64.0 * nb as f64 * common::F32_TINY;
                let exact = exact_d + exact_m;
                assert!(
                    (got - exact).abs() <= bound,
                    "{} nb={nb}: {got:e} vs exact {exact:e}: |Δ| = {:e} > {bound:e}",
                    dot.name,
                    (got - exact).abs()
                );
            }
        }
    }
}

/// The f16 emulation rounds once: `fl16(a·b + c)` where the exact value lies just above a tie
/// only by a bit below f64's top 32 (where `half`'s `from_f64` looks), and plain products.
#[test]
fn fma_f16_rounds_once() {
    let (a, b, c) = (
        f16::from_f32(1.0 + 2f32.powi(-10)),
        f16::from_f32(2f32.powi(-11)),
        f16::from_f32(1.5),
    );
    // 1.5 + 2^-11 + 2^-21: just above the tie between 1.5 (even) and 1.5 + 2^-10.
    assert_eq!(scalar::fma_f16(a, b, c).to_f32(), 1.5 + 2f32.powi(-10));
    // 1.5 − 2^-11 − 2^-21: just below the tie between 1.5 − 2^-10 and 1.5.
    assert_eq!(scalar::fma_f16(a, -b, c).to_f32(), 1.5 - 2f32.powi(-10));
    // An exact tie goes to even; products round to nearest.
    let tie = f16::from_f32(2f32.powi(-11));
    assert_eq!(scalar::fma_f16(tie, f16::ONE, c).to_f32(), 1.5);
    assert_eq!(scalar::mul_f16(a, a).to_f32(), 1.0 + 2f32.powi(-9));
    // Overflow past 65504 + half an ulp gives infinity, as the hardware does.
    let big = f16::from_f32(65504.0);
    assert!(scalar::fma_f16(big, f16::ONE, f16::from_f32(16.0)).is_infinite());
    assert_eq!(
        scalar::fma_f16(big, f16::ONE, f16::from_f32(8.0)).to_f32(),
        65504.0
    );
}

/// The block layout the kernels read.
#[test]
fn f16_act_block_is_72_bytes() {
    assert_eq!(std::mem::size_of::<BlockF16Act>(), BlockF16Act::BYTES);
    assert_eq!(act_f16_bytes(576), 18 * 72);
}

/// Which tables run f16 activations: the scalar table (emulated), on aarch64 every NEON backend
/// exactly when the CPU has FEAT_FP16 (named `/fp16`), and no other SIMD backend.
#[test]
fn fp16_kernels_installed_only_with_fp16() {
    let s = Kernels::scalar();
    for f in F16_ACT {
        assert!(s.format(f).dot_f16.unwrap().name.ends_with("/scalar"));
    }
    #[cfg(target_arch = "aarch64")]
    let fp16 = std::arch::is_aarch64_feature_detected!("fp16");
    #[cfg(not(target_arch = "aarch64"))]
    let fp16 = false;
    println!("fp16 detected: {fp16}");
    for backend in Backend::ALL {
        if backend == Backend::Scalar {
            continue;
        }
        let Some(k) = common::kernels(backend) else {
            continue;
        };
        let neon = matches!(
            backend,
            Backend::Neon | Backend::NeonDotprod | Backend::NeonI8mm
        );
        for f in Format::ALL {
            let slot = k.format(f).dot_f16;
            if neon && fp16 && F16_ACT.contains(&f) {
                assert!(slot.unwrap().name.ends_with("/fp16"), "{}", backend.name());
            } else {
                assert!(
                    slot.is_none(),
                    "{} {} has {:?}",
                    backend.name(),
                    f.name(),
                    slot
                );
            }
        }
        assert_eq!(k.has_f16_activations(), neon && fp16);
        // The F16 weight kernels are NEON on every aarch64 core (no feature beyond ARMv8.0).
        if neon {
            let fk = k.format(Format::F16);
            assert!(fk.dot.name.ends_with("/neon") && fk.dequant.name.ends_with("/neon"));
            assert!(fk.dot_rows.unwrap().name.ends_with("/neon"));
        }
    }
}

/// Attention's weighted sum over f16 value rows against the exact sum in f64, on every
/// backend: widths around the 8- and 32-column steps of the SIMD bodies (tails go to the
/// scalar reference), row counts from none to a few dozen, halves with ±max, subnormals and
/// −0, weights including 0 and 1. Each element is a running sum of `rows` products added to
/// `y`: at most two roundings per row (product, then sum; one with FMA), so both the reference
/// and a SIMD body stay within γ(2·rows)·(|y| + Σ|a·v|) of the truth.
#[test]
fn f16_axpy_rows_match_exact_sum_on_every_backend() {
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            eprintln!("skipping {}: not supported by this CPU", backend.name());
            continue;
        };
        let slot = k.axpy_rows_f16;
        for n in [
            1usize, 7, 8, 9, 16, 31, 32, 33, 40, 63, 64, 96, 97, 128, 256,
        ] {
            for rows in [0usize, 1, 2, 5, 17, 64] {
                let v = halves(n * rows, (n * 17 + rows) as u32 + 9);
                let mut a = floats(rows, rows as u32 + 21);
                if rows > 2 {
                    (a[0], a[1]) = (0.0, 1.0);
                }
                let y0 = floats(n, n as u32 + 2);
                let mut y = y0.clone();
                (slot.f)(&mut y, &a, &v);
                let mut want = y0.clone();
                scalar::axpy_rows_f16(&mut want, &a, &v);
                let mut vals = vec![0.0f32; n * rows];
                scalar::dequant_f16(&v, &mut vals);
                for i in 0..n {
                    let terms = (0..rows).map(|p| a[p] as f64 * vals[p * n + i] as f64);
                    let exact = y0[i] as f64 + terms.clone().sum::<f64>();
                    let mag = (y0[i] as f64).abs() + terms.map(f64::abs).sum::<f64>();
                    let u = 2f64.powi(-24) * (2 * rows).max(1) as f64;
                    let bound = u / (1.0 - u) * mag + 1e-30;
                    for (who, got) in [(slot.name, y[i]), ("axpy_rows_f16/scalar", want[i])] {
                        assert!(
                            (got as f64 - exact).abs() <= bound,
                            "{who} n={n} rows={rows} col {i}: {got} vs {exact} (bound {bound})"
                        );
                    }
                }
            }
        }
    }
}

/// f32 → f16 (the f16 KV cache's stores) bit-identical to the reference on every backend:
/// every f16 value exactly (65536 patterns), the midpoints between neighbouring halves (ties
/// round to even), values past ±65504 (→ ±∞) and in the f16 subnormal range, ±0, over lengths
/// that leave tails. NaN stays NaN (payloads may differ between hardware and the reference).
#[test]
fn f16_quantize_matches_scalar_on_every_backend() {
    let mut x: Vec<f32> = (0..=u16::MAX)
        .map(|b| half::f16::from_bits(b).to_f32())
        .collect();
    // Midpoints between consecutive finite halves, and just around them.
    for b in 0u16..0x7BFF {
        let (lo, hi) = (
            half::f16::from_bits(b).to_f32(),
            half::f16::from_bits(b + 1).to_f32(),
        );
        let mid = (lo as f64 + hi as f64) / 2.0;
        x.extend([
            mid as f32,
            -(mid as f32),
            f32::from_bits((mid as f32).to_bits() + 1),
        ]);
    }
    x.extend([
        65504.0,
        65519.99,
        65520.0,
        1e6,
        -1e30,
        f32::MAX,
        1e-8,
        -3e-6,
        5.9e-8,
        -0.0,
    ]);
    x.extend(floats(1000, 5).iter().map(|v| v * 70000.0));
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            eprintln!("skipping {}: not supported by this CPU", backend.name());
            continue;
        };
        for len in [x.len(), 1, 3, 7, 9, 13] {
            let x = &x[x.len() - len..];
            let mut want = vec![0u8; 2 * len];
            scalar::quantize_f16(x, &mut want);
            let mut got = vec![0xAAu8; 2 * len];
            (k.quantize_f16.f)(x, &mut got);
            for (i, (w, g)) in want.chunks_exact(2).zip(got.chunks_exact(2)).enumerate() {
                let (w, g) = (
                    half::f16::from_le_bytes([w[0], w[1]]),
                    half::f16::from_le_bytes([g[0], g[1]]),
                );
                assert!(
                    w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()),
                    "{} len={len} x[{i}] = {:e}: {:#06x} vs reference {:#06x}",
                    k.quantize_f16.name,
                    x[i],
                    g.to_bits(),
                    w.to_bits()
                );
            }
        }
    }
}
