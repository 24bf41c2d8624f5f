//! The int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 / IQ4_NL / Q5_0 / Q5_1
//! (`Kernels::gemm_repacked`) against its references.
//!
//! - `scalar::repack` then `scalar::dequant_repacked` is the GGUF dequantization bit for bit
//!   (the layout loses nothing), on every row count (padding rows included).
//! - Every backend's `gemm_repacked` equals `scalar::gemm_repacked` bit for bit, and that equals
//!   `scalar::gemm_i8` on the GGUF bytes (the product a matrix had before repacking), on random
//!   and extreme weights (all-max codes, −128, ±65504, subnormal and zero scales) and
//!   activations (±127 blocks, tiny and huge magnitudes), odd row and token counts, and column
//!   counts that cross the driver's column chunks.

mod common;

use common::{int8_activations as activations, kernels, same_bits, Rng};
use tern_kernels::scalar::{self, repacked_bytes};
use tern_kernels::{Backend, Format, Kernels};

/// Every repacked format, from the one table.
fn formats() -> impl Iterator<Item = Format> {
    scalar::REPACKED_FORMATS.iter().map(|f| f.format)
}

/// `rows` rows of `nb` blocks: random codes, or all 0xFF / 0x00 / 0x80 code bytes in some
/// blocks, with ordinary or extreme f16 scales.
fn weights(format: Format, rows: usize, nb: usize, rng: &mut Rng, wild: bool) -> Vec<u8> {
    let bb = format.block_bytes();
    let mut w = Vec::with_capacity(rows * nb * bb);
    for _ in 0..rows * nb {
        let kind = rng.below(6);
        let mut b: Vec<u8> = (0..bb)
            .map(|_| match kind {
                0 => 0xFF,
                1 => 0x00,
                2 => 0x80,
                _ => rng.next() as u8,
            })
            .collect();
        let d: u16 = match (wild, rng.below(6)) {
            (true, 0) => 0x7BFF,
            (true, 1) => 0xFBFF,
            (true, 2) => 0x0001,
            (true, 3) => 0x0000,
            (true, 4) => 0x8000,
            _ => half::f16::from_f32(rng.f32() * 0.05).to_bits(),
        };
        b[..2].copy_from_slice(&d.to_le_bytes());
        if matches!(format, Format::Q4_1 | Format::Q5_1) {
            // The offset: ordinary or extreme as the scale.
            let m = [0x7BFFu16, 0xFBFF, 0x0001, 0x8000][rng.below(4) as usize];
            let m = if wild {
                m
            } else {
                half::f16::from_f32(rng.f32() * 0.1 - 0.05).to_bits()
            };
            b[2..4].copy_from_slice(&m.to_le_bytes());
        }
        w.extend(b);
    }
    w
}

fn repacked(format: Format, w: &[u8], m: usize, cols: usize) -> Vec<u8> {
    let mut p = vec![0u8; repacked_bytes(format, m, cols)];
    scalar::repack(format, w, m, &mut p);
    p
}

#[test]
fn repacking_loses_nothing() {
    let k = Kernels::scalar();
    let mut rng = Rng::new(3);
    for format in formats() {
        for m in [1, 7, 8, 9, 23] {
            let (nb, cols) = (3, 96);
            let w = weights(format, m, nb, &mut rng, true);
            let p = repacked(format, &w, m, cols);
            let rb = w.len() / m;
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..m {
                k.dequant(format, &w[r * rb..][..rb], &mut a);
                scalar::dequant_repacked(format, &p, cols, r, &mut b);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| same_bits(*x, *y)),
                    "{format:?} m {m} row {r}"
                );
            }
        }
    }
}

#[test]
fn gemm_repacked_matches_scalar_and_gemm_i8_bit_for_bit_on_every_backend() {
    let reference = Kernels::scalar();
    for backend in Backend::ALL {
        let Some(k) = kernels(backend) else { continue };
        let Some(gemm) = k.gemm_repacked else {
            println!("{backend:?}: no repacked GEMM (the runtime keeps the GGUF layout)");
            continue;
        };
        println!("{backend:?}: {}", gemm.name);
        let mut rng = Rng::new(9);
        for format in formats() {
            // 8256 columns: two of the driver's column chunks.
            for cols in [32, 96, 576, 8256] {
                let nb = cols / 32;
                let shapes: &[(usize, usize)] = if cols > 1000 {
                    &[(9, 7), (33, 2)]
                } else {
                    &[(1, 1), (5, 2), (8, 6), (17, 13), (33, 7), (40, 3), (64, 1)]
                };
                for &(m, n) in shapes {
                    let wild = rng.below(2) == 0;
                    let w = weights(format, m, nb, &mut rng, wild);
                    let xq = activations(n, cols, &mut rng, wild);
                    let p = repacked(format, &w, m, cols);
                    // Outputs inside a wider matrix: other columns must stay untouched.
                    let ldy = m + 3;
                    let mut want = vec![7.0f32; n * ldy];
                    let mut got = want.clone();
                    let mut by_i8 = want.clone();
                    (reference.gemm_repacked.unwrap().f)(
                        format, &p, m, cols, &xq, n, &mut want, ldy,
                    );
                    (gemm.f)(format, &p, m, cols, &xq, n, &mut got, ldy);
                    reference.gemm_i8(format, &w, m, &xq, n, &mut by_i8, ldy);
                    for (i, ((g, e), s)) in got.iter().zip(&want).zip(&by_i8).enumerate() {
                        let at = (i / ldy, i % ldy);
                        assert!(
                            same_bits(*g, *e),
                            "{backend:?} {format:?} m {m} n {n} cols {cols} at {at:?}: {g:e} \
                             vs {e:e}"
                        );
                        assert!(
                            same_bits(*e, *s),
                            "{format:?} at {at:?}: reference vs gemm_i8"
                        );
                    }
                }
            }
        }
    }
}

/// One token (decoding, which the x86 and NEON backends compute apart from the GEMM tiles):
/// every row count up to 41 and around the row groups, the 32-row passes and the 64-row chunks
/// (partial last groups, a lone last group), column counts that cross the 256-block column
/// chunk, random and extreme weights and activations; outputs inside a wider row stay
/// untouched.
#[test]
fn one_token_products_match_scalar_bit_for_bit_on_every_backend() {
    let reference = Kernels::scalar();
    for backend in Backend::ALL {
        let Some(k) = kernels(backend) else { continue };
        let Some(gemm) = k.gemm_repacked else {
            continue;
        };
        let mut rng = Rng::new(17);
        for format in formats() {
            for cols in [32, 96, 576, 1536, 8256] {
                let nb = cols / 32;
                let ms: Vec<usize> = if cols > 2000 {
                    vec![1, 9, 71]
                } else {
                    (1..=41)
                        .chain([56, 57, 63, 64, 65, 72, 79, 96, 129, 159, 160])
                        .collect()
                };
                for m in ms {
                    for wild in [false, true] {
                        let w = weights(format, m, nb, &mut rng, wild);
                        let xq = activations(1, cols, &mut rng, wild);
                        let p = repacked(format, &w, m, cols);
                        let mut want = vec![7.0f32; m + 5];
                        let mut got = want.clone();
                        (reference.gemm_repacked.unwrap().f)(
                            format, &p, m, cols, &xq, 1, &mut want, m,
                        );
                        (gemm.f)(format, &p, m, cols, &xq, 1, &mut got, m);
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                same_bits(*g, *e),
                                "{backend:?} {format:?} m {m} cols {cols} wild {wild} row {i}: \
                                 {g:e} vs {e:e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
