//! The one driver of the int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 (both layouts) / IQ4_NL /
//! Q5_0 / Q5_1 / IQ4_XS ([`crate::scalar::repack`]),
//! shared by every backend: shape checks, the loop over column chunks, token tiles and row
//! tiles, the activations' per-block sums, and partial tiles. A backend supplies only the
//! register tile ([`RepackedTile::tile`]), so the tiling is written once.
//!
//! Loop order: column chunks of at most [`KC_BLOCKS`] blocks (outputs of later chunks resume
//! from the stored partial sum, so every output runs the same operations whatever `m`, `n` or
//! the split), then tiles of tokens, whose `c·Σa` per block are summed once here, then tiles
//! of rows: a call's rows (a thread's task) stay in L1/L2 while each token tile passes.
//! A tile short of rows (the matrix's last) computes into a stack buffer and copies the valid
//! rows out, so register tiles always store whole vectors.

use crate::format::Format;
use crate::scalar::{
    act_q8_bytes, repacked_bytes, BlockQ8Act, RepackedLayout, REPACKED_FORMATS, REPACK_ROWS,
};

/// Most blocks per column chunk (8192 columns): bounds the stack buffer of activation sums.
pub(crate) const KC_BLOCKS: usize = 256;
/// Most tokens of any backend's tile.
pub(crate) const MAX_TOKENS: usize = 8;
/// Most rows of any backend's tile.
pub(crate) const MAX_ROWS: usize = 32;

/// [`TileArgs::fmt`] of Q4_0 (nibbles, offset 8): its index in [`REPACKED_FORMATS`].
pub(crate) const Q4_0: u8 = 0;
/// [`TileArgs::fmt`] of Q4_1 (nibbles, no offset, a bias per row and block).
pub(crate) const Q4_1: u8 = 1;
/// [`TileArgs::fmt`] of Q8_0 (bytes, offset 128).
pub(crate) const Q8_0: u8 = 2;
/// [`TileArgs::fmt`] of IQ4_NL (Q4_0's nibbles through the codebook, offset 128).
pub(crate) const IQ4_NL: u8 = 3;
/// [`TileArgs::fmt`] of Q5_0 (nibbles and their fifth bits, offset 16).
pub(crate) const Q5_0: u8 = 4;
/// [`TileArgs::fmt`] of Q5_1 (as Q5_0's, no offset, a bias per row and block).
pub(crate) const Q5_1: u8 = 5;
/// [`TileArgs::fmt`] of IQ4_XS (IQ4_NL's codes under f32 row scales).
pub(crate) const IQ4_XS: u8 = 6;
/// [`TileArgs::fmt`] of Q8_0 with signed codes (bytes, offset 0; NEON's layout).
pub(crate) const Q8_0S: u8 = RepackedLayout::Q8_0_SIGNED.index() as u8;

// Each tag names its format's row of the table.
const _: () = {
    let tags = [
        (Q4_0, Format::Q4_0),
        (Q4_1, Format::Q4_1),
        (Q8_0, Format::Q8_0),
        (IQ4_NL, Format::IQ4_NL),
        (Q5_0, Format::Q5_0),
        (Q5_1, Format::Q5_1),
        (IQ4_XS, Format::IQ4_XS),
        (Q8_0S, Format::Q8_0),
    ];
    assert!(tags.len() == REPACKED_FORMATS.len());
    let mut i = 0;
    while i < tags.len() {
        assert!(REPACKED_FORMATS[tags[i].0 as usize].format as u8 == tags[i].1 as u8);
        i += 1;
    }
};

/// Bytes of one block group of tile format (layout) `fmt`.
pub(crate) const fn group_bytes(fmt: u8) -> usize {
    REPACKED_FORMATS[fmt as usize].group_bytes
}

/// Bytes of the eight f16 scales at the front of a block group (IQ4_XS's eight f32 scales
/// take twice that: [`has_f32_scales`]).
pub(crate) const SCALE_BYTES: usize = 16;
/// Bytes of a Q5 block group's fifth bits (`qh`), just before its nibbles.
pub(crate) const QH_BYTES: usize = 32;

/// Where a block group's codes of tile format `fmt` start (Q5_0, Q5_1: their nibbles, after
/// the fifth bits).
pub(crate) const fn codes_offset(fmt: u8) -> usize {
    REPACKED_FORMATS[fmt as usize].codes_at
}

/// Whether the format's block groups carry eight f16 minimums after the scales (Q4_1, Q5_1).
pub(crate) const fn has_min(fmt: u8) -> bool {
    matches!(fmt, Q4_1 | Q5_1)
}

/// Whether the format's codes have a fifth bit (Q5_0, Q5_1).
pub(crate) const fn has_qh(fmt: u8) -> bool {
    matches!(fmt, Q5_0 | Q5_1)
}

/// Whether the format's nibbles stand for IQ4_NL's codebook values (IQ4_NL, IQ4_XS).
pub(crate) const fn has_codebook(fmt: u8) -> bool {
    matches!(fmt, IQ4_NL | IQ4_XS)
}

/// Whether the block group opens with eight f32 row scales (IQ4_XS: `d·(sc − 32)`, 32 bytes)
/// rather than eight f16 ones. The scale load is the only step this changes.
pub(crate) const fn has_f32_scales(fmt: u8) -> bool {
    matches!(fmt, IQ4_XS)
}

/// One register tile's operands (see [`RepackedTile`]).
pub(crate) struct TileArgs<'a> {
    /// The layout: [`Q4_0`], [`Q4_1`], [`Q8_0`], [`IQ4_NL`], [`Q5_0`], [`Q5_1`], [`IQ4_XS`] or
    /// [`Q8_0S`].
    pub fmt: u8,
    /// The tile's first row group from the chunk's first block group on; group `g` is
    /// `g·gstride` bytes on.
    pub w: &'a [u8],
    /// Bytes between row groups (tiles of one group, as NEON's, never step).
    #[cfg_attr(
        target_arch = "aarch64",
        expect(dead_code, reason = "NEON's tiles never step between row groups")
    )]
    pub gstride: usize,
    /// Row groups present from `w` (1..=ROWS/8): a tile reads group `min(g, groups − 1)`, and
    /// the outputs of rows past the matrix are discarded.
    pub groups: usize,
    /// Blocks in the chunk.
    pub blocks: usize,
    /// Token 0's activation blocks from the chunk's first; token `t` is `kb` blocks on.
    pub acts: &'a [BlockQ8Act],
    /// Activation blocks per token.
    pub kb: usize,
    /// `c·Σa` of token `t`'s block `b` of the chunk at `t·blocks + b`.
    pub asum: &'a [i32],
    /// Tokens (1..=TOKENS).
    pub tokens: usize,
    /// Outputs: row `i` of token `t` at `t·ldy + i`, ROWS of each token writable.
    pub y: &'a mut [f32],
    /// Floats between tokens' outputs.
    pub ldy: usize,
    /// Whether outputs start at zero (the first chunk) rather than from `y`.
    pub first: bool,
}

/// A backend's register tile over repacked weights.
pub(crate) trait RepackedTile {
    /// Rows per tile: a multiple of [`REPACK_ROWS`], at most [`MAX_ROWS`].
    const ROWS: usize;
    /// Most tokens per tile, at most [`MAX_TOKENS`].
    const TOKENS: usize;

    /// `y[t·ldy + i] (+)= row i · token t` over the chunk, for `ROWS` rows and `a.tokens`
    /// tokens, with the arithmetic of `scalar::gemm_repacked` in block order.
    ///
    /// # Safety
    /// The CPU has the features the implementation's `#[target_feature]` body enables.
    unsafe fn tile(a: TileArgs<'_>);
}

/// `Σ qs` of one activation block, with the target's baseline SIMD: the driver is not compiled
/// with its backend's features, and byte-by-byte sums here took 11.6 % of a Q4_0 prompt's
/// samples (`perf`, SmolLM2-135M pp128, two threads, AVX512-VNNI: every task sums every
/// token's blocks again).
#[inline]
fn code_sum(a: &BlockQ8Act) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; `qs` is 32 readable bytes, read
        // unaligned.
        unsafe {
            let p = a.qs.as_ptr().cast::<__m128i>();
            // q + 128 as unsigned bytes (the sign bit flipped), summed by `psadbw` against 0.
            let flip = _mm_set1_epi8(i8::MIN);
            let zero = _mm_setzero_si128();
            let lo = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128(p), flip), zero);
            let hi = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128(p.add(1)), flip), zero);
            let s = _mm_add_epi64(lo, hi);
            _mm_cvtsi128_si32(_mm_add_epi64(s, _mm_unpackhi_epi64(s, s))) - 128 * 32
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        use core::arch::aarch64::*;
        // SAFETY: NEON is enabled for this target (cfg); `qs` is 32 readable bytes.
        unsafe {
            let p = a.qs.as_ptr();
            // Each half's sum is at most 16·127 in magnitude: exact in `vaddlvq_s8`'s i16.
            i32::from(vaddlvq_s8(vld1q_s8(p))) + i32::from(vaddlvq_s8(vld1q_s8(p.add(16))))
        }
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    {
        a.qs.iter().map(|&q| i32::from(q)).sum()
    }
}

/// `scalar::gemm_repacked`'s product through `K`'s tiles.
///
/// # Safety
/// The CPU has the features `K::tile` needs.
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
pub(crate) unsafe fn gemm_repacked<K: RepackedTile>(
    layout: RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    const { assert!(K::ROWS % REPACK_ROWS == 0 && K::ROWS <= MAX_ROWS) };
    const { assert!(K::TOKENS >= 1 && K::TOKENS <= MAX_TOKENS) };
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(
        w.len(),
        repacked_bytes(layout, m, cols),
        "a repacked matrix"
    );
    let qb = act_q8_bytes(cols);
    assert_eq!(xq.len(), n * qb, "activation rows match the weights");
    assert!(
        ldy >= m && y.len() >= (n - 1) * ldy + m,
        "outputs hold n rows of ldy"
    );
    let acts: &[BlockQ8Act] = crate::blocks::as_blocks(xq).expect("whole act blocks");
    let (fmt, info) = (layout.index() as u8, layout.info());
    let (kb, gb, c) = (cols / 32, info.group_bytes, info.offset);
    let gstride = kb * gb;
    let n_groups = m.div_ceil(REPACK_ROWS);
    let mut asum = [0i32; MAX_TOKENS * KC_BLOCKS];
    let mut part = [0f32; MAX_TOKENS * MAX_ROWS];
    for b0 in (0..kb).step_by(KC_BLOCKS) {
        let blocks = (kb - b0).min(KC_BLOCKS);
        for t0 in (0..n).step_by(K::TOKENS) {
            let tokens = (n - t0).min(K::TOKENS);
            // Formats without an offset leave the sums at zero, as the tiles expect.
            for t in (0..tokens).filter(|_| c != 0) {
                let a = &acts[(t0 + t) * kb + b0..][..blocks];
                for (s, a) in asum[t * blocks..][..blocks].iter_mut().zip(a) {
                    *s = c * code_sum(a);
                }
            }
            for r0 in (0..m).step_by(K::ROWS) {
                let rows = (m - r0).min(K::ROWS);
                let g0 = r0 / REPACK_ROWS;
                macro_rules! args {
                    ($y:expr, $ldy:expr) => {
                        TileArgs {
                            fmt,
                            w: &w[g0 * gstride + b0 * gb..],
                            gstride,
                            groups: (n_groups - g0).min(K::ROWS / REPACK_ROWS),
                            blocks,
                            acts: &acts[t0 * kb + b0..],
                            kb,
                            asum: &asum[..tokens * blocks],
                            tokens,
                            y: $y,
                            ldy: $ldy,
                            first: b0 == 0,
                        }
                    };
                }
                let yt = &mut y[t0 * ldy + r0..];
                if rows == K::ROWS && yt.len() >= (tokens - 1) * ldy + K::ROWS {
                    // SAFETY: the caller guarantees K's features.
                    unsafe { K::tile(args!(yt, ldy)) };
                } else {
                    for t in 0..tokens {
                        part[t * K::ROWS..][..rows].copy_from_slice(&yt[t * ldy..][..rows]);
                    }
                    // SAFETY: the caller guarantees K's features.
                    unsafe { K::tile(args!(&mut part[..], K::ROWS)) };
                    for t in 0..tokens {
                        yt[t * ldy..][..rows].copy_from_slice(&part[t * K::ROWS..][..rows]);
                    }
                }
            }
        }
    }
}
