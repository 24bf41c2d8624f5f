//! One token (decoding) × repacked Q4_0 / Q4_1 / signed Q8_0: the matrix × vector
//! product of `scalar::gemm_repacked` with `n = 1`, bit for bit, apart from the GEMM driver's
//! tiles.
//!
//! Why hand-written, and why not the driver's 8-row × 1-token tile: decoding executes every
//! weight once per token, so what surrounds the `sdot`s is the cost (issue 16 counts it as
//! AArch64 instructions per token). This loop
//! - passes over the blocks once per 32 rows (four row groups), so each block's activation
//!   codes, scale and `−c·Σa` are loaded once per 32 rows, not per 8;
//! - meets the codes with `sdot`'s by-element form (`a.4b[j]` picks activation dword `j`),
//!   so no activation dword is broadcast;
//! - meets Q8_0's signed layout (`RepackedLayout::Q8_0_SIGNED`, what NEON repacks Q8_0 into)
//!   with `sdot` as stored (x86's unsigned layout, `u = q + 128`, would cost an `eor` per 16
//!   bytes; NEON never repacks into it, and meets it only through the tiles);
//! - has no per-tile call, asserts or stack tile (only a matrix's last, partial row group
//!   goes through a buffer).
//!
//! The arithmetic is the spec's per block and row: the exact `i32` sum `Σ u·a − c·Σa`, then
//! `acc = fma(i as f32, d_w·d_a, acc)`, then for Q4_1 `acc = fma(m, s_a, acc)`, blocks in
//! order, in column chunks of [`KC_BLOCKS`] blocks as the driver (so `c·Σa` lives in a
//! fixed stack buffer).
//!
//! A format is one [`Codes`] arm: its block group's step, inline assembly built from the
//! shared pieces below (loads, the nibble or byte chunks, the float step). Another format is
//! another arm: IQ4_NL adds a `tbl` through its codebook after each nibble `and`/`ushr` of
//! Q4_0's chunk (from 0, not `−8·Σa`); Q5_0 merges its fifth bits into the nibbles before the
//! `sdot`s. The loop itself does not change.

use core::arch::aarch64::*;
use core::mem::MaybeUninit;

use crate::arch::repacked::KC_BLOCKS;
use crate::scalar::{act_q8_bytes, repacked_bytes, BlockQ8Act, RepackedLayout, REPACK_ROWS};

/// Row groups per pass over the blocks (the last pass of a matrix may take fewer).
const GROUPS: usize = 4;

/// One activation block as every row group's step reads it.
pub(super) struct Act {
    /// The 32 codes: dwords 0..4 and 4..8.
    a: [int8x16_t; 2],
    /// `d_a` (lane 0 is read: by-element multiplies).
    d: float32x4_t,
    /// `s_a = d_a·Σa` (lane 0; Q4_1).
    s: float32x4_t,
    /// `−c·Σa` in every lane: where each integer sum starts.
    init: int32x4_t,
}

/// One repacked format as the loop sees it: its block group's step.
pub(super) trait Codes {
    /// Bytes of one block group (eight rows × 32 columns).
    const GROUP_BYTES: usize;
    /// The `c` the step needs: each block's integer sum starts from `−c·Σa`.
    const OFFSET: i32;

    /// `f (+)= ` the block group at `*p` · `x` for its eight rows (`f[0]`: rows 0..4, `f[1]`:
    /// 4..8) with the spec's arithmetic, and `*p` moved to the next block group.
    ///
    /// # Safety
    /// `GROUP_BYTES` bytes from `*p` are readable; the CPU has the implementation's features.
    unsafe fn step(p: &mut *const u8, x: &Act, f: &mut [float32x4_t; 2]);
}

// The steps are inline assembly: `sdot` by element is not a stable intrinsic, and one
// block group is then exactly its instructions (`ld1` of four registers with post-increment,
// no address arithmetic, no copies). Code chunk `k` (16 bytes) holds four codes of rows
// `4h..4h + 4` (`h = k mod 2`) for activation dword `k div 2` (Q8_0); a Q4 chunk `2j + h`
// holds dword `j`'s codes in its low nibbles and dword `4 + j`'s in its high ones.

/// Q4 chunk `$v`: low nibbles (through `$t`) × dword `$l` of `a0`, high nibbles × dword `$l`
/// of `a1`, into `$c`.
macro_rules! nibble_chunk {
    ($v:literal, $c:literal, $t:literal, $l:literal) => {
        concat!(
            "and {",
            $t,
            ":v}.16b, ",
            $v,
            ".16b, {nib:v}.16b\n",
            "sdot {",
            $c,
            ":v}.4s, {",
            $t,
            ":v}.16b, {a0:v}.4b[",
            $l,
            "]\n",
            "ushr ",
            $v,
            ".16b, ",
            $v,
            ".16b, #4\n",
            "sdot {",
            $c,
            ":v}.4s, ",
            $v,
            ".16b, {a1:v}.4b[",
            $l,
            "]\n",
        )
    };
}

/// A Q4 block group's 128 code bytes from `p` on, into `c0` (rows 0..4) and `c1` (4..8).
macro_rules! nibble_codes {
    () => {
        concat!(
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{p}], #64\n",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{p}], #64\n",
            "mov {c0:v}.16b, {i0:v}.16b\n",
            "mov {c1:v}.16b, {i0:v}.16b\n",
            nibble_chunk!("v16", "c0", "t0", "0"),
            nibble_chunk!("v17", "c1", "t1", "0"),
            nibble_chunk!("v18", "c0", "t0", "1"),
            nibble_chunk!("v19", "c1", "t1", "1"),
            nibble_chunk!("v20", "c0", "t0", "2"),
            nibble_chunk!("v21", "c1", "t1", "2"),
            nibble_chunk!("v22", "c0", "t0", "3"),
            nibble_chunk!("v23", "c1", "t1", "3"),
        )
    };
}

/// Eight signed Q8_0 chunks (128 bytes from `p` on) × dwords 0..4 of `$a`.
macro_rules! byte_codes {
    ($a:literal) => {
        concat!(
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{p}], #64\n",
            "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{p}], #64\n",
            byte_chunk!("v16", "c0", $a, "0"),
            byte_chunk!("v17", "c1", $a, "0"),
            byte_chunk!("v18", "c0", $a, "1"),
            byte_chunk!("v19", "c1", $a, "1"),
            byte_chunk!("v20", "c0", $a, "2"),
            byte_chunk!("v21", "c1", $a, "2"),
            byte_chunk!("v22", "c0", $a, "3"),
            byte_chunk!("v23", "c1", $a, "3"),
        )
    };
}

/// Q8_0 chunk `$v` × dword `$l` of `$a` into `$c`.
macro_rules! byte_chunk {
    ($v:literal, $c:literal, $a:literal, $l:literal) => {
        concat!("sdot {", $c, ":v}.4s, ", $v, ".16b, {", $a, ":v}.4b[", $l, "]\n")
    };
}

/// The float step of a block group whose eight f16 scales are in `s`: `f = fma(i as f32,
/// d_w·d_a, f)` lane by lane (`c0`/`c1` the integer sums).
macro_rules! scale_step {
    () => {
        concat!(
            "fcvtl {u:v}.4s, {s:v}.4h\n",
            "fcvtl2 {s:v}.4s, {s:v}.8h\n",
            "fmul {u:v}.4s, {u:v}.4s, {d:v}.s[0]\n",
            "fmul {s:v}.4s, {s:v}.4s, {d:v}.s[0]\n",
            "scvtf {c0:v}.4s, {c0:v}.4s\n",
            "scvtf {c1:v}.4s, {c1:v}.4s\n",
            "fmla {f0:v}.4s, {c0:v}.4s, {u:v}.4s\n",
            "fmla {f1:v}.4s, {c1:v}.4s, {s:v}.4s\n",
        )
    };
}

/// Q4_0: nibbles from `−8·Σa`.
pub(super) struct Q4_0;
/// Q4_1: nibbles from 0, then `f = fma(m, s_a, f)`.
pub(super) struct Q4_1;
/// Q8_0's signed layout as stored (`sdot`).
pub(super) struct Q8_0S;

impl Codes for Q4_0 {
    const GROUP_BYTES: usize = 144;
    const OFFSET: i32 = 8;

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn step(p: &mut *const u8, x: &Act, f: &mut [float32x4_t; 2]) {
        // SAFETY: reads the 144 bytes from `*p` (the caller's contract) and moves `p` past
        // them; writes only the named and clobbered registers.
        unsafe {
            core::arch::asm!(
                "ldr {s:q}, [{p}], #16",
                nibble_codes!(),
                scale_step!(),
                p = inout(reg) *p,
                a0 = in(vreg) x.a[0], a1 = in(vreg) x.a[1], d = in(vreg) x.d,
                i0 = in(vreg) x.init, nib = in(vreg) vdupq_n_u8(0x0F),
                f0 = inout(vreg) f[0], f1 = inout(vreg) f[1],
                c0 = out(vreg) _, c1 = out(vreg) _, t0 = out(vreg) _, t1 = out(vreg) _,
                s = out(vreg) _, u = out(vreg) _,
                out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

impl Codes for Q4_1 {
    const GROUP_BYTES: usize = 160;
    const OFFSET: i32 = 0;

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn step(p: &mut *const u8, x: &Act, f: &mut [float32x4_t; 2]) {
        // SAFETY: reads the 160 bytes from `*p` (the caller's contract) and moves `p` past
        // them; writes only the named and clobbered registers.
        unsafe {
            core::arch::asm!(
                "ldp {s:q}, {m:q}, [{p}], #32",
                nibble_codes!(),
                scale_step!(),
                "fcvtl {u:v}.4s, {m:v}.4h",
                "fcvtl2 {m:v}.4s, {m:v}.8h",
                "fmla {f0:v}.4s, {u:v}.4s, {sa:v}.s[0]",
                "fmla {f1:v}.4s, {m:v}.4s, {sa:v}.s[0]",
                p = inout(reg) *p,
                a0 = in(vreg) x.a[0], a1 = in(vreg) x.a[1], d = in(vreg) x.d,
                sa = in(vreg) x.s, i0 = in(vreg) x.init, nib = in(vreg) vdupq_n_u8(0x0F),
                f0 = inout(vreg) f[0], f1 = inout(vreg) f[1],
                c0 = out(vreg) _, c1 = out(vreg) _, t0 = out(vreg) _, t1 = out(vreg) _,
                s = out(vreg) _, u = out(vreg) _, m = out(vreg) _,
                out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

impl Codes for Q8_0S {
    const GROUP_BYTES: usize = 272;
    const OFFSET: i32 = 0;

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn step(p: &mut *const u8, x: &Act, f: &mut [float32x4_t; 2]) {
        // SAFETY: reads the 272 bytes from `*p` (the caller's contract) and moves `p` past
        // them; writes only the named and clobbered registers.
        unsafe {
            core::arch::asm!(
                "ldr {s:q}, [{p}], #16",
                "movi {c0:v}.16b, #0",
                "movi {c1:v}.16b, #0",
                byte_codes!("a0"),
                byte_codes!("a1"),
                scale_step!(),
                p = inout(reg) *p,
                a0 = in(vreg) x.a[0], a1 = in(vreg) x.a[1], d = in(vreg) x.d,
                f0 = inout(vreg) f[0], f1 = inout(vreg) f[1],
                c0 = out(vreg) _, c1 = out(vreg) _, s = out(vreg) _, u = out(vreg) _,
                out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

/// The pass over the blocks for one instruction set's features (the steps inline only into a
/// body that has theirs).
macro_rules! gemv {
    ($features:literal) => {
        use super::*;

        /// `y[r] = row r · xq` for the `m` rows of the repacked matrix `w` of `cols` columns,
        /// bit for bit `scalar::gemm_repacked` with one token.
        #[target_feature(enable = $features)]
        pub(in crate::arch::aarch64) fn gemv<F: Codes>(
            w: &[u8],
            m: usize,
            cols: usize,
            xq: &[u8],
            y: &mut [f32],
        ) {
            let (kb, gb) = (cols / 32, F::GROUP_BYTES);
            let groups = m.div_ceil(REPACK_ROWS);
            let acts: &[BlockQ8Act] = crate::blocks::as_blocks(xq).expect("whole act blocks");
            assert!(kb * 32 == cols && acts.len() == kb && w.len() == groups * kb * gb);
            assert!(y.len() >= m);
            // Not zeroed: every call writes the entries it reads (decoding makes many calls).
            let mut init = [const { MaybeUninit::<i32>::uninit() }; KC_BLOCKS];
            for b0 in (0..kb).step_by(KC_BLOCKS) {
                let blocks = (kb - b0).min(KC_BLOCKS);
                let acts = &acts[b0..][..blocks];
                for (s, a) in init.iter_mut().zip(acts) {
                    s.write(if F::OFFSET != 0 {
                        -F::OFFSET * code_sum(a)
                    } else {
                        0
                    });
                }
                let pass = Pass {
                    kb,
                    acts,
                    // SAFETY: the loop above wrote entries 0..blocks (`acts` has `blocks`).
                    init: unsafe { core::slice::from_raw_parts(init.as_ptr().cast(), blocks) },
                    first: b0 == 0,
                };
                // Whole passes of GROUPS row groups in one call, then the rest.
                let (full, last) = (groups / GROUPS, groups % GROUPS);
                let wc = &w[b0 * gb..];
                if full > 0 {
                    let rows = full * GROUPS * REPACK_ROWS;
                    if rows <= m {
                        pass.run::<F>(GROUPS, full, wc, &mut y[..rows]);
                    } else {
                        // The matrix ends inside the last pass (and there is no rest).
                        let head = rows - GROUPS * REPACK_ROWS;
                        if full > 1 {
                            pass.run::<F>(GROUPS, full - 1, wc, &mut y[..head]);
                        }
                        let wl = &wc[(full - 1) * GROUPS * kb * gb..];
                        partial::<F>(&pass, GROUPS, wl, &mut y[head..m]);
                    }
                }
                if last > 0 {
                    let g = full * GROUPS;
                    let (wl, yl) = (&wc[g * kb * gb..], &mut y[g * REPACK_ROWS..m]);
                    if yl.len() == last * REPACK_ROWS {
                        pass.run::<F>(last, 1, wl, yl);
                    } else {
                        partial::<F>(&pass, last, wl, yl);
                    }
                }
            }
        }

        /// One pass of `take` row groups whose outputs `y` end inside the last group: through
        /// a buffer of whole groups.
        #[inline(never)]
        #[target_feature(enable = $features)]
        fn partial<F: Codes>(pass: &Pass<'_>, take: usize, w: &[u8], y: &mut [f32]) {
            let mut buf = [0f32; GROUPS * REPACK_ROWS];
            buf[..y.len()].copy_from_slice(y);
            pass.run::<F>(take, 1, w, &mut buf[..take * REPACK_ROWS]);
            y.copy_from_slice(&buf[..y.len()]);
        }

        /// `Σ qs` of an activation block: pairwise widening adds, then one across-vector add.
        #[inline]
        #[target_feature(enable = $features)]
        fn code_sum(a: &BlockQ8Act) -> i32 {
            // SAFETY: the block's 32 codes, as two 16-byte loads.
            let (x, y) = unsafe { (vld1q_s8(a.qs.as_ptr()), vld1q_s8(a.qs.as_ptr().add(16))) };
            // Each i16 lane adds four codes: at most 508 in magnitude.
            vaddlvq_s16(vaddq_s16(vpaddlq_s8(x), vpaddlq_s8(y)))
        }

        /// One column chunk's blocks, for the passes over its row groups.
        struct Pass<'a> {
            /// Blocks per row (the distance between row groups is `kb` block groups).
            kb: usize,
            /// The chunk's activation blocks.
            acts: &'a [BlockQ8Act],
            /// `−c·Σa` of each of the chunk's blocks (unread when `c = 0`).
            init: &'a [i32],
            /// Whether outputs start from zero rather than from `y` (the first chunk).
            first: bool,
        }

        impl Pass<'_> {
            /// `y (+)= ` the chunk's products for `count` passes of `take` (1..=GROUPS) row
            /// groups from `w`.
            #[inline]
            #[target_feature(enable = $features)]
            fn run<F: Codes>(&self, take: usize, count: usize, w: &[u8], y: &mut [f32]) {
                match take {
                    4 => self.passes::<F, 4>(count, w, y),
                    3 => self.passes::<F, 3>(count, w, y),
                    2 => self.passes::<F, 2>(count, w, y),
                    _ => self.passes::<F, 1>(count, w, y),
                }
            }

            /// `count` passes of `R` row groups: `w` starts at the first group's block group
            /// of the chunk's first block, `y` holds their `8R·count` outputs.
            #[target_feature(enable = $features)]
            fn passes<F: Codes, const R: usize>(&self, count: usize, w: &[u8], y: &mut [f32]) {
                let (gb, stride) = (F::GROUP_BYTES, self.kb * F::GROUP_BYTES);
                let blocks = self.acts.len();
                assert!(self.init.len() == blocks && y.len() == count * R * REPACK_ROWS);
                assert!(count >= 1 && w.len() >= (count * R - 1) * stride + blocks * gb);
                for (q, y) in y.chunks_exact_mut(R * REPACK_ROWS).enumerate() {
                    // SAFETY: pass q's groups are inside w (asserted above).
                    unsafe { self.pass::<F, R>(w.as_ptr().add(q * R * stride), y) };
                }
            }

            /// One pass of `R` row groups from `w` into `y` (`8R` floats).
            ///
            /// # Safety
            /// `w` is the first group's block group of the chunk's first block, the `R`
            /// groups' block groups of the chunk are readable (`(R − 1)·stride + blocks·gb`
            /// bytes), and `y` holds `8R` floats.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn pass<F: Codes, const R: usize>(&self, w: *const u8, y: &mut [f32]) {
                let stride = self.kb * F::GROUP_BYTES;
                let mut f = [[vdupq_n_f32(0.0); 2]; GROUPS];
                if !self.first {
                    for g in 0..R {
                        for h in 0..2 {
                            // SAFETY: y holds 8R floats (`chunks_exact` in `passes`).
                            f[g][h] = unsafe { vld1q_f32(y.as_ptr().add(8 * g + 4 * h)) };
                        }
                    }
                }
                // Group g's block group of the current block.
                let mut p: [*const u8; GROUPS] =
                    core::array::from_fn(|g| w.wrapping_add(g.min(R - 1) * stride));
                for (act, init) in self.acts.iter().zip(self.init) {
                    let x = Act {
                        // SAFETY: the 32 codes of an activation block, as two 16-byte loads.
                        a: unsafe {
                            [vld1q_s8(act.qs.as_ptr()), vld1q_s8(act.qs.as_ptr().add(16))]
                        },
                        d: vdupq_n_f32(act.d()),
                        s: vdupq_n_f32(act.s()),
                        init: vdupq_n_s32(if F::OFFSET != 0 { *init } else { 0 }),
                    };
                    // Unrolled by hand: the accumulators stay in registers.
                    // SAFETY: each group's next block group is readable (the caller's
                    // contract), and this body has the steps' features.
                    unsafe {
                        F::step(&mut p[0], &x, &mut f[0]);
                        if R > 1 {
                            F::step(&mut p[1], &x, &mut f[1]);
                        }
                        if R > 2 {
                            F::step(&mut p[2], &x, &mut f[2]);
                        }
                        if R > 3 {
                            F::step(&mut p[3], &x, &mut f[3]);
                        }
                    }
                }
                for g in 0..R {
                    for h in 0..2 {
                        // SAFETY: as for the loads above.
                        unsafe { vst1q_f32(y.as_mut_ptr().add(8 * g + 4 * h), f[g][h]) };
                    }
                }
            }
        }
    };
}

/// The dot product extension (all every step needs; the i8mm backend calls it too).
pub(super) mod dotprod {
    gemv!("neon,dotprod");
}

/// The shared checks of the wrappers: the driver's, for one token.
pub(super) fn check(layout: RepackedLayout, w: &[u8], m: usize, cols: usize, xq: &[u8], y: &[f32]) {
    assert_eq!(
        w.len(),
        repacked_bytes(layout, m, cols),
        "a repacked matrix"
    );
    assert_eq!(
        xq.len(),
        act_q8_bytes(cols),
        "activations match the weights"
    );
    assert!(y.len() >= m, "outputs hold m floats");
}
