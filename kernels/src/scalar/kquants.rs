//! Q4_K and Q6_K: ggml's 256-weight "k-quant" super-blocks.
//!
//! Dequantization follows ggml's `dequantize_row_q4_K` / `dequantize_row_q6_K` operation for
//! operation (same products in the same order, no fused multiply-add), so it matches gguf-py's
//! numpy reference bit for bit. The quantizers are ggml's reference quantizers
//! (`quantize_row_q4_K_ref`, `quantize_row_q6_K_ref`: what llama.cpp runs for these types without
//! an importance matrix), ported operation for operation in plain f32 with ggml's scale searches
//! (`make_qkx2_quants`, `make_qx_quants` in `ggml_search.rs`), so a tensor quantized here holds
//! the bytes llama.cpp writes for the same input (`tests/formats_reference.rs` checks them
//! against ggml's own library).
//!
//! The int8 path ([`dot_q4_k_q8`], [`dot_q6_k_q8`]) meets the weights with activations
//! quantized per 32 ([`BlockQ8Act`](super::BlockQ8Act)): a super-block spans eight activation
//! blocks, one per Q4_K sub-block and one per pair of Q6_K sub-blocks. Everything up to one
//! exact `i32` per activation block is integer; the float part is a fixed sequence of
//! operations (one product per activation block, [`sum8_tree`], the super-block scale) that
//! every backend performs in the same order, so all backends agree bit for bit.

use super::act::act_blocks;
use super::ggml_search::{make_qkx2_quants, make_qx_quants, nearest_int, GROUP_MAX_EPS};
use crate::blocks::{as_blocks, as_blocks_mut, BlockQ4_K, BlockQ6_K, F16Le};

/// Weights per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

// ---------------------------------------------------------------------------------------------
// Sub-block loops shared by the 256-weight formats

/// `out[e] = step·q[e] − min` with the `(step, min)` of `e`'s sub-block (`q.len() / steps.len()`
/// codes each): the k-quants with a min (Q4_K, Q5_K, Q2_K), ggml's operations, unfused.
#[inline(always)]
pub(super) fn dequant_sub_blocks_min(q: &[u8], steps: &[(f32, f32)], out: &mut [f32]) {
    debug_assert_eq!(q.len(), out.len());
    let sub = q.len() / steps.len();
    for ((&(step, min), q), o) in steps
        .iter()
        .zip(q.chunks_exact(sub))
        .zip(out.chunks_exact_mut(sub))
    {
        for (q, o) in q.iter().zip(o) {
            *o = step * *q as f32 - min;
        }
    }
}

/// `sum` plus `step·(Σ q·x) − min·(Σ x)` of each sub-block in turn (as
/// [`dequant_sub_blocks_min`] lays them out): the f32 dot of the k-quants with a min.
#[inline(always)]
pub(super) fn dot_sub_blocks_min(mut sum: f32, q: &[u8], steps: &[(f32, f32)], x: &[f32]) -> f32 {
    debug_assert_eq!(q.len(), x.len());
    let sub = q.len() / steps.len();
    for ((&(step, min), q), x) in steps
        .iter()
        .zip(q.chunks_exact(sub))
        .zip(x.chunks_exact(sub))
    {
        let (mut qx, mut sx) = (0.0f32, 0.0f32);
        for (q, xi) in q.iter().zip(x) {
            qx += *q as f32 * xi;
            sx += xi;
        }
        sum += step * qx - min * sx;
    }
    sum
}

/// `out[e] = step·q[e]` with the step of `e`'s sub-block (`q.len() / steps.len()` signed codes
/// each): Q6_K, Q3_K and IQ4_XS, ggml's operations, unfused.
#[inline(always)]
pub(super) fn dequant_sub_blocks(q: &[i8], steps: &[f32], out: &mut [f32]) {
    debug_assert_eq!(q.len(), out.len());
    let sub = q.len() / steps.len();
    for ((step, q), o) in steps
        .iter()
        .zip(q.chunks_exact(sub))
        .zip(out.chunks_exact_mut(sub))
    {
        for (q, o) in q.iter().zip(o) {
            *o = step * *q as f32;
        }
    }
}

/// `sum` plus `step·(Σ q·x)` of each sub-block in turn (as [`dequant_sub_blocks`] lays them
/// out): the f32 dot of Q6_K, Q3_K and IQ4_XS.
#[inline(always)]
pub(super) fn dot_sub_blocks(mut sum: f32, q: &[i8], steps: &[f32], x: &[f32]) -> f32 {
    debug_assert_eq!(q.len(), x.len());
    let sub = q.len() / steps.len();
    for ((step, q), x) in steps
        .iter()
        .zip(q.chunks_exact(sub))
        .zip(x.chunks_exact(sub))
    {
        let mut acc = 0.0f32;
        for (q, xi) in q.iter().zip(x) {
            acc += *q as f32 * xi;
        }
        sum += step * acc;
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Q4_K

/// Six-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes (ggml's
/// `get_scale_min_k4`).
// The byte-wise spec: the kernels use `scales_mins_k4`, which the tests check against it.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the spec the tests check the kernels' form against"
    )
)]
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

/// The six-bit scales and mins of all eight sub-blocks, `([sc; 8], [m; 8])`: the SIMD bodies
/// take all eight at once, and the packing is decoded here, once, for every tier.
///
/// [`scale_min_k4`] for every `j` at once, four bytes per `u32` operation (the row kernels
/// decode this once per row and super-block): with the words `a = s[0..4]`, `b = s[4..8]`,
/// `c = s[8..12]`, the scales are `a & 63` and `(c & 15) | (a >> 6) << 4` per byte, the mins
/// `b & 63` and `(c >> 4) | (b >> 6) << 4`.
#[inline(always)]
pub(crate) fn scales_mins_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const LOW2: u32 = 0x0303_0303;
    let sc_hi = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    let m_hi = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
    (join(a & LOW6, sc_hi), join(b & LOW6, m_hi))
}

/// Per sub-block `(d·sc, dmin·m)`: the step and the offset subtracted from `step·q`.
#[inline(always)]
fn q4_k_steps(b: &BlockQ4_K) -> [(f32, f32); 8] {
    k4_steps(b.d, b.dmin, &b.scales)
}

/// Per sub-block `(d·sc, dmin·m)` of a block with Q4_K's scale fields (Q4_K, Q5_K).
#[inline(always)]
pub(crate) fn k4_steps(d: F16Le, dmin: F16Le, scales: &[u8; 12]) -> [(f32, f32); 8] {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    let (sc, m) = scales_mins_k4(scales);
    core::array::from_fn(|j| (d * sc[j] as f32, dmin * m[j] as f32))
}

/// Codes of one Q4_K block in element order: byte `32c + l` holds element `64c + l` in its low
/// nibble and element `64c + 32 + l` in its high nibble.
#[inline(always)]
pub(super) fn q4_k_codes(qs: &[u8; 128]) -> [u8; QK_K] {
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
        dequant_sub_blocks_min(&q4_k_codes(&b.qs), &q4_k_steps(b), o);
    }
}

/// Dot product of a Q4_K row with f32 activations: `Σ (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)` over
/// sub-blocks.
pub fn dot_q4_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ4_K] = as_blocks(row).expect("Q4_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks_min(sum, &q4_k_codes(&b.qs), &q4_k_steps(b), x);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q4_K exactly as ggml's `quantize_row_q4_K_ref`
/// does: `quantize_k4_block` with 16 levels and ggml's Q4_K search parameters (21 trial step
/// counts from −1 by 0.1).
pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ4_K] = as_blocks_mut(out).expect("output is whole Q4_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales, l) = quantize_k4_block(x, 15, -1.0, 0.1, 20);
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        // The inverse of `q4_k_codes`.
        for c in 0..4 {
            for i in 0..32 {
                b.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

/// One super-block of ggml's Q4_K / Q5_K reference quantizer, up to the codes: returns `d`,
/// `dmin`, the packed six-bit scales and mins, and the codes (0..=nmax) in element order.
///
/// Per sub-block of 32: weights `sqrt(Σx²/32) + |x|`, then ggml's `make_qkx2_quants` (`nmax`
/// levels, `nstep + 1` trial step counts from `rmin` by `rdelta`) for a scale and a min. The
/// largest of each become `d·63` and `dmin·63` (f16, to nearest), each sub-block's six-bit codes
/// `round(63·v/max)`, and every weight's code `round((x + dmin·m)/(d·sc))` clamped to
/// `0..=nmax`; a sub-block whose `d·sc` is 0 keeps the search's codes.
pub(super) fn quantize_k4_block(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (F16Le, F16Le, [u8; 12], [u8; QK_K]) {
    assert_eq!(x.len(), QK_K);
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (j, (sub, l)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
        let mut sum_x2 = 0.0f32;
        for v in sub {
            sum_x2 += v * v;
        }
        let av_x = libm::sqrtf(sum_x2 / 32.0);
        let weights: [f32; 32] = core::array::from_fn(|i| av_x + sub[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(
            sub, &weights, nmax, l, &mut laux, rmin, rdelta, nstep, false,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores `nearest_int(..)` into a u8 (keeping the low byte), then caps it at 63.
    let six_bit = |v: f32| (nearest_int(v) as u8).min(63);
    let ls: [u8; 8] = core::array::from_fn(|j| six_bit(inv_scale * scales[j]));
    let lm: [u8; 8] = core::array::from_fn(|j| six_bit(inv_min * mins[j]));
    let d = F16Le::from_f32(max_scale / 63.0);
    let dmin = F16Le::from_f32(max_min / 63.0);

    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    for (j, (sub, l)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
        let step = df * ls[j] as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dminf * lm[j] as f32;
        for (v, l) in sub.iter().zip(l) {
            *l = nearest_int((v + offset) / step).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, pack_scales_k4(&ls, &lm), l)
}

/// Packs eight six-bit scales and mins the way [`scale_min_k4`] unpacks them.
pub(crate) fn pack_scales_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    s
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
pub(super) fn q6_k_codes(b: &BlockQ6_K) -> [i8; QK_K] {
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

/// Per sub-block `d·scale`.
#[inline(always)]
pub(super) fn q6_k_steps(b: &BlockQ6_K) -> [f32; 16] {
    let d = b.d.to_f32();
    b.scales.map(|sc| d * sc as f32)
}

/// Dequantizes a Q6_K row into `out`: element `e` is `(d·scales[e/16])·(q − 32)`.
pub fn dequant_q6_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ6_K] = as_blocks(row).expect("Q6_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequant_sub_blocks(&q6_k_codes(b), &q6_k_steps(b), o);
    }
}

/// Dot product of a Q6_K row with f32 activations: `Σ (d·scale)·(Σ (q − 32)·x)` over
/// sub-blocks.
pub fn dot_q6_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ6_K] = as_blocks(row).expect("Q6_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks(sum, &q6_k_codes(b), &q6_k_steps(b), x);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q6_K exactly as ggml's `quantize_row_q6_K_ref`
/// does (so the bytes equal llama.cpp's without an importance matrix).
///
/// Per sub-block of 16, ggml's `make_qx_quants` (32 levels each side, weights `x²`) picks a
/// signed scale. The one of largest magnitude, `s_max`, sets `d = s_max / −128` (f16, to
/// nearest), so it takes the int8 scale −128; every sub-block's int8 scale is
/// `min(127, round(−128·s/s_max))`, and every weight's code `round(x/(d·sc))` clamped to
/// −32..=31; a sub-block whose `d·sc` is 0 keeps the search's codes. A super-block whose scales
/// are all below ggml's `GROUP_MAX_EPS` is all zero bytes.
pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ6_K] = as_blocks_mut(out).expect("output is whole Q6_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        // Codes offset by 32 (0..64).
        let mut q = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for (j, (sub, q)) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)).enumerate() {
            scales[j] = make_qx_quants(sub, 32, q);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = BlockQ6_K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: F16Le::from_f32(0.0),
            };
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = F16Le::from_f32(1.0 / iscale);
        for (sc, &s) in b.scales.iter_mut().zip(&scales) {
            // ggml assigns `MIN(127, nearest_int(..))` to an int8_t: `as` wraps the same way.
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        let d = b.d.to_f32();
        for ((&sc, sub), q) in b
            .scales
            .iter()
            .zip(x.chunks_exact(16))
            .zip(q.chunks_exact_mut(16))
        {
            let step = d * sc as f32;
            if step == 0.0 {
                continue;
            }
            for (v, q) in sub.iter().zip(q) {
                *q = (nearest_int(v / step).clamp(-32, 31) + 32) as u8;
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
// Int8 activations

/// `Σ p` in the fixed order every backend's int8 k-quant kernel uses,
/// `((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))`: an eight-lane horizontal sum (the two
/// halves added, then pairs), so a SIMD reduction reproduces it exactly.
#[inline(always)]
pub fn sum8_tree(p: [f32; 8]) -> f32 {
    let t = [p[0] + p[4], p[1] + p[5], p[2] + p[6], p[3] + p[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// Dot product of a Q4_K row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block).
///
/// Per super-block, with `i_j = Σ q·a` over sub-block j (exact i32) and the activation block's
/// scale `d_j` and sum `s_j`:
/// `d·sum8_tree([d_j · (sc_j·i_j) as f32]) − dmin·sum8_tree([s_j · m_j as f32])`, added to the
/// running sum one super-block at a time. `sc_j·i_j` is an integer below 63·15·127·32 < 2²⁴,
/// so its conversion is exact.
pub fn dot_q4_k_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ4_K] = as_blocks(row).expect("Q4_K row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let (sc, m) = scales_mins_k4(&b.scales);
        let q = q4_k_codes(&b.qs);
        let p = core::array::from_fn(|j| {
            let isum: i32 = q[32 * j..32 * j + 32]
                .iter()
                .zip(&a[j].qs)
                .map(|(&q, &a)| q as i32 * a as i32)
                .sum();
            a[j].d() * (sc[j] as i32 * isum) as f32
        });
        let mins = core::array::from_fn(|j| a[j].s() * m[j] as f32);
        sum += b.d.to_f32() * sum8_tree(p) - b.dmin.to_f32() * sum8_tree(mins);
    }
    sum
}

/// Dot product of a Q6_K row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block).
///
/// Activation block k covers Q6_K sub-blocks 2k and 2k + 1; with `i_s = Σ (q − 32)·a` over
/// sub-block s (exact), `I_k = scales[2k]·i_2k + scales[2k+1]·i_2k+1` is an integer of
/// magnitude at most 2·128·32·127·16 < 2²⁴ (exact in f32). Per super-block
/// `d·sum8_tree([d_k · I_k as f32])`, added to the running sum one super-block at a time.
pub fn dot_q6_k_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ6_K] = as_blocks(row).expect("Q6_K row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let q = q6_k_codes(b);
        let p = core::array::from_fn(|k| {
            let isum = |s: usize| -> i32 {
                let e = 16 * s;
                let sub: i32 = q[e..e + 16]
                    .iter()
                    .zip(&a[k].qs[e - 32 * k..])
                    .map(|(&q, &a)| q as i32 * a as i32)
                    .sum();
                b.scales[s] as i32 * sub
            };
            a[k].d() * (isum(2 * k) + isum(2 * k + 1)) as f32
        });
        sum += b.d.to_f32() * sum8_tree(p);
    }
    sum
}

#[cfg(test)]
mod tests {
    //! Element order from hand-built blocks, scale packing, and quantize → dequantize round
    //! trips. Agreement with an independent implementation is `tests/formats_reference.rs`.

    use super::*;
    use crate::blocks::as_bytes;

    extern crate alloc;
    use crate::scalar::tests::randoms;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The dot kernel agrees with the f64 dot of the dequantized row of `n` weights (loose
    /// relative bound; the derived bound is in the reference test).
    fn check_dot(
        dequant: fn(&[u8], &mut [f32]),
        dot: fn(&[u8], &[f32]) -> f32,
        row: &[u8],
        n: usize,
    ) {
        let mut w = vec![0.0; n];
        dequant(row, &mut w);
        let x = randoms(n, 3);
        let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mag: f64 = w
            .iter()
            .zip(&x)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let got = dot(row, &x) as f64;
        assert!(
            (got - exact).abs() <= mag * 1e-4 + 1e-6,
            "dot {got} vs {exact}"
        );
    }

    #[test]
    fn q4_k_scale_packing_hand_built() {
        // Sub-blocks 0..4 in the low six bits of bytes 0..4 (scales) and 4..8 (mins); sub-blocks
        // 4..8 split: low nibbles in bytes 8..12, top two bits in the top of bytes 0..8.
        let s: [u8; 12] = [
            1 | 0xC0, // sc[0] = 1, top bits of sc[4] = 0b11
            2,
            3,
            4 | 0x40,  // top bits of sc[7] = 0b01
            10,        // m[0]
            11 | 0x80, // m[1], top bits of m[5] = 0b10
            12,
            13,
            0x25, // sc[4] low nibble 5, m[4] low nibble 2
            0x36,
            0x47,
            0x58,
        ];
        let want_sc = [1, 2, 3, 4, 0x35, 6, 7, 0x18];
        let want_m = [10, 11, 12, 13, 2, 0x23, 4, 5];
        for j in 0..8 {
            assert_eq!(
                scale_min_k4(j, &s),
                (want_sc[j], want_m[j]),
                "sub-block {j}"
            );
        }
        assert_eq!(pack_scales_k4(&want_sc, &want_m), s);
    }

    #[test]
    fn q4_k_scale_packing_every_value() {
        for v in 0..64u8 {
            let sc: [u8; 8] = core::array::from_fn(|j| (v + 7 * j as u8) % 64);
            let m: [u8; 8] = core::array::from_fn(|j| (63 - v + 5 * j as u8) % 64);
            let s = pack_scales_k4(&sc, &m);
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &s), (sc[j], m[j]));
            }
            assert_eq!(scales_mins_k4(&s), (sc, m));
        }
    }

    #[test]
    fn q4_k_word_decoding_matches_bytewise() {
        // Every byte value in every position (the words mix neighbouring bytes' bits).
        for pos in 0..12 {
            for v in 0..=255u8 {
                let mut s: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(91) ^ 0xA5);
                s[pos] = v;
                let want: ([u8; 8], [u8; 8]) = (
                    core::array::from_fn(|j| scale_min_k4(j, &s).0),
                    core::array::from_fn(|j| scale_min_k4(j, &s).1),
                );
                assert_eq!(scales_mins_k4(&s), want, "byte {pos} = {v}");
            }
        }
    }

    #[test]
    fn q4_k_element_order_and_values() {
        // Scales 1..=8, mins 0 except sub-block 3 (min 2);
        // byte 32c + l = (l % 16) | (15 − l % 16) << 4.
        let sc = [1, 2, 3, 4, 5, 6, 7, 8];
        let m = [0, 0, 0, 2, 0, 0, 0, 0];
        let mut qs = [0u8; 128];
        for (i, q) in qs.iter_mut().enumerate() {
            let l = (i % 32) as u8 % 16;
            *q = l | ((15 - l) << 4);
        }
        let b = BlockQ4_K {
            d: F16Le::from_f32(0.5),
            dmin: F16Le::from_f32(0.25),
            scales: pack_scales_k4(&sc, &m),
            qs,
        };
        let mut out = [0.0f32; QK_K];
        dequant_q4_k(as_bytes(&[b]), &mut out);
        for c in 0..4 {
            for l in 0..32 {
                let lo = (l % 16) as f32;
                let (j0, j1) = (2 * c, 2 * c + 1);
                let want0 = 0.5 * sc[j0] as f32 * lo - 0.25 * m[j0] as f32;
                let want1 = 0.5 * sc[j1] as f32 * (15.0 - lo) - 0.25 * m[j1] as f32;
                assert_eq!(out[64 * c + l], want0, "element {}", 64 * c + l);
                assert_eq!(out[64 * c + 32 + l], want1, "element {}", 64 * c + 32 + l);
            }
        }
        check_dot(dequant_q4_k, dot_q4_k_f32, as_bytes(&[b, b, b]), 3 * QK_K);
    }

    #[test]
    fn q6_k_one_hot_every_element() {
        // Code 32 (value 0) everywhere: low nibbles 0, every 2-bit high field 0b10. Then element
        // e gets low nibble 5 (code 37, value 5) through the documented interleave.
        let scales: [i8; 16] = core::array::from_fn(|j| j as i8 * 3 - 20);
        for e in 0..QK_K {
            let mut b = BlockQ6_K {
                ql: [0; 128],
                qh: [0b1010_1010; 64],
                scales,
                d: F16Le::from_f32(0.125),
            };
            let (h, r) = (e / 128, e % 128);
            let (k, l) = (r / 32, r % 32);
            let byte = 64 * h + l + 32 * (k % 2);
            b.ql[byte] = if k < 2 { 5 } else { 5 << 4 };
            let mut out = [1.0f32; QK_K];
            dequant_q6_k(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                let want = if i == e {
                    0.125 * scales[e / 16] as f32 * 5.0
                } else {
                    0.0
                };
                assert_eq!(v, want, "one-hot {e}, element {i}");
            }
        }
    }

    #[test]
    fn q6_k_high_bits_and_extremes() {
        // Low nibbles 15 and high fields 3: code 63 (+31); all zero: code 0 (−32).
        let top = BlockQ6_K {
            ql: [0xFF; 128],
            qh: [0xFF; 64],
            scales: [-128; 16],
            d: F16Le::from_f32(1.0),
        };
        let bottom = BlockQ6_K {
            ql: [0; 128],
            qh: [0; 64],
            scales: [127; 16],
            d: F16Le::from_f32(-2.0),
        };
        let mut out = [0.0f32; 2 * QK_K];
        dequant_q6_k(as_bytes(&[top, bottom]), &mut out);
        assert!(out[..QK_K].iter().all(|&v| v == -128.0 * 31.0));
        assert!(out[QK_K..].iter().all(|&v| v == -2.0 * 127.0 * -32.0));
        check_dot(
            dequant_q6_k,
            dot_q6_k_f32,
            as_bytes(&[top, bottom, top]),
            3 * QK_K,
        );
    }

    /// Rows of 1 and 3 blocks with sub-blocks of very different ranges.
    fn test_rows() -> Vec<Vec<f32>> {
        let mut rows = Vec::new();
        for (n_blocks, seed) in [(1, 11u64), (3, 12), (1, 13)] {
            let mut x = randoms(n_blocks * QK_K, seed);
            for (i, v) in x.iter_mut().enumerate() {
                // Sub-blocks of 16 weights scaled from 1e-3 to 10, some all positive.
                let g = i / 16;
                *v *= [1e-3, 0.05, 1.0, 10.0][g % 4];
                if g % 5 == 0 {
                    *v = v.abs() + 0.5;
                }
            }
            rows.push(x);
        }
        rows.push(vec![0.0; QK_K]);
        rows
    }

    #[test]
    fn q4_k_quantize_roundtrip() {
        // ggml's search may trade a clamped code for a smaller total error, so the bound is
        // loose: one step of the sub-block's own range plus the six-bit scale rounding (the exact
        // bytes are checked against ggml in tests/formats_reference.rs).
        for x in test_rows() {
            let mut q = vec![0u8; x.len() / QK_K * 144];
            quantize_q4_k(&x, &mut q);
            let mut back = vec![f32::NAN; x.len()];
            dequant_q4_k(&q, &mut back);
            check_within_step(&x, &back, 32, 15.0, 63.0);
            check_dot(dequant_q4_k, dot_q4_k_f32, &q, x.len());
        }
        // All zeros: zero scales, zero codes, zeros back.
        let mut q = vec![0xA5u8; 144];
        quantize_q4_k(&[0.0; QK_K], &mut q);
        assert!(q.iter().all(|&b| b == 0));
    }

    #[test]
    fn q6_k_quantize_roundtrip() {
        for x in test_rows() {
            let mut q = vec![0u8; x.len() / QK_K * 210];
            quantize_q6_k(&x, &mut q);
            let mut back = vec![f32::NAN; x.len()];
            dequant_q6_k(&q, &mut back);
            check_within_step(&x, &back, 16, 31.0, 127.0);
            check_dot(dequant_q6_k, dot_q6_k_f32, &q, x.len());
        }
        let mut q = vec![0xA5u8; 210];
        quantize_q6_k(&[0.0; QK_K], &mut q);
        assert!(q.iter().all(|&b| b == 0));
    }

    /// Every weight of `x` is within one step of its sub-block's range (`sub` weights, `levels`
    /// steps across `[min(lo, 0), max(hi, 0)]`) plus two units of the super-block's scale code
    /// (largest magnitude / `scale_levels`) of what `back` holds.
    fn check_within_step(x: &[f32], back: &[f32], sub: usize, levels: f32, scale_levels: f32) {
        for (j, (xs, ws)) in x.chunks(sub).zip(back.chunks(sub)).enumerate() {
            let lo = xs.iter().copied().fold(0.0f32, f32::min);
            let hi = xs.iter().copied().fold(0.0f32, f32::max);
            let step = (hi - lo) / levels;
            let sb = &x[j * sub / QK_K * QK_K..][..QK_K];
            let coarse = sb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / scale_levels;
            for (u, v) in xs.iter().zip(ws) {
                assert!(
                    (u - v).abs() <= step + 2.0 * coarse + 1e-6,
                    "sub-block {j}: {u} vs {v}"
                );
            }
        }
    }
}
