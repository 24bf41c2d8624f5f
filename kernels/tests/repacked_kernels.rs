//! The int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 / IQ4_NL / Q5_0 / Q5_1 / IQ4_XS
//! (`Kernels::gemm_repacked`) against its references, on every layout (Q8_0: codes plus 128
//! and signed), whichever one the backend repacks into.
//!
//! - `scalar::repack` then `scalar::dequant_repacked` is the GGUF dequantization bit for bit
//!   (the layout loses nothing), on every row count (padding rows included).
//! - Every backend's `gemm_repacked` equals `scalar::gemm_repacked` bit for bit, and that equals
//!   `scalar::gemm_i8` on the GGUF bytes (the product a matrix had before repacking), on random
//!   and extreme weights (all-max codes, −128, ±65504, subnormal and zero scales; IQ4_XS's
//!   sub-block scales 0 and 63 and all 16 codes) and
//!   activations (±127 blocks, tiny and huge magnitudes), odd row and token counts, and column
//!   counts that cross the driver's column chunks.

mod common;

use common::{int8_activations as activations, kernels, same_bits, Rng};
use tern_kernels::scalar::{self, repacked_bytes, RepackedLayout};
use tern_kernels::{Backend, Format, Kernels};

/// Every repacked layout, from the one table.
fn layouts() -> impl Iterator<Item = RepackedLayout> {
    RepackedLayout::all()
}

/// The column counts a test takes for `format`: `cols`, or for IQ4_XS's 256-weight blocks
/// `wide` (multiples of 256; 8448 is 264 blocks of 32, two of the driver's column chunks).
fn columns(format: Format, cols: &[usize], wide: &[usize]) -> Vec<usize> {
    if format.block_len() == 256 {
        wide.to_vec()
    } else {
        cols.to_vec()
    }
}

/// `rows` rows of `cols` weights: random codes, all 0xFF / 0x00 / 0x80 code bytes in some
/// blocks, or every byte value in turn (eight such Q8_0 blocks hold each code −128..=127), with
/// ordinary or extreme f16 scales (IQ4_XS: and sub-block scales all 63, all 0, or random).
fn weights(format: Format, rows: usize, cols: usize, rng: &mut Rng, wild: bool) -> Vec<u8> {
    let bb = format.block_bytes();
    let nb = cols / format.block_len();
    let mut w = Vec::with_capacity(rows * nb * bb);
    let mut every = 0u8;
    for _ in 0..rows * nb {
        let kind = rng.below(7);
        let mut b: Vec<u8> = (0..bb)
            .map(|_| match kind {
                0 => 0xFF,
                1 => 0x00,
                2 => 0x80,
                3 => {
                    every = every.wrapping_add(1);
                    every
                }
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
        if format == Format::IQ4_XS && wild {
            // scales_h and scales_l: every sc = 63, every sc = 0, or random.
            match rng.below(3) {
                0 => b[2..8].fill(0xFF),
                1 => b[2..8].fill(0x00),
                _ => {}
            }
        }
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

fn repacked(layout: RepackedLayout, w: &[u8], m: usize, cols: usize) -> Vec<u8> {
    let mut p = vec![0u8; repacked_bytes(layout, m, cols)];
    scalar::repack(layout, w, m, &mut p);
    p
}

/// Each backend repacks every repackable format, Q8_0 signed exactly where `sdot` meets it
/// (NEON with the dot product extension), and names no layout for other formats.
#[test]
fn backends_name_their_layouts() {
    for backend in Backend::ALL {
        let Some(k) = kernels(backend) else { continue };
        let signed = matches!(backend, Backend::NeonDotprod | Backend::NeonI8mm);
        for format in Format::ALL {
            let got = k.repacked_layout(format);
            let want = match format {
                Format::Q8_0 if signed => Some(RepackedLayout::Q8_0_SIGNED),
                _ => RepackedLayout::of(format),
            };
            assert_eq!(
                got,
                want.filter(|_| k.gemm_repacked.is_some()),
                "{backend:?} {format:?}"
            );
            if let Some(l) = got {
                assert_eq!(l.format(), format);
            }
        }
    }
}

#[test]
fn repacking_loses_nothing() {
    let k = Kernels::scalar();
    let mut rng = Rng::new(3);
    for layout in layouts() {
        let format = layout.format();
        for m in [1, 7, 8, 9, 23] {
            let cols = 96usize.next_multiple_of(format.block_len());
            let w = weights(format, m, cols, &mut rng, true);
            let p = repacked(layout, &w, m, cols);
            let rb = w.len() / m;
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..m {
                k.dequant(format, &w[r * rb..][..rb], &mut a);
                scalar::dequant_repacked(layout, &p, cols, r, &mut b);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| same_bits(*x, *y)),
                    "{layout:?} m {m} row {r}"
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
        for layout in layouts() {
            let format = layout.format();
            // 8256 columns: two of the driver's column chunks.
            for cols in columns(format, &[32, 96, 576, 8256], &[256, 768, 8448]) {
                let shapes: &[(usize, usize)] = if cols > 1000 {
                    &[(9, 7), (33, 2)]
                } else {
                    &[(1, 1), (5, 2), (8, 6), (17, 13), (33, 7), (40, 3), (64, 1)]
                };
                for &(m, n) in shapes {
                    let wild = rng.below(2) == 0;
                    let w = weights(format, m, cols, &mut rng, wild);
                    let xq = activations(n, cols, &mut rng, wild);
                    let p = repacked(layout, &w, m, cols);
                    // Outputs inside a wider matrix: other columns must stay untouched.
                    let ldy = m + 3;
                    let mut want = vec![7.0f32; n * ldy];
                    let mut got = want.clone();
                    let mut by_i8 = want.clone();
                    (reference.gemm_repacked.unwrap().f)(
                        layout, &p, m, cols, &xq, n, &mut want, ldy,
                    );
                    (gemm.f)(layout, &p, m, cols, &xq, n, &mut got, ldy);
                    reference.gemm_i8(format, &w, m, &xq, n, &mut by_i8, ldy);
                    for (i, ((g, e), s)) in got.iter().zip(&want).zip(&by_i8).enumerate() {
                        let at = (i / ldy, i % ldy);
                        assert!(
                            same_bits(*g, *e),
                            "{backend:?} {layout:?} m {m} n {n} cols {cols} at {at:?}: {g:e} \
                             vs {e:e}"
                        );
                        assert!(
                            same_bits(*e, *s),
                            "{layout:?} at {at:?}: reference vs gemm_i8"
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
        for layout in layouts() {
            let format = layout.format();
            for cols in columns(format, &[32, 96, 576, 1536, 8256], &[256, 1536, 8448]) {
                let ms: Vec<usize> = if cols > 2000 {
                    vec![1, 9, 71]
                } else {
                    (1..=41)
                        .chain([56, 57, 63, 64, 65, 72, 79, 96, 129, 159, 160])
                        .collect()
                };
                for m in ms {
                    for wild in [false, true] {
                        let w = weights(format, m, cols, &mut rng, wild);
                        let xq = activations(1, cols, &mut rng, wild);
                        let p = repacked(layout, &w, m, cols);
                        let mut want = vec![7.0f32; m + 5];
                        let mut got = want.clone();
                        (reference.gemm_repacked.unwrap().f)(
                            layout, &p, m, cols, &xq, 1, &mut want, m,
                        );
                        (gemm.f)(layout, &p, m, cols, &xq, 1, &mut got, m);
                        for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                same_bits(*g, *e),
                                "{backend:?} {layout:?} m {m} cols {cols} wild {wild} row {i}: \
                                 {g:e} vs {e:e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
