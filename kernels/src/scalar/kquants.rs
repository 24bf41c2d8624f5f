//! Q4_K and Q6_K: ggml's 256-weight "k-quant" super-blocks.
//!
//! Dequantization follows ggml's `dequantize_row_q4_K` / `dequantize_row_q6_K` operation for
//! operation (same products in the same order, no fused multiply-add), so it matches gguf-py's
//! numpy reference bit for bit. The quantizers are deliberately simpler than ggml's iterative
//! scale search (`make_qkx2_quants`, `make_qx_quants`): they pick each sub-block's scale from its
//! range, round every scale *up* so no code is ever clamped, and round codes to nearest. Their
//! error is at most half a step per weight, but ggml's search finds smaller total error.

use super::q8::round_half_away;
use crate::blocks::{as_blocks, as_blocks_mut, BlockQ4_K, BlockQ6_K, F16Le};

/// Weights per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

// ---------------------------------------------------------------------------------------------
// Q4_K

/// Six-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes (ggml's
/// `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        let sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc, m)
    }
}

/// Per sub-block `(d·sc, dmin·m)`: the step and the offset subtracted from `step·q`.
#[inline(always)]
fn q4_k_steps(b: &BlockQ4_K) -> [(f32, f32); 8] {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    let mut steps = [(0.0f32, 0.0f32); 8];
    for (j, s) in steps.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(j, &b.scales);
        *s = (d * sc as f32, dmin * m as f32);
    }
    steps
}

/// Codes of one Q4_K block in element order: byte `32c + l` holds element `64c + l` in its low
/// nibble and element `64c + 32 + l` in its high nibble.
#[inline(always)]
fn q4_k_codes(qs: &[u8; 128]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (c, chunk) in qs.chunks_exact(32).enumerate() {
        for (l, &byte) in chunk.iter().enumerate() {
            q[64 * c + l] = byte & 0x0F;
            q[64 * c + 32 + l] = byte >> 4;
        }
    }
    q
}

/// Dequantizes a Q4_K row into `out`: element `e` is `d·sc·q − dmin·m` with the six-bit scale
/// and min of sub-block `e / 32`.
pub fn dequant_q4_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ4_K] = as_blocks(row).expect("Q4_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let q = q4_k_codes(&b.qs);
        for ((&(step, min), q), o) in q4_k_steps(b)
            .iter()
            .zip(q.chunks_exact(32))
            .zip(o.chunks_exact_mut(32))
        {
            for (q, o) in q.iter().zip(o) {
                *o = step * *q as f32 - min;
            }
        }
    }
}

/// Dot product of a Q4_K row with f32 activations: `Σ (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)` over
/// sub-blocks.
pub fn dot_q4_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ4_K] = as_blocks(row).expect("Q4_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        let q = q4_k_codes(&b.qs);
        for ((&(step, min), q), x) in q4_k_steps(b)
            .iter()
            .zip(q.chunks_exact(32))
            .zip(x.chunks_exact(32))
        {
            let (mut qx, mut sx) = (0.0f32, 0.0f32);
            for (q, xi) in q.iter().zip(x) {
                qx += *q as f32 * xi;
                sx += xi;
            }
            sum += step * qx - min * sx;
        }
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q4_K.
///
/// Simpler than ggml's `quantize_row_q4_K_ref` (no iterative search): sub-block j covers
/// `[min(x_min, 0), x_max]`; its min code is `ceil(−lo/dmin)` and its scale code
/// `ceil((x_max + dmin·m)/(15·d))`, with `d` and `dmin` the f16 super-scales rounded up. The
/// chosen range always contains the sub-block, so the error is at most half a step `d·sc/2`.
pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ4_K] = as_blocks_mut(out).expect("output is whole Q4_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        // Offsets first: the value range starts at −dmin·m ≤ min(x_min, 0).
        let mut neg_lo = [0.0f32; 8];
        let mut hi = [0.0f32; 8];
        for (j, sub) in x.chunks_exact(32).enumerate() {
            let lo = sub.iter().copied().fold(0.0f32, f32::min);
            neg_lo[j] = -lo;
            hi[j] = sub.iter().copied().fold(lo, f32::max);
        }
        let dmin = f16_at_least(max_of(&neg_lo) / 63.0);
        let mut m = [0u8; 8];
        let mut offset = [0.0f32; 8];
        for j in 0..8 {
            m[j] = six_bit_code_at_least(neg_lo[j], dmin.to_f32());
            offset[j] = dmin.to_f32() * m[j] as f32;
        }
        // Then steps: 15 steps from −offset must reach x_max.
        let mut need = [0.0f32; 8];
        for j in 0..8 {
            need[j] = (hi[j] + offset[j]) / 15.0;
        }
        let d = f16_at_least(max_of(&need) / 63.0);
        let mut sc = [0u8; 8];
        for j in 0..8 {
            sc[j] = six_bit_code_at_least(need[j], d.to_f32());
        }

        b.d = d;
        b.dmin = dmin;
        b.scales = pack_scales_k4(&sc, &m);
        let mut q = [0u8; QK_K];
        for (j, (sub, q)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
            let step = d.to_f32() * sc[j] as f32;
            let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
            for (v, q) in sub.iter().zip(q) {
                *q = round_half_away((v + offset[j]) * inv).clamp(0.0, 15.0) as u8;
            }
        }
        for c in 0..4 {
            for l in 0..32 {
                b.qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
            }
        }
    }
}

/// Packs eight six-bit scales and mins the way [`scale_min_k4`] unpacks them.
fn pack_scales_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    s
}

/// The smallest code in 0..=63 with `code·unit ≥ v` (0 when `unit` is 0).
fn six_bit_code_at_least(v: f32, unit: f32) -> u8 {
    if unit > 0.0 {
        libm::ceilf(v / unit).clamp(0.0, 63.0) as u8
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// Q6_K

/// Codes of one Q6_K block in element order, minus 32 (so in −32..=31).
///
/// Half h (elements 128h..128h+128) reads `ql[64h..]` and `qh[32h..]`; for l in 0..32 the four
/// elements l, l+32, l+64, l+96 of the half take their low nibbles from `ql[l]` (low),
/// `ql[l+32]` (low), `ql[l]` (high), `ql[l+32]` (high) and their top two bits from bits 0–1,
/// 2–3, 4–5, 6–7 of `qh[l]`.
#[inline(always)]
fn q6_k_codes(b: &BlockQ6_K) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        let ql = &b.ql[64 * h..64 * h + 64];
        let qh = &b.qh[32 * h..32 * h + 32];
        let q = &mut q[128 * h..128 * h + 128];
        for l in 0..32 {
            let low = [ql[l] & 0x0F, ql[l + 32] & 0x0F, ql[l] >> 4, ql[l + 32] >> 4];
            for (k, low) in low.iter().enumerate() {
                let high = (qh[l] >> (2 * k)) & 3;
                q[l + 32 * k] = (low | (high << 4)) as i8 - 32;
            }
        }
    }
    q
}

/// Dequantizes a Q6_K row into `out`: element `e` is `(d·scales[e/16])·(q − 32)`.
pub fn dequant_q6_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ6_K] = as_blocks(row).expect("Q6_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let q = q6_k_codes(b);
        for ((sc, q), o) in b
            .scales
            .iter()
            .zip(q.chunks_exact(16))
            .zip(o.chunks_exact_mut(16))
        {
            let step = d * *sc as f32;
            for (q, o) in q.iter().zip(o) {
                *o = step * *q as f32;
            }
        }
    }
}

/// Dot product of a Q6_K row with f32 activations: `Σ (d·scale)·(Σ (q − 32)·x)` over
/// sub-blocks.
pub fn dot_q6_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ6_K] = as_blocks(row).expect("Q6_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        let d = b.d.to_f32();
        let q = q6_k_codes(b);
        for ((sc, q), x) in b
            .scales
            .iter()
            .zip(q.chunks_exact(16))
            .zip(x.chunks_exact(16))
        {
            let mut acc = 0.0f32;
            for (q, xi) in q.iter().zip(x) {
                acc += *q as f32 * xi;
            }
            sum += d * *sc as f32 * acc;
        }
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q6_K.
///
/// Simpler than ggml's `quantize_row_q6_K_ref` (no iterative search): sub-block j needs a step
/// of `max|x|/31`; its scale is the smallest positive int8 `sc` with `d·sc` at least that, `d`
/// being `max step / 127` rounded up to f16. Codes are rounded to nearest in −31..=31 (−32 is
/// unused), so the error is at most half a step `d·sc/2`.
pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ6_K] = as_blocks_mut(out).expect("output is whole Q6_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut need = [0.0f32; 16];
        for (n, sub) in need.iter_mut().zip(x.chunks_exact(16)) {
            *n = sub.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 31.0;
        }
        let d = f16_at_least(max_of(&need) / 127.0);
        b.d = d;
        let mut q = [0u8; QK_K];
        for ((sc, n), (sub, q)) in b
            .scales
            .iter_mut()
            .zip(&need)
            .zip(x.chunks_exact(16).zip(q.chunks_exact_mut(16)))
        {
            *sc = if d.to_f32() > 0.0 {
                libm::ceilf(n / d.to_f32()).clamp(0.0, 127.0) as i8
            } else {
                0
            };
            let step = d.to_f32() * *sc as f32;
            let inv = if step != 0.0 { 1.0 / step } else { 0.0 };
            for (v, q) in sub.iter().zip(q) {
                *q = (round_half_away(v * inv).clamp(-32.0, 31.0) as i32 + 32) as u8;
            }
        }
        // The inverse of `q6_k_codes`.
        for h in 0..2 {
            let q = &q[128 * h..128 * h + 128];
            for l in 0..32 {
                b.ql[64 * h + l] = (q[l] & 0x0F) | ((q[l + 64] & 0x0F) << 4);
                b.ql[64 * h + 32 + l] = (q[l + 32] & 0x0F) | ((q[l + 96] & 0x0F) << 4);
                b.qh[32 * h + l] = (q[l] >> 4)
                    | ((q[l + 32] >> 4) << 2)
                    | ((q[l + 64] >> 4) << 4)
                    | ((q[l + 96] >> 4) << 6);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared

/// Largest value of `v` (0 for an empty or all-negative slice; NaN is skipped).
fn max_of(v: &[f32]) -> f32 {
    v.iter().copied().fold(0.0f32, f32::max)
}

/// The smallest f16 not below `v`, for a non-negative `v`: a scale rounded to f16 this way
/// never shrinks, so the range it was chosen to cover stays covered. (Above f16's largest
/// finite value it is infinity; the weights then dequantize to NaN or infinity, as in ggml.)
fn f16_at_least(v: f32) -> F16Le {
    let h = half::f16::from_f32(v);
    if h.to_f32() < v {
        // Positive halves order like their bit patterns: the next pattern is the next value.
        F16Le((h.to_bits() + 1).to_le_bytes())
    } else {
        F16Le(h.to_bits().to_le_bytes())
    }
}
