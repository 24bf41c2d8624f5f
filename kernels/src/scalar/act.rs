//! The int8 activation path: activations quantized per block of 32, and the integer dot
//! products of weight rows with them.
//!
//! The default precision keeps activations in f32 ("weights low, activations high"; the `dot`
//! slot of each format). The fast path quantizes the activation vector once per matmul with
//! [`quantize_act_q8`] and meets every weight row in integer arithmetic: per block one exact
//! `i32` sum of code products, scaled once. This is ggml's `vec_dot_q4_0_q8_0` scheme, with the
//! activation scale and block sum kept in f32 instead of f16.
//!
//! Exactness contract every backend keeps: the per-block integer sum is exact (no
//! saturation: activation codes stay in [−127, 127], so even a weight code of −128 cannot
//! overflow a 16-bit pair sum), and only the float scaling and the order of the float
//! accumulation across blocks may differ from these references.

use super::q5::codes5;
use super::q8::round_half_away;
use crate::blocks::{
    as_blocks, as_blocks_mut, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// 32 activations quantized to int8 for the integer dot products.
///
/// ```text
/// byte 0..4   d (f32): scale, activation j ≈ qs[j]·d
/// byte 4..8   s (f32): d·Σ qs, the block sum the Q4_1 offset multiplies
/// byte 8..40  qs: 32 × i8, each in [−127, 127]
/// ```
///
/// Like ggml's `block_q8_1`, but with f32 `d` and `s`. The fields are byte arrays so the
/// block has alignment 1 and a buffer of them can live anywhere.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct BlockQ8Act {
    /// Scale, little-endian f32.
    pub d: [u8; 4],
    /// `d · Σ qs`, little-endian f32.
    pub s: [u8; 4],
    /// Signed 8-bit codes in [−127, 127].
    pub qs: [i8; 32],
}
const _: () = assert!(core::mem::size_of::<BlockQ8Act>() == 40);

impl BlockQ8Act {
    /// Bytes of one block.
    pub const BYTES: usize = 40;

    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// `d · Σ qs`.
    #[inline(always)]
    pub fn s(&self) -> f32 {
        f32::from_le_bytes(self.s)
    }
}

/// Bytes [`quantize_act_q8`] writes for `n` activations (`n` a multiple of 32).
pub const fn act_q8_bytes(n: usize) -> usize {
    n / 32 * BlockQ8Act::BYTES
}

/// The values of Q4_0's codes: code `q` means `q − 8`. The 16-entry table the SIMD paths
/// look codes up in (`vpshufb`, `tbl`); any other 16-value int8 codebook costs the same.
pub const Q4_0_VALUES: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];

/// IQ4_NL's codebook (ggml's `kvalues_iq4nl`), shared by IQ4_NL and IQ4_XS: code `q` means
/// `IQ4_NL_VALUES[q]` times the block's (IQ4_XS: the sub-block's) scale. Sorted, so the
/// quantizer can bisect it; the SIMD paths look it up as they look up [`Q4_0_VALUES`].
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Scale and inverse scale of a block whose largest magnitude is `amax`.
///
/// `d = amax / 127`, `id = 1 / d`. A block whose `id` is not finite (all zeros, or so tiny
/// that `1/d` overflows) gets `id = 0` and quantizes to zeros. Shared by every backend, so
/// all of them produce the same bytes.
#[inline(always)]
pub(crate) fn act_scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = 1.0 / d;
    (d, if d != 0.0 && id.is_finite() { id } else { 0.0 })
}

/// Quantizes `x` (a multiple of 32 long) to [`BlockQ8Act`] blocks in `out`
/// ([`act_q8_bytes`]`(x.len())` bytes): per block `d = max|x|/127`, codes
/// `round_half_away(x/d)` clamped to ±127, `s = d · Σ codes`.
///
/// Every backend writes the same bytes for finite inputs; codes of NaN or infinite inputs are
/// unspecified.
pub fn quantize_act_q8(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8Act] = as_blocks_mut(out).expect("output is whole act blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = act_scale(amax);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_half_away(v * id).clamp(-127.0, 127.0) as i8;
            sum += *q as i32;
        }
        b.d = d.to_le_bytes();
        b.s = (d * sum as f32).to_le_bytes();
    }
}

/// Exact `Σ w[j]·a[j]` of one block: the integer every backend must reproduce.
#[inline(always)]
pub fn block_isum(w: &[i8; 32], a: &[i8; 32]) -> i32 {
    w.iter().zip(a).map(|(&w, &a)| w as i32 * a as i32).sum()
}

/// 32 nibble codes in element order (byte `i` holds element `i` low, `i + 16` high, as in
/// Q4_0, IQ4_NL and each 32-weight run of IQ4_XS) through a 16-entry codebook.
#[inline(always)]
pub(super) fn lut4(qs: &[u8; 16], lut: &[i8; 16]) -> [i8; 32] {
    let mut w = [0i8; 32];
    for (j, &b) in qs.iter().enumerate() {
        w[j] = lut[(b & 0x0F) as usize];
        w[j + 16] = lut[(b >> 4) as usize];
    }
    w
}

/// `xq` as activation blocks, checked to number `n_blocks` (the row's 32-weight groups).
pub(crate) fn act_blocks(xq: &[u8], n_blocks: usize) -> &[BlockQ8Act] {
    let a: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
    assert_eq!(a.len(), n_blocks, "activation blocks match the row");
    a
}

/// Dot product of a Q4_0 row with quantized activations:
/// `Σ_blocks (d_w·d_a) · Σ (q − 8)·a`.
pub fn dot_q4_0_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ4_0] = as_blocks(row).expect("Q4_0 row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        let isum = block_isum(&lut4(&b.qs, &Q4_0_VALUES), &a.qs);
        sum += (b.d.to_f32() * a.d()) * isum as f32;
    }
    sum
}

/// Dot product of a Q4_1 row with quantized activations:
/// `Σ_blocks (d_w·d_a) · Σ q·a + m·s`.
pub fn dot_q4_1_q8(row: &[u8], xq: &[u8]) -> f32 {
    const IDENTITY: [i8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let blocks: &[BlockQ4_1] = as_blocks(row).expect("Q4_1 row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        let isum = block_isum(&lut4(&b.qs, &IDENTITY), &a.qs);
        sum += (b.d.to_f32() * a.d()) * isum as f32 + b.m.to_f32() * a.s();
    }
    sum
}

/// Dot product of an IQ4_NL row with quantized activations:
/// `Σ_blocks (d_w·d_a) · Σ T[q]·a` (`|T[q]| ≤ 127`, so the integer sum is exact as for Q8_0).
pub fn dot_iq4_nl_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockIQ4_NL] = as_blocks(row).expect("IQ4_NL row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        let isum = block_isum(&lut4(&b.qs, &IQ4_NL_VALUES), &a.qs);
        sum += (b.d.to_f32() * a.d()) * isum as f32;
    }
    sum
}

/// Dot product of a Q5_0 row with quantized activations:
/// `Σ_blocks (d_w·d_a) · Σ (q − 16)·a`.
pub fn dot_q5_0_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ5_0] = as_blocks(row).expect("Q5_0 row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        let w = codes5(&b.qh, &b.qs).map(|q| q as i8 - 16);
        sum += (b.d.to_f32() * a.d()) * block_isum(&w, &a.qs) as f32;
    }
    sum
}

/// Dot product of a Q5_1 row with quantized activations:
/// `Σ_blocks (d_w·d_a) · Σ q·a + m·s`.
pub fn dot_q5_1_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ5_1] = as_blocks(row).expect("Q5_1 row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        let w = codes5(&b.qh, &b.qs).map(|q| q as i8);
        let isum = block_isum(&w, &a.qs);
        sum += (b.d.to_f32() * a.d()) * isum as f32 + b.m.to_f32() * a.s();
    }
    sum
}

/// Dot product of a Q8_0 row with quantized activations: `Σ_blocks (d_w·d_a) · Σ q·a`.
pub fn dot_q8_0_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ8_0] = as_blocks(row).expect("Q8_0 row is whole blocks");
    let acts = act_blocks(xq, blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts) {
        sum += (b.d.to_f32() * a.d()) * block_isum(&b.qs, &a.qs) as f32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::as_bytes;
    use crate::scalar::{
        dequant_iq4_nl, dequant_q4_0, dequant_q4_1, dequant_q5_0, dequant_q5_1, dequant_q8_0,
        quantize_iq4_nl, quantize_q4_0, quantize_q5_0, quantize_q5_1, quantize_q8_0,
    };

    extern crate alloc;
    use crate::scalar::tests::randoms;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn quantize_act_values_and_sum() {
        // d = 1: halves round away from zero, −0 and below-half values to 0.
        let mut x = [0.0f32; 32];
        x[..6].copy_from_slice(&[-127.0, 63.5, -0.5, -0.0, 0.49, 126.6]);
        let mut out = [0u8; 40];
        quantize_act_q8(&x, &mut out);
        let b: &[BlockQ8Act] = as_blocks(&out).unwrap();
        assert_eq!(b[0].d(), 1.0);
        assert_eq!(&b[0].qs[..6], &[-127, 64, -1, 0, 0, 127]);
        assert_eq!(b[0].s(), (-127 + 64 - 1 + 127) as f32);
        // All zeros and subnormal-tiny blocks quantize to zero codes.
        for v in [0.0f32, 1e-44] {
            quantize_act_q8(&[v; 32], &mut out);
            let b: &[BlockQ8Act] = as_blocks(&out).unwrap();
            assert!(b[0].qs.iter().all(|&q| q == 0) && b[0].s() == 0.0);
        }
    }

    /// The integer path differs from the f32 path only by the activation rounding: at most
    /// half a step `d_a/2` per activation, so `|Δ| ≤ Σ_blocks (d_a/2)·Σ|w|` (plus f32 noise).
    #[test]
    fn int8_path_tracks_f32_path() {
        for &n in &[32usize, 96, 576] {
            let w = randoms(n, 7);
            let x: Vec<f32> = randoms(n, 8).iter().map(|v| v * 4.0).collect();
            let mut xq = vec![0u8; act_q8_bytes(n)];
            quantize_act_q8(&x, &mut xq);
            let acts: &[BlockQ8Act] = as_blocks(&xq).unwrap();
            let mut deq = vec![0.0f32; n];
            type Kernel = (
                fn(&[f32], &mut [u8]),
                usize,
                fn(&[u8], &mut [f32]),
                fn(&[u8], &[u8]) -> f32,
            );
            let kernels: [Kernel; 6] = [
                (quantize_q4_0, 18, dequant_q4_0, dot_q4_0_q8),
                (crate::scalar::quantize_q4_1, 20, dequant_q4_1, dot_q4_1_q8),
                (quantize_q8_0, 34, dequant_q8_0, dot_q8_0_q8),
                (quantize_q5_0, 22, dequant_q5_0, dot_q5_0_q8),
                (quantize_q5_1, 24, dequant_q5_1, dot_q5_1_q8),
                (quantize_iq4_nl, 18, dequant_iq4_nl, dot_iq4_nl_q8),
            ];
            for (quant, bytes, dequant, dot) in kernels {
                let mut row = vec![0u8; n / 32 * bytes];
                quant(&w, &mut row);
                dequant(&row, &mut deq);
                let exact: f64 = deq.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let bound: f64 = deq
                    .chunks(32)
                    .zip(acts)
                    .map(|(w, a)| {
                        a.d() as f64 / 2.0 * w.iter().map(|v| v.abs() as f64).sum::<f64>()
                    })
                    .sum::<f64>()
                    * 1.001
                    + 1e-4;
                let got = dot(&row, &xq) as f64;
                assert!(
                    (got - exact).abs() <= bound,
                    "n {n}: {got} vs {exact} ± {bound}"
                );
            }
        }
    }

    #[test]
    fn extreme_codes_stay_exact() {
        let w = BlockQ8_0 {
            d: crate::blocks::F16Le::from_f32(1.0),
            qs: [-128; 32],
        };
        let a = BlockQ8Act {
            d: 1.0f32.to_le_bytes(),
            s: [0; 4],
            qs: [-127; 32],
        };
        assert_eq!(
            dot_q8_0_q8(as_bytes(&[w]), as_bytes(&[a])),
            (32 * 128 * 127) as f32
        );
    }
}
