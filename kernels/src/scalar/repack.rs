//! Row-interleaved ("repacked") Q4_0, Q4_1, Q8_0 (two layouts), IQ4_NL, Q5_0, Q5_1 and IQ4_XS:
//! the layouts, the repacking, and the int8 GEMM over them, as plain loops. This file is the
//! specification the SIMD paths equal bit for bit.
//!
//! Why a second layout: in GGUF order a row's blocks lie end to end, so a SIMD product over
//! many rows either reduces each row's lanes horizontally (the `dot_*_q8` kernels) or first
//! transposes a panel of rows (`gemm_i8`'s unpacking, once per call). Repacked at load, eight
//! rows sit interleaved four bytes at a time, so one vector load gives the same four codes of
//! eight rows, ready for `vpdpbusd` / `sdot` with one activation dword broadcast: no transpose
//! at run time, no horizontal sums, and every lane of the integer accumulator is one row.
//!
//! Both layouts keep the GGUF block's bytes (same size as the eight blocks they came from, so
//! a repacked matrix costs what the file's bytes cost); only the code *order* changes, and in
//! Q8_0's first layout the codes are stored offset by 128 so that every code is an unsigned
//! byte (x86's `vpdpbusd` multiplies unsigned by signed). Q8_0's second layout keeps the GGUF's
//! signed codes: NEON's dot product extension has only signed × signed (`sdot`), which would
//! otherwise flip every code byte back first. IQ4_XS is the exception to the sizes (below): its
//! 32-weight sub-blocks take a scale each, stored as f32. A backend names the layout it repacks
//! each format into ([`crate::Kernels::repacked_layout`]); a [`RepackedLayout`] names one row of
//! [`REPACKED_FORMATS`], in this order: 0 Q4_0, 1 Q4_1, 2 Q8_0 (codes plus 128), 3 IQ4_NL,
//! 4 Q5_0, 5 Q5_1, 6 IQ4_XS, 7 Q8_0 with signed codes ([`RepackedLayout::Q8_0_SIGNED`]):
//!
//! ```text
//! BlockQ4_0x8 (144 bytes): d[8] f16 (row r's scale), then qs[128]:
//!   qs[(j·8 + r)·4 + k], j in 0..4, k in 0..4 = GGUF byte 4j + k of row r
//!   (low nibble: code 4j + k, high nibble: code 16 + 4j + k; unsigned u = q, weight (u − 8)·d)
//! BlockQ4_1x8 (160 bytes): d[8] f16, m[8] f16, then qs[128] as Q4_0's (weight u·d + m)
//! BlockQ8_0x8 (272 bytes): d[8] f16, then qs[256]:
//!   qs[(j·8 + r)·4 + k], j in 0..8, k in 0..4 = code 4j + k of row r, plus 128 (as u8)
//!   (weight (u − 128)·d)
//! BlockQ8_0x8 signed (`RepackedLayout::Q8_0_SIGNED`, 272 bytes): as above without the 128:
//!   qs[(j·8 + r)·4 + k] = code 4j + k of row r (as i8; weight q·d)
//! IQ4_NL (144 bytes): BlockQ4_0x8's bytes (its block is Q4_0's); nibble q stands for
//!   u = T[q] + 128, T the codebook (`IQ4_NL_VALUES`, −127..=113, so u is 1..=241;
//!   weight (u − 128)·d = T[q]·d)
//! BlockQ5_0x8 (176 bytes): d[8] f16, then qh[32], then qs[128] as Q4_0's (the low four bits):
//!   qh[r·4 + k] bit j     = fifth bit of code 4j + k of row r      (GGUF qh bit 4j + k)
//!   qh[r·4 + k] bit 4 + j = fifth bit of code 16 + 4j + k of row r (GGUF qh bit 16 + 4j + k)
//!   (u = nibble | fifth bit << 4, 0..=31; weight (u − 16)·d)
//! BlockQ5_1x8 (192 bytes): d[8] f16, m[8] f16, then qh[32] and qs[128] as Q5_0's
//!   (weight u·d + m)
//! BlockIQ4_XSx8 (160 bytes): s[8] f32, row r's scale d·(sc − 32) of its 32-weight sub-block,
//!   then qs[128] as Q4_0's (sub-block j's 16 GGUF bytes `qs[16j..16j + 16]` hold its codes in
//!   Q4_0's order); nibble q stands for u = T[q] + 128 as IQ4_NL's (weight T[q]·s)
//! ```
//!
//! Why IQ4_XS's scales are f32: a GGUF IQ4_XS super-block is 256 weights under one f16 `d` and
//! eight 6-bit `sc`, so a 32-column block group has no f16 scale of its own. `d·(sc − 32)` is
//! exact in f32 (an 11-bit significand times an integer of at most 6 bits; f16 subnormals are
//! f32 normals) and is `gemm_i8`'s group scale for IQ4_XS bit for bit, so every backend's float
//! step stays the other formats' `fma(i, s·d_a, acc)` with only the scale load differing. The
//! cost: 160 bytes per 8 rows × 32 columns where the file has 136 (17.6 % more memory and more
//! bytes read per decoded token; `repacked_bytes` counts it, and with it the memory report).
//!
//! Why that `qh`: byte `r·4 + k` of it sits at the same place in its 32 bytes as the code
//! bytes of nibble group `j` (`qs[32j..32j + 32]`) hold the same row and `k`, so one 32-byte
//! vector of `qh` serves all four groups: shifted right by `j`, its bit 4 is every lane's
//! high-code fifth bit and its bit 0 the low code's (x86 shifts 16- or 32-bit lanes; bits that
//! cross into a byte from its neighbour land in bits the mask `0x10` drops). NEON inserts them
//! with `sli`/`sri` after one shift and one `and` per group. Against a byte per row and group
//! (broadcast, shuffle, test against a bit mask per code), that is no shuffle and no compare,
//! and the layout is the GGUF bytes' size (22 and 24 bytes a block, eight blocks a group).
//!
//! A repacked matrix of `m` rows is `⌈m/8⌉` groups of eight rows; group `g` is its
//! `cols/32` block groups end to end. The last group is padded with zero rows (scale 0).
//!
//! The product, per output `y[t][r]`, over the row's blocks in order, with `c` the codes'
//! offset (8; 16 for Q5_0; 128 for Q8_0, IQ4_NL and IQ4_XS; 0 for Q4_1, Q5_1 and signed Q8_0,
//! whose `u` is the signed `q`) and `a` the token's [`BlockQ8Act`] codes:
//!
//! ```text
//! i_b = Σ_k u_k·a_k − c·Σ_k a_k                 exact i32 (= Σ q·a of the GGUF codes;
//!                                               IQ4_NL, IQ4_XS: Σ T[q]·a)
//! acc = fma(i_b as f32, d_b·d_a, acc)           from acc = 0 (IQ4_XS: d_b is s[r])
//! acc = fma(m_b, s_a, acc)                      (Q4_1, Q5_1: c = 0; s_a = d_a·Σa)
//! ```
//!
//! which is [`gemm_i8`](super::gemm_i8)'s arithmetic on the same matrix bit for bit (its
//! groups are these blocks, its `i_g` this `i_b`), so switching a matrix to the repacked form
//! changes no result.

use super::act::{act_blocks, BlockQ8Act, IQ4_NL_VALUES};
use super::gemm::gemm_shape;
use super::iq4_xs::iq4_xs_steps;
use crate::blocks::{
    as_blocks, BlockIQ4_XS, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le,
};
use crate::format::Format;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Rows interleaved in one block group.
pub const REPACK_ROWS: usize = 8;

/// Eight Q4_0 blocks (the same 32 columns of eight rows), interleaved; see the module docs.
///
/// ```text
/// byte 0..16    d[r] (f16), r in 0..8
/// byte 16..144  qs: byte (j·8 + r)·4 + k = GGUF qs byte 4j + k of row r
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ4_0x8 {
    /// Scale of each row.
    pub d: [F16Le; 8],
    /// Packed 4-bit codes, four bytes of each row in turn.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0x8>() == 144);

/// Eight Q8_0 blocks interleaved; see the module docs.
///
/// ```text
/// byte 0..16    d[r] (f16), r in 0..8
/// byte 16..272  qs: byte (j·8 + r)·4 + k = code 4j + k of row r, plus 128
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ8_0x8 {
    /// Scale of each row.
    pub d: [F16Le; 8],
    /// Codes plus 128 (unsigned), four of each row in turn.
    pub qs: [u8; 256],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0x8>() == 272);

/// Eight Q4_1 blocks interleaved; see the module docs.
///
/// ```text
/// byte 0..16    d[r] (f16), r in 0..8
/// byte 16..32   m[r] (f16)
/// byte 32..160  qs: byte (j·8 + r)·4 + k = GGUF qs byte 4j + k of row r
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ4_1x8 {
    /// Scale of each row.
    pub d: [F16Le; 8],
    /// Offset of each row.
    pub m: [F16Le; 8],
    /// Packed 4-bit codes, four bytes of each row in turn.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1x8>() == 160);

/// Eight Q5_0 blocks interleaved; see the module docs.
///
/// ```text
/// byte 0..16    d[r] (f16), r in 0..8
/// byte 16..48   qh: byte r·4 + k, bit j = fifth bit of code 4j + k of row r,
///               bit 4 + j = fifth bit of code 16 + 4j + k
/// byte 48..176  qs: as BlockQ4_0x8's (the codes' low four bits)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ5_0x8 {
    /// Scale of each row.
    pub d: [F16Le; 8],
    /// The codes' fifth bits, rearranged (module docs).
    pub qh: [u8; 32],
    /// The codes' low four bits, four bytes of each row in turn.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0x8>() == 176);

/// Eight Q5_1 blocks interleaved; see the module docs.
///
/// ```text
/// byte 0..16    d[r] (f16), r in 0..8
/// byte 16..32   m[r] (f16)
/// byte 32..64   qh as BlockQ5_0x8's
/// byte 64..192  qs as BlockQ5_0x8's
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ5_1x8 {
    /// Scale of each row.
    pub d: [F16Le; 8],
    /// Offset of each row.
    pub m: [F16Le; 8],
    /// The codes' fifth bits, rearranged (module docs).
    pub qh: [u8; 32],
    /// The codes' low four bits, four bytes of each row in turn.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1x8>() == 192);

/// Eight IQ4_XS sub-blocks (the same 32 columns of eight rows), interleaved; see the module
/// docs.
///
/// ```text
/// byte 0..32    s[r] (f32, little-endian): row r's sub-block scale d·(sc − 32)
/// byte 32..160  qs as BlockQ4_0x8's; nibble q stands for T[q]
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockIQ4_XSx8 {
    /// Scale of each row, `d·(sc − 32)` as little-endian f32 bytes.
    pub s: [[u8; 4]; 8],
    /// Packed 4-bit codebook indices, four bytes of each row in turn.
    pub qs: [u8; 128],
}
const _: () = assert!(core::mem::size_of::<BlockIQ4_XSx8>() == 160);

/// Row `r`'s 16 code bytes of one 32-weight block (GGUF order: byte `i` holds codes `i` and
/// `16 + i`) into a block group's `qs` (module docs).
fn put_q4_row(src: &[u8], r: usize, qs: &mut [u8; 128]) {
    for j in 0..4 {
        for k in 0..4 {
            qs[(j * 8 + r) * 4 + k] = src[4 * j + k];
        }
    }
}

/// Row `r`'s GGUF Q5 block (`qh`, `qs`) into a block group's `qh` and `qs` (module docs).
fn put_q5_row(qh: &[u8; 4], qs: &[u8; 16], r: usize, oh: &mut [u8; 32], os: &mut [u8; 128]) {
    let h = u32::from_le_bytes(*qh);
    for k in 0..4 {
        let mut byte = 0u8;
        for j in 0..4 {
            byte |= (((h >> (4 * j + k)) & 1) as u8) << j;
            byte |= (((h >> (16 + 4 * j + k)) & 1) as u8) << (4 + j);
        }
        oh[r * 4 + k] = byte;
        for j in 0..4 {
            os[(j * 8 + r) * 4 + k] = qs[4 * j + k];
        }
    }
}

/// Row `r`'s 5-bit codes (element order) from a block group's `qh` and `qs`.
fn q5_row(qh: &[u8; 32], qs: &[u8; 128], r: usize) -> [u8; 32] {
    let mut u = [0u8; 32];
    for j in 0..4 {
        for k in 0..4 {
            let (byte, h) = (qs[(j * 8 + r) * 4 + k], qh[r * 4 + k]);
            u[4 * j + k] = (byte & 0x0F) | ((h >> j) & 1) << 4;
            u[16 + 4 * j + k] = (byte >> 4) | ((h >> (4 + j)) & 1) << 4;
        }
    }
    u
}

/// One format's repacked layout, as the product, the driver and every backend's tiles read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepackedFormat {
    /// The GGUF format.
    pub format: Format,
    /// Bytes of one block group (eight blocks).
    pub group_bytes: usize,
    /// The codes' offset `c` of the module docs: what the product subtracts per activation.
    pub offset: i32,
    /// Where a block group's codes start: after the eight f16 scales (Q4_1, Q5_1: and their
    /// eight f16 offsets; Q5_0, Q5_1: and the 32 bytes of fifth bits, the nibbles start here;
    /// IQ4_XS: after its eight f32 scales).
    pub codes_at: usize,
}

/// Every repacked layout, the one place its facts are written; the SIMD tiles name a layout
/// by its index here ([`RepackedLayout`]). A format's first row is its default layout.
pub const REPACKED_FORMATS: [RepackedFormat; 8] = {
    const fn f(format: Format, group_bytes: usize, offset: i32, codes_at: usize) -> RepackedFormat {
        RepackedFormat {
            format,
            group_bytes,
            offset,
            codes_at,
        }
    }
    [
        f(Format::Q4_0, size_of::<BlockQ4_0x8>(), 8, 16),
        f(Format::Q4_1, size_of::<BlockQ4_1x8>(), 0, 32),
        f(Format::Q8_0, size_of::<BlockQ8_0x8>(), 128, 16),
        // Q4_0's bytes; the codes are codebook values plus 128.
        f(Format::IQ4_NL, size_of::<BlockQ4_0x8>(), 128, 16),
        // The nibbles after the fifth bits (`qh`).
        f(Format::Q5_0, size_of::<BlockQ5_0x8>(), 16, 48),
        f(Format::Q5_1, size_of::<BlockQ5_1x8>(), 0, 64),
        // IQ4_NL's codes after eight f32 scales.
        f(Format::IQ4_XS, size_of::<BlockIQ4_XSx8>(), 128, 32),
        // Q8_0 with the GGUF's signed codes (NEON `sdot`).
        f(Format::Q8_0, size_of::<BlockQ8_0x8>(), 0, 16),
    ]
};

/// One repacked layout: a row of [`REPACKED_FORMATS`]. A format may have several (Q8_0: codes
/// plus 128 for x86, signed for NEON); the bytes of a repacked matrix mean nothing without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RepackedLayout(u8);

impl RepackedLayout {
    /// Q8_0 with its codes stored signed, as in the GGUF block (offset 0).
    pub const Q8_0_SIGNED: RepackedLayout = RepackedLayout(7);

    /// `format`'s default layout (its first row of [`REPACKED_FORMATS`]), if it has one.
    pub fn of(format: Format) -> Option<Self> {
        REPACKED_FORMATS
            .iter()
            .position(|f| f.format == format)
            .map(|i| RepackedLayout(i as u8))
    }

    /// Every layout, in table order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..REPACKED_FORMATS.len() as u8).map(RepackedLayout)
    }

    /// The layout's index in [`REPACKED_FORMATS`].
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The layout's facts.
    pub const fn info(self) -> &'static RepackedFormat {
        &REPACKED_FORMATS[self.0 as usize]
    }

    /// The GGUF format it holds.
    pub const fn format(self) -> Format {
        self.info().format
    }

    /// Whether the codes are stored as signed bytes (signed Q8_0).
    pub const fn signed(self) -> bool {
        self.0 == Self::Q8_0_SIGNED.0
    }
}

/// Whether `format` has a repacked layout.
pub fn has_repacked(format: Format) -> bool {
    RepackedLayout::of(format).is_some()
}

/// Whether `format`'s repacked block groups carry an offset per row (`m`, added as `m·s_a`).
pub fn repacked_has_min(format: Format) -> bool {
    matches!(format, Format::Q4_1 | Format::Q5_1)
}

/// Bytes of one repacked block group of `layout` (eight blocks).
pub fn repacked_group_block_bytes(layout: RepackedLayout) -> usize {
    layout.info().group_bytes
}

/// The codes' offset `c` of the module docs: what the product subtracts per activation.
pub fn repacked_offset(layout: RepackedLayout) -> i32 {
    layout.info().offset
}

/// Bytes of `m` rows of `cols` weights in `layout`, repacked (the last group padded).
pub fn repacked_bytes(layout: RepackedLayout, m: usize, cols: usize) -> usize {
    assert!(cols.is_multiple_of(32), "rows are whole 32-weight blocks");
    m.div_ceil(REPACK_ROWS) * (cols / 32) * repacked_group_block_bytes(layout)
}

/// Repacks `m` rows of `layout`'s format (GGUF bytes, whole blocks) into `out`
/// ([`repacked_bytes`] long).
pub fn repack(layout: RepackedLayout, w: &[u8], m: usize, out: &mut [u8]) {
    assert!(m > 0 && w.len().is_multiple_of(m), "weights are whole rows");
    let format = layout.format();
    let rb = w.len() / m;
    let cols = rb / format.block_bytes() * format.block_len();
    assert_eq!(out.len(), repacked_bytes(layout, m, cols));
    let nb = cols / 32;
    match format {
        // IQ4_NL's block is Q4_0's (f16 scale, 16 nibble bytes): the same bytes move.
        Format::Q4_0 | Format::IQ4_NL => {
            let out: &mut [BlockQ4_0x8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    *o = BlockQ4_0x8 {
                        d: [F16Le([0; 2]); 8],
                        qs: [0; 128],
                    };
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockQ4_0] = as_blocks(row).expect("whole blocks");
                        o.d[r] = blk[b].d;
                        put_q4_row(&blk[b].qs, r, &mut o.qs);
                    }
                    // Padding rows: code 8 (weight 0; IQ4_NL's T[8]·0) under scale 0.
                    for r in REPACK_ROWS.min(m - g * REPACK_ROWS)..REPACK_ROWS {
                        for j in 0..4 {
                            o.qs[(j * 8 + r) * 4..][..4].fill(0x88);
                        }
                    }
                }
            }
        }
        Format::Q4_1 => {
            let out: &mut [BlockQ4_1x8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    // Padding rows: scale and offset 0.
                    *o = BlockQ4_1x8 {
                        d: [F16Le([0; 2]); 8],
                        m: [F16Le([0; 2]); 8],
                        qs: [0; 128],
                    };
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockQ4_1] = as_blocks(row).expect("whole blocks");
                        (o.d[r], o.m[r]) = (blk[b].d, blk[b].m);
                        put_q4_row(&blk[b].qs, r, &mut o.qs);
                    }
                }
            }
        }
        Format::Q5_0 => {
            let out: &mut [BlockQ5_0x8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    // Padding rows: code 16 (nibble 0, fifth bit set: weight 0) under scale 0.
                    *o = BlockQ5_0x8 {
                        d: [F16Le([0; 2]); 8],
                        qh: [0xFF; 32],
                        qs: [0; 128],
                    };
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockQ5_0] = as_blocks(row).expect("whole blocks");
                        o.d[r] = blk[b].d;
                        put_q5_row(&blk[b].qh, &blk[b].qs, r, &mut o.qh, &mut o.qs);
                    }
                }
            }
        }
        Format::Q5_1 => {
            let out: &mut [BlockQ5_1x8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    // Padding rows: scale and offset 0.
                    *o = BlockQ5_1x8 {
                        d: [F16Le([0; 2]); 8],
                        m: [F16Le([0; 2]); 8],
                        qh: [0; 32],
                        qs: [0; 128],
                    };
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockQ5_1] = as_blocks(row).expect("whole blocks");
                        (o.d[r], o.m[r]) = (blk[b].d, blk[b].m);
                        put_q5_row(&blk[b].qh, &blk[b].qs, r, &mut o.qh, &mut o.qs);
                    }
                }
            }
        }
        Format::Q8_0 => {
            // Plus 128 is a flipped top bit; the signed layout keeps the GGUF byte.
            let flip = if layout.signed() { 0 } else { 0x80 };
            let out: &mut [BlockQ8_0x8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    *o = BlockQ8_0x8 {
                        d: [F16Le([0; 2]); 8],
                        // Padding rows: code 0 under scale 0.
                        qs: [flip; 256],
                    };
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockQ8_0] = as_blocks(row).expect("whole blocks");
                        o.d[r] = blk[b].d;
                        for j in 0..8 {
                            for k in 0..4 {
                                o.qs[(j * 8 + r) * 4 + k] = (blk[b].qs[4 * j + k] as u8) ^ flip;
                            }
                        }
                    }
                }
            }
        }
        Format::IQ4_XS => {
            let out: &mut [BlockIQ4_XSx8] = crate::blocks::as_blocks_mut(out).expect("whole");
            for (g, groups) in out.chunks_exact_mut(nb).enumerate() {
                for (b, o) in groups.iter_mut().enumerate() {
                    // Padding rows: code 8 under scale 0, as IQ4_NL's.
                    *o = BlockIQ4_XSx8 {
                        s: [[0; 4]; 8],
                        qs: [0x88; 128],
                    };
                    // Block b is sub-block j of super-block sb.
                    let (sb, j) = (b / 8, b % 8);
                    for r in 0..REPACK_ROWS.min(m - g * REPACK_ROWS) {
                        let row = &w[(g * REPACK_ROWS + r) * rb..][..rb];
                        let blk: &[BlockIQ4_XS] = as_blocks(row).expect("whole blocks");
                        o.s[r] = iq4_xs_steps(&blk[sb])[j].to_le_bytes();
                        put_q4_row(&blk[sb].qs[16 * j..16 * j + 16], r, &mut o.qs);
                    }
                }
            }
        }
        _ => panic!("{format:?} has no repacked layout"),
    }
}

/// Row `r`'s codes `u` as stored (unsigned but for signed Q8_0), scale and offset in block
/// group `blk` (one 32-column block).
fn unpack_row(layout: RepackedLayout, blk: &[u8], r: usize) -> ([i32; 32], f32, f32) {
    let format = layout.format();
    let mut u = [0u8; 32];
    let wide = |u: [u8; 32]| u.map(i32::from);
    match format {
        Format::Q4_0 | Format::IQ4_NL | Format::IQ4_XS => {
            // The same nibbles under an f16 scale, or IQ4_XS's f32 one.
            let (qs, d) = if format == Format::IQ4_XS {
                let b: &BlockIQ4_XSx8 = &as_blocks(blk).expect("one block group")[0];
                (&b.qs, f32::from_le_bytes(b.s[r]))
            } else {
                let b: &BlockQ4_0x8 = &as_blocks(blk).expect("one block group")[0];
                (&b.qs, b.d[r].to_f32())
            };
            // IQ4_NL, IQ4_XS: nibble q stands for T[q] + 128 (always in 1..=241).
            let code = |q: u8| match format {
                Format::Q4_0 => q,
                _ => (IQ4_NL_VALUES[q as usize] as i32 + 128) as u8,
            };
            for j in 0..4 {
                for k in 0..4 {
                    let byte = qs[(j * 8 + r) * 4 + k];
                    u[4 * j + k] = code(byte & 0x0F);
                    u[16 + 4 * j + k] = code(byte >> 4);
                }
            }
            (wide(u), d, 0.0)
        }
        Format::Q4_1 => {
            let b: &BlockQ4_1x8 = &as_blocks(blk).expect("one block group")[0];
            for j in 0..4 {
                for k in 0..4 {
                    let byte = b.qs[(j * 8 + r) * 4 + k];
                    u[4 * j + k] = byte & 0x0F;
                    u[16 + 4 * j + k] = byte >> 4;
                }
            }
            (wide(u), b.d[r].to_f32(), b.m[r].to_f32())
        }
        Format::Q5_0 => {
            let b: &BlockQ5_0x8 = &as_blocks(blk).expect("one block group")[0];
            (wide(q5_row(&b.qh, &b.qs, r)), b.d[r].to_f32(), 0.0)
        }
        Format::Q5_1 => {
            let b: &BlockQ5_1x8 = &as_blocks(blk).expect("one block group")[0];
            (
                wide(q5_row(&b.qh, &b.qs, r)),
                b.d[r].to_f32(),
                b.m[r].to_f32(),
            )
        }
        Format::Q8_0 => {
            let b: &BlockQ8_0x8 = &as_blocks(blk).expect("one block group")[0];
            for j in 0..8 {
                for k in 0..4 {
                    u[4 * j + k] = b.qs[(j * 8 + r) * 4 + k];
                }
            }
            let u = match layout.signed() {
                true => u.map(|u| i32::from(u as i8)),
                false => wide(u),
            };
            (u, b.d[r].to_f32(), 0.0)
        }
        _ => panic!("{format:?} has no repacked layout"),
    }
}

/// Row `r` of a repacked matrix of `cols` weights back to f32 (tests, and products the
/// repacked form does not serve).
pub fn dequant_repacked(layout: RepackedLayout, w: &[u8], cols: usize, r: usize, out: &mut [f32]) {
    let (nb, gb) = (cols / 32, repacked_group_block_bytes(layout));
    assert_eq!(out.len(), cols);
    let (c, format) = (repacked_offset(layout), layout.format());
    let group = &w[r / REPACK_ROWS * nb * gb..][..nb * gb];
    for (blk, o) in group.chunks_exact(gb).zip(out.chunks_exact_mut(32)) {
        let (u, d, m) = unpack_row(layout, blk, r % REPACK_ROWS);
        for (o, u) in o.iter_mut().zip(u) {
            *o = if repacked_has_min(format) {
                u as f32 * d + m
            } else {
                (u - c) as f32 * d
            };
        }
    }
}

/// `y[t·ldy + r] = row r · token t` for the `m` rows of a matrix `w` repacked in `layout`, of
/// `cols` weights per row ([`repacked_bytes`]) and `n` rows of int8 activations `xq`
/// ([`act_q8_bytes`](super::act_q8_bytes) each), with the arithmetic of the module docs.
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
pub fn gemm_repacked(
    layout: RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(w.len(), repacked_bytes(layout, m, cols));
    let (_, qb) = gemm_shape(&w[..0], 1, xq.len(), n, y, ldy);
    assert!(ldy >= m);
    assert_eq!(
        qb,
        super::act_q8_bytes(cols),
        "activation rows match the weights"
    );
    let (nb, gb, c) = (
        cols / 32,
        repacked_group_block_bytes(layout),
        repacked_offset(layout),
    );
    let format = layout.format();
    for r in 0..m {
        let group = &w[r / REPACK_ROWS * nb * gb..][..nb * gb];
        for (t, xt) in xq.chunks_exact(qb).enumerate() {
            let acts: &[BlockQ8Act] = act_blocks(xt, nb);
            let mut acc = 0.0f32;
            for (blk, a) in group.chunks_exact(gb).zip(acts) {
                let (u, d, m) = unpack_row(layout, blk, r % REPACK_ROWS);
                let dot: i32 = u.iter().zip(&a.qs).map(|(&u, &a)| u * a as i32).sum();
                let asum: i32 = a.qs.iter().map(|&a| a as i32).sum();
                let isum = dot - c * asum;
                acc = libm::fmaf(isum as f32, d * a.d(), acc);
                if repacked_has_min(format) {
                    acc = libm::fmaf(m, a.s(), acc);
                }
            }
            y[t * ldy + r] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::scalar::{act_q8_bytes, gemm_i8, quantize_act_q8, unpack_i8_ref};

    /// Every repacked layout, from the one table.
    fn layouts() -> impl Iterator<Item = RepackedLayout> {
        RepackedLayout::all()
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// `cols` rounded up to whole blocks of `format` (IQ4_XS: 256).
    fn whole(format: Format, cols: usize) -> usize {
        cols.next_multiple_of(format.block_len())
    }

    /// Random blocks with finite f16 scales of every magnitude (subnormals, ±65504, zero);
    /// IQ4_XS's sub-block scales all 0 or all 63 in the blocks with a special `d`.
    fn matrix(format: Format, m: usize, cols: usize, seed: u64) -> Vec<u8> {
        let bb = format.block_bytes();
        let mut w = bytes(m * cols / format.block_len() * bb, seed);
        let special = [0x0000u16, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x3C00, 0x8400];
        for (i, blk) in w.chunks_exact_mut(bb).enumerate() {
            let d = if i % 5 == 0 {
                special[i / 5 % special.len()]
            } else {
                // Finite: exponent below 31.
                u16::from_le_bytes([blk[0], blk[1]]) & 0xBBFF
            };
            blk[..2].copy_from_slice(&d.to_le_bytes());
            if format == Format::IQ4_XS && i % 5 == 0 {
                // scales_h and scales_l: every sc = 63, or every sc = 0.
                blk[2..8].fill(if i % 10 == 0 { 0xFF } else { 0x00 });
            }
        }
        w
    }

    #[test]
    fn repacked_dequant_equals_gguf_dequant() {
        for layout in layouts() {
            let format = layout.format();
            for m in [1, 7, 8, 9, 17] {
                let cols = whole(format, 96);
                let w = matrix(format, m, cols, m as u64 * 31 + 5);
                let mut p = vec![0u8; repacked_bytes(layout, m, cols)];
                repack(layout, &w, m, &mut p);
                let rb = w.len() / m;
                let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
                for r in 0..m {
                    crate::Kernels::scalar().dequant(format, &w[r * rb..][..rb], &mut a);
                    dequant_repacked(layout, &p, cols, r, &mut b);
                    for (x, y) in a.iter().zip(&b) {
                        assert_eq!(x.to_bits(), y.to_bits(), "{layout:?} m={m} r={r}");
                    }
                }
            }
        }
    }

    /// The repacked product is `gemm_i8` on the GGUF bytes bit for bit, including all-max
    /// codes, extreme scales and activations of ±127.
    #[test]
    fn gemm_repacked_equals_gemm_i8() {
        for layout in layouts() {
            let format = layout.format();
            for (m, n, cols) in [(1, 1, 32), (9, 3, 64), (20, 5, 160)] {
                let cols = whole(format, cols);
                let mut w = matrix(format, m, cols, (m * n) as u64 + 1);
                if m == 9 {
                    // All-max codes in every block.
                    let bb = format.block_bytes();
                    let (from, byte) = match format {
                        Format::Q4_0 | Format::Q5_0 => (2, 0xFF),
                        // After the offset: codes 31.
                        Format::Q5_1 => (4, 0xFF),
                        // T[0] = −127, the codebook's largest magnitude.
                        Format::IQ4_NL => (2, 0x00),
                        // After d and the sub-block scales: T[0].
                        Format::IQ4_XS => (8, 0x00),
                        _ => (2, 0x80),
                    };
                    for blk in w.chunks_exact_mut(bb) {
                        blk[from..].fill(byte);
                    }
                }
                let mut x: Vec<f32> = bytes(n * cols, 77)
                    .iter()
                    .map(|&b| b as f32 / 16.0 - 8.0)
                    .collect();
                x[0] = 1e30;
                let mut xq = vec![0u8; n * act_q8_bytes(cols)];
                for (xt, q) in x
                    .chunks_exact(cols)
                    .zip(xq.chunks_exact_mut(act_q8_bytes(cols)))
                {
                    quantize_act_q8(xt, q);
                }
                let mut p = vec![0u8; repacked_bytes(layout, m, cols)];
                repack(layout, &w, m, &mut p);
                let (mut a, mut b) = (vec![0f32; n * m], vec![1f32; n * m]);
                let unpack = unpack_i8_ref(format).unwrap();
                gemm_i8(format, unpack, &w, m, &xq, n, &mut a, m);
                gemm_repacked(layout, &p, m, cols, &xq, n, &mut b, m);
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        "{layout:?} m={m} n={n}: {x} vs {y}"
                    );
                }
            }
        }
    }

    /// Q8_0's two layouts hold the same codes: every code −128..=127 (eight blocks of one row
    /// hold all 256), stored as `q + 128` in one and as `q` in the other, byte for byte.
    #[test]
    fn q8_0_layouts_differ_only_by_the_offset() {
        let (m, cols) = (9, 256);
        let mut w = matrix(Format::Q8_0, m, cols, 11);
        for (i, blk) in w.chunks_exact_mut(34).enumerate() {
            if i < 8 {
                for (k, q) in blk[2..].iter_mut().enumerate() {
                    *q = (32 * i + k) as u8;
                }
            }
        }
        let (unsigned, signed) = (
            RepackedLayout::of(Format::Q8_0).unwrap(),
            RepackedLayout::Q8_0_SIGNED,
        );
        assert!(!unsigned.signed() && signed.signed() && signed.format() == Format::Q8_0);
        assert_eq!(
            (repacked_offset(unsigned), repacked_offset(signed)),
            (128, 0)
        );
        let mut p = [unsigned, signed].map(|l| vec![0u8; repacked_bytes(l, m, cols)]);
        repack(unsigned, &w, m, &mut p[0]);
        repack(signed, &w, m, &mut p[1]);
        for (g, (a, b)) in p[0]
            .chunks_exact(272)
            .zip(p[1].chunks_exact(272))
            .enumerate()
        {
            assert_eq!(a[..16], b[..16], "scales of group {g}");
            assert!(a[16..].iter().zip(&b[16..]).all(|(a, b)| a ^ 0x80 == *b));
        }
        // Row 0's codes, dequantized under scale 1 (0x3C00) where the first eight blocks
        // are: every code once.
        let mut seen = [false; 256];
        let mut row = vec![0f32; cols];
        for blk in w.chunks_exact_mut(34).take(8) {
            blk[..2].copy_from_slice(&0x3C00u16.to_le_bytes());
        }
        repack(signed, &w, m, &mut p[1]);
        dequant_repacked(signed, &p[1], cols, 0, &mut row);
        for v in row {
            seen[(v as i32 + 128) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every code −128..=127 comes back");
    }
}
