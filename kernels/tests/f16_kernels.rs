//! F16 row kernels of every backend this CPU runs, against the scalar reference.

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
            let row = halves(n, n as u32 + 7);
            let x = floats(n, n as u32 + 3);
            let mut want = vec![0.0f32; n];
            scalar::dequant_f16(&row, &mut want);
            let mut got = vec![1.0f32; n];
            (fk.dequant.f)(&row, &mut got);
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
            let got = (fk.dot.f)(&row, &x) as f64;
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
