//! Ternary weights × per-token int8 activations on aarch64 (see `scalar::ternary_int8` for the
//! arithmetic and the bit-exactness contract, `scalar::lut_ternary` for the table layout).
//! The length checks, the batched kernel's tiling loop and the installation are the driver
//! shared with the other architecture (`arch/wrappers.rs`: `ternary_wrappers!`,
//! `gemm_codes_driver!`); this file holds the intrinsic bodies.
//!
//! - Integer dots (`dot_*_q8row`) and the batched kernel (`gemm_codes_q8row`): codes are bytes
//!   0..=3 and activations any i8. NEON multiplies them with `smlal`/`smlal2` into int16 lanes
//!   (two products of at most 3·128 per lane per step, at most 16 steps per accumulator:
//!   12288 < 32767) and widens with `saddlp`; the dot product extension uses `sdot`, four
//!   products straight into each int32 lane. Exact for any codes and activations.
//! - Per block the lanes are reduced exactly (`addv`), then scaled in the scalar order of the
//!   reference, so results are bit-identical to it.
//! - TQ1_0 trits: `t = byte·3^n mod 256` is `mul` on bytes, and the digit `(3t) >> 8` is the
//!   high byte of the widening `umull` by 3 (`uzp2` collects the high bytes).
//! - The lookup-table GEMV: 16 rows per vector, each pair's 16-byte low and high tables looked
//!   up with `tbl`, `zip1`/`zip2` rebuild the int16 entries.

use core::arch::aarch64::*;

use crate::blocks::{BlockI2_S, BlockTQ1_0, BlockTQ2_0};
use crate::dispatch::{Backend, Kernels};
use crate::scalar::LUT_TILE_ROWS;

// ---- shared NEON helpers ---------------------------------------------------------------------

/// 16 bytes from `p`.
#[inline]
#[target_feature(enable = "neon")]
fn load16(p: &[u8]) -> uint8x16_t {
    assert!(p.len() >= 16);
    // SAFETY: the assertion guarantees 16 readable bytes.
    unsafe { vld1q_u8(p.as_ptr()) }
}

/// Stores 16 bytes.
#[inline]
#[target_feature(enable = "neon")]
fn store16(out: &mut [u8], v: uint8x16_t) {
    assert!(out.len() >= 16);
    // SAFETY: the assertion guarantees 16 writable bytes.
    unsafe { vst1q_u8(out.as_mut_ptr(), v) }
}

/// The leading base-3 digit `(3t) >> 8` of each byte.
#[inline]
#[target_feature(enable = "neon")]
fn trit(t: uint8x16_t) -> uint8x16_t {
    let three = vdup_n_u8(3);
    let lo = vmull_u8(vget_low_u8(t), three);
    let hi = vmull_high_u8(t, vdupq_n_u8(3));
    vuzp2q_u8(vreinterpretq_u8_u16(lo), vreinterpretq_u8_u16(hi))
}

/// Calls `f(codes, first)` for the sixteen 16-code vectors of a TQ1_0 block, `first` being the
/// element index of the vector's first code.
#[inline]
#[target_feature(enable = "neon")]
fn tq1_0_codes(b: &BlockTQ1_0, mut f: impl FnMut(uint8x16_t, usize)) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    // Bytes 0..32: trit n of byte m is element m + 32n.
    let (v0, v1) = (load16(&b.qs), load16(&b.qs[16..]));
    for (n, &p) in POW3.iter().enumerate() {
        let p = vdupq_n_u8(p);
        f(trit(vmulq_u8(v0, p)), 32 * n);
        f(trit(vmulq_u8(v1, p)), 32 * n + 16);
    }
    // Bytes 32..48: trit n of byte m is element 160 + m + 16n.
    let w = load16(&b.qs[32..]);
    for (n, &p) in POW3.iter().enumerate() {
        f(trit(vmulq_u8(w, vdupq_n_u8(p))), 160 + 16 * n);
    }
    // qh: trit n of byte j is element 240 + j + 4n: the four bytes repeated, group n times 3^n.
    let h = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(b.qh)));
    const MUL: [u8; 16] = [1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27];
    // SAFETY: MUL holds 16 bytes.
    let mul = unsafe { vld1q_u8(MUL.as_ptr()) };
    f(trit(vmulq_u8(h, mul)), 240);
}

/// Calls `f(codes, first)` for the sixteen 16-code vectors of a TQ2_0 block.
#[inline]
#[target_feature(enable = "neon")]
fn tq2_0_codes(b: &BlockTQ2_0, mut f: impl FnMut(uint8x16_t, usize)) {
    let m3 = vdupq_n_u8(3);
    for half in 0..4 {
        // Bytes 16·half.. hold elements 128h + 32n + m for m in 16·(half % 2)..+16.
        let v = load16(&b.qs[16 * half..]);
        let first = 128 * (half / 2) + 16 * (half % 2);
        f(vandq_u8(v, m3), first);
        f(vandq_u8(vshrq_n_u8::<2>(v), m3), first + 32);
        f(vandq_u8(vshrq_n_u8::<4>(v), m3), first + 64);
        f(vshrq_n_u8::<6>(v), first + 96);
    }
}

/// Calls `f(codes, first)` for the eight 16-code vectors of an I2_S block.
#[inline]
#[target_feature(enable = "neon")]
fn i2_s_codes(b: &BlockI2_S, mut f: impl FnMut(uint8x16_t, usize)) {
    let m3 = vdupq_n_u8(3);
    for half in 0..2 {
        let v = load16(&b.qs[16 * half..]);
        let first = 16 * half;
        f(vshrq_n_u8::<6>(v), first);
        f(vandq_u8(vshrq_n_u8::<4>(v), m3), first + 32);
        f(vandq_u8(vshrq_n_u8::<2>(v), m3), first + 64);
        f(vandq_u8(v, m3), first + 96);
    }
}

// ---- unpack (NEON, both backends) ------------------------------------------------------------

#[target_feature(enable = "neon")]
fn unpack_tq2_0_body(blocks: &[BlockTQ2_0], codes: &mut [u8], scales: &mut [f32]) {
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        tq2_0_codes(b, |v, i| store16(&mut c[i..], v));
        *s = b.d.to_f32();
    }
}

#[target_feature(enable = "neon")]
fn unpack_tq1_0_body(blocks: &[BlockTQ1_0], codes: &mut [u8], scales: &mut [f32]) {
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        tq1_0_codes(b, |v, i| store16(&mut c[i..], v));
        *s = b.d.to_f32();
    }
}

#[target_feature(enable = "neon")]
fn unpack_i2_s_body(blocks: &[BlockI2_S], codes: &mut [u8]) {
    for (b, c) in blocks.iter().zip(codes.chunks_exact_mut(128)) {
        i2_s_codes(b, |v, i| store16(&mut c[i..], v));
    }
}

// ---- integer dots and the batched kernel, per instruction set --------------------------------

/// The integer kernels over an accumulator type `$acc`: `$acc_add(acc, codes, acts)` adds
/// `Σ codes·acts` of 16 elements, `$acc_i32` turns the accumulator into four int32 partial
/// sums. At most 16 additions (one 256-weight block) go into one accumulator.
macro_rules! ternary_int8 {
    ($features:literal, $acc:ty, $zero:ident, $acc_add:ident, $acc_i32:ident) => {
        use core::arch::aarch64::*;

        use super::{i2_s_codes, tq1_0_codes, tq2_0_codes};
        use crate::blocks::{BlockI2_S, BlockTQ1_0, BlockTQ2_0};
        use crate::scalar::ActQ8Row;

        /// 16 activation codes at `q + j`.
        ///
        /// # Safety
        /// `q + j .. q + j + 16` is readable.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn ldq(q: *const i8, j: usize) -> int8x16_t {
            // SAFETY: the caller guarantees the 16 bytes.
            unsafe { vld1q_s8(q.add(j)) }
        }

        /// Exact int32 sum of four accumulators.
        #[inline]
        #[target_feature(enable = $features)]
        fn reduce4(acc: [$acc; 4]) -> i32 {
            let v = vaddq_s32(
                vaddq_s32($acc_i32(acc[0]), $acc_i32(acc[1])),
                vaddq_s32($acc_i32(acc[2]), $acc_i32(acc[3])),
            );
            vaddvq_s32(v)
        }

        /// TQ1_0 row · activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_tq1_0_q8row(blocks: &[BlockTQ1_0], act: &ActQ8Row<'_>) -> f32 {
            let mut sum = 0.0f32;
            for (i, b) in blocks.iter().enumerate() {
                let q = act.qs[256 * i..256 * (i + 1)].as_ptr();
                let mut acc = [$zero(); 4];
                tq1_0_codes(b, |c, j| {
                    // SAFETY: the block's 256 activations are at q; j ≤ 240 for every vector.
                    let qv = unsafe { ldq(q, j) };
                    acc[j / 16 % 4] = $acc_add(acc[j / 16 % 4], c, qv);
                });
                let isum = reduce4(acc) - (act.sums[2 * i] + act.sums[2 * i + 1]);
                sum += b.d.to_f32() * isum as f32;
            }
            sum
        }

        /// TQ2_0 row · activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_tq2_0_q8row(blocks: &[BlockTQ2_0], act: &ActQ8Row<'_>) -> f32 {
            let mut sum = 0.0f32;
            for (i, b) in blocks.iter().enumerate() {
                let q = act.qs[256 * i..256 * (i + 1)].as_ptr();
                let mut acc = [$zero(); 4];
                tq2_0_codes(b, |c, j| {
                    // SAFETY: the block's 256 activations are at q; j ≤ 240 for every vector.
                    let qv = unsafe { ldq(q, j) };
                    acc[j / 16 % 4] = $acc_add(acc[j / 16 % 4], c, qv);
                });
                let isum = reduce4(acc) - (act.sums[2 * i] + act.sums[2 * i + 1]);
                sum += b.d.to_f32() * isum as f32;
            }
            sum
        }

        /// I2_S row · activations: one int32 accumulation over the whole row.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_i2_s_q8row(blocks: &[BlockI2_S], act: &ActQ8Row<'_>) -> f32 {
            let mut total = 0i32;
            for (pair, q) in blocks.chunks(2).zip(act.qs.chunks(256)) {
                let mut acc = [$zero(); 4];
                for (h, b) in pair.iter().enumerate() {
                    let q = q[128 * h..128 * (h + 1)].as_ptr();
                    i2_s_codes(b, |c, j| {
                        // SAFETY: the block's 128 activations are at q; j ≤ 112 for every vector.
                        let qv = unsafe { ldq(q, j) };
                        acc[j / 16 % 4] = $acc_add(acc[j / 16 % 4], c, qv);
                    });
                }
                total += reduce4(acc);
            }
            (total - act.sums.iter().sum::<i32>()) as f32
        }

        /// `R` rows × `T` tokens of `k` codes each, written to `out[t][r]`.
        #[inline]
        #[target_feature(enable = $features)]
        fn micro<const R: usize, const T: usize>(
            codes: [&[u8]; R],
            scales: [&[f32]; R],
            acts: [&ActQ8Row<'_>; T],
            out: [&mut [f32]; T],
        ) {
            let k = acts[0].qs.len();
            for r in 0..R {
                assert!(
                    codes[r].len() == k && (scales[r].is_empty() || scales[r].len() == k / 256)
                );
            }
            for t in 0..T {
                assert!(acts[t].qs.len() == k && out[t].len() == R);
            }
            // Plain loops, not `array::map`/`from_fn`: those generic helpers are not compiled
            // with this function's features and could pass vectors through memory.
            let mut c = [core::ptr::null::<u8>(); R];
            for r in 0..R {
                c[r] = codes[r].as_ptr();
            }
            let mut q = [core::ptr::null::<i8>(); T];
            for t in 0..T {
                q[t] = acts[t].qs.as_ptr();
            }
            let integer = scales[0].is_empty();
            let span = if integer { 128 } else { 256 };
            let mut total = [[0i32; T]; R];
            let mut fsum = [[0.0f32; T]; R];
            for s in 0..k / span {
                let mut acc = [[$zero(); T]; R];
                for j in (span * s..span * (s + 1)).step_by(16) {
                    let mut qv = [vdupq_n_s8(0); T];
                    for t in 0..T {
                        // SAFETY: j + 16 ≤ k = the length of every token's codes (asserted).
                        qv[t] = unsafe { ldq(q[t], j) };
                    }
                    for r in 0..R {
                        // SAFETY: j + 16 ≤ k = the length of every row's codes (asserted).
                        let cv = unsafe { vld1q_u8(c[r].add(j)) };
                        for t in 0..T {
                            acc[r][t] = $acc_add(acc[r][t], cv, qv[t]);
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        let isum = vaddvq_s32($acc_i32(acc[r][t]));
                        if integer {
                            total[r][t] += isum;
                        } else {
                            let a = acts[t];
                            let isum = isum - (a.sums[2 * s] + a.sums[2 * s + 1]);
                            fsum[r][t] += scales[r][s] * isum as f32;
                        }
                    }
                }
            }
            for (t, o) in out.into_iter().enumerate() {
                let all: i32 = acts[t].sums.iter().sum();
                for r in 0..R {
                    o[r] = if integer {
                        (total[r][t] - all) as f32
                    } else {
                        fsum[r][t]
                    };
                }
            }
        }

        gemm_codes_driver!($features);
    };
}

/// NEON: `smlal`/`smlal2` into int16 lanes, widened by `saddlp`.
pub(crate) mod neon {
    ternary_int8!("neon", int16x8_t, zero, acc_add, acc_i32);

    #[inline]
    #[target_feature(enable = "neon")]
    fn zero() -> int16x8_t {
        vdupq_n_s16(0)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn acc_add(acc: int16x8_t, c: uint8x16_t, q: int8x16_t) -> int16x8_t {
        let c = vreinterpretq_s8_u8(c);
        vmlal_high_s8(vmlal_s8(acc, vget_low_s8(c), vget_low_s8(q)), c, q)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn acc_i32(acc: int16x8_t) -> int32x4_t {
        vpaddlq_s16(acc)
    }
}

/// Dot product extension: `sdot`, four products straight into each int32 lane.
pub(crate) mod dotprod {
    ternary_int8!("neon,dotprod", int32x4_t, zero, acc_add, acc_i32);

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn zero() -> int32x4_t {
        vdupq_n_s32(0)
    }

    /// `acc + ` the four-way dot of codes and activations per int32 lane (`sdot`; codes ≤ 3
    /// read the same signed). Inline assembly because Rust's `vdotq_s32` is not stable yet.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn acc_add(acc: int32x4_t, c: uint8x16_t, q: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: this function enables `dotprod`, so its callers run only where SDOT was
        // detected; the instruction reads and writes the named registers only.
        unsafe {
            core::arch::asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) c,
                b = in(vreg) q,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn acc_i32(acc: int32x4_t) -> int32x4_t {
        acc
    }
}

// ---- lookup tables (NEON, both backends) -----------------------------------------------------

/// One token's tables: per activation pair the sixteen int16 entries `(i/3 − 1)·a0 +
/// (i%3 − 1)·a1` (zero from 9 on), then `uzp1`/`uzp2` split them into low and high bytes.
#[target_feature(enable = "neon")]
fn lut_tables_body(qs: &[i8], tables: &mut [u8]) {
    const P0: [i16; 16] = [-1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const P1: [i16; 16] = [-1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    // SAFETY: each pattern holds 16 i16, read as two vectors of 8.
    let (p0, p1) = unsafe {
        (
            [vld1q_s16(P0.as_ptr()), vld1q_s16(P0.as_ptr().add(8))],
            [vld1q_s16(P1.as_ptr()), vld1q_s16(P1.as_ptr().add(8))],
        )
    };
    for (a, t) in qs.chunks_exact(2).zip(tables.chunks_exact_mut(32)) {
        let (a0, a1) = (a[0] as i16, a[1] as i16);
        let e0 = vreinterpretq_u8_s16(vmlaq_n_s16(vmulq_n_s16(p0[0], a0), p1[0], a1));
        let e1 = vreinterpretq_u8_s16(vmlaq_n_s16(vmulq_n_s16(p0[1], a0), p1[1], a1));
        store16(t, vuzp1q_u8(e0, e1));
        store16(&mut t[16..], vuzp2q_u8(e0, e1));
    }
}

/// Int16 entries of 16 rows for one pair's tables at `t` (low bytes at 0, high at 16) and
/// indices `idx`: `(rows 0..8, rows 8..16)` of the vector.
///
/// # Safety
/// `t` points to 32 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn lookup(t: *const u8, idx: uint8x16_t) -> (int16x8_t, int16x8_t) {
    // SAFETY: the caller guarantees 32 readable bytes at t.
    let (tl, th) = unsafe { (vld1q_u8(t), vld1q_u8(t.add(16))) };
    let lo = vqtbl1q_u8(tl, idx);
    let hi = vqtbl1q_u8(th, idx);
    (
        vreinterpretq_s16_u8(vzip1q_u8(lo, hi)),
        vreinterpretq_s16_u8(vzip2q_u8(lo, hi)),
    )
}

/// One index tile · one token's tables.
#[target_feature(enable = "neon")]
fn lut_gemv_body(tile: &[u8], tables: &[u8], scales: &[f32], out: &mut [f32; LUT_TILE_ROWS]) {
    let cols = tile.len() / 8;
    assert!(tables.len() == 16 * cols && cols.is_multiple_of(128));
    let (ti, tt) = (tile.as_ptr(), tables.as_ptr());
    let mask = vdupq_n_u8(0x0F);
    // int32 sums of rows 4i..4i+4.
    let mut total = [vdupq_n_s32(0); 8];
    let mut fsum = [vdupq_n_f32(0.0); 8];
    let block = if scales.is_empty() { cols } else { 256 };
    for b in 0..cols / block {
        let mut isum = [vdupq_n_s32(0); 8];
        for s in (block * b..block * (b + 1)).step_by(128) {
            // One 128-column span: at most 64 entries of |T| ≤ 256 per int16 lane.
            let mut acc = [vdupq_n_s16(0); 4]; // rows 0..8, 8..16, 16..24, 24..32
            for m in s / 4..s / 4 + 32 {
                // SAFETY: chunk m < cols/4: its 32 index bytes end at 32·cols/4 = tile.len(),
                // its two pairs' 64 table bytes at 16·cols = tables.len() (asserted above).
                let (v0, v1, t) = unsafe {
                    (
                        vld1q_u8(ti.add(32 * m)),
                        vld1q_u8(ti.add(32 * m + 16)),
                        tt.add(64 * m),
                    )
                };
                for (h, v) in [v0, v1].into_iter().enumerate() {
                    let i0 = vandq_u8(v, mask);
                    let i1 = vshrq_n_u8::<4>(v);
                    // SAFETY: t..t + 64 lies inside the tables (above).
                    let ((a0, c0), (a1, c1)) = unsafe { (lookup(t, i0), lookup(t.add(32), i1)) };
                    acc[2 * h] = vaddq_s16(acc[2 * h], vaddq_s16(a0, a1));
                    acc[2 * h + 1] = vaddq_s16(acc[2 * h + 1], vaddq_s16(c0, c1));
                }
            }
            for (i, a) in acc.into_iter().enumerate() {
                isum[2 * i] = vaddw_s16(isum[2 * i], vget_low_s16(a));
                isum[2 * i + 1] = vaddw_high_s16(isum[2 * i + 1], a);
            }
        }
        for i in 0..8 {
            if scales.is_empty() {
                total[i] = vaddq_s32(total[i], isum[i]);
            } else {
                let d = &scales[LUT_TILE_ROWS * b + 4 * i..][..4];
                // SAFETY: `d` holds four f32.
                let d = unsafe { vld1q_f32(d.as_ptr()) };
                // Multiply, then add: the reference's two roundings, never fused.
                fsum[i] = vaddq_f32(fsum[i], vmulq_f32(d, vcvtq_f32_s32(isum[i])));
            }
        }
    }
    for i in 0..8 {
        let v = if scales.is_empty() {
            vcvtq_f32_s32(total[i])
        } else {
            fsum[i]
        };
        // SAFETY: `out` has 32 f32, so 4i..4i+4 is writable.
        unsafe { vst1q_f32(out[4 * i..].as_mut_ptr(), v) };
    }
}

/// One index tile → 32 rows of codes. Per 16 rows of a chunk, `tbl` maps each 4-bit index to
/// its two codes (`i/3`, `i%3`) and `zip`s give four vectors of one u32 (four codes) per row;
/// four chunks (16 columns) are then transposed 4×4 in u32, so each row gets its 16 codes as
/// one contiguous store.
#[target_feature(enable = "neon")]
fn lut_unpack_body(tile: &[u8], codes: &mut [u8]) {
    let cols = tile.len() / 8;
    assert!(codes.len() == LUT_TILE_ROWS * cols && cols.is_multiple_of(16));
    const DIV3: [u8; 16] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0];
    const MOD3: [u8; 16] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0];
    // SAFETY: both tables hold 16 bytes.
    let (div3, mod3) = unsafe { (vld1q_u8(DIV3.as_ptr()), vld1q_u8(MOD3.as_ptr())) };
    let mask = vdupq_n_u8(0x0F);
    let out = codes.as_mut_ptr();
    for group in 0..cols / 16 {
        for h in 0..2 {
            // quads[i][m]: rows 16h + 4i .. +4 of chunk 4·group + m, one u32 each.
            let mut quads = [[vdupq_n_u32(0); 4]; 4];
            for m in 0..4 {
                let v = load16(&tile[32 * (4 * group + m) + 16 * h..]);
                let (lo, hi) = (vandq_u8(v, mask), vshrq_n_u8::<4>(v));
                let (c0, c1) = (vqtbl1q_u8(div3, lo), vqtbl1q_u8(mod3, lo));
                let (c2, c3) = (vqtbl1q_u8(div3, hi), vqtbl1q_u8(mod3, hi));
                let (p01l, p23l) = (vzip1q_u8(c0, c1), vzip1q_u8(c2, c3));
                let (p01h, p23h) = (vzip2q_u8(c0, c1), vzip2q_u8(c2, c3));
                let w = |a: uint8x16_t| vreinterpretq_u16_u8(a);
                quads[0][m] = vreinterpretq_u32_u16(vzip1q_u16(w(p01l), w(p23l)));
                quads[1][m] = vreinterpretq_u32_u16(vzip2q_u16(w(p01l), w(p23l)));
                quads[2][m] = vreinterpretq_u32_u16(vzip1q_u16(w(p01h), w(p23h)));
                quads[3][m] = vreinterpretq_u32_u16(vzip2q_u16(w(p01h), w(p23h)));
            }
            for (i, v) in quads.iter().enumerate() {
                // 4×4 transpose of u32: row vector j gets lane j of the four chunk vectors.
                let t0 = vtrn1q_u32(v[0], v[1]);
                let t1 = vtrn2q_u32(v[0], v[1]);
                let t2 = vtrn1q_u32(v[2], v[3]);
                let t3 = vtrn2q_u32(v[2], v[3]);
                let d = |a: uint32x4_t| vreinterpretq_u64_u32(a);
                let rows = [
                    vreinterpretq_u8_u64(vtrn1q_u64(d(t0), d(t2))),
                    vreinterpretq_u8_u64(vtrn1q_u64(d(t1), d(t3))),
                    vreinterpretq_u8_u64(vtrn2q_u64(d(t0), d(t2))),
                    vreinterpretq_u8_u64(vtrn2q_u64(d(t1), d(t3))),
                ];
                for (j, row) in rows.into_iter().enumerate() {
                    let r = 16 * h + 4 * i + j;
                    // SAFETY: r < 32 and 16·group + 16 ≤ cols, so the 16 bytes lie inside
                    // `codes` (32 rows of `cols`, asserted).
                    unsafe { vst1q_u8(out.add(r * cols + 16 * group), row) };
                }
            }
        }
    }
}

/// One token's activations → int8 codes with one scale: the reference's arithmetic lane by
/// lane (`x·s`, `trunc(|·| + 0.5)` with the sign put back, clamp to [−128, 127]; `fcvtzs`
/// turns NaN into 0 as `as i32` does), so the bytes are identical. `fmaxnm` skips NaN as
/// `f32::max` does.
#[target_feature(enable = "neon")]
fn quantize_act_row_body(x: &[f32], qs: &mut [i8], sums: &mut [i32]) -> Option<f32> {
    let mut m = [vdupq_n_f32(0.0); 4];
    for c in x.chunks_exact(16) {
        for (i, m) in m.iter_mut().enumerate() {
            // SAFETY: the chunk holds 16 f32, so 4i..4i+4 is readable.
            let v = unsafe { vld1q_f32(c.as_ptr().add(4 * i)) };
            *m = vmaxnmq_f32(*m, vabsq_f32(v));
        }
    }
    let amax = vmaxnmvq_f32(vmaxnmq_f32(
        vmaxnmq_f32(m[0], m[1]),
        vmaxnmq_f32(m[2], m[3]),
    ));
    if !amax.is_finite() {
        return None;
    }
    if amax == 0.0 {
        qs.fill(0);
        sums.fill(0);
        return Some(0.0);
    }
    let (s, d) = (127.0 / amax, amax / 127.0);
    let (half, zero) = (vdupq_n_f32(0.5), vdupq_n_f32(0.0));
    let (lo, hi) = (vdupq_n_s32(-128), vdupq_n_s32(127));
    for ((x, q), sum) in x
        .chunks_exact(128)
        .zip(qs.chunks_exact_mut(128))
        .zip(sums.iter_mut())
    {
        let mut acc = vdupq_n_s32(0);
        for (x, q) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
            let code = |i: usize| {
                // SAFETY: the chunk holds 16 f32.
                let p = vmulq_n_f32(unsafe { vld1q_f32(x.as_ptr().add(4 * i)) }, s);
                let t = vcvtq_s32_f32(vaddq_f32(vabsq_f32(p), half));
                let t = vbslq_s32(vcltq_f32(p, zero), vnegq_s32(t), t);
                vmaxq_s32(vminq_s32(t, hi), lo)
            };
            let v = [code(0), code(1), code(2), code(3)];
            acc = vaddq_s32(acc, vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3])));
            let a = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
            let b = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
            // SAFETY: `q` holds 16 bytes, exclusively borrowed.
            unsafe { vst1q_s8(q.as_mut_ptr(), vcombine_s8(vmovn_s16(a), vmovn_s16(b))) };
        }
        *sum = vaddvq_s32(acc);
    }
    Some(d)
}

// ---- safe wrappers and installation ----------------------------------------------------------
// Wrapper notes: `install_ternary` (made below by `ternary_wrappers!`, the driver shared with the
// other architecture in `arch/wrappers.rs`) is the only code that names these private
// wrappers, and the architecture's `install` calls it only after `detected(backend)` returned
// true. Every body
// here enables `neon`, which every aarch64 backend requires; the `dotprod` integer bodies
// additionally enable `dotprod`, and `install` picks them only for `Backend::NeonDotprod` and
// `Backend::NeonI8mm`, whose detection checked it.

ternary_wrappers!("neon"; {
    Backend::NeonDotprod | Backend::NeonI8mm => w_dotprod => dotprod "dotprod",
    _ => w_neon => neon "neon",
});

/// Puts the ternary kernels of `backend` (an aarch64 backend whose features were detected)
/// in `k`.
pub(super) fn install(backend: Backend, k: &mut Kernels) {
    install_ternary(backend, k);
}
