//! IQ4_NL: 32 weights per block, 4-bit indices (nibbles ordered as Q4_0's) into a fixed
//! non-linear int8 codebook, one f16 scale.

use super::act::{lut4, IQ4_NL_VALUES};
use super::ggml_search::GROUP_MAX_EPS;
use crate::blocks::{as_blocks, as_blocks_mut, BlockIQ4_NL, F16Le};

/// The codebook values of one block's 32 indices, in element order.
#[inline(always)]
fn values(qs: &[u8; 16]) -> [i8; 32] {
    lut4(qs, &IQ4_NL_VALUES)
}

/// Dequantizes an IQ4_NL row into `out`.
pub fn dequant_iq4_nl(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockIQ4_NL] = as_blocks(row).expect("IQ4_NL row is whole blocks");
    assert_eq!(blocks.len() * 32, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for (v, o) in values(&b.qs).iter().zip(o) {
            *o = *v as f32 * d;
        }
    }
}

/// Dot product of an IQ4_NL row with f32 activations.
pub fn dot_iq4_nl_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockIQ4_NL] = as_blocks(row).expect("IQ4_NL row is whole blocks");
    assert_eq!(blocks.len() * 32, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(32)) {
        let mut acc = 0.0f32;
        for (v, xi) in values(&b.qs).iter().zip(x) {
            acc += *v as f32 * xi;
        }
        sum += acc * b.d.to_f32();
    }
    sum
}

/// The codebook index whose value is nearest `x` (ties to the lower one), by bisection over
/// the sorted codebook: ggml's `best_index_int8`.
pub(super) fn iq4_nl_index(x: f32) -> u8 {
    let v = &IQ4_NL_VALUES;
    if x <= v[0] as f32 {
        return 0;
    }
    if x >= v[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < v[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (v[hi - 1] as f32) < (v[hi] as f32) - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// Scale searches either side of the first guess (ggml's `ntry` for IQ4_NL and IQ4_XS).
const NTRY: i32 = 7;

/// The scale of one 32-weight block as ggml's `quantize_row_iq4_nl_impl` picks it without
/// importance weights (weights `x²`, `ntry = 7`): the one that maximizes
/// `(Σ w·q·x)² / Σ w·q²` over the first guess `max/T[0]` and the 15 scales `max/(T[0] + k)`,
/// `k = −7..=7`, with every element at its nearest codebook value; 0 for a block whose largest
/// magnitude is below ggml's `GROUP_MAX_EPS`. Sums run in element order in f32, without fused
/// multiply-adds, as the C source reads. IQ4_NL stores it as the block's scale; IQ4_XS
/// quantizes the eight of a super-block again to six bits.
pub(super) fn iq4_nl_block_scale(x: &[f32]) -> f32 {
    assert_eq!(x.len(), 32);
    let t0 = IQ4_NL_VALUES[0] as f32;
    let w: [f32; 32] = core::array::from_fn(|j| x[j] * x[j]);
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    // Σ w·q·x and Σ w·q² with every element at its nearest value for inverse scale `id`.
    let sums = |id: f32| {
        let (mut sqx, mut sq2) = (0.0f32, 0.0f32);
        for j in 0..32 {
            let q = IQ4_NL_VALUES[iq4_nl_index(id * x[j]) as usize] as f32;
            sqx += w[j] * q * x[j];
            sq2 += w[j] * q * q;
        }
        (sqx, sq2)
    };
    let (sqx, sq2) = sums(1.0 / (-max / t0));
    let mut d = sqx / sq2;
    let mut best = d * sqx;
    for itry in -NTRY..=NTRY {
        let (sqx, sq2) = sums((itry as f32 + t0) / max);
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            d = sqx / sq2;
            best = d * sqx;
        }
    }
    d
}

/// Quantizes `x` (a multiple of 32 long) to IQ4_NL as ggml's reference does without
/// importance weights (`quantize_row_iq4_nl_ref`: `quantize_row_iq4_nl_impl` with one 32-weight
/// block): the scale of `iq4_nl_block_scale`, and every element at its nearest codebook value
/// for it.
pub fn quantize_iq4_nl(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockIQ4_NL] = as_blocks_mut(out).expect("output is whole IQ4_NL blocks");
    assert_eq!(blocks.len() * 32, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(32)) {
        let d = iq4_nl_block_scale(x);
        b.d = F16Le::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..16 {
            b.qs[j] = iq4_nl_index(id * x[j]) | (iq4_nl_index(id * x[j + 16]) << 4);
        }
    }
}
