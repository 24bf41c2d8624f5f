//! Q5_K: ggml's 5-bit k-quant, Q4_K's super-block with one more bit per code.
//!
//! Dequantization follows ggml's `dequantize_row_q5_K` operation for operation (`d·sc` and
//! `dmin·m` per sub-block, then `step·q − min`, unfused), so it matches gguf-py's numpy
//! reference bit for bit. The f32 dot and the int8 path are Q4_K's with 5-bit codes
//! (see `kquants.rs`): the int8 sum `sc·Σ q·a` stays below 63·31·127·32 < 2²⁴, exact in f32.
//!
//! [`quantize_q5_k`] is ggml's reference quantizer (`quantize_row_q5_K_ref`, llama.cpp's choice
//! when no importance matrix is given), ported operation for operation in plain f32 so it
//! writes the same bytes as llama.cpp for the same input: Q4_K's scheme
//! (`make_qkx2_quants`' weighted search for each sub-block's scale and min, the six-bit codes
//! from the largest of them, the final codes rounded against the stored scales) with 32 levels.

use super::act::act_blocks;
use super::gemm::{dot_rows, gemm_q8};
use super::kquants::{
    dequant_sub_blocks_min, dot_sub_blocks_min, k4_steps, quantize_k4_block, scales_mins_k4,
    sum8_tree,
};
use crate::blocks::{as_blocks, as_blocks_mut, BlockQ5_K};

/// Weights per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

/// Codes (0..32) of one Q5_K block in element order: element `64c + l` (sub-block 2c) is the
/// low nibble of `qs[32c + l]` plus bit `2c` of `qh[l]` as its fifth bit, element
/// `64c + 32 + l` (sub-block 2c + 1) the high nibble plus bit `2c + 1`.
#[inline(always)]
pub(super) fn q5_k_codes(b: &BlockQ5_K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (c, chunk) in b.qs.chunks_exact(32).enumerate() {
        for (l, (&byte, &h)) in chunk.iter().zip(&b.qh).enumerate() {
            q[64 * c + l] = (byte & 0x0F) | ((h >> (2 * c)) & 1) << 4;
            q[64 * c + 32 + l] = (byte >> 4) | ((h >> (2 * c + 1)) & 1) << 4;
        }
    }
    q
}

/// Dequantizes a Q5_K row into `out`: element `e` is `d·sc·q − dmin·m` with the six-bit scale
/// and min of sub-block `e / 32`.
pub fn dequant_q5_k(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ5_K] = as_blocks(row).expect("Q5_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequant_sub_blocks_min(&q5_k_codes(b), &k4_steps(b.d, b.dmin, &b.scales), o);
    }
}

/// Dot product of a Q5_K row with f32 activations: `Σ (d·sc)·(Σ q·x) − (dmin·m)·(Σ x)` over
/// sub-blocks.
pub fn dot_q5_k_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockQ5_K] = as_blocks(row).expect("Q5_K row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks_min(sum, &q5_k_codes(b), &k4_steps(b.d, b.dmin, &b.scales), x);
    }
    sum
}

/// `y[r] = row r · x` for the `y.len()` Q5_K rows in `w`.
pub fn dot_rows_q5_k_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_q5_k_f32)
}

/// Dot product of a Q5_K row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block): Q4_K's formula
/// ([`dot_q4_k_q8`](super::dot_q4_k_q8)) with 5-bit codes,
/// `d·sum8_tree([d_j · (sc_j·i_j) as f32]) − dmin·sum8_tree([s_j · m_j as f32])` per super-block,
/// `i_j = Σ q·a` over sub-block j. `sc_j·i_j` is below 63·31·127·32 < 2²⁴: exact.
pub fn dot_q5_k_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockQ5_K] = as_blocks(row).expect("Q5_K row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let (sc, m) = scales_mins_k4(&b.scales);
        let q = q5_k_codes(b);
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

/// `y[t·ldy + r] = row r · token t` for `m` Q5_K rows and `n` int8 activation rows.
pub fn gemm_q5_k_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_q5_k_q8)
}

// ---------------------------------------------------------------------------------------------
// ggml's reference quantizer

/// Quantizes `x` (a multiple of 256 long) to Q5_K exactly as ggml's `quantize_row_q5_K_ref`
/// does (so the bytes equal llama.cpp's without an importance matrix).
///
/// Q4_K's scheme (`quantize_k4_block`) with 32 levels and ggml's Q5_K search parameters
/// (16 trial step counts from −0.5 by 0.1), the fifth bits split off into `qh`.
pub fn quantize_q5_k(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ5_K] = as_blocks_mut(out).expect("output is whole Q5_K blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales, l) = quantize_k4_block(x, 31, -0.5, 0.1, 15);
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        // The inverse of `q5_k_codes`.
        b.qh = [0; 32];
        for c in 0..4 {
            for i in 0..32 {
                let (lo, hi) = (l[64 * c + i], l[64 * c + 32 + i]);
                b.qs[32 * c + i] = (lo & 0x0F) | (hi & 0x0F) << 4;
                b.qh[i] |= (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Element order from hand-built blocks and the quantizer's round trip. Agreement with
    //! independent implementations (gguf-py's dequantizer, ggml's quantizer) is
    //! `tests/formats_reference.rs`.

    use super::*;
    use crate::blocks::{as_bytes, F16Le};
    use crate::scalar::kquants::pack_scales_k4;

    extern crate alloc;
    use crate::scalar::tests::randoms;
    use alloc::vec;

    #[test]
    fn q5_k_one_hot_high_bits() {
        // Every low nibble 3, scales 1..=8, mins 0: element e reads 3 unless its qh bit is
        // set, then 19. Set each element's bit alone and check every element.
        let sc = [1, 2, 3, 4, 5, 6, 7, 8];
        for e in 0..QK_K {
            let (c, r) = (e / 64, e % 64);
            let (s, l) = (r / 32, r % 32);
            let mut b = BlockQ5_K {
                d: F16Le::from_f32(0.5),
                dmin: F16Le::from_f32(0.25),
                scales: pack_scales_k4(&sc, &[0; 8]),
                qh: [0; 32],
                qs: [0x33; 128],
            };
            b.qh[l] = 1 << (2 * c + s);
            let mut out = [0.0f32; QK_K];
            dequant_q5_k(as_bytes(&[b]), &mut out);
            for (i, &v) in out.iter().enumerate() {
                let q = if i == e { 19.0 } else { 3.0 };
                assert_eq!(v, 0.5 * sc[i / 32] as f32 * q, "one-hot {e}, element {i}");
            }
        }
    }

    #[test]
    fn q5_k_mins_and_extremes() {
        // All bytes 0xFF: code 31, scale and min 63 everywhere.
        let b = BlockQ5_K {
            d: F16Le::from_f32(2.0),
            dmin: F16Le::from_f32(-1.0),
            scales: [0xFF; 12],
            qh: [0xFF; 32],
            qs: [0xFF; 128],
        };
        let mut out = [0.0f32; QK_K];
        dequant_q5_k(as_bytes(&[b]), &mut out);
        assert!(out.iter().all(|&v| v == 2.0 * 63.0 * 31.0 + 63.0));
        // And the f32 dot with ones is their sum.
        let dot = dot_q5_k_f32(as_bytes(&[b]), &[1.0; QK_K]);
        assert_eq!(dot, 256.0 * (2.0 * 63.0 * 31.0 + 63.0));
    }

    #[test]
    fn quantize_q5_k_round_trip() {
        // The search fits each sub-block's range with 32 levels: the error stays well inside
        // one step of the sub-block's own range (a loose bound; the exact bytes are checked
        // against ggml in tests/formats_reference.rs).
        for (blocks, seed) in [(1usize, 21u64), (3, 22)] {
            let mut x = randoms(blocks * QK_K, seed);
            for (i, v) in x.iter_mut().enumerate() {
                *v *= [1e-3, 0.05, 1.0, 10.0][(i / 32) % 4];
                if (i / 32) % 3 == 0 {
                    *v = v.abs() + 0.5;
                }
            }
            let mut q = vec![0u8; blocks * 176];
            quantize_q5_k(&x, &mut q);
            let mut back = vec![f32::NAN; x.len()];
            dequant_q5_k(&q, &mut back);
            for (j, (xs, ws)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let lo = xs.iter().copied().fold(0.0f32, f32::min);
                let hi = xs.iter().copied().fold(lo, f32::max);
                let step = (hi - lo) / 31.0;
                // The super-block's six-bit scale codes add up to max/63 per sub-block.
                let sb = &x[j / 8 * QK_K..][..QK_K];
                let coarse = sb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 63.0;
                for (u, v) in xs.iter().zip(ws) {
                    assert!(
                        (u - v).abs() <= step + 2.0 * coarse + 1e-6,
                        "sub-block {j}: {u} vs {v}"
                    );
                }
            }
        }
        // All zeros: zero scales, zero codes, zeros back.
        let mut q = vec![0xA5u8; 176];
        quantize_q5_k(&[0.0; QK_K], &mut q);
        assert!(q.iter().all(|&b| b == 0));
    }
}
