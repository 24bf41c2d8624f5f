//! The batched int8 GEMM (`Kernels::gemm_i8`) against its references.
//!
//! - `unpack_i8_*` (every backend's) is the format's dequantization bit for bit:
//!   `scale·q + bias` equals `dequant_*`.
//! - Every backend's `gemm_i8` equals `scalar::gemm_i8` bit for bit (the integer sums are
//!   exact and the float steps are the same operations in the same order), on random and
//!   extreme weights and activations, odd row, token and column counts, column counts that
//!   cross the SIMD body's chunks and token counts that cross its token tables.
//! - `scalar::gemm_i8` stays within `scalar::gemm_i8_bound` of the per-format int8 path
//!   (`gemm_q8`, which the decoder uses): both sum the same exact integer terms, in different
//!   orders.

mod common;

use common::{int8_activations as activations, kernels, same_bits, Rng};
use half::f16;
use tern_kernels::scalar::{self, BlockQ8Act};
use tern_kernels::{Backend, Format, Kernels};

/// Every format the int8 GEMM takes.
fn formats() -> Vec<Format> {
    Format::ALL
        .into_iter()
        .filter(|f| f.int8().is_some())
        .collect()
}

/// Byte offsets of a block's f16 scale fields.
fn f16_fields(format: Format) -> &'static [usize] {
    match format {
        Format::Q4_1 | Format::Q5_1 | Format::Q4_K | Format::Q5_K => &[0, 2],
        Format::Q6_K => &[208],
        Format::Q3_K => &[108],
        Format::Q2_K => &[80, 82],
        _ => &[0],
    }
}

/// A scale: ordinary, or (with `wild`) the f16 extremes: ±65504, the smallest subnormal, 0, −0.
fn scale(rng: &mut Rng, wild: bool) -> [u8; 2] {
    let bits = match (wild, rng.below(7)) {
        (true, 0) => 0x7BFF,
        (true, 1) => 0xFBFF,
        (true, 2) => 0x0001,
        (true, 3) => 0x0000,
        (true, 4) => 0x8000,
        _ => f16::from_f32(rng.f32() * 0.05).to_bits(),
    };
    bits.to_le_bytes()
}

/// `rows` rows of `nb` blocks: random bytes, or all-ones / all-zeros / (Q8_0) −128 code bytes
/// in some blocks, with the scale fields from [`scale`].
fn weights(format: Format, rows: usize, nb: usize, rng: &mut Rng, wild: bool) -> Vec<u8> {
    let bb = format.block_bytes();
    let mut w = Vec::with_capacity(rows * nb * bb);
    for _ in 0..rows * nb {
        let kind = rng.below(6);
        let mut b: Vec<u8> = (0..bb)
            .map(|_| match kind {
                0 => 0xFF,
                1 => 0x00,
                2 if format == Format::Q8_0 => 0x80,
                _ => rng.next() as u8,
            })
            .collect();
        for &at in f16_fields(format) {
            b[at..at + 2].copy_from_slice(&scale(rng, wild));
        }
        w.extend(b);
    }
    w
}

/// Column counts for `format`: one block, odd block counts, and counts that cross the SIMD
/// body's 512-column chunks.
fn col_counts(format: Format) -> Vec<usize> {
    let bl = format.block_len();
    if bl == 256 {
        vec![256, 768, 1280]
    } else {
        vec![32, 96, 544, 1056]
    }
}

#[test]
fn unpack_i8_is_dequant_bit_for_bit_on_every_backend() {
    let reference = Kernels::scalar();
    for backend in Backend::ALL {
        let Some(k) = kernels(backend) else { continue };
        let mut rng = Rng::new(11);
        for format in formats() {
            let l = format.int8().unwrap();
            let unpack = k.format(format).unpack_i8.expect("unpack_i8 everywhere").f;
            for wild in [false, true] {
                let nb = 5;
                let cols = nb * format.block_len();
                let row = weights(format, 1, nb, &mut rng, wild);
                let (mut u, mut s, mut b) = (
                    vec![0i8; cols],
                    vec![0f32; cols / l.group],
                    vec![0f32; cols / l.group],
                );
                unpack(&row, &mut u, &mut s, &mut b);
                let mut deq = vec![0f32; cols];
                reference.dequant(format, &row, &mut deq);
                for (j, (&u, want)) in u.iter().zip(&deq).enumerate() {
                    let g = j / l.group;
                    let mut v = s[g] * u as f32;
                    if l.bias {
                        v += b[g];
                    }
                    assert!(
                        same_bits(v, *want),
                        "{backend:?} {format:?} weight {j}: {v:e} vs dequant {want:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_i8_matches_scalar_bit_for_bit_on_every_backend() {
    let reference = Kernels::scalar();
    for backend in Backend::ALL {
        let Some(k) = kernels(backend) else { continue };
        let Some(gemm) = k.gemm_i8 else {
            println!("{backend:?}: no int8 GEMM (the runtime uses gemm_q8)");
            assert!(formats().iter().all(|&f| !k.has_gemm_i8(f)));
            continue;
        };
        println!("{backend:?}: {}", gemm.name);
        let mut rng = Rng::new(5);
        for format in formats() {
            for cols in col_counts(format) {
                let nb = cols / format.block_len();
                for (m, n) in [(1, 1), (5, 2), (16, 7), (17, 13), (33, 6), (40, 3)] {
                    let wild = rng.below(2) == 0;
                    let w = weights(format, m, nb, &mut rng, wild);
                    let xq = activations(n, cols, &mut rng, wild);
                    // Outputs inside a wider matrix: other columns must stay untouched.
                    let ldy = m + 3;
                    let mut want = vec![7.0f32; n * ldy];
                    let mut got = want.clone();
                    reference.gemm_i8(format, &w, m, &xq, n, &mut want, ldy);
                    k.gemm_i8(format, &w, m, &xq, n, &mut got, ldy);
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            same_bits(*g, *e),
                            "{backend:?} {format:?} m {m} n {n} cols {cols} at ({}, {}): {g:e} \
                             vs {e:e}",
                            i / ldy,
                            i % ldy
                        );
                    }
                }
            }
        }
        // More tokens than the SIMD body's token table.
        let format = Format::Q6_K;
        let (m, n, cols) = (3, 131, 256);
        let w = weights(format, m, 1, &mut rng, false);
        let xq = activations(n, cols, &mut rng, false);
        let (mut want, mut got) = (vec![0.0f32; n * m], vec![1.0f32; n * m]);
        reference.gemm_i8(format, &w, m, &xq, n, &mut want, m);
        k.gemm_i8(format, &w, m, &xq, n, &mut got, m);
        assert!(
            got.iter().zip(&want).all(|(g, e)| same_bits(*g, *e)),
            "{backend:?} n {n}"
        );
    }
}

/// `Σ_g |scale_g·d_a·i_g| + |bias_g·s_a|` for one row and token, in f64, from the reference
/// unpacking: the size of the terms both int8 paths sum.
fn abs_terms(format: Format, row: &[u8], acts: &[BlockQ8Act]) -> (usize, f64) {
    let l = format.int8().unwrap();
    let cols = acts.len() * 32;
    let (mut u, mut s, mut b) = (
        vec![0i8; cols],
        vec![0f32; cols / l.group],
        vec![0f32; cols / l.group],
    );
    scalar::unpack_i8_ref(format).unwrap()(row, &mut u, &mut s, &mut b);
    let mut sum = 0.0f64;
    for (g, c) in u.chunks_exact(l.group).enumerate() {
        let a = &acts[g * l.group / 32];
        let off = g * l.group % 32;
        let i: i64 = c
            .iter()
            .zip(&a.qs[off..])
            .map(|(&w, &a)| w as i64 * a as i64)
            .sum();
        sum += (s[g] as f64 * a.d() as f64 * i as f64).abs();
        if l.bias {
            sum += (b[g] as f64 * scalar::group_act_sum(a, off, l.group) as f64).abs();
        }
    }
    (cols / l.group, sum)
}

#[test]
fn gemm_i8_reference_within_bound_of_the_int8_row_path() {
    let k = Kernels::scalar();
    let mut rng = Rng::new(17);
    for format in formats() {
        let gemm_q8 = k
            .format(format)
            .gemm_q8
            .expect("every int8 GEMM format has gemm_q8")
            .f;
        for cols in col_counts(format) {
            let nb = cols / format.block_len();
            let (m, n) = (7, 5);
            for wild in [false, true] {
                let w = weights(format, m, nb, &mut rng, wild);
                // Moderate activations: the bound is about rounding, not overflow.
                let xq = activations(n, cols, &mut rng, false);
                let (mut got, mut want) = (vec![0f32; n * m], vec![0f32; n * m]);
                k.gemm_i8(format, &w, m, &xq, n, &mut got, m);
                gemm_q8(&w, m, &xq, n, &mut want, m);
                let (rb, qb) = (w.len() / m, xq.len() / n);
                for t in 0..n {
                    let acts: &[BlockQ8Act] =
                        tern_kernels::blocks::as_blocks(&xq[t * qb..(t + 1) * qb]).unwrap();
                    for r in 0..m {
                        let (groups, abs) = abs_terms(format, &w[r * rb..(r + 1) * rb], acts);
                        let bound = scalar::gemm_i8_bound(groups, abs);
                        let (g, e) = (got[t * m + r], want[t * m + r]);
                        let diff = (g as f64 - e as f64).abs();
                        assert!(
                            diff <= bound,
                            "{format:?} cols {cols} ({t}, {r}): {g:e} vs {e:e}, |Δ| {diff:e} > \
                             {bound:e}"
                        );
                    }
                }
            }
        }
    }
}
