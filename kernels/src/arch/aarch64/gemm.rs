//! Multi-row products on aarch64: decoding's rows · one vector and prompt processing's
//! rows · many tokens (see `scalar::gemm` for what each computes).
//!
//! - `dot_rows_*_f32` (NEON): four rows per step share the activation loads and, for Q4_1, the
//!   block sums of `x`; codes widen u8 → u16 → u32 → f32.
//! - `gemm_*_q8` (NEON `smull`/`sadalp`, and `sdot` with the dot product extension, from one
//!   macro): tiles of four rows by one or two tokens, whose exact integer dots are signed ×
//!   signed (no sign trick). For one token each weight block is unpacked in the tile; for a
//!   batch, once per row group into a panel that every token pair reuses.
//! - `gemm_*_q8` with the int8 matrix multiply extension ([`i8mm`]): the `sdot` tiles for one
//!   token; for a batch, `smmla` 2-row × 2-token tiles over a panel interleaved for it.
//!
//! Every int8 tile computes `scalar::gemm_i8`'s arithmetic bit for bit: per block the whole
//! exact integer dot (`sdot`/`sadalp` partial sums folded by `addp`, or one `smmla` lane), then
//! `acc = fma(isum, d_w·d_a, acc)` and, for Q4_1/Q5_1, `acc = fma(m, s_a, acc)`, from zero, in
//! block order. That is what the repacked layout (`scalar::repack`) computes, so on aarch64 a
//! matrix gives the same bits repacked or not, for one token or many. (Summing the four lanes
//! only at the end, as these tiles once did, differs by rounding; through int8 requantization
//! such a difference can flip an activation code at a .5 boundary and move the logits of a
//! small model by 1e-2: gemma3_small's repacked-vs-GGUF gap under qemu.)
//! - `gemm_f32` (NEON): a 4-row × 4-token register tile, 16 accumulators of 32.
//!
//! The row kernels prefetch (`prfm pldl2keep`) the weight bytes [`PREFETCH_AHEAD`] past the
//! rows they work on, as on x86_64: each matrix is streamed once per token.

// Tiles index several arrays (accumulators, rows, tokens) by the same row or token number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::aarch64::*;
use core::arch::asm;

use super::neon::{block_codes, f16, i8x16_to_f32, load_i8x16, lut16, lut4, nibbles};
use crate::arch::int8_blocks::Block;
use crate::blocks::F16Le;
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::dispatch::{Backend, Kernels, Named};
use crate::format::Format;
use crate::scalar::{self, Q4_0_VALUES};

/// How far ahead of the rows being multiplied the row kernels prefetch, in bytes, into L2
/// (`pldl2keep`): the distance measured best on x86_64 (see `x86_64/gemm.rs`); not yet
/// measured on a phone.
const PREFETCH_AHEAD: usize = 8192;

/// Rows per step of the row kernels.
pub(super) const ROWS: usize = 4;

// ---- helpers -------------------------------------------------------------------------------

/// Prefetches into L2 the cache lines of `len` bytes starting `PREFETCH_AHEAD` past `p`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn prefetch_ahead(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        let q = p.wrapping_add(PREFETCH_AHEAD + off);
        // SAFETY: PRFM is a hint: it never faults and has no architectural effect, whatever
        // the address (`wrapping_add` keeps the arithmetic defined past the slice).
        unsafe {
            asm!("prfm pldl2keep, [{p}]", p = in(reg) q, options(nostack, preserves_flags, readonly));
        }
        off += 64;
    }
}

/// Prefetches into L2 the first [`PREFETCH_AHEAD`] bytes (at most `len`) at `p`: the rows a
/// kernel call starts on, which no earlier call prefetched when another thread ran the rows
/// before them.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn prefetch_head(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len.min(PREFETCH_AHEAD) {
        // SAFETY: as in `prefetch_ahead`; these addresses are inside the slice.
        unsafe {
            asm!("prfm pldl2keep, [{p}]", p = in(reg) p.wrapping_add(off), options(nostack, preserves_flags, readonly));
        }
        off += 64;
    }
}

/// The first 32 floats of `x` as eight vectors.
#[inline]
#[target_feature(enable = "neon")]
fn load32(x: &[f32]) -> [float32x4_t; 8] {
    assert!(x.len() >= 32);
    let p = x.as_ptr();
    // SAFETY: x holds at least 32 floats; the loads read x[0..32].
    core::array::from_fn(|i| unsafe { vld1q_f32(p.add(4 * i)) })
}

/// 16 unsigned bytes as four vectors of 4 floats.
#[inline]
#[target_feature(enable = "neon")]
fn u8x16_to_f32(v: uint8x16_t) -> [float32x4_t; 4] {
    let (lo, hi) = (vmovl_u8(vget_low_u8(v)), vmovl_high_u8(v));
    [
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))),
        vcvtq_f32_u32(vmovl_high_u16(lo)),
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))),
        vcvtq_f32_u32(vmovl_high_u16(hi)),
    ]
}

/// Lane-wise partial sums of `w · x` over 32 elements (`w` as two groups of four vectors).
#[inline]
#[target_feature(enable = "neon")]
fn dot32(w0: [float32x4_t; 4], w1: [float32x4_t; 4], x: &[float32x4_t; 8]) -> float32x4_t {
    let mut a = vmulq_f32(w0[0], x[0]);
    let mut b = vmulq_f32(w0[1], x[1]);
    a = vfmaq_f32(a, w0[2], x[2]);
    b = vfmaq_f32(b, w0[3], x[3]);
    a = vfmaq_f32(a, w1[0], x[4]);
    b = vfmaq_f32(b, w1[1], x[5]);
    a = vfmaq_f32(a, w1[2], x[6]);
    b = vfmaq_f32(b, w1[3], x[7]);
    vaddq_f32(a, b)
}

/// Four floats as a vector.
#[inline]
#[target_feature(enable = "neon")]
fn f32x4(v: [f32; 4]) -> float32x4_t {
    // SAFETY: `v` holds 4 floats.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// Four f16 fields (the rows' scales or offsets) as one vector of f32 (exact widening).
#[inline]
#[target_feature(enable = "neon")]
fn f16x4(h: [F16Le; 4]) -> float32x4_t {
    let b = h.map(|h| u16::from_le_bytes(h.0));
    let mut v = vdupq_n_u16(0);
    v = vsetq_lane_u16::<0>(b[0], v);
    v = vsetq_lane_u16::<1>(b[1], v);
    v = vsetq_lane_u16::<2>(b[2], v);
    v = vsetq_lane_u16::<3>(b[3], v);
    super::f16::widen(v)[0]
}

/// Four rows' block dots, each given as four exact i32 partial sums, as one vector of whole
/// block sums `[Σa, Σb, Σc, Σd]` (exact: `|Σ| ≤ 32·127·128`).
#[inline]
#[target_feature(enable = "neon")]
fn block_sums(v: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
}

/// The horizontal sums of four vectors as one vector `[Σa, Σb, Σc, Σd]`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum4(v: [float32x4_t; 4]) -> float32x4_t {
    vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]))
}

/// Writes the `R` row results of `acc` to `y[..R]` (`R ≤ 4`).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn store_rows<const R: usize>(acc: [float32x4_t; R], y: &mut [f32]) {
    let mut v = [vdupq_n_f32(0.0); 4];
    v[..R].copy_from_slice(&acc);
    let mut out = [0.0f32; 4];
    // SAFETY: `out` holds 4 floats.
    unsafe { vst1q_f32(out.as_mut_ptr(), hsum4(v)) };
    y[..R].copy_from_slice(&out[..R]);
}

// ---- rows · f32 ----------------------------------------------------------------------------

/// `R` Q4_0 rows (`kb` blocks each, back to back in `w`) · `x`.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q4_0<const R: usize>(w: &[BlockQ4_0], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let lut = lut16(&Q4_0_VALUES);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let (lo, hi) = lut4(lut, &blk.qs);
            let p = dot32(i8x16_to_f32(lo), i8x16_to_f32(hi), &xv);
            acc[r] = vfmaq_n_f32(acc[r], p, f16(blk.d));
        }
    }
    acc
}

/// `R` Q4_1 rows · `x`: `Σ d·(Σ q·x) + m·(Σ x)` per block, `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q4_1<const R: usize>(w: &[BlockQ4_1], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let mut acc_d = [vdupq_n_f32(0.0); R];
    let mut acc_m = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        let s01 = vaddq_f32(vaddq_f32(xv[0], xv[1]), vaddq_f32(xv[2], xv[3]));
        let s23 = vaddq_f32(vaddq_f32(xv[4], xv[5]), vaddq_f32(xv[6], xv[7]));
        let sx = vaddq_f32(s01, s23);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let (lo, hi) = nibbles(&blk.qs);
            let p = dot32(u8x16_to_f32(lo), u8x16_to_f32(hi), &xv);
            acc_d[r] = vfmaq_n_f32(acc_d[r], p, f16(blk.d));
            acc_m[r] = vfmaq_n_f32(acc_m[r], sx, f16(blk.m));
        }
    }
    core::array::from_fn(|r| vaddq_f32(acc_d[r], acc_m[r]))
}

/// `R` Q8_0 rows · `x`.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q8_0<const R: usize>(w: &[BlockQ8_0], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let mut acc = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let (lo, hi) = (load_i8x16(&blk.qs), load_i8x16(&blk.qs[16..]));
            let p = dot32(i8x16_to_f32(lo), i8x16_to_f32(hi), &xv);
            acc[r] = vfmaq_n_f32(acc[r], p, f16(blk.d));
        }
    }
    acc
}

dot_rows_driver!("neon", dot_rows_q4_0_f32, BlockQ4_0, rows_q4_0, store_rows);
dot_rows_driver!("neon", dot_rows_q4_1_f32, BlockQ4_1, rows_q4_1, store_rows);
dot_rows_driver!("neon", dot_rows_q8_0_f32, BlockQ8_0, rows_q8_0, store_rows);

/// `R` rows of 32-weight blocks · `x` through [`block_codes`] (Q5_0, Q5_1, IQ4_NL): codes
/// widened from bytes as Q8_0's are, one scale per block, and for the formats with an offset
/// `Σ d·(Σ q·x) + m·(Σ x)` with `Σ x` shared by the rows.
#[inline]
#[target_feature(enable = "neon")]
fn rows_codes<B: Block, const R: usize>(w: &[B], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb);
    let lut = lut16(B::FMT.lut());
    let mut acc_d = [vdupq_n_f32(0.0); R];
    let mut acc_m = [vdupq_n_f32(0.0); R];
    for b in 0..kb {
        let xv = load32(&x[32 * b..]);
        let s01 = vaddq_f32(vaddq_f32(xv[0], xv[1]), vaddq_f32(xv[2], xv[3]));
        let s23 = vaddq_f32(vaddq_f32(xv[4], xv[5]), vaddq_f32(xv[6], xv[7]));
        let sx = vaddq_f32(s01, s23);
        for r in 0..R {
            let blk = &w[r * kb + b];
            let [lo, hi] = block_codes(lut, blk);
            let p = dot32(i8x16_to_f32(lo), i8x16_to_f32(hi), &xv);
            acc_d[r] = vfmaq_n_f32(acc_d[r], p, f16(blk.d()));
            if B::FMT.has_m() {
                acc_m[r] = vfmaq_n_f32(acc_m[r], sx, f16(blk.m()));
            }
        }
    }
    core::array::from_fn(|r| vaddq_f32(acc_d[r], acc_m[r]))
}

/// [`rows_codes`] for Q5_0.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q5_0<const R: usize>(w: &[BlockQ5_0], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    rows_codes::<BlockQ5_0, R>(w, kb, x)
}

/// [`rows_codes`] for Q5_1.
#[inline]
#[target_feature(enable = "neon")]
fn rows_q5_1<const R: usize>(w: &[BlockQ5_1], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    rows_codes::<BlockQ5_1, R>(w, kb, x)
}

/// [`rows_codes`] for IQ4_NL.
#[inline]
#[target_feature(enable = "neon")]
fn rows_iq4_nl<const R: usize>(w: &[BlockIQ4_NL], kb: usize, x: &[f32]) -> [float32x4_t; R] {
    rows_codes::<BlockIQ4_NL, R>(w, kb, x)
}

dot_rows_driver!("neon", dot_rows_q5_0_f32, BlockQ5_0, rows_q5_0, store_rows);
dot_rows_driver!("neon", dot_rows_q5_1_f32, BlockQ5_1, rows_q5_1, store_rows);
dot_rows_driver!(
    "neon",
    dot_rows_iq4_nl_f32,
    BlockIQ4_NL,
    rows_iq4_nl,
    store_rows
);

// ---- f32 GEMM ------------------------------------------------------------------------------

/// Floats of `k` the f32 GEMM body consumes per step; the wrapper adds any tail.
const GEMM_F32_LANES: usize = 4;

/// One `R × T` tile: `y[t·ldy + r] = a_r · b_t` over the first `k4` (a multiple of 4)
/// elements, rows of `a` and `b` `k` apart.
#[inline]
#[target_feature(enable = "neon")]
fn tile_f32<const R: usize, const T: usize>(
    a: &[f32],
    b: &[f32],
    k: usize,
    k4: usize,
    y: &mut [f32],
    ldy: usize,
) {
    assert!(a.len() >= (R - 1) * k + k4 && b.len() >= (T - 1) * k + k4);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[vdupq_n_f32(0.0); R]; T];
    let mut i = 0;
    while i < k4 {
        // SAFETY: i + 4 ≤ k4 and the assertion above keep every load inside `a` and `b`.
        let bv: [float32x4_t; T] =
            core::array::from_fn(|t| unsafe { vld1q_f32(pb.add(t * k + i)) });
        for r in 0..R {
            // SAFETY: as above.
            let av = unsafe { vld1q_f32(pa.add(r * k + i)) };
            for t in 0..T {
                acc[t][r] = vfmaq_f32(acc[t][r], av, bv[t]);
            }
        }
        i += 4;
    }
    for t in 0..T {
        store_rows(acc[t], &mut y[t * ldy..]);
    }
}

/// `y[t·ldy + r] = a_r · b_t` over the first `k4` elements of rows `k` apart, in 4 × 4 tiles.
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
#[target_feature(enable = "neon")]
fn gemm_f32(
    a: &[f32],
    m: usize,
    b: &[f32],
    n: usize,
    k: usize,
    k4: usize,
    y: &mut [f32],
    ldy: usize,
) {
    const R: usize = 4;
    const T: usize = 4;
    let mut r = 0;
    while r < m {
        let ar = &a[r * k..];
        let mut t = 0;
        while t < n {
            let (bt, yt) = (&b[t * k..], &mut y[t * ldy + r..]);
            macro_rules! tile {
                ($($rr:literal),*) => {
                    match (m - r).min(R) {
                        $($rr => match (n - t).min(T) {
                            4 => tile_f32::<$rr, 4>(ar, bt, k, k4, yt, ldy),
                            3 => tile_f32::<$rr, 3>(ar, bt, k, k4, yt, ldy),
                            2 => tile_f32::<$rr, 2>(ar, bt, k, k4, yt, ldy),
                            _ => tile_f32::<$rr, 1>(ar, bt, k, k4, yt, ldy),
                        },)*
                        _ => unreachable!(),
                    }
                };
            }
            tile!(1, 2, 3, 4);
            t += T;
        }
        r += R;
    }
}

// ---- rows · int8 activations ---------------------------------------------------------------

/// Int8 tiles of `R` weight rows by `T ≤ 2` tokens, one copy per instruction set: per block,
/// each row's codes are unpacked once and each token's loaded once; each (row, token) pair
/// costs one exact integer dot, one conversion and one scaled accumulation. `@tiles` alone
/// leaves the batched product (`gemm_batch`) to the invoking module, as [`i8mm`] does.
macro_rules! int8_gemm {
    ($features:literal, $isum:path) => {
        int8_gemm!(@tiles $features, $isum);
        int8_gemm!(@panel $features, $isum);
    };
    // The tiles, the one-token path and the public bodies; `gemm` calls a `gemm_batch` that
    // `@panel` or the invoking module defines.
    (@tiles $features:literal, $isum:path) => {
        use core::arch::aarch64::*;

        use super::super::neon::{block_codes, load_i8x16, lut16};
        use super::{block_sums, f16x4, f32x4, prefetch_ahead, prefetch_head, Block, ROWS};
        use crate::blocks::F16Le;
        use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
        use crate::scalar::BlockQ8Act;

        /// One tile: rows `w[r·kb..]` for `r < R ≤ 4`, tokens `acts[t·kb..]` for `t < T`;
        /// writes `y[t·ldy + r]` with `scalar::gemm_i8`'s arithmetic (module docs).
        #[inline]
        #[target_feature(enable = $features)]
        fn tile<B: Block, const R: usize, const T: usize>(
            w: &[B],
            acts: &[BlockQ8Act],
            kb: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            assert!(R <= ROWS && w.len() >= R * kb && acts.len() >= T * kb);
            let lut = lut16(B::FMT.lut());
            // Lane r: row r's running sum.
            let mut acc = [vdupq_n_f32(0.0); T];
            for b in 0..kb {
                let a: [&BlockQ8Act; T] = core::array::from_fn(|t| &acts[t * kb + b]);
                let av: [[int8x16_t; 2]; T] =
                    core::array::from_fn(|t| [load_i8x16(&a[t].qs), load_i8x16(&a[t].qs[16..])]);
                // The rows' blocks, indexed once.
                let blk: [&B; R] = core::array::from_fn(|r| &w[r * kb + b]);
                let codes: [[int8x16_t; 2]; R] = blk.map(|x| block_codes(lut, x));
                let zero = F16Le([0, 0]);
                let (mut d, mut m) = ([zero; 4], [zero; 4]);
                for r in 0..R {
                    d[r] = blk[r].d();
                    if B::FMT.has_m() {
                        m[r] = blk[r].m();
                    }
                }
                let dw = f16x4(d);
                let mw = if B::FMT.has_m() {
                    f16x4(m)
                } else {
                    vdupq_n_f32(0.0)
                };
                for t in 0..T {
                    let isum = block_sums(core::array::from_fn(|r| {
                        if r < R {
                            $isum(codes[r], av[t])
                        } else {
                            vdupq_n_s32(0)
                        }
                    }));
                    let scale = vmulq_n_f32(dw, a[t].d());
                    acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum), scale);
                    if B::FMT.has_m() {
                        acc[t] = vfmaq_n_f32(acc[t], mw, a[t].s());
                    }
                }
            }
            for t in 0..T {
                let mut row = [0.0f32; 4];
                // SAFETY: `row` holds 4 floats.
                unsafe { vst1q_f32(row.as_mut_ptr(), acc[t]) };
                y[t * ldy..][..R].copy_from_slice(&row[..R]);
            }
        }

        /// `y[t·ldy + r] = row r · token t` for the `m` rows of `w` (`kb` blocks each) and
        /// the `n` activation rows of `acts`, prefetching the rows ahead.
        #[inline]
        #[target_feature(enable = $features)]
        fn gemm<B: Block>(
            w: &[B],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            if n >= 2 {
                return gemm_batch(w, m, kb, acts, n, y, ldy);
            }
            let group_bytes = ROWS * kb * core::mem::size_of::<B>();
            prefetch_head(w.as_ptr().cast(), m * kb * core::mem::size_of::<B>());
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(ROWS);
                let wr = &w[r * kb..];
                if rows == ROWS {
                    prefetch_ahead(wr.as_ptr().cast(), group_bytes);
                }
                let mut t = 0;
                while t < n {
                    let (at, yt) = (&acts[t * kb..], &mut y[t * ldy + r..]);
                    match (rows, (n - t).min(2)) {
                        (ROWS, 2) => tile::<B, ROWS, 2>(wr, at, kb, yt, ldy),
                        (ROWS, _) => tile::<B, ROWS, 1>(wr, at, kb, yt, ldy),
                        (_, 2) => {
                            for i in 0..rows {
                                tile::<B, 1, 2>(&wr[i * kb..], at, kb, &mut yt[i..], ldy)
                            }
                        }
                        _ => {
                            for i in 0..rows {
                                tile::<B, 1, 1>(&wr[i * kb..], at, kb, &mut yt[i..], ldy)
                            }
                        }
                    }
                    t += 2;
                }
                r += ROWS;
            }
        }

        /// Q4_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q4_0_q8(
            w: &[BlockQ4_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q4_1 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q4_1_q8(
            w: &[BlockQ4_1],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q5_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q5_0_q8(
            w: &[BlockQ5_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q5_1 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q5_1_q8(
            w: &[BlockQ5_1],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// IQ4_NL rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_iq4_nl_q8(
            w: &[BlockIQ4_NL],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }

        /// Q8_0 rows × int8 tokens.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q8_0_q8(
            w: &[BlockQ8_0],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            gemm(w, m, kb, acts, n, y, ldy)
        }
    };
    // The batched product over [`Panel`]s of `$isum` tiles.
    (@panel $features:literal, $isum:path) => {
        /// Blocks per chunk of a [`Panel`].
        const KC: usize = 64;

        /// A row group's weights for a stretch of [`KC`] blocks, unpacked once for a batch of
        /// tokens: signed codes (8 KiB), and per block the rows' scales and offsets as one
        /// vector (lane r: row r; zero past the group's rows).
        struct Panel {
            codes: [[[int8x16_t; 2]; KC]; ROWS],
            d: [float32x4_t; KC],
            m: [float32x4_t; KC],
        }

        /// Unpacks blocks `k0..k0 + kc` of `rows` rows of `w` (`kb` blocks each) into `p`;
        /// rows past `rows` get zero codes.
        #[inline]
        #[target_feature(enable = $features)]
        fn unpack<B: Block>(p: &mut Panel, w: &[B], rows: usize, kb: usize, k0: usize, kc: usize) {
            let lut = lut16(B::FMT.lut());
            for b in 0..kc {
                let blk = |r: usize| &w[r * kb + k0 + b];
                for r in 0..ROWS {
                    p.codes[r][b] = if r < rows {
                        block_codes(lut, blk(r))
                    } else {
                        [vdupq_n_s8(0); 2]
                    };
                }
                let zero = F16Le([0, 0]);
                p.d[b] = f16x4(core::array::from_fn(|r| if r < rows { blk(r).d() } else { zero }));
                if B::FMT.has_m() {
                    p.m[b] =
                        f16x4(core::array::from_fn(|r| if r < rows { blk(r).m() } else { zero }));
                }
            }
        }

        /// One tile of the panel's `rows ≤ 4` rows by `T` tokens over its `kc` blocks: adds
        /// (or, for the first chunk, writes) `row r · token t` over those blocks to
        /// `y[t·ldy + r]` with `scalar::gemm_i8`'s arithmetic; `acts` starts at the panel's
        /// first block of token 0, tokens `kb` blocks apart.
        #[expect(
            clippy::too_many_arguments,
            reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
        )]
        #[inline]
        #[target_feature(enable = $features)]
        fn tile_panel<const T: usize, const M: bool>(
            p: &Panel,
            kc: usize,
            acts: &[BlockQ8Act],
            kb: usize,
            rows: usize,
            y: &mut [f32],
            ldy: usize,
            first: bool,
        ) {
            assert!(kc <= KC && (1..=ROWS).contains(&rows));
            assert!(acts.len() >= (T - 1) * kb + kc && y.len() >= (T - 1) * ldy + rows);
            let mut acc = [vdupq_n_f32(0.0); T];
            if !first {
                for t in 0..T {
                    acc[t] = f32x4(core::array::from_fn(|r| {
                        if r < rows {
                            y[t * ldy + r]
                        } else {
                            0.0
                        }
                    }));
                }
            }
            for b in 0..kc {
                let a: [&BlockQ8Act; T] = core::array::from_fn(|t| &acts[t * kb + b]);
                let av: [[int8x16_t; 2]; T] =
                    core::array::from_fn(|t| [load_i8x16(&a[t].qs), load_i8x16(&a[t].qs[16..])]);
                for t in 0..T {
                    let isum = block_sums(core::array::from_fn(|r| $isum(p.codes[r][b], av[t])));
                    let scale = vmulq_n_f32(p.d[b], a[t].d());
                    acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum), scale);
                    if M {
                        acc[t] = vfmaq_n_f32(acc[t], p.m[b], a[t].s());
                    }
                }
            }
            for t in 0..T {
                let mut out = [0.0f32; 4];
                // SAFETY: `out` holds 4 floats.
                unsafe { vst1q_f32(out.as_mut_ptr(), acc[t]) };
                y[t * ldy..][..rows].copy_from_slice(&out[..rows]);
            }
        }

        /// The batched product (`n ≥ 2`): per row group and stretch of [`KC`] blocks, the
        /// weights are unpacked once into a [`Panel`] and every token pair reuses them.
        #[inline]
        #[target_feature(enable = $features)]
        fn gemm_batch<B: Block>(
            w: &[B],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            let zero = vdupq_n_s8(0);
            let mut p = Panel {
                codes: [[[zero; 2]; KC]; ROWS],
                d: [vdupq_n_f32(0.0); KC],
                m: [vdupq_n_f32(0.0); KC],
            };
            let mut r = 0;
            while r < m {
                let rows = (m - r).min(ROWS);
                let mut k0 = 0;
                while k0 < kb {
                    let kc = (kb - k0).min(KC);
                    unpack(&mut p, &w[r * kb..], rows, kb, k0, kc);
                    let mut t = 0;
                    while t < n {
                        let (at, yt) = (&acts[t * kb + k0..], &mut y[t * ldy + r..]);
                        let first = k0 == 0;
                        match ((n - t).min(2), B::FMT.has_m()) {
                            (2, true) => tile_panel::<2, true>(&p, kc, at, kb, rows, yt, ldy, first),
                            (2, false) => {
                                tile_panel::<2, false>(&p, kc, at, kb, rows, yt, ldy, first)
                            }
                            (_, true) => tile_panel::<1, true>(&p, kc, at, kb, rows, yt, ldy, first),
                            _ => tile_panel::<1, false>(&p, kc, at, kb, rows, yt, ldy, first),
                        }
                        t += 2;
                    }
                    k0 += kc;
                }
                r += ROWS;
            }
        }
    };
}

/// NEON: widening multiplies into i16 pairs, pairwise-accumulated into i32.
mod neon_int8 {
    int8_gemm!("neon", super::super::neon::isum_mull);
}

/// Dot product extension: `sdot` (the row dots' `isum_sdot`).
mod dotprod {
    pub(super) use super::super::int8::dotprod::isum_sdot;

    int8_gemm!("neon,dotprod", isum_sdot);
}

/// Int8 matrix multiply extension: `smmla` tiles for batches of tokens, the `sdot` tiles of
/// [`dotprod`] for one token.
///
/// `smmla` multiplies a 2×8 int8 matrix by an 8×2 one into a 2×2 int32 tile: 32
/// multiply-accumulates per instruction where `sdot` does 16, so two weight rows × two tokens
/// take four instructions per 32-code block instead of eight. The 2×2 result also keeps each
/// (row, token) block dot whole in one lane, so the f32 scaling that follows is one conversion
/// and a few lane-wise operations per four pairs rather than per pair, in `scalar::gemm_i8`'s
/// order (see `i8mm::tile_panel`). For one token half of every `smmla` would
/// multiply padding, the same useful work per instruction as `sdot` plus the interleaving, so
/// decoding (`n = 1`) keeps the `sdot` tiles. Why this should pay is the instruction count
/// above; it has run only under qemu, which says nothing about speed, and is unmeasured on
/// hardware.
pub(super) mod i8mm {
    use super::super::neon::f16;

    int8_gemm!(@tiles "neon,dotprod,i8mm", super::dotprod::isum_sdot);

    /// Row pairs of a [`Panel`] (one row group).
    const PAIRS: usize = ROWS / 2;

    /// Tokens per tile: two pairs, so each panel operand loaded serves two `smmla`.
    const TOKENS: usize = 4;

    /// Blocks per chunk of a [`Panel`].
    const KC: usize = 64;

    /// A row group's weights for a stretch of [`KC`] blocks, unpacked once for a batch of
    /// tokens and laid out for `smmla` (8 KiB of codes): per row pair and block, the four 2×8
    /// operands `c < 4` (codes `8c..8c + 8` of the pair's first row, then of its second), and
    /// the pair's scales as `[d0, d0, d1, d1]`, the rows of the 2×2 result
    /// `[r0·t0, r0·t1, r1·t0, r1·t1]`.
    struct Panel {
        codes: [[[int8x16_t; 4]; KC]; PAIRS],
        d: [[float32x4_t; KC]; PAIRS],
        m: [[float32x4_t; KC]; PAIRS],
    }

    /// `acc + a·bᵀ` for `a`, `b` 2×8 int8 matrices (row-major, a row per 8 bytes) and `acc` a
    /// 2×2 int32 matrix (`smmla`; inline assembly because Rust's `vmmlaq_s32` is not stable).
    #[inline]
    #[target_feature(enable = "neon,i8mm")]
    pub(in crate::arch::aarch64) fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: this function enables `i8mm`, so its callers run only where SMMLA was
        // detected (`Backend::NeonI8mm`); the instruction reads and writes the named registers
        // only.
        unsafe {
            core::arch::asm!(
                "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// Two rows of 32 codes (`[lo, hi]` halves each) as the four 2×8 operands of a block.
    #[inline]
    #[target_feature(enable = "neon")]
    fn interleave(x: [int8x16_t; 2], z: [int8x16_t; 2]) -> [int8x16_t; 4] {
        let zip = |p: int8x16_t, q: int8x16_t| {
            let (p, q) = (vreinterpretq_s64_s8(p), vreinterpretq_s64_s8(q));
            (
                vreinterpretq_s8_s64(vzip1q_s64(p, q)),
                vreinterpretq_s8_s64(vzip2q_s64(p, q)),
            )
        };
        let (c0, c1) = zip(x[0], z[0]);
        let (c2, c3) = zip(x[1], z[1]);
        [c0, c1, c2, c3]
    }

    /// Unpacks blocks `k0..k0 + kc` of `rows` rows of `w` (`kb` blocks each) into `p`; an odd
    /// last row is paired with itself (the tile stores only the first copy).
    #[inline]
    #[target_feature(enable = "neon,dotprod,i8mm")]
    fn unpack<B: Block>(p: &mut Panel, w: &[B], rows: usize, kb: usize, k0: usize, kc: usize) {
        let lut = lut16(B::FMT.lut());
        for i in 0..rows.div_ceil(2) {
            let (r0, r1) = (2 * i, (2 * i + 1).min(rows - 1));
            for b in 0..kc {
                let (b0, b1) = (&w[r0 * kb + k0 + b], &w[r1 * kb + k0 + b]);
                p.codes[i][b] = interleave(block_codes(lut, b0), block_codes(lut, b1));
                let (d0, d1) = (f16(b0.d()), f16(b1.d()));
                p.d[i][b] = f32x4([d0, d0, d1, d1]);
                if B::FMT.has_m() {
                    let (m0, m1) = (f16(b0.m()), f16(b1.m()));
                    p.m[i][b] = f32x4([m0, m0, m1, m1]);
                }
            }
        }
    }

    /// One tile of `2·RP` panel rows (the first `rows` stored) by `2·TP` tokens (the first
    /// `tokens` stored; an odd last token is paired with itself) over a panel's `kc` blocks:
    /// adds `row r · token t` over those blocks to `y[t·ldy + r]` (writes it, for the first
    /// chunk); `acts` starts at the panel's first block of token 0, tokens `kb` blocks apart.
    ///
    /// Each lane runs `scalar::gemm_i8`'s arithmetic: per block `acc = fma(isum, d_w·d_a,
    /// acc)` (Q4_1: then `acc = fma(m, s_a, acc)`) on a running sum that starts at zero and
    /// continues from `y` after the first chunk. The block dots are exact integers, so every
    /// result equals the reference bit for bit.
    #[expect(
        clippy::too_many_arguments,
        reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
    )]
    #[inline]
    #[target_feature(enable = "neon,dotprod,i8mm")]
    fn tile_panel<B: Block, const RP: usize, const TP: usize>(
        p: &Panel,
        kc: usize,
        acts: &[BlockQ8Act],
        kb: usize,
        rows: usize,
        tokens: usize,
        y: &mut [f32],
        ldy: usize,
        first: bool,
    ) {
        assert!(kc <= KC && (1..=2 * RP).contains(&rows) && (1..=2 * TP).contains(&tokens));
        assert!(acts.len() >= (tokens - 1) * kb + kc && y.len() > (tokens - 1) * ldy + rows - 1);
        // The row and token of lane `l` of the result of row pair `i` and token pair `j`.
        let row = |i: usize, l: usize| (2 * i + l / 2).min(rows - 1);
        let tok = |j: usize, l: usize| (2 * j + l % 2).min(tokens - 1);
        let mut acc = [[vdupq_n_f32(0.0); TP]; RP];
        if !first {
            for i in 0..RP {
                for j in 0..TP {
                    acc[i][j] = f32x4(core::array::from_fn(|l| y[tok(j, l) * ldy + row(i, l)]));
                }
            }
        }
        for b in 0..kc {
            let a: [[&BlockQ8Act; 2]; TP] =
                core::array::from_fn(|j| [0, 1].map(|l| &acts[tok(j, l) * kb + b]));
            let av: [[int8x16_t; 4]; TP] = core::array::from_fn(|j| {
                let [x, z] = a[j].map(|t| [load_i8x16(&t.qs), load_i8x16(&t.qs[16..])]);
                interleave(x, z)
            });
            let da: [float32x4_t; TP] = core::array::from_fn(|j| {
                let (d0, d1) = (a[j][0].d(), a[j][1].d());
                f32x4([d0, d1, d0, d1])
            });
            let sa: [float32x4_t; TP] = core::array::from_fn(|j| {
                if B::FMT.has_m() {
                    let (s0, s1) = (a[j][0].s(), a[j][1].s());
                    f32x4([s0, s1, s0, s1])
                } else {
                    vdupq_n_f32(0.0)
                }
            });
            for i in 0..RP {
                let w = &p.codes[i][b];
                for j in 0..TP {
                    let mut isum = vdupq_n_s32(0);
                    for c in 0..4 {
                        isum = smmla(isum, w[c], av[j][c]);
                    }
                    let scale = vmulq_f32(p.d[i][b], da[j]);
                    acc[i][j] = vfmaq_f32(acc[i][j], vcvtq_f32_s32(isum), scale);
                    if B::FMT.has_m() {
                        acc[i][j] = vfmaq_f32(acc[i][j], p.m[i][b], sa[j]);
                    }
                }
            }
        }
        for i in 0..RP {
            for j in 0..TP {
                let mut out = [0.0f32; 4];
                // SAFETY: `out` holds 4 floats.
                unsafe { vst1q_f32(out.as_mut_ptr(), acc[i][j]) };
                for (l, &v) in out.iter().enumerate() {
                    let (r, t) = (2 * i + l / 2, 2 * j + l % 2);
                    if r < rows && t < tokens {
                        y[t * ldy + r] = v;
                    }
                }
            }
        }
    }

    /// The batched product (`n ≥ 2`): per row group and stretch of [`KC`] blocks, the weights
    /// are unpacked once into a [`Panel`] and every group of [`TOKENS`] tokens reuses them.
    #[inline]
    #[target_feature(enable = "neon,dotprod,i8mm")]
    fn gemm_batch<B: Block>(
        w: &[B],
        m: usize,
        kb: usize,
        acts: &[BlockQ8Act],
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let mut p = Panel {
            codes: [[[vdupq_n_s8(0); 4]; KC]; PAIRS],
            d: [[vdupq_n_f32(0.0); KC]; PAIRS],
            m: [[vdupq_n_f32(0.0); KC]; PAIRS],
        };
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            let mut k0 = 0;
            while k0 < kb {
                let kc = (kb - k0).min(KC);
                unpack(&mut p, &w[r * kb..], rows, kb, k0, kc);
                let mut t = 0;
                while t < n {
                    let tokens = (n - t).min(TOKENS);
                    let (at, yt) = (&acts[t * kb + k0..], &mut y[t * ldy + r..]);
                    let first = k0 == 0;
                    match (rows.div_ceil(2), tokens.div_ceil(2)) {
                        (2, 2) => {
                            tile_panel::<B, 2, 2>(&p, kc, at, kb, rows, tokens, yt, ldy, first)
                        }
                        (2, _) => {
                            tile_panel::<B, 2, 1>(&p, kc, at, kb, rows, tokens, yt, ldy, first)
                        }
                        (_, 2) => {
                            tile_panel::<B, 1, 2>(&p, kc, at, kb, rows, tokens, yt, ldy, first)
                        }
                        _ => tile_panel::<B, 1, 1>(&p, kc, at, kb, rows, tokens, yt, ldy, first),
                    }
                    t += TOKENS;
                }
                k0 += kc;
            }
            r += ROWS;
        }
    }
}

// ---- install and safe wrappers ---------------------------------------------------------------

/// Puts this module's kernels in `k` for `backend`. Called by the parent's `install` only
/// after `detected(backend)`, which is what the wrappers' `SAFETY` comments rely on.
pub(super) fn install(backend: Backend, k: &mut Kernels) {
    k.gemm_f32 = Named {
        f: gemm_f32_wrapper,
        name: "gemm_f32/neon",
    };
    k.format_mut(Format::Q4_0).dot_rows = Some(Named {
        f: dot_rows_q4_0,
        name: "dot_rows_q4_0_f32/neon",
    });
    k.format_mut(Format::Q4_1).dot_rows = Some(Named {
        f: dot_rows_q4_1,
        name: "dot_rows_q4_1_f32/neon",
    });
    k.format_mut(Format::Q8_0).dot_rows = Some(Named {
        f: dot_rows_q8_0,
        name: "dot_rows_q8_0_f32/neon",
    });
    k.format_mut(Format::Q5_0).dot_rows = Some(Named {
        f: dot_rows_q5_0,
        name: "dot_rows_q5_0_f32/neon",
    });
    k.format_mut(Format::Q5_1).dot_rows = Some(Named {
        f: dot_rows_q5_1,
        name: "dot_rows_q5_1_f32/neon",
    });
    k.format_mut(Format::IQ4_NL).dot_rows = Some(Named {
        f: dot_rows_iq4_nl,
        name: "dot_rows_iq4_nl_f32/neon",
    });
    let gemm = |f, name| Some(Named { f, name });
    let gemms = match backend {
        Backend::NeonI8mm => [
            gemm(i8mm_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/i8mm"),
            gemm(i8mm_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/i8mm"),
            gemm(i8mm_wrap::gemm_q8_0 as _, "gemm_q8_0_q8/i8mm"),
            gemm(i8mm_wrap::gemm_q5_0 as _, "gemm_q5_0_q8/i8mm"),
            gemm(i8mm_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/i8mm"),
            gemm(i8mm_wrap::gemm_iq4_nl as _, "gemm_iq4_nl_q8/i8mm"),
        ],
        Backend::NeonDotprod => [
            gemm(dotprod_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/dotprod"),
            gemm(dotprod_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/dotprod"),
            gemm(dotprod_wrap::gemm_q8_0 as _, "gemm_q8_0_q8/dotprod"),
            gemm(dotprod_wrap::gemm_q5_0 as _, "gemm_q5_0_q8/dotprod"),
            gemm(dotprod_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/dotprod"),
            gemm(dotprod_wrap::gemm_iq4_nl as _, "gemm_iq4_nl_q8/dotprod"),
        ],
        _ => [
            gemm(neon_wrap::gemm_q4_0 as _, "gemm_q4_0_q8/neon"),
            gemm(neon_wrap::gemm_q4_1 as _, "gemm_q4_1_q8/neon"),
            gemm(neon_wrap::gemm_q8_0 as _, "gemm_q8_0_q8/neon"),
            gemm(neon_wrap::gemm_q5_0 as _, "gemm_q5_0_q8/neon"),
            gemm(neon_wrap::gemm_q5_1 as _, "gemm_q5_1_q8/neon"),
            gemm(neon_wrap::gemm_iq4_nl as _, "gemm_iq4_nl_q8/neon"),
        ],
    };
    for (format, g) in crate::arch::BLOCK32_FORMATS.into_iter().zip(gemms) {
        k.format_mut(format).gemm_q8 = g;
    }
}

// Wrapper notes: reachable only through `install`, which runs after `detected(backend)`; every
// body enables `neon`, the `sdot` bodies are installed only for `Backend::NeonDotprod` and the
// `smmla` bodies (which also enable `dotprod`) only for `Backend::NeonI8mm`.

fn gemm_f32_wrapper(a: &[f32], m: usize, b: &[f32], n: usize, y: &mut [f32], ldy: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(a.len() % m, 0, "a is whole rows");
    let k = a.len() / m;
    assert_eq!(b.len(), n * k, "b has n rows of a's width");
    assert!(ldy >= m && y.len() >= (n - 1) * ldy + m);
    let k4 = k - k % GEMM_F32_LANES;
    // SAFETY: installed only by `install` after detection (see the wrapper notes).
    unsafe { gemm_f32(a, m, b, n, k, k4, y, ldy) };
    if k4 < k {
        for t in 0..n {
            for r in 0..m {
                let (ar, bt) = (&a[r * k + k4..(r + 1) * k], &b[t * k + k4..(t + 1) * k]);
                y[t * ldy + r] += scalar::dot_f32(ar, bt);
            }
        }
    }
}

dot_rows_wrapper!(dot_rows_q4_0, BlockQ4_0, "Q4_0", 32, dot_rows_q4_0_f32);
dot_rows_wrapper!(dot_rows_q4_1, BlockQ4_1, "Q4_1", 32, dot_rows_q4_1_f32);
dot_rows_wrapper!(dot_rows_q8_0, BlockQ8_0, "Q8_0", 32, dot_rows_q8_0_f32);
dot_rows_wrapper!(dot_rows_q5_0, BlockQ5_0, "Q5_0", 32, dot_rows_q5_0_f32);
dot_rows_wrapper!(dot_rows_q5_1, BlockQ5_1, "Q5_1", 32, dot_rows_q5_1_f32);
dot_rows_wrapper!(
    dot_rows_iq4_nl,
    BlockIQ4_NL,
    "IQ4_NL",
    32,
    dot_rows_iq4_nl_f32
);

macro_rules! gemm_q8_wrappers {
    ($wrap:ident => $body:ident) => {
        mod $wrap {
            use crate::blocks::{
                as_blocks, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
            };
            use crate::scalar::{gemm_q8_blocks, BlockQ8Act};

            macro_rules! one {
                ($name:ident, $block:ty, $kernel:ident) => {
                    pub(super) fn $name(
                        w: &[u8],
                        m: usize,
                        xq: &[u8],
                        n: usize,
                        y: &mut [f32],
                        ldy: usize,
                    ) {
                        if m == 0 || n == 0 {
                            return;
                        }
                        let (blocks, kb) = gemm_q8_blocks::<$block>(w, m, xq.len(), n, y, ldy);
                        let acts: &[BlockQ8Act] =
                            as_blocks(xq).expect("activations are whole act blocks");
                        // SAFETY: installed only by `install`, for this body's backend, after
                        // detection (see the wrapper notes).
                        unsafe { super::$body::$kernel(blocks, m, kb, acts, n, y, ldy) }
                    }
                };
            }
            one!(gemm_q4_0, BlockQ4_0, gemm_q4_0_q8);
            one!(gemm_q4_1, BlockQ4_1, gemm_q4_1_q8);
            one!(gemm_q8_0, BlockQ8_0, gemm_q8_0_q8);
            one!(gemm_q5_0, BlockQ5_0, gemm_q5_0_q8);
            one!(gemm_q5_1, BlockQ5_1, gemm_q5_1_q8);
            one!(gemm_iq4_nl, BlockIQ4_NL, gemm_iq4_nl_q8);
        }
    };
}

gemm_q8_wrappers!(neon_wrap => neon_int8);
gemm_q8_wrappers!(dotprod_wrap => dotprod);
gemm_q8_wrappers!(i8mm_wrap => i8mm);
