//! Q3_K and Q2_K: ggml's 256-weight k-quants of 3.4375 and 2.625 bits per weight, in sixteen
//! sub-blocks of 16 weights.
//!
//! Dequantization follows ggml's `dequantize_row_q3_K` / `dequantize_row_q2_K` operation for
//! operation (same products in the same order, no fused multiply-add), so it matches gguf-py's
//! numpy reference bit for bit.
//!
//! Unlike Q4_K/Q6_K's quantizers in `kquants.rs`, [`quantize_q3_k`] and [`quantize_q2_k`] are
//! ggml's reference quantizers (`quantize_row_q3_K_ref`, `quantize_row_q2_K_ref`, without an
//! importance matrix) step for step: the same per-sub-block scale searches
//! ([`make_q3_quants`], [`make_qkx2_quants`]), the same f32 operations in the same order, the
//! same round-half-to-even `nearest_int`. Three bits per weight leave little room, and a
//! file quantized here should dequantize to exactly what llama.cpp's `llama-quantize` writes
//! for the same input (`tests/formats_reference.rs` checks bytes against ggml's own library).
//!
//! The int8 path meets the weights with activations quantized per 32
//! ([`BlockQ8Act`](super::BlockQ8Act)): activation block k covers sub-blocks 2k and 2k + 1.
//! Everything up to one exact `i32` per activation block is integer; the float part is one
//! product per activation block, [`sum8_tree`], the super-block scale, in that order on every
//! backend, so all backends agree bit for bit (as for Q4_K/Q6_K).

use super::act::act_blocks;
use super::gemm::{dot_rows, gemm_q8};
use super::ggml_search::{make_qkx2_quants, nearest_int, GROUP_MAX_EPS};
use super::kquants::{
    dequant_sub_blocks, dequant_sub_blocks_min, dot_sub_blocks, dot_sub_blocks_min, sum8_tree,
};
use crate::blocks::{as_blocks, as_blocks_mut, BlockQ2_K, BlockQ3_K, F16Le};

/// Weights per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

// ---------------------------------------------------------------------------------------------
// The 2-bit planes both formats share

/// The 2-bit codes of `qs` in element order: element `128h + 32k + l` is bits `2k..2k+2` of
/// `qs[32h + l]` (Q2_K's codes, Q3_K's low bits).
#[inline(always)]
pub(super) fn two_bit_codes(qs: &[u8; 64]) -> [u8; QK_K] {
    core::array::from_fn(|e| {
        let (h, k, l) = (e / 128, (e / 32) % 4, e % 32);
        (qs[32 * h + l] >> (2 * k)) & 3
    })
}

/// The inverse of [`two_bit_codes`] for codes in 0..4.
fn pack_two_bit_codes(q: &[u8; QK_K]) -> [u8; 64] {
    core::array::from_fn(|i| {
        let (h, l) = (i / 32, i % 32);
        let e = 128 * h + l;
        q[e] | (q[e + 32] << 2) | (q[e + 64] << 4) | (q[e + 96] << 6)
    })
}

// ---------------------------------------------------------------------------------------------
// Q3_K

/// The sixteen six-bit scale codes of a Q3_K block (values `sc − 32`): the low four bits in a
/// nibble of `s[j % 8]` (low nibble for j < 8), the top two in bits `2·(j / 4)..` of
/// `s[8 + j % 4]`.
// The byte-wise spec: the kernels use `q3_k_scale_codes`, which the tests check against it.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the spec the tests check the kernels' form against"
    )
)]
fn q3_k_scale_code(j: usize, s: &[u8; 12]) -> u8 {
    let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    low | (high << 4)
}

/// [`q3_k_scale_code`] for every `j` at once, four bytes per `u32` operation (as ggml's
/// `dequantize_row_q3_K` decodes them): with the words `a = s[0..4]`, `b = s[4..8]`,
/// `c = s[8..12]`, scales 0..4 are `a & 15 | (c & 3) << 4` per byte, 4..8
/// `b & 15 | (c >> 2 & 3) << 4`, 8..12 `a >> 4 & 15 | (c >> 4 & 3) << 4` and 12..16
/// `b >> 4 & 15 | (c >> 6 & 3) << 4`. The SIMD bodies subtract the 32 themselves.
#[inline(always)]
pub(crate) fn q3_k_scale_codes(s: &[u8; 12]) -> [u8; 16] {
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW4: u32 = 0x0F0F_0F0F;
    const LOW2: u32 = 0x0303_0303;
    let words = [
        (a & LOW4) | ((c & LOW2) << 4),
        (b & LOW4) | (((c >> 2) & LOW2) << 4),
        ((a >> 4) & LOW4) | (((c >> 4) & LOW2) << 4),
        ((b >> 4) & LOW4) | (((c >> 6) & LOW2) << 4),
    ];
    let lo = words[0] as u64 | (words[1] as u64) << 32;
    let hi = words[2] as u64 | (words[3] as u64) << 32;
    (lo as u128 | (hi as u128) << 64).to_le_bytes()
}

/// The sixteen sub-block scales of a Q3_K block, `sc − 32` (so in −32..=31).
#[inline(always)]
pub(crate) fn q3_k_scales(s: &[u8; 12]) -> [i8; 16] {
    q3_k_scale_codes(s).map(|c| c as i8 - 32)
}

/// Codes of one Q3_K block in element order as values `q − 4·(1 − h)` in −4..=3: the 2-bit
/// code of [`two_bit_codes`], minus 4 unless bit `e / 32` of `hmask[e % 32]` is set.
#[inline(always)]
pub(super) fn q3_k_codes(b: &BlockQ3_K) -> [i8; QK_K] {
    let low = two_bit_codes(&b.qs);
    core::array::from_fn(|e| {
        let high = (b.hmask[e % 32] >> (e / 32)) & 1;
        low[e] as i8 - if high != 0 { 0 } else { 4 }
    })
}

/// Per sub-block `d·(sc − 32)`.
#[inline(always)]
pub(super) fn q3_k_steps(b: &BlockQ3_K) -> [f32; 16] {
    let d = b.d.to_f32();
    q3_k_scales(&b.scales).map(|sc| d * sc as f32)
}

/// Dequantizes a Q3_K row into `out`: element `e` is `(d·(sc − 32))·(q − 4·(1 − h))` with the
/// scale of sub-block `e / 16`.
pub fn dequant_q3_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ3_K] = as_blocks(row).expect("Q3_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequant_sub_blocks(&q3_k_codes(b), &q3_k_steps(b), o);
    }
}

/// Dot product of a Q3_K row with f32 activations: `Σ (d·(sc − 32))·(Σ q·x)` over sub-blocks,
/// with q the signed code of [`dequant_q3_k`].
pub fn dot_q3_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ3_K] = as_blocks(row).expect("Q3_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks(sum, &q3_k_codes(b), &q3_k_steps(b), x);
    }
    sum
}

/// Dot product of a Q3_K row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block).
///
/// With `i_s = Σ q·a` over sub-block s (signed codes, exact), activation block k's
/// `I_k = sc_2k·i_2k + sc_2k+1·i_2k+1` (scales minus 32) is an integer of magnitude at most
/// 2·32·4·127·16 < 2²⁰, exact in f32. Per super-block `d·sum8_tree([d_k · I_k as f32])`, added
/// to the running sum one super-block at a time.
pub fn dot_q3_k_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ3_K] = as_blocks(row).expect("Q3_K row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let q = q3_k_codes(b);
        let sc = q3_k_scales(&b.scales);
        let p = core::array::from_fn(|k| {
            let isum = |s: usize| -> i32 {
                let sub: i32 = q[16 * s..16 * s + 16]
                    .iter()
                    .zip(&a[k].qs[16 * (s - 2 * k)..])
                    .map(|(&q, &a)| q as i32 * a as i32)
                    .sum();
                sc[s] as i32 * sub
            };
            a[k].d() * (isum(2 * k) + isum(2 * k + 1)) as f32
        });
        sum += b.d.to_f32() * sum8_tree(p);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q3_K exactly as ggml's `quantize_row_q3_K_ref`.
///
/// Per sub-block of 16, ggml's `make_q3_quants` picks a signed scale and codes in −4..=3; the
/// scales are quantized to six bits against the one of largest magnitude (`d` = that scale
/// / −32, so it takes code 0), and every code is recomputed against its final scale
/// `d·(sc − 32)`, nearest, clamped to −4..=3.
pub fn quantize_q3_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ3_K] = as_blocks_mut(out).expect("output is whole Q3_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        // Codes offset by 4 (0..8) from the search, unless it found an all-zero sub-block.
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for (j, (x, l)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
            scales[j] = make_q3_quants(x.try_into().expect("16 weights"), l, 4);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }

        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &scale) in scales.iter().enumerate() {
                // ggml stores nearest_int's result in an int8_t: `as` wraps the same way.
                let code = ((nearest_int(iscale * scale) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = code & 0x0F;
                } else {
                    b.scales[j - 8] |= (code & 0x0F) << 4;
                }
                b.scales[8 + j % 4] |= (code >> 4) << (2 * (j / 4));
            }
            b.d = F16Le::from_f32(1.0 / iscale);
        } else {
            b.d = F16Le::from_f32(0.0);
        }

        let d = b.d.to_f32();
        for ((sc, x), l) in q3_k_scales(&b.scales)
            .iter()
            .zip(x.chunks_exact(16))
            .zip(l.chunks_exact_mut(16))
        {
            let step = d * *sc as f32;
            if step == 0.0 {
                continue;
            }
            for (v, l) in x.iter().zip(l) {
                *l = (nearest_int(v / step).clamp(-4, 3) + 4) as u8;
            }
        }

        // High bit of element e into bit e / 32 of hmask[e % 32]; low bits into qs.
        b.hmask = [0; 32];
        for (e, l) in l.iter_mut().enumerate() {
            if *l > 3 {
                b.hmask[e % 32] |= 1 << (e / 32);
                *l -= 4;
            }
        }
        b.qs = pack_two_bit_codes(&l);
    }
}

// ---------------------------------------------------------------------------------------------
// Q2_K

/// Per sub-block `(d·sc, dmin·m)`: the step and the offset subtracted from `step·q`.
#[inline(always)]
pub(super) fn q2_k_steps(b: &BlockQ2_K) -> [(f32, f32); 16] {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    b.scales
        .map(|s| (d * (s & 0x0F) as f32, dmin * (s >> 4) as f32))
}

/// Dequantizes a Q2_K row into `out`: element `e` is `(d·sc)·q − dmin·m` with the scale and min
/// of sub-block `e / 16`.
pub fn dequant_q2_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ2_K] = as_blocks(row).expect("Q2_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequant_sub_blocks_min(&two_bit_codes(&b.qs), &q2_k_steps(b), o);
    }
}

/// Dot product of a Q2_K row with f32 activations: `Σ (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)` over
/// sub-blocks.
pub fn dot_q2_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ2_K] = as_blocks(row).expect("Q2_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks_min(sum, &two_bit_codes(&b.qs), &q2_k_steps(b), x);
    }
    sum
}

/// Dot product of a Q2_K row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block).
///
/// For activation block k (sub-blocks 2k, 2k + 1), with `i_s = Σ q·a` and `t_s = Σ a` over
/// sub-block s (exact): `I_k = sc_2k·i_2k + sc_2k+1·i_2k+1` (at most 2·15·3·127·16 < 2¹⁸) and
/// `M_k = m_2k·t_2k + m_2k+1·t_2k+1` (magnitude at most 2·15·127·16 < 2¹⁶), both exact in f32.
/// Per super-block `d·sum8_tree([d_k · I_k]) − dmin·sum8_tree([d_k · M_k])`, added to the
/// running sum one super-block at a time. (The min term needs the activation sums of each
/// 16-half, so it cannot use the block sum `s` the way Q4_K does.)
pub fn dot_q2_k_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ2_K] = as_blocks(row).expect("Q2_K row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let q = two_bit_codes(&b.qs);
        let sums = |k: usize, s: usize| -> (i32, i32) {
            let (mut qa, mut t) = (0i32, 0i32);
            for (&q, &a) in q[16 * s..16 * s + 16]
                .iter()
                .zip(&a[k].qs[16 * (s - 2 * k)..])
            {
                qa += q as i32 * a as i32;
                t += a as i32;
            }
            let sc = b.scales[s];
            ((sc & 0x0F) as i32 * qa, (sc >> 4) as i32 * t)
        };
        let mut p = [0.0f32; 8];
        let mut mins = [0.0f32; 8];
        for k in 0..8 {
            let ((i0, m0), (i1, m1)) = (sums(k, 2 * k), sums(k, 2 * k + 1));
            p[k] = a[k].d() * (i0 + i1) as f32;
            mins[k] = a[k].d() * (m0 + m1) as f32;
        }
        sum += b.d.to_f32() * sum8_tree(p) - b.dmin.to_f32() * sum8_tree(mins);
    }
    sum
}

/// Quantizes `x` (a multiple of 256 long) to Q2_K exactly as ggml's `quantize_row_q2_K_ref`.
///
/// Per sub-block of 16, ggml's `make_qkx2_quants` fits a scale and a min (weights `|x|`, least
/// absolute deviation); both are quantized to four bits against their largest (`d` = max
/// scale / 15, `dmin` = max min / 15), and every code is recomputed against its final
/// `(d·sc, dmin·m)`, nearest, clamped to 0..=3.
pub fn quantize_q2_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ2_K] = as_blocks_mut(out).expect("output is whole Q2_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    const Q4SCALE: f32 = 15.0;
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for (j, (x, l)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
            let x: &[f32; 16] = x.try_into().expect("16 weights");
            let weights = x.map(f32::abs);
            let mut laux = [0u8; 16];
            (scales[j], mins[j]) =
                make_qkx2_quants(x, &weights, 3, l, &mut laux, -0.5, 0.1, 15, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        // ggml stores nearest_int's results in uint8_t fields: `as u8` wraps the same way.
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (s, &scale) in b.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * scale) as u8;
            }
            b.d = F16Le::from_f32(max_scale / Q4SCALE);
        } else {
            b.scales = [0; 16];
            b.d = F16Le::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (s, &min) in b.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * min) << 4) as u8;
            }
            b.dmin = F16Le::from_f32(max_min / Q4SCALE);
        } else {
            b.dmin = F16Le::from_f32(0.0);
        }

        for ((&(step, min), x), l) in q2_k_steps(b)
            .iter()
            .zip(x.chunks_exact(16))
            .zip(l.chunks_exact_mut(16))
        {
            if step == 0.0 {
                continue;
            }
            for (v, l) in x.iter().zip(l) {
                *l = nearest_int((v + min) / step).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_two_bit_codes(&l);
    }
}

// ---------------------------------------------------------------------------------------------
// Many rows

/// `y[r] = row r · x` for the `y.len()` Q3_K rows in `w`.
pub fn dot_rows_q3_k_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q3_k_f32)
}

/// `y[r] = row r · x` for the `y.len()` Q2_K rows in `w`.
pub fn dot_rows_q2_k_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q2_k_f32)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q3_K rows and `n` int8 activation rows.
pub fn gemm_q3_k_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q3_k_q8)
}

/// `y[t·ldy + r] = row r · token t` for `m` Q2_K rows and `n` int8 activation rows.
pub fn gemm_q2_k_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q2_k_q8)
}

// ---------------------------------------------------------------------------------------------
// ggml's scale searches, operation for operation (every `a*b*c` is `(a*b)*c`, no fusing)

/// ggml's `make_q3_quants` with `do_rmse`: a signed scale for the 16 weights of `x` and their
/// codes `l` in `0..2·nmax` (offset by `nmax`), returned as the scale.
///
/// Starts from the scale that maps the weight of largest magnitude to code −nmax, then, up to
/// five passes, moves single codes wherever that raises `(Σ w·x·l)² / Σ w·l²` with weights
/// `w = x²` (the weighted least-squares fit of a scale), and returns that fit's scale. An
/// all-zero sub-block (largest magnitude below [`GROUP_MAX_EPS`]) gets scale 0 and codes 0,
/// not offset.
fn make_q3_quants(x: &[f32; 16], l: &mut [u8], nmax: i32) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -nmax as f32 / max;
    let mut codes = [0i32; 16];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (&v, c) in x.iter().zip(&mut codes) {
        *c = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *c as f32;
        suml2 += w * *c as f32 * *c as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (&v, c) in x.iter().zip(&mut codes) {
            let w = v * v;
            let mut slx = sumlx - w * v * *c as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * *c as f32 * *c as f32;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != *c {
                    slx += w * v * new as f32;
                    sl2 += w * new as f32 * new as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *c = new;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (l, c) in l.iter_mut().zip(codes) {
        *l = (c + nmax) as u8;
    }
    sumlx / suml2
}

#[cfg(test)]
mod tests {
    //! Element order from hand-built blocks, scale packing, and the search helpers' corner
    //! cases. Agreement with independent implementations (gguf-py's dequantizers, ggml's own
    //! quantizers) is `tests/formats_reference.rs`.

    use super::*;
    use crate::blocks::as_bytes;

    #[test]
    fn q3_k_word_decoding_matches_bytewise() {
        // Every byte value in every position (the words mix neighbouring bytes' bits).
        for pos in 0..12 {
            for v in 0..=255u8 {
                let mut s: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(77) ^ 0x3C);
                s[pos] = v;
                let want: [u8; 16] = core::array::from_fn(|j| q3_k_scale_code(j, &s));
                assert_eq!(q3_k_scale_codes(&s), want, "byte {pos} = {v}");
            }
        }
    }

    #[test]
    fn q3_k_scale_packing_every_value() {
        // The quantizer's packing (written out here) against the decoder, every six-bit value
        // in every position.
        for v in 0..64u8 {
            let codes: [u8; 16] = core::array::from_fn(|j| (v + 11 * j as u8) % 64);
            let mut s = [0u8; 12];
            for (j, &c) in codes.iter().enumerate() {
                s[j % 8] |= (c & 0x0F) << (4 * (j / 8));
                s[8 + j % 4] |= (c >> 4) << (2 * (j / 4));
            }
            let want: [i8; 16] = codes.map(|c| c as i8 - 32);
            assert_eq!(q3_k_scales(&s), want);
        }
    }

    #[test]
    fn q3_k_one_hot_every_element() {
        // All codes 0 with high bits set (value 0); then element e gets low bits 3 and its high
        // bit cleared (value 3 − 4 = −1) through the documented interleave.
        let mut scales = [0u8; 12];
        for j in 0..16 {
            let c = (j as u8 * 5 + 1) % 64;
            scales[j % 8] |= (c & 0x0F) << (4 * (j / 8));
            scales[8 + j % 4] |= (c >> 4) << (2 * (j / 4));
        }
        let sc = q3_k_scales(&scales);
        for e in 0..QK_K {
            let mut b = BlockQ3_K {
                hmask: [0xFF; 32],
                qs: [0; 64],
                scales,
                d: F16Le::from_f32(0.5),
            };
            let (h, k, l) = (e / 128, (e / 32) % 4, e % 32);
            b.qs[32 * h + l] = 3 << (2 * k);
            b.hmask[l] &= !(1 << (e / 32));
            let mut out = [1.0f32; QK_K];
            dequant_q3_k(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                let want = if i == e {
                    -(0.5 * sc[e / 16] as f32)
                } else {
                    0.0
                };
                assert_eq!(v, want, "one-hot {e}, element {i}");
            }
        }
    }

    #[test]
    fn q2_k_one_hot_every_element() {
        let scales: [u8; 16] = core::array::from_fn(|j| (j as u8) | ((15 - j as u8) << 4));
        for e in 0..QK_K {
            let mut b = BlockQ2_K {
                scales,
                qs: [0; 64],
                d: F16Le::from_f32(0.25),
                dmin: F16Le::from_f32(0.125),
            };
            let (h, k, l) = (e / 128, (e / 32) % 4, e % 32);
            b.qs[32 * h + l] = 2 << (2 * k);
            let mut out = [0.0f32; QK_K];
            dequant_q2_k(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                let (sc, m) = ((scales[i / 16] & 15) as f32, (scales[i / 16] >> 4) as f32);
                let q = if i == e { 2.0 } else { 0.0 };
                assert_eq!(v, 0.25 * sc * q - 0.125 * m, "one-hot {e}, element {i}");
            }
        }
    }

    #[test]
    fn two_bit_packing_round_trips() {
        let q: [u8; QK_K] = core::array::from_fn(|e| ((e * 7 + e / 5) % 4) as u8);
        assert_eq!(two_bit_codes(&pack_two_bit_codes(&q)), q);
    }

    #[test]
    fn make_q3_quants_zero_and_constant() {
        let mut l = [9u8; 16];
        assert_eq!(make_q3_quants(&[0.0; 16], &mut l, 4), 0.0);
        assert_eq!(l, [0; 16]);
        // A constant sub-block: every weight at code −4 (offset 0), scale −x/4.
        let s = make_q3_quants(&[2.0; 16], &mut l, 4);
        assert_eq!(l, [0; 16]);
        assert_eq!(s, -0.5);
    }
}
