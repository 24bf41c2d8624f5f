//! Ternary weights meet int8 activations: BitNet b1.58's integer matrix-vector product.
//!
//! BitNet b1.58 quantizes each activation vector (one token's row) to int8 with ONE scale,
//! its absmax: `q = round(x · 127/max|x|)`, value `q · max|x|/127` (the paper's eq. 4 and
//! bitnet.cpp's `quantize_row_i8_s`; [`absmax_int8_roundtrip`](super::absmax_int8_roundtrip) is
//! the f32 emulation of it). With ternary weights `w = c − 1`, `c ∈ {0, 1, 2}` the 2-bit code,
//! a row's dot product is then an exact integer per weight block,
//!
//! ```text
//! Σ (c − 1)·q  =  Σ c·q  −  Σ q
//! ```
//!
//! where `c` is unsigned (what `vpmaddubsw`/`vpdpbusd` multiply by a signed byte, without
//! the sign trick) and `Σ q` depends only on the activations, so it is computed once per
//! token ([`ActQ8Row::sums`]) and shared by every row.
//!
//! # The activation type
//!
//! [`ActQ8Row`] borrows the codes of one token (`qs`, one i8 per activation, in [−128, 127])
//! and their sums over each run of 128 codes (the I2_S block; a TQ block of 256 uses two).
//! The scale `d = max|x|/127` stays with the caller, who multiplies each output by it once:
//! the kernels never see a float activation. [`quantize_act_q8_row`] writes both buffers.
//!
//! # Exactness contract every backend keeps
//!
//! A kernel's result is bit-identical to these references, not merely close: per weight block
//! `b` the integer `isum_b = Σ (c − 1)·q` is exact (no lane may saturate, for any codes 0..=3 and
//! any activation in [−128, 127]), then the float part is fixed:
//!
//! - TQ1_0, TQ2_0: `sum = sum + d_b · isum_b` in block order, one f32 multiply and one f32
//!   add per block (never fused), starting from 0;
//! - I2_S: the exact integer `Σ isum_b` of the whole row, converted to f32 once (the tensor
//!   scale is the caller's).
//!
//! So the integer dot ([`dot_tq2_0_q8row`]…), the batched kernel ([`gemm_codes_q8row`]) and the
//! lookup-table kernel ([`lut_gemv`](super::lut_gemv)) all return the same bits for the same
//! weights and activations, on every backend.
//!
//! A 2-bit code 3 (never written by a quantizer) reads as `+2`, as in the f32 references.

use super::q8::round_half_away;
use super::ternary::{i2_s_codes, tq1_0_codes, tq2_0_codes};
use crate::blocks::{as_blocks, BlockI2_S, BlockTQ1_0, BlockTQ2_0};

/// Activations per entry of [`ActQ8Row::sums`] (bitnet.cpp's I2_S block; half a TQ block).
pub const ACT_SUM_RUN: usize = 128;

/// One token's activations quantized to int8 with one scale for the whole vector (BitNet
/// b1.58's per-token absmax). Value `j` is `qs[j] · d`, with `d` kept by the caller.
#[derive(Clone, Copy, Debug)]
pub struct ActQ8Row<'a> {
    /// One code per activation, in [−128, 127]; a multiple of [`ACT_SUM_RUN`] long.
    pub qs: &'a [i8],
    /// `sums[i] = Σ qs[128·i .. 128·(i+1)]`: `qs.len() / 128` entries.
    pub sums: &'a [i32],
}

impl<'a> ActQ8Row<'a> {
    /// Views `qs` and `sums`, checking that their lengths agree.
    ///
    /// # Panics
    /// If `qs.len()` is not a multiple of 128 or `sums.len() != qs.len() / 128`.
    pub fn new(qs: &'a [i8], sums: &'a [i32]) -> Self {
        assert!(
            qs.len().is_multiple_of(ACT_SUM_RUN) && sums.len() == qs.len() / ACT_SUM_RUN,
            "activation codes are whole 128-runs, with one sum each"
        );
        ActQ8Row { qs, sums }
    }

    /// Number of activations.
    #[inline]
    pub fn len(&self) -> usize {
        self.qs.len()
    }

    /// Whether there are no activations.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }
}

/// Quantizes one token's activations `x` (a multiple of 128 long) to int8 codes `qs` and their
/// 128-run sums `sums` ([`ActQ8Row`]), and returns the step `d` with `x[j] ≈ qs[j]·d`.
///
/// Exactly the arithmetic of [`absmax_int8_roundtrip`](super::absmax_int8_roundtrip):
/// `s = 127/max|x|`, `q = round_half_away(x·s)` clamped to [−128, 127], `d = max|x|/127`, so
/// `q as f32 * d` is the value the roundtrip writes (bit for bit, except that the roundtrip
/// keeps the sign of a zero). An all-zero vector gives zero
/// codes and `d = 0`. A NaN activation is skipped by the maximum (`f32::max`) and becomes code
/// 0, as in the roundtrip. Returns `None` when an activation is infinite: the roundtrip leaves
/// such a vector as it is, so the caller must take the f32 path.
pub fn quantize_act_q8_row(x: &[f32], qs: &mut [i8], sums: &mut [i32]) -> Option<f32> {
    assert_eq!(x.len(), qs.len());
    assert!(x.len().is_multiple_of(ACT_SUM_RUN) && sums.len() == x.len() / ACT_SUM_RUN);
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !amax.is_finite() {
        return None;
    }
    if amax == 0.0 {
        qs.fill(0);
        sums.fill(0);
        return Some(0.0);
    }
    let (s, d) = (127.0 / amax, amax / 127.0);
    for ((x, q), sum) in x
        .chunks_exact(ACT_SUM_RUN)
        .zip(qs.chunks_exact_mut(ACT_SUM_RUN))
        .zip(sums.iter_mut())
    {
        let mut acc = 0i32;
        for (v, q) in x.iter().zip(q) {
            *q = round_half_away(v * s).clamp(-128.0, 127.0) as i8;
            acc += *q as i32;
        }
        *sum = acc;
    }
    Some(d)
}

/// `Σ c·q` over codes and activation codes of equal length: the integer every backend
/// reproduces lane by lane.
#[inline(always)]
fn isum_codes(c: &[u8], q: &[i8]) -> i32 {
    c.iter().zip(q).map(|(&c, &q)| c as i32 * q as i32).sum()
}

fn check_act(act: &ActQ8Row<'_>, n: usize) {
    assert_eq!(act.qs.len(), n, "activations match the row");
    assert_eq!(
        act.sums.len(),
        n / ACT_SUM_RUN,
        "one activation sum per 128"
    );
}

/// `Σ_b d_b · isum_b` over 256-weight blocks given each block's codes and scale: the TQ
/// formats' float contract.
#[inline(always)]
fn tq_dot(blocks: impl Iterator<Item = ([u8; 256], f32)>, act: &ActQ8Row<'_>) -> f32 {
    let mut sum = 0.0f32;
    for (i, (c, d)) in blocks.enumerate() {
        let isum = isum_codes(&c, &act.qs[256 * i..256 * (i + 1)])
            - (act.sums[2 * i] + act.sums[2 * i + 1]);
        sum += d * isum as f32;
    }
    sum
}

/// Dot product of a TQ2_0 row with per-token int8 activations:
/// `Σ_b d_b · Σ (c − 1)·q`, without the activation scale.
pub fn dot_tq2_0_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
    let blocks: &[BlockTQ2_0] = as_blocks(row).expect("TQ2_0 row is whole blocks");
    check_act(act, blocks.len() * 256);
    tq_dot(blocks.iter().map(|b| (tq2_0_codes(b), b.d.to_f32())), act)
}

/// Dot product of a TQ1_0 row with per-token int8 activations:
/// `Σ_b d_b · Σ (c − 1)·q`, without the activation scale.
pub fn dot_tq1_0_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
    let blocks: &[BlockTQ1_0] = as_blocks(row).expect("TQ1_0 row is whole blocks");
    check_act(act, blocks.len() * 256);
    tq_dot(blocks.iter().map(|b| (tq1_0_codes(b), b.d.to_f32())), act)
}

/// Dot product of an I2_S row (its packed codes) with per-token int8 activations: the exact
/// integer `Σ (c − 1)·q` as f32, without the tensor or activation scale.
pub fn dot_i2_s_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
    let blocks: &[BlockI2_S] = as_blocks(row).expect("I2_S row is whole blocks");
    check_act(act, blocks.len() * 128);
    let mut isum = 0i32;
    for (i, b) in blocks.iter().enumerate() {
        isum += isum_codes(&i2_s_codes(b), &act.qs[128 * i..128 * (i + 1)]) - act.sums[i];
    }
    isum as f32
}

// ---------------------------------------------------------------------------------------------
// Unpacked codes: batched prompt processing decodes each row once and reuses it for every token.

/// Decodes a TQ2_0 row to one code byte per weight (`codes`, 0..=3) and its block scales
/// (`scales`, one per 256 weights).
pub fn unpack_tq2_0(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
    let blocks: &[BlockTQ2_0] = as_blocks(row).expect("TQ2_0 row is whole blocks");
    assert!(codes.len() == blocks.len() * 256 && scales.len() == blocks.len());
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        c.copy_from_slice(&tq2_0_codes(b));
        *s = b.d.to_f32();
    }
}

/// Decodes a TQ1_0 row to one code byte per weight (`codes`, 0..=2) and its block scales
/// (`scales`, one per 256 weights).
pub fn unpack_tq1_0(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
    let blocks: &[BlockTQ1_0] = as_blocks(row).expect("TQ1_0 row is whole blocks");
    assert!(codes.len() == blocks.len() * 256 && scales.len() == blocks.len());
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        c.copy_from_slice(&tq1_0_codes(b));
        *s = b.d.to_f32();
    }
}

/// Decodes an I2_S row to one code byte per weight (`codes`, 0..=3). I2_S has no block
/// scales: `scales` must be empty (the integer mode of [`gemm_codes_q8row`]).
pub fn unpack_i2_s(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
    let blocks: &[BlockI2_S] = as_blocks(row).expect("I2_S row is whole blocks");
    assert!(codes.len() == blocks.len() * 128 && scales.is_empty());
    for (b, c) in blocks.iter().zip(codes.chunks_exact_mut(128)) {
        c.copy_from_slice(&i2_s_codes(b));
    }
}

/// Rows × tokens of unpacked ternary codes against per-token int8 activations: the batched
/// (prompt-processing) form of the `dot_*_q8row` kernels, with the same results bit for bit.
///
/// - `codes`: `rows` rows of `k` code bytes each (from the `unpack_*` kernels), row-major;
/// - `scales`: either `rows · k/256` block scales (row-major: TQ formats, float contract) or
///   empty (I2_S: the exact integer of each row and token, as f32);
/// - `acts`: the tokens, each `k` long;
/// - `out[t · rows + r]` receives row `r` · token `t`.
pub fn gemm_codes_q8row(
    codes: &[u8],
    rows: usize,
    scales: &[f32],
    acts: &[ActQ8Row<'_>],
    out: &mut [f32],
) {
    let k = check_gemm(codes, rows, scales, acts, out);
    for (t, act) in acts.iter().enumerate() {
        for (r, c) in codes.chunks_exact(k).enumerate() {
            out[t * rows + r] = if scales.is_empty() {
                let isum: i32 = (0..k / 128)
                    .map(|i| {
                        let span = 128 * i..128 * (i + 1);
                        isum_codes(&c[span.clone()], &act.qs[span]) - act.sums[i]
                    })
                    .sum();
                isum as f32
            } else {
                let nb = k / 256;
                let blocks = (0..nb).map(|b| {
                    let mut block = [0u8; 256];
                    block.copy_from_slice(&c[256 * b..256 * (b + 1)]);
                    (block, scales[r * nb + b])
                });
                tq_dot(blocks, act)
            };
        }
    }
}

/// Checks the shapes of a [`gemm_codes_q8row`] call (shared with the SIMD wrappers); returns
/// the row length `k`.
pub(crate) fn check_gemm(
    codes: &[u8],
    rows: usize,
    scales: &[f32],
    acts: &[ActQ8Row<'_>],
    out: &[f32],
) -> usize {
    assert!(
        rows > 0 && codes.len().is_multiple_of(rows),
        "codes are whole rows"
    );
    let k = codes.len() / rows;
    assert!(k.is_multiple_of(128), "rows are whole 128-weight runs");
    assert!(
        scales.is_empty() || (k.is_multiple_of(256) && scales.len() == rows * (k / 256)),
        "one scale per row and 256-weight block, or none"
    );
    for a in acts {
        check_act(a, k);
    }
    assert_eq!(out.len(), rows * acts.len(), "one output per row and token");
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{as_bytes, F16Le};
    use crate::scalar::{
        absmax_int8_roundtrip, dequant_i2_s_unscaled, dequant_tq1_0, dequant_tq2_0, quantize_i2_s,
        quantize_tq1_0, quantize_tq2_0,
    };

    extern crate alloc;
    use crate::scalar::tests::randoms;
    use alloc::vec;
    use alloc::vec::Vec;

    fn quantized(x: &[f32]) -> (Vec<i8>, Vec<i32>, f32) {
        let (mut qs, mut sums) = (vec![0i8; x.len()], vec![0i32; x.len() / 128]);
        let d = quantize_act_q8_row(x, &mut qs, &mut sums).unwrap();
        (qs, sums, d)
    }

    #[test]
    fn quantizer_matches_the_f32_emulation_bit_for_bit() {
        for seed in 0..8u64 {
            let mut x: Vec<f32> = randoms(512, seed).iter().map(|v| v * 3.7).collect();
            x[5] = -0.0;
            let (qs, sums, d) = quantized(&x);
            let mut emulated = x.clone();
            absmax_int8_roundtrip(&mut emulated);
            // Equal values; only the sign of a zero may differ (the emulation keeps −0.0).
            for ((q, e), v) in qs.iter().zip(&emulated).zip(&x) {
                assert!(*q as f32 * d == *e, "{v}: {} vs {e}", *q as f32 * d);
            }
            for (i, s) in sums.iter().enumerate() {
                assert_eq!(
                    *s,
                    qs[128 * i..128 * (i + 1)].iter().map(|&q| q as i32).sum()
                );
            }
        }
        // Zero, and a non-finite maximum (the emulation leaves such a row alone).
        let (qs, sums, d) = quantized(&[0.0; 128]);
        assert!(qs.iter().all(|&q| q == 0) && sums == [0] && d == 0.0);
        let mut x = vec![1.0f32; 128];
        x[3] = f32::INFINITY;
        assert!(quantize_act_q8_row(&x, &mut [0; 128], &mut [0]).is_none());
    }

    /// The integer dot against the f64 product of the dequantized weights and the codes.
    #[test]
    fn dots_equal_the_dequantized_product() {
        for n_blocks in [1usize, 3] {
            let n = 256 * n_blocks;
            let w = randoms(n, 11 + n_blocks as u64);
            let x = randoms(n, 12);
            let (qs, sums, _) = quantized(&x);
            let act = ActQ8Row::new(&qs, &sums);
            let mut tq1 = vec![0u8; 54 * n_blocks];
            let mut tq2 = vec![0u8; 66 * n_blocks];
            let mut i2 = vec![0u8; n / 4];
            quantize_tq1_0(&w, &mut tq1);
            quantize_tq2_0(&w, &mut tq2);
            quantize_i2_s(&w, &mut i2);
            type Pair = (fn(&[u8], &mut [f32]), fn(&[u8], &ActQ8Row<'_>) -> f32);
            let cases: [(&[u8], Pair); 3] = [
                (&tq1, (dequant_tq1_0, dot_tq1_0_q8row)),
                (&tq2, (dequant_tq2_0, dot_tq2_0_q8row)),
                (&i2, (dequant_i2_s_unscaled, dot_i2_s_q8row)),
            ];
            for (row, (dequant, dot)) in cases {
                let mut wd = vec![0.0f32; n];
                dequant(row, &mut wd);
                let exact: f64 = wd.iter().zip(&qs).map(|(w, q)| *w as f64 * *q as f64).sum();
                let got = dot(row, &act) as f64;
                // Per block one rounding of d·isum and one of the running sum.
                let bound = 4.0
                    * f32::EPSILON as f64
                    * (n_blocks as f64 + 1.0)
                    * wd.iter()
                        .zip(&qs)
                        .map(|(w, q)| (*w as f64 * *q as f64).abs())
                        .sum::<f64>();
                assert!((got - exact).abs() <= bound, "{got} vs {exact}");
            }
        }
    }

    #[test]
    fn extremes_stay_exact() {
        // All +1 against −128, all −1 against +127 / −128, code 3 as +2.
        let qs_min = [-128i8; 256];
        let qs_max = [127i8; 256];
        let s = |q: &[i8]| -> Vec<i32> {
            q.chunks(128)
                .map(|c| c.iter().map(|&v| v as i32).sum())
                .collect()
        };
        let (smin, smax) = (s(&qs_min), s(&qs_max));
        for (byte, w) in [(0xAAu8, 1i32), (0x00, -1), (0x55, 0), (0xFF, 2)] {
            let b = BlockTQ2_0 {
                qs: [byte; 64],
                d: F16Le::from_f32(1.0),
            };
            let i = BlockI2_S { qs: [byte; 32] };
            for (q, sums) in [(&qs_min, &smin), (&qs_max, &smax)] {
                let act = ActQ8Row::new(q, sums);
                let want = (256 * w * q[0] as i32) as f32;
                assert_eq!(dot_tq2_0_q8row(as_bytes(&[b]), &act), want);
                assert_eq!(dot_i2_s_q8row(as_bytes(&[i, i]), &act), want);
            }
        }
    }

    #[test]
    fn gemm_equals_the_row_dots() {
        let (rows, n) = (3usize, 512usize);
        let mut tq2 = vec![0u8; rows * 66 * 2];
        let mut i2 = vec![0u8; rows * n / 4];
        for r in 0..rows {
            let w = randoms(n, 40 + r as u64);
            quantize_tq2_0(&w, &mut tq2[r * 132..(r + 1) * 132]);
            quantize_i2_s(&w, &mut i2[r * 128..(r + 1) * 128]);
        }
        let xs: Vec<_> = (0..3).map(|t| quantized(&randoms(n, 90 + t))).collect();
        let acts: Vec<_> = xs.iter().map(|(q, s, _)| ActQ8Row::new(q, s)).collect();
        let mut codes = vec![0u8; rows * n];
        let mut scales = vec![0f32; rows * 2];
        for r in 0..rows {
            unpack_tq2_0(
                &tq2[r * 132..(r + 1) * 132],
                &mut codes[r * n..(r + 1) * n],
                &mut scales[2 * r..2 * r + 2],
            );
        }
        let mut out = vec![0f32; rows * acts.len()];
        gemm_codes_q8row(&codes, rows, &scales, &acts, &mut out);
        for (t, a) in acts.iter().enumerate() {
            for r in 0..rows {
                let want = dot_tq2_0_q8row(&tq2[r * 132..(r + 1) * 132], a);
                assert_eq!(out[t * rows + r].to_bits(), want.to_bits());
            }
        }
        for r in 0..rows {
            unpack_i2_s(
                &i2[r * 128..(r + 1) * 128],
                &mut codes[r * n..(r + 1) * n],
                &mut [],
            );
        }
        gemm_codes_q8row(&codes, rows, &[], &acts, &mut out);
        for (t, a) in acts.iter().enumerate() {
            for r in 0..rows {
                let want = dot_i2_s_q8row(&i2[r * 128..(r + 1) * 128], a);
                assert_eq!(out[t * rows + r].to_bits(), want.to_bits());
            }
        }
    }
}
