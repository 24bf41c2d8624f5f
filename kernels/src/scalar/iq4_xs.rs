//! IQ4_XS: ggml's 4.25-bit non-linear format, 256-weight super-blocks of eight 32-weight
//! sub-blocks, each with a six-bit scale, and 4-bit indices into IQ4_NL's 16-value codebook.
//!
//! Dequantization follows ggml's `dequantize_row_iq4_xs` operation for operation (per
//! sub-block `dl = d·(sc − 32)`, then `dl·T[q]`), so it matches gguf-py's numpy reference bit
//! for bit. Because the codebook has 16 entries, every SIMD path decodes it as it decodes
//! Q4_0's codes: one table lookup per 16 or 32 codes (`vpshufb`, `tbl`, `vpermps`), so the
//! format costs what a 4-bit k-quant costs.
//!
//! The int8 path meets the weights with activations quantized per 32
//! ([`BlockQ8Act`](super::BlockQ8Act)), one activation block per sub-block: `i_j = Σ T[q]·a`
//! is exact, and so is `(sc_j − 32)·i_j`, of magnitude at most 32·127·127·32 < 2²⁴; the float
//! part is the fixed sequence of `dot_q4_k_q8` (one product per activation block,
//! [`sum8_tree`], the super-block scale), so every backend agrees bit for bit.

use super::act::{act_blocks, lut4, IQ4_NL_VALUES};
use super::gemm::{dot_rows, gemm_q8};
use super::ggml_search::nearest_int;
use super::iq4_nl::{iq4_nl_block_scale, iq4_nl_index};
use super::kquants::{dequant_sub_blocks, dot_sub_blocks, sum8_tree};
use crate::blocks::{as_blocks, as_blocks_mut, BlockIQ4_XS, F16Le};

/// Weights per super-block (ggml's `QK_K`).
const QK_K: usize = 256;

/// The eight sub-block scales minus 32 (in −32..=31): sub-block j's six bits are nibble `j % 2`
/// of `scales_l[j / 2]` and, above them, bits `2j..2j + 2` of `scales_h`.
#[inline(always)]
pub fn iq4_xs_scales(b: &BlockIQ4_XS) -> [i8; 8] {
    let h = u16::from_le_bytes(b.scales_h);
    core::array::from_fn(|j| {
        let low = (b.scales_l[j / 2] >> (4 * (j % 2))) & 0x0F;
        let high = ((h >> (2 * j)) & 3) as u8;
        (low | high << 4) as i8 - 32
    })
}

/// Per sub-block `d·(sc − 32)`: ggml's `dl`.
#[inline(always)]
pub(crate) fn iq4_xs_steps(b: &BlockIQ4_XS) -> [f32; 8] {
    let d = b.d.to_f32();
    iq4_xs_scales(b).map(|s| d * s as f32)
}

/// Codebook values of one IQ4_XS block in element order: byte `16j + i` holds element
/// `32j + i` in its low nibble and `32j + 16 + i` in its high one.
#[inline(always)]
pub(super) fn iq4_xs_values(qs: &[u8; 128]) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for (run, v) in qs.chunks_exact(16).zip(v.chunks_exact_mut(32)) {
        v.copy_from_slice(&lut4(run.try_into().expect("16 bytes"), &IQ4_NL_VALUES));
    }
    v
}

/// Dequantizes an IQ4_XS row into `out`: element `e` is `(d·(sc − 32))·T[q]` with the scale of
/// sub-block `e / 32`.
pub fn dequant_iq4_xs(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockIQ4_XS] = as_blocks(row).expect("IQ4_XS row is whole blocks");
    assert_eq!(blocks.len() * QK_K, out.len());
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        dequant_sub_blocks(&iq4_xs_values(&b.qs), &iq4_xs_steps(b), o);
    }
}

/// Dot product of an IQ4_XS row with f32 activations: `Σ (d·(sc − 32))·(Σ T[q]·x)` over
/// sub-blocks.
pub fn dot_iq4_xs_f32(row: &[u8], x: &[f32]) -> f32 {
    let blocks: &[BlockIQ4_XS] = as_blocks(row).expect("IQ4_XS row is whole blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    let mut sum = 0.0f32;
    for (b, x) in blocks.iter().zip(x.chunks_exact(QK_K)) {
        sum = dot_sub_blocks(sum, &iq4_xs_values(&b.qs), &iq4_xs_steps(b), x);
    }
    sum
}

/// `y[r] = row r · x` for the `y.len()` IQ4_XS rows in `w`.
pub fn dot_rows_iq4_xs_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    dot_rows(w, x, y, dot_iq4_xs_f32)
}

/// Dot product of an IQ4_XS row with int8 activations (eight
/// [`BlockQ8Act`](super::BlockQ8Act) per super-block): per super-block
/// `d·sum8_tree([d_j · ((sc_j − 32)·i_j) as f32])` with `i_j = Σ T[q]·a` over sub-block j (exact,
/// see the module notes), added to the running sum one super-block at a time.
pub fn dot_iq4_xs_q8(row: &[u8], xq: &[u8]) -> f32 {
    let blocks: &[BlockIQ4_XS] = as_blocks(row).expect("IQ4_XS row is whole blocks");
    let acts = act_blocks(xq, 8 * blocks.len());
    let mut sum = 0.0f32;
    for (b, a) in blocks.iter().zip(acts.chunks_exact(8)) {
        let sc = iq4_xs_scales(b);
        let v = iq4_xs_values(&b.qs);
        let p = core::array::from_fn(|j| {
            let isum: i32 = v[32 * j..32 * j + 32]
                .iter()
                .zip(&a[j].qs)
                .map(|(&v, &a)| v as i32 * a as i32)
                .sum();
            a[j].d() * (sc[j] as i32 * isum) as f32
        });
        sum += b.d.to_f32() * sum8_tree(p);
    }
    sum
}

/// `y[t·ldy + r] = row r · token t` for `m` IQ4_XS rows and `n` int8 activation rows.
pub fn gemm_iq4_xs_q8(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize) {
    gemm_q8(w, m, xq, n, y, ldy, dot_iq4_xs_q8)
}

/// Quantizes `x` (a multiple of 256 long) to IQ4_XS as ggml does without importance weights
/// (`quantize_iq4_xs`: `quantize_row_iq4_nl_impl` with 256-weight super-blocks of 32, weights
/// `x²`, `ntry = 7`). Each sub-block's scale is IQ4_NL's (`iq4_nl_block_scale`); the one of
/// largest magnitude, `s`, sets the super-block scale `d = −s/32` (stored as f16), each
/// sub-block scale becomes `l = nearest_int(s_j/d)` clamped to −32..=31 (stored as `l + 32`),
/// and every element takes the codebook index nearest `x/(d·l)`, with `d` the f32 value before
/// rounding to f16, as the C source computes it.
pub fn quantize_iq4_xs(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockIQ4_XS] = as_blocks_mut(out).expect("output is whole IQ4_XS blocks");
    assert_eq!(blocks.len() * QK_K, x.len());
    for (b, x) in blocks.iter_mut().zip(x.chunks_exact(QK_K)) {
        let scales: [f32; 8] = core::array::from_fn(|j| iq4_nl_block_scale(&x[32 * j..][..32]));
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &s in &scales {
            if s.abs() > amax {
                amax = s.abs();
                max = s;
            }
        }
        // −0.0 when every scale is zero, as in C (the stored f16 is then 0x8000).
        let d = -max / 32.0;
        b.d = F16Le::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (mut h, mut l_bits) = (0u16, [0u8; 4]);
        let mut codes = [0u8; QK_K];
        for (j, (xs, c)) in x
            .chunks_exact(32)
            .zip(codes.chunks_exact_mut(32))
            .enumerate()
        {
            let l = nearest_int(id * scales[j]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (c, &v) in c.iter_mut().zip(xs) {
                *c = iq4_nl_index(idl * v);
            }
            let u = (l + 32) as u8;
            l_bits[j / 2] |= (u & 0x0F) << (4 * (j % 2));
            h |= u16::from(u >> 4) << (2 * j);
        }
        b.scales_h = h.to_le_bytes();
        b.scales_l = l_bits;
        for (q, c) in b.qs.chunks_exact_mut(16).zip(codes.chunks_exact(32)) {
            for i in 0..16 {
                q[i] = c[i] | c[16 + i] << 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Scale unpacking and element order from hand-built blocks. Agreement with gguf-py is
    //! `tests/formats_reference.rs`.

    use super::*;
    use crate::blocks::{as_bytes, F16Le};

    /// Packs eight scales (0..64) as `iq4_xs_scales` unpacks them.
    fn pack(sc: [u8; 8]) -> ([u8; 2], [u8; 4]) {
        let mut h = 0u16;
        let mut l = [0u8; 4];
        for (j, &s) in sc.iter().enumerate() {
            l[j / 2] |= (s & 0x0F) << (4 * (j % 2));
            h |= ((s >> 4) as u16) << (2 * j);
        }
        (h.to_le_bytes(), l)
    }

    #[test]
    fn iq4_xs_scales_every_value() {
        for v in 0..64u8 {
            let sc: [u8; 8] = core::array::from_fn(|j| (v + 11 * j as u8) % 64);
            let (scales_h, scales_l) = pack(sc);
            let b = BlockIQ4_XS {
                d: F16Le::from_f32(1.0),
                scales_h,
                scales_l,
                qs: [0; 128],
            };
            assert_eq!(iq4_xs_scales(&b), sc.map(|s| s as i8 - 32));
        }
    }

    #[test]
    fn iq4_xs_element_order_and_values() {
        // Byte 16j + i = (i) | (15 − i) << 4: element 32j + i reads T[i], 32j + 16 + i T[15 − i].
        let sc = [0, 1, 31, 32, 33, 40, 62, 63];
        let (scales_h, scales_l) = pack(sc);
        let b = BlockIQ4_XS {
            d: F16Le::from_f32(0.25),
            scales_h,
            scales_l,
            qs: core::array::from_fn(|k| (k % 16) as u8 | (15 - (k % 16) as u8) << 4),
        };
        let mut out = [0.0f32; QK_K];
        dequant_iq4_xs(as_bytes(&[b]), &mut out);
        for j in 0..8 {
            let dl = 0.25 * (sc[j] as f32 - 32.0);
            for i in 0..16 {
                assert_eq!(out[32 * j + i], dl * IQ4_NL_VALUES[i] as f32);
                assert_eq!(out[32 * j + 16 + i], dl * IQ4_NL_VALUES[15 - i] as f32);
            }
        }
        let x: [f32; QK_K] = core::array::from_fn(|i| (i % 7) as f32 - 3.0);
        let want: f32 = out.iter().zip(&x).map(|(w, x)| w * x).sum();
        let got = dot_iq4_xs_f32(as_bytes(&[b]), &x);
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    /// Round trip: every element dequantizes to the codebook value nearest it for its
    /// sub-block's stored step (the quantizer's last pass picks exactly those), the scales
    /// cover −32..=31 with the largest sub-block at −32, and a zero super-block writes
    /// ggml's bytes (`d = −0.0`, every scale 32, every index that of the value nearest 0).
    #[test]
    fn quantize_iq4_xs_round_trip() {
        let mut s = 0x9E37_79B9u32;
        let x: [f32; 2 * QK_K] = core::array::from_fn(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            // Sub-blocks of very different magnitudes, one of them all zero.
            match i / 32 {
                3 => 0.0,
                k => v * (1 + k % 5) as f32,
            }
        });
        let mut out = [0u8; 2 * 136];
        quantize_iq4_xs(&x, &mut out);
        let blocks: &[BlockIQ4_XS] = as_blocks(&out).unwrap();
        let mut deq = [0.0f32; 2 * QK_K];
        dequant_iq4_xs(&out, &mut deq);
        for (b, (x, y)) in blocks
            .iter()
            .zip(x.chunks_exact(QK_K).zip(deq.chunks_exact(QK_K)))
        {
            let sc = iq4_xs_scales(b);
            assert!(sc.contains(&-32) || sc.contains(&31), "{sc:?}");
            let steps = iq4_xs_steps(b);
            for (k, (&xv, &yv)) in x.iter().zip(y).enumerate() {
                let dl = steps[k / 32];
                let nearest = IQ4_NL_VALUES
                    .iter()
                    .map(|&t| dl * t as f32)
                    .min_by(|a, b| (a - xv).abs().total_cmp(&(b - xv).abs()))
                    .unwrap();
                // The indices are picked for the f32 step, the stored one is rounded to f16 (relative
                // 2⁻¹¹): near a midpoint the neighbour may win by that much of |x|.
                assert!(
                    (yv - xv).abs() <= (nearest - xv).abs() + 2e-3 * xv.abs(),
                    "element {k}: {xv} → {yv}, nearest {nearest}"
                );
            }
        }
        let mut zero = [0u8; 136];
        quantize_iq4_xs(&[0.0; QK_K], &mut zero);
        let b: &[BlockIQ4_XS] = as_blocks(&zero).unwrap();
        assert_eq!(b[0].d.0, [0x00, 0x80]);
        assert_eq!(iq4_xs_scales(&b[0]), [0; 8]);
        assert!(
            b[0].qs.iter().all(|&q| q == 0x88),
            "index 8 (value 1) is nearest 0"
        );
    }
}
