//! The register tile of the int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 with the dot product extension
//! (`scalar::repack` defines the layout and the arithmetic; `arch::repacked` drives the tiles).
//!
//! Why hand-written: one 16-byte load of a repacked block group is the same four codes of four
//! rows, so `sdot` against one activation dword broadcast to every lane leaves each row's
//! partial sum in its own lane, with no horizontal sums (the `dot_*_q8` row kernels pay one
//! per row and block). The tile is 8 rows (one row group, two vectors) × 4 tokens. Q4_0 and
//! Q4_1 nibbles (0..=15) meet the activations as they are, each block's integer sum starting from
//! `−8·Σa` (Q4_0; Q4_1's from 0, with its offset's `fma(m, s_a, acc)` after the scale's); Q8_0 codes are turned back into signed `q` (`sdot` multiplies signed by signed), so
//! their sums are `Σ q·a` directly. Both end each block with the reference's float step:
//! `acc = fma(i as f32, d_w·d_a, acc)`.

// Tiles index accumulators by token and row vector.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::aarch64::*;

use super::int8::dotprod::sdot;
use crate::arch::repacked::{codes_offset, RepackedTile, TileArgs, Q4_0, Q4_1, Q8_0, SCALE_BYTES};

/// The `sdot` tile (NeonDotprod and NeonI8mm).
pub(super) struct Dotprod;

impl RepackedTile for Dotprod {
    const ROWS: usize = 8;
    const TOKENS: usize = 4;

    unsafe fn tile(a: TileArgs<'_>) {
        macro_rules! by_tokens {
            ($f:ident) => {
                // SAFETY: the caller guarantees NEON and dotprod (the trait's contract).
                unsafe {
                    match a.tokens {
                        4 => tile::<4, $f>(a),
                        3 => tile::<3, $f>(a),
                        2 => tile::<2, $f>(a),
                        _ => tile::<1, $f>(a),
                    }
                }
            };
        }
        match a.fmt {
            Q4_0 => by_tokens!(Q4_0),
            Q4_1 => by_tokens!(Q4_1),
            _ => by_tokens!(Q8_0),
        }
    }
}

/// 8 rows × `TT` tokens over the chunk (see the module docs).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn tile<const TT: usize, const F: u8>(a: TileArgs<'_>) {
    let gb = [144, 160, 272][F as usize];
    // Codes after the scales (and Q4_1's offsets).
    let qs = codes_offset(F);
    assert!(a.groups >= 1 && a.blocks >= 1 && a.blocks <= a.kb);
    assert!(
        a.w.len() >= a.blocks * gb,
        "the tile's block groups are inside w"
    );
    assert!(a.tokens == TT && a.asum.len() >= TT * a.blocks);
    assert!(a.acts.len() >= (TT - 1) * a.kb + a.blocks);
    assert!(a.y.len() >= (TT - 1) * a.ldy + 8);
    let wp = a.w.as_ptr();
    let yp = a.y.as_mut_ptr();
    let mut facc = [[vdupq_n_f32(0.0); 2]; TT];
    if !a.first {
        for t in 0..TT {
            for h in 0..2 {
                // SAFETY: token t's 8 outputs are inside y (asserted).
                facc[t][h] = unsafe { vld1q_f32(yp.add(t * a.ldy + 4 * h)) };
            }
        }
    }
    let nib = vdupq_n_u8(0x0F);
    let flip = vdupq_n_u8(0x80);
    for b in 0..a.blocks {
        // SAFETY: b·gb + gb ≤ w.len() (asserted).
        let base = unsafe { wp.add(b * gb) };
        // SAFETY: at + 16 ≤ gb: inside the block group.
        let load = |at: usize| unsafe { vld1q_u8(base.add(at)) };
        let mut iacc = [[vdupq_n_s32(0); 2]; TT];
        // Activation dword j of token t, in every lane.
        let x = |t: usize, j: usize| {
            let q = &a.acts[t * a.kb + b].qs;
            let d = i32::from_le_bytes([
                q[4 * j] as u8,
                q[4 * j + 1] as u8,
                q[4 * j + 2] as u8,
                q[4 * j + 3] as u8,
            ]);
            vreinterpretq_s8_s32(vdupq_n_s32(d))
        };
        if F == Q8_0 {
            for j in 0..8 {
                let w: [int8x16_t; 2] = core::array::from_fn(|h| {
                    vreinterpretq_s8_u8(veorq_u8(load(qs + 32 * j + 16 * h), flip))
                });
                for t in 0..TT {
                    let xt = x(t, j);
                    for h in 0..2 {
                        iacc[t][h] = sdot(iacc[t][h], w[h], xt);
                    }
                }
            }
        } else {
            for t in 0..TT {
                iacc[t] = [vdupq_n_s32(-a.asum[t * a.blocks + b]); 2];
            }
            for j in 0..4 {
                let raw: [uint8x16_t; 2] = core::array::from_fn(|h| load(qs + 32 * j + 16 * h));
                let lo: [int8x16_t; 2] =
                    core::array::from_fn(|h| vreinterpretq_s8_u8(vandq_u8(raw[h], nib)));
                let hi: [int8x16_t; 2] =
                    core::array::from_fn(|h| vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw[h])));
                for t in 0..TT {
                    let (xl, xh) = (x(t, j), x(t, 4 + j));
                    for h in 0..2 {
                        iacc[t][h] = sdot(sdot(iacc[t][h], lo[h], xl), hi[h], xh);
                    }
                }
            }
        }
        // SAFETY: the block group opens with its eight f16 scales (16 bytes); exact widening.
        let dw = super::f16::widen(unsafe { vld1q_u16(base.cast()) });
        let mw = if F == Q4_1 {
            // SAFETY: Q4_1's 16 offset bytes follow the scales; exact widening.
            super::f16::widen(unsafe { vld1q_u16(base.add(SCALE_BYTES).cast()) })
        } else {
            [vdupq_n_f32(0.0); 2]
        };
        for t in 0..TT {
            let act = &a.acts[t * a.kb + b];
            let da = vdupq_n_f32(act.d());
            for h in 0..2 {
                let scale = vmulq_f32(dw[h], da);
                facc[t][h] = vfmaq_f32(facc[t][h], vcvtq_f32_s32(iacc[t][h]), scale);
                if F == Q4_1 {
                    facc[t][h] = vfmaq_f32(facc[t][h], mw[h], vdupq_n_f32(act.s()));
                }
            }
        }
    }
    for t in 0..TT {
        for h in 0..2 {
            // SAFETY: as for the loads above.
            unsafe { vst1q_f32(yp.add(t * a.ldy + 4 * h), facc[t][h]) };
        }
    }
}
