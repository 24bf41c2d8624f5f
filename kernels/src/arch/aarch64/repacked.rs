//! The register tiles of the int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 (both layouts) / IQ4_NL /
//! Q5_0 / Q5_1 / IQ4_XS: [`Dotprod`] (`sdot`) and,
//! for two or more tokens with the int8 matrix multiply extension, [`I8mm`] (`smmla`; see its
//! docs). `scalar::repack` defines the layout and the arithmetic; `arch::repacked` drives the
//! tiles. Measured with `bench/arm-insn-count.sh`'s counter (qemu `-cpu max`, SmolLM2-135M int8,
//! pp16): the `smmla` tile cuts instructions per prompt token from 31.0 M to 22.1 M (Q4_0),
//! 32.5 M to 22.7 M (Q4_1) and 33.6 M to 21.5 M (Q8_0). One token (decoding) does not come here:
//! `repacked_gemv` is its matrix × vector loop (`mod.rs` routes `n = 1` of Q4_0, Q4_1 and Q8_0
//! to it; IQ4_NL, Q5_0, Q5_1 and IQ4_XS take the `sdot` tile for one token too).
//!
//! Why hand-written: one 16-byte load of a repacked block group is the same four codes of four
//! rows, so `sdot` against one activation dword in every lane leaves each row's partial sum in
//! its own lane, with no horizontal sums (the `dot_*_q8` row kernels pay one per row and
//! block). The tile is 8 rows (one row group, two vectors) × 4 tokens. Each token's block of
//! codes is loaded once as two vectors and met with `sdot`'s by-element form (`x.4b[L]` picks
//! dword `L`), so no dword is assembled or broadcast; nibbles are unpacked 16 bytes at a time
//! and met by every token before the next, so the block loop neither spills nor shuffles its
//! accumulators. Per prompt token at the dotprod level (qemu `-cpu cortex-a76`, SmolLM2-135M
//! int8, pp16, `arm-insn-count.sh`) that took Q8_0 from 30.4 M to 15.5 M instructions and Q4_0
//! from 29.6 M to 18.0 M. Q4_0 and
//! Q4_1 nibbles (0..=15) meet the activations as they are, each block's integer sum starting from
//! `−8·Σa` (Q4_0; Q4_1's from 0, with its offset's `fma(m, s_a, acc)` after the scale's). Q8_0
//! is signed `q` as NEON repacks it (`RepackedLayout::Q8_0_SIGNED`; `sdot` and `smmla`
//! multiply signed by signed), so its sums are `Σ q·a` directly; the unsigned layout's codes
//! are turned back into `q` first (an `eor` per 16 bytes). IQ4_NL's nibbles (Q4_0's) go
//! through its codebook with one `tbl` each, to the signed `T[q]` (the layout's `T[q] + 128`
//! minus its offset, which signed `sdot`/`smmla` need not add back), so its sums are
//! `Σ T[q]·a` directly, as Q8_0's. Q5_0 and Q5_1 are Q4_0 and Q4_1 with each
//! nibble's fifth bit put in as bit 4 (codes 0..=31; Q5_0's
//! sums from `−16·Σa`): the group's `qh` bytes shifted right by the nibble group `j` and masked
//! with `0x11` hold the low code's fifth bit at bit 0 and the high code's at bit 4
//! (`scalar::repack`'s layout), so `sli #4` of them under the nibble byte makes the low code
//! and `sri #4` of the nibble byte into them the high one. IQ4_XS is IQ4_NL's codes under f32
//! row scales: only the scale load ([`scales`]) differs. All end each block with the
//! reference's float step: `acc = fma(i as f32, d_w·d_a, acc)`.

// Tiles index accumulators by token and row vector.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::aarch64::*;

use super::gemm::i8mm::smmla;
use super::int8::dotprod::sdot_lane;
use super::neon::load_i8x16;
use crate::arch::repacked::{
    codes_offset, group_bytes, has_codebook, has_f32_scales, has_min, has_qh, RepackedTile,
    TileArgs, IQ4_NL, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_0S, QH_BYTES, SCALE_BYTES,
};
use crate::scalar::IQ4_NL_VALUES;

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
            Q8_0 => by_tokens!(Q8_0),
            IQ4_NL => by_tokens!(IQ4_NL),
            Q5_0 => by_tokens!(Q5_0),
            Q5_1 => by_tokens!(Q5_1),
            IQ4_XS => by_tokens!(IQ4_XS),
            Q8_0S => by_tokens!(Q8_0S),
            _ => unreachable!("the driver passes a repacked format"),
        }
    }
}

/// 8 rows × `TT` tokens over the chunk (see the module docs).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn tile<const TT: usize, const F: u8>(a: TileArgs<'_>) {
    let gb = const { group_bytes(F) };
    // Codes after the scales (and the offsets, fifth bits of the formats with them).
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
    let ap = a.acts.as_ptr();
    let sp = a.asum.as_ptr();
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
    let lut = codebook();
    for b in 0..a.blocks {
        // SAFETY: b·gb + gb ≤ w.len() (asserted).
        let base = unsafe { wp.add(b * gb) };
        // SAFETY: at + 16 ≤ gb: inside the block group.
        let load = |at: usize| unsafe { ld16(base.add(at)) };
        // Token t's activation block: t·kb + b < (TT − 1)·kb + blocks ≤ acts.len() (asserted).
        // SAFETY: in bounds as just said; BlockQ8Act has alignment 1.
        let act = |t: usize| unsafe { &*ap.add(t * a.kb + b) };
        // Token t's 32 codes as two vectors: dword j of the block is lane j % 4 of x[t][j / 4].
        // (A loop, not `from_fn`: the debug builds the CI gate counts left that closure
        // uninlined.)
        let mut x = [[vdupq_n_s8(0); 2]; TT];
        for t in 0..TT {
            let q = act(t).qs.as_ptr();
            // SAFETY: qs holds 32 bytes.
            let [lo, hi] = unsafe { [ld16(q.cast()), ld16(q.add(16).cast())] };
            x[t] = [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)];
        }
        let mut iacc = [[vdupq_n_s32(0); 2]; TT];
        // `$body` once for each lane `$l` (a constant) of an activation vector.
        macro_rules! lanes {
            ($l:ident => $body:block) => {{
                {
                    const $l: i32 = 0;
                    $body
                }
                {
                    const $l: i32 = 1;
                    $body
                }
                {
                    const $l: i32 = 2;
                    $body
                }
                {
                    const $l: i32 = 3;
                    $body
                }
            }};
        }
        if F == Q8_0 || F == Q8_0S {
            // Dword j = 4·v + L of the codes: 32 bytes from qs + 32·j, rows 0..4 then 4..8.
            for v in 0..2 {
                lanes!(L => {
                    let j = 4 * v + L as usize;
                    let w: [int8x16_t; 2] = core::array::from_fn(|h| {
                        vreinterpretq_s8_u8(q8_codes::<F>(load(qs + 32 * j + 16 * h), flip))
                    });
                    for t in 0..TT {
                        for h in 0..2 {
                            iacc[t][h] = sdot_lane::<L>(iacc[t][h], w[h], x[t][v]);
                        }
                    }
                });
            }
        } else {
            // IQ4_NL and IQ4_XS sum Σ T[q]·a from 0 (signed codebook values).
            if !has_codebook(F) {
                for t in 0..TT {
                    // SAFETY: t·blocks + b < TT·blocks ≤ asum.len() (asserted).
                    iacc[t] = [vdupq_n_s32(-unsafe { *sp.add(t * a.blocks + b) }); 2];
                }
            }
            // Q5's fifth bits (unused for Q4).
            let qh: [uint8x16_t; 2] = if has_qh(F) {
                core::array::from_fn(|h| load(qs - QH_BYTES + 16 * h))
            } else {
                [vdupq_n_u8(0); 2]
            };
            // Nibble group j = L: low nibbles are codes of dword j, high ones of dword 4 + j;
            // rows 4h..4h + 4 at a time (fewer live registers).
            lanes!(L => {
                let j = L as usize;
                for h in 0..2 {
                    let raw = load(qs + 32 * j + 16 * h);
                    let (lo, hi) = if has_qh(F) {
                        let e = fifth_bits(qh[h], j);
                        (
                            vreinterpretq_s8_u8(vsliq_n_u8::<4>(raw, e)),
                            vreinterpretq_s8_u8(vsriq_n_u8::<4>(e, raw)),
                        )
                    } else {
                        (
                            codes::<F>(lut, vandq_u8(raw, nib)),
                            codes::<F>(lut, vshrq_n_u8::<4>(raw)),
                        )
                    };
                    for t in 0..TT {
                        let acc = sdot_lane::<L>(iacc[t][h], lo, x[t][0]);
                        iacc[t][h] = sdot_lane::<L>(acc, hi, x[t][1]);
                    }
                }
            });
        }
        // SAFETY: the block group opens with its scales.
        let dw = unsafe { scales(has_f32_scales(F), base) };
        let mw = if has_min(F) {
            // SAFETY: Q4_1's and Q5_1's eight f16 offsets follow their f16 scales.
            unsafe { scales(false, base.add(SCALE_BYTES)) }
        } else {
            [vdupq_n_f32(0.0); 2]
        };
        for t in 0..TT {
            let act = act(t);
            let da = vdupq_n_f32(act.d());
            for h in 0..2 {
                let scale = vmulq_f32(dw[h], da);
                facc[t][h] = vfmaq_f32(facc[t][h], vcvtq_f32_s32(iacc[t][h]), scale);
                if has_min(F) {
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

/// The `smmla` tile (NeonI8mm): 8 rows × up to 4 tokens, one token through [`Dotprod`].
///
/// Why: `smmla` multiplies a 2×8 int8 matrix by an 8×2 one into a 2×2 int32 tile, 32
/// multiply-accumulates per instruction where `sdot` does 16. A repacked block group holds four
/// bytes of each row per 32-byte chunk; `zip1`/`zip2` of two chunks' 16-byte halves (32-bit
/// lanes) give a row pair's eight bytes of two chunks, the 2×8 weight operand (Q4: its low
/// nibbles are codes `8c..8c+8`, its high nibbles `16 + 8c..`; Q8_0: codes `8c..8c+8`), and one
/// `zip` of two tokens' activation halves (64-bit lanes) the matching 2×8 operand. So 8 rows ×
/// 4 tokens take 32 `smmla` per block where the `sdot` tile takes 64, and each (row, token)
/// block dot stays whole in one lane: `[r0·t0, r0·t1, r1·t0, r1·t1]`. The float steps are the
/// reference's (`fma(i, d_w·d_a, acc)`, then Q4_1's `fma(m, s_a, acc)`), lane by lane, each
/// row half's right after its integer sums (fewer live registers); `d_w·d_a` is a multiply by
/// element per token, zipped into the pairs' lanes. For one
/// token half of every `smmla` would multiply a padding token, so that case keeps `sdot`.
pub(super) struct I8mm;

impl RepackedTile for I8mm {
    const ROWS: usize = 8;
    const TOKENS: usize = 4;

    unsafe fn tile(a: TileArgs<'_>) {
        macro_rules! by_tokens {
            ($f:ident) => {
                // SAFETY: the caller guarantees NEON, dotprod and i8mm (the trait's contract).
                unsafe {
                    match a.tokens {
                        4 => tile_mmla::<2, $f>(a),
                        3 => tile_mmla::<2, $f>(a),
                        2 => tile_mmla::<1, $f>(a),
                        _ => tile::<1, $f>(a),
                    }
                }
            };
        }
        match a.fmt {
            Q4_0 => by_tokens!(Q4_0),
            Q4_1 => by_tokens!(Q4_1),
            Q8_0 => by_tokens!(Q8_0),
            IQ4_NL => by_tokens!(IQ4_NL),
            Q5_0 => by_tokens!(Q5_0),
            Q5_1 => by_tokens!(Q5_1),
            IQ4_XS => by_tokens!(IQ4_XS),
            Q8_0S => by_tokens!(Q8_0S),
            _ => unreachable!("the driver passes a repacked format"),
        }
    }
}

/// 8 rows × `2·TP` token slots (`a.tokens` of them real; a missing second token of a pair
/// repeats the first, its lanes discarded) over the chunk (see [`I8mm`]).
#[inline]
#[target_feature(enable = "neon,dotprod,i8mm")]
fn tile_mmla<const TP: usize, const F: u8>(a: TileArgs<'_>) {
    let gb = const { group_bytes(F) };
    let qs = codes_offset(F);
    let tt = a.tokens;
    assert!(a.groups >= 1 && a.blocks >= 1 && a.blocks <= a.kb);
    assert!(
        a.w.len() >= a.blocks * gb,
        "the tile's block groups are inside w"
    );
    assert!(tt >= 1 && tt <= 2 * TP && a.asum.len() >= tt * a.blocks);
    assert!(a.acts.len() >= (tt - 1) * a.kb + a.blocks);
    assert!(a.y.len() >= (tt - 1) * a.ldy + 8);
    // Token of slot `l` (0, 1) of pair `q`.
    let tok = |q: usize, l: usize| (2 * q + l).min(tt - 1);
    let wp = a.w.as_ptr();
    let yp = a.y.as_mut_ptr();
    let ap = a.acts.as_ptr();
    let sp = a.asum.as_ptr();
    // facc[p][q]: rows 2p, 2p + 1 × the tokens of pair q, lanes [r0·t0, r0·t1, r1·t0, r1·t1].
    let mut facc = [[vdupq_n_f32(0.0); TP]; 4];
    if !a.first {
        for q in 0..TP {
            for h in 0..2 {
                // SAFETY: every real token's 8 outputs are inside y (asserted).
                let y0 = unsafe { vld1q_f32(yp.add(tok(q, 0) * a.ldy + 4 * h)) };
                // SAFETY: as above.
                let y1 = unsafe { vld1q_f32(yp.add(tok(q, 1) * a.ldy + 4 * h)) };
                facc[2 * h][q] = vzip1q_f32(y0, y1);
                facc[2 * h + 1][q] = vzip2q_f32(y0, y1);
            }
        }
    }
    let nib = vdupq_n_u8(0x0F);
    let flip = vdupq_n_u8(0x80);
    let lut = codebook();
    for b in 0..a.blocks {
        // SAFETY: b·gb + gb ≤ w.len() (asserted).
        let base = unsafe { wp.add(b * gb) };
        // SAFETY: at + 16 ≤ gb: inside the block group.
        let load = |at: usize| unsafe { ld16(base.add(at)) };
        // Token t's activation block: t·kb + b < (tt − 1)·kb + blocks ≤ acts.len() (asserted).
        // SAFETY: in bounds as just said; BlockQ8Act has alignment 1.
        let act = |t: usize| unsafe { &*ap.add(t * a.kb + b) };
        // Per pair q: the activation operands x[q][c] = codes 8c..8c + 8 of its two tokens;
        // the activation scales; lanes [t0, t1, t0, t1] of the sums (Q4_1, Q5_1) and of the
        // integer sums' start −c·Σa (Q4_0, Q5_0; IQ4_NL's and IQ4_XS's are Σ T[q]·a, signed
        // codes, from 0). Plain loops, no closures: the debug builds the CI gate counts left
        // those uninlined.
        let mut x = [[vdupq_n_s8(0); 4]; TP];
        let mut da = [[0f32; 2]; TP];
        let mut sa = [vdupq_n_f32(0.0); TP];
        let mut init = [vdupq_n_s32(0); TP];
        for q in 0..TP {
            let (t0, t1) = (tok(q, 0), tok(q, 1));
            let (a0, a1) = (act(t0), act(t1));
            let (p0, p1) = (a0.qs.as_ptr().cast::<u8>(), a1.qs.as_ptr().cast::<u8>());
            // SAFETY: each qs holds 32 bytes.
            let (x0, x1, z0, z1) =
                unsafe { (ld16(p0), ld16(p0.add(16)), ld16(p1), ld16(p1.add(16))) };
            [x[q][0], x[q][1]] = zip64(x0, z0);
            [x[q][2], x[q][3]] = zip64(x1, z1);
            da[q] = [a0.d(), a1.d()];
            if has_min(F) {
                sa[q] = pair_f32(a0.s(), a1.s());
            }
            if matches!(F, Q4_0 | Q5_0) {
                // SAFETY: t·blocks + b < tt·blocks ≤ asum.len() (asserted) for both tokens.
                let (s0, s1) = unsafe { (*sp.add(t0 * a.blocks + b), *sp.add(t1 * a.blocks + b)) };
                init[q] = pair_i32(-s0, -s1);
            }
        }
        // SAFETY: the block group opens with its scales.
        let dw = unsafe { scales(has_f32_scales(F), base) };
        let mw = if has_min(F) {
            // SAFETY: Q4_1's and Q5_1's eight f16 offsets follow their f16 scales.
            unsafe { scales(false, base.add(SCALE_BYTES)) }
        } else {
            [vdupq_n_f32(0.0); 2]
        };
        for h in 0..2 {
            // Row pairs 2h + s (s = 0: rows 4h, 4h + 1; s = 1: rows 4h + 2, 4h + 3) × pair q.
            let mut iacc = [init; 2];
            if F == Q8_0 || F == Q8_0S {
                for c in 0..4 {
                    let (p, r) = (
                        q8_codes::<F>(load(qs + 64 * c + 16 * h), flip),
                        q8_codes::<F>(load(qs + 64 * c + 32 + 16 * h), flip),
                    );
                    let w = zip32(p, r);
                    for s in 0..2 {
                        for q in 0..TP {
                            iacc[s][q] = smmla(iacc[s][q], vreinterpretq_s8_u8(w[s]), x[q][c]);
                        }
                    }
                }
            } else {
                // Q5: the fifth bits, zipped as their nibbles are.
                let qh = if has_qh(F) {
                    load(qs - QH_BYTES + 16 * h)
                } else {
                    vdupq_n_u8(0)
                };
                for jp in 0..2 {
                    let pair = zip32(
                        load(qs + 64 * jp + 16 * h),
                        load(qs + 64 * jp + 32 + 16 * h),
                    );
                    let (lo, hi): ([int8x16_t; 2], [int8x16_t; 2]) = if has_qh(F) {
                        let e = zip32(fifth_bits(qh, 2 * jp), fifth_bits(qh, 2 * jp + 1));
                        (
                            core::array::from_fn(|s| {
                                vreinterpretq_s8_u8(vsliq_n_u8::<4>(pair[s], e[s]))
                            }),
                            core::array::from_fn(|s| {
                                vreinterpretq_s8_u8(vsriq_n_u8::<4>(e[s], pair[s]))
                            }),
                        )
                    } else {
                        (
                            core::array::from_fn(|s| codes::<F>(lut, vandq_u8(pair[s], nib))),
                            core::array::from_fn(|s| codes::<F>(lut, vshrq_n_u8::<4>(pair[s]))),
                        )
                    };
                    for s in 0..2 {
                        for q in 0..TP {
                            let acc = smmla(iacc[s][q], lo[s], x[q][jp]);
                            iacc[s][q] = smmla(acc, hi[s], x[q][2 + jp]);
                        }
                    }
                }
            }
            // Lanes [m_r0, m_r0, m_r1, m_r1] of row pair 2h + s's offsets.
            let mp = [vzip1q_f32(mw[h], mw[h]), vzip2q_f32(mw[h], mw[h])];
            for q in 0..TP {
                // d_w·d_a (the products the reference rounds) in the pairs' lanes
                // [r0·t0, r0·t1, r1·t0, r1·t1]: rows 4h.. times each token's by element, zipped;
                // Q4_1 and Q5_1, whose offsets' operands hold more registers, multiply lanes
                // [d_r0, d_r0, d_r1, d_r1] by [d_t0, d_t1, d_t0, d_t1] instead (fewer live
                // registers: the by-element form cost Q4_1 5 % more instructions per prompt
                // token).
                let scale = if has_min(F) {
                    let d = pair_f32(da[q][0], da[q][1]);
                    [
                        vmulq_f32(vzip1q_f32(dw[h], dw[h]), d),
                        vmulq_f32(vzip2q_f32(dw[h], dw[h]), d),
                    ]
                } else {
                    let (s0, s1) = (vmulq_n_f32(dw[h], da[q][0]), vmulq_n_f32(dw[h], da[q][1]));
                    [vzip1q_f32(s0, s1), vzip2q_f32(s0, s1)]
                };
                for s in 0..2 {
                    let p = 2 * h + s;
                    facc[p][q] = vfmaq_f32(facc[p][q], vcvtq_f32_s32(iacc[s][q]), scale[s]);
                    if has_min(F) {
                        facc[p][q] = vfmaq_f32(facc[p][q], mp[s], sa[q]);
                    }
                }
            }
        }
    }
    for q in 0..TP {
        for h in 0..2 {
            let (p0, p1) = (facc[2 * h][q], facc[2 * h + 1][q]);
            // SAFETY: token tok(q, 0)'s 8 outputs are inside y (asserted).
            unsafe { vst1q_f32(yp.add(tok(q, 0) * a.ldy + 4 * h), vuzp1q_f32(p0, p1)) };
            if 2 * q + 1 < tt {
                // SAFETY: token 2q + 1 < tokens: its outputs are inside y.
                unsafe { vst1q_f32(yp.add((2 * q + 1) * a.ldy + 4 * h), vuzp2q_f32(p0, p1)) };
            }
        }
    }
}

/// Two vectors zipped by 64-bit lanes: `[p.lo, r.lo]`, `[p.hi, r.hi]` (two tokens' 8 codes
/// side by side, `smmla`'s second operand).
#[inline]
#[target_feature(enable = "neon")]
fn zip64(p: uint8x16_t, r: uint8x16_t) -> [int8x16_t; 2] {
    let (p, r) = (vreinterpretq_s64_u8(p), vreinterpretq_s64_u8(r));
    [
        vreinterpretq_s8_s64(vzip1q_s64(p, r)),
        vreinterpretq_s8_s64(vzip2q_s64(p, r)),
    ]
}

/// Two chunks' 16-byte halves zipped by 32-bit lanes: `[row pair 0, row pair 1]`, each row's
/// 8 codes side by side (`smmla`'s first operand).
#[inline]
#[target_feature(enable = "neon")]
fn zip32(p: uint8x16_t, r: uint8x16_t) -> [uint8x16_t; 2] {
    let (p, r) = (vreinterpretq_u32_u8(p), vreinterpretq_u32_u8(r));
    [
        vreinterpretq_u8_u32(vzip1q_u32(p, r)),
        vreinterpretq_u8_u32(vzip2q_u32(p, r)),
    ]
}

/// `[x0, x1, x0, x1]`: a token pair's values in the lanes of an `smmla` result.
#[inline]
#[target_feature(enable = "neon")]
fn pair_f32(x0: f32, x1: f32) -> float32x4_t {
    let v = vset_lane_f32::<1>(x1, vdup_n_f32(x0));
    vcombine_f32(v, v)
}

/// `[x0, x1, x0, x1]` of integers (see [`pair_f32`]).
#[inline]
#[target_feature(enable = "neon")]
fn pair_i32(x0: i32, x1: i32) -> int32x4_t {
    let v = vset_lane_s32::<1>(x1, vdup_n_s32(x0));
    vcombine_s32(v, v)
}

/// The 16 bytes at `p`. A plain load: `vld1q_*` copy through a temporary, which the debug
/// builds the CI gate counts check for overlap on every load.
///
/// # Safety
/// `p` points at 16 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld16(p: *const u8) -> uint8x16_t {
    // SAFETY: 16 readable bytes (the caller's contract); `[u8; 16]` has alignment 1, and every
    // bit pattern is a vector.
    unsafe { core::mem::transmute::<[u8; 16], uint8x16_t>(*p.cast::<[u8; 16]>()) }
}

/// Nibble group `j`'s fifth bits from 16 bytes of a Q5 block group's `qh` (`scalar::repack`):
/// the low code's at bit 0 and the high code's at bit 4 of each byte, the other bits clear.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: uint8x16_t, j: usize) -> uint8x16_t {
    // A negative count shifts right; j < 4.
    let shifted = vshlq_u8(qh, vdupq_n_s8(-(j as i8)));
    vandq_u8(shifted, vdupq_n_u8(0x11))
}

/// The eight row scales of the block group at `p` as f32: IQ4_XS's f32 as stored
/// (`f32_scales`), the other formats' f16 widened (exact); also Q4_1's and Q5_1's f16
/// offsets, which follow their scales.
///
/// # Safety
/// `p` points at eight such values inside a block group.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn scales(f32_scales: bool, p: *const u8) -> [float32x4_t; 2] {
    // SAFETY: the scales (32 bytes f32, 16 f16) are inside the block group; byte loads need no
    // alignment.
    unsafe {
        if f32_scales {
            [vld1q_u8(p), vld1q_u8(p.add(16))].map(|v| vreinterpretq_f32_u8(v))
        } else {
            super::f16::widen(vreinterpretq_u16_u8(vld1q_u8(p)))
        }
    }
}

/// Q8_0 code bytes as stored into signed `q`: the unsigned layout's flipped back (`eor` with
/// `flip`, 0x80 in every byte), the signed layout's as they are.
#[inline]
#[target_feature(enable = "neon")]
fn q8_codes<const F: u8>(v: uint8x16_t, flip: uint8x16_t) -> uint8x16_t {
    if F == Q8_0S {
        v
    } else {
        veorq_u8(v, flip)
    }
}

/// IQ4_NL's codebook (signed) as `tbl`'s table.
#[inline]
#[target_feature(enable = "neon")]
fn codebook() -> int8x16_t {
    load_i8x16(&IQ4_NL_VALUES)
}

/// Nibbles `q` (each below 16) as the signed codes the tiles multiply: `T[q]` for IQ4_NL and
/// IQ4_XS, `q` for Q4_0 and Q4_1.
#[inline]
#[target_feature(enable = "neon")]
fn codes<const F: u8>(lut: int8x16_t, q: uint8x16_t) -> int8x16_t {
    if has_codebook(F) {
        vqtbl1q_s8(lut, q)
    } else {
        vreinterpretq_s8_u8(q)
    }
}
