//! Block formats as types, byte for byte as GGUF stores them.
//!
//! Every block is `#[repr(C)]` with alignment 1, so a row of GGUF bytes can be viewed as a
//! slice of blocks wherever it sits in memory (see [`as_blocks`]). Bit ranges in the layout
//! drawings are half-open, as Rust ranges are.
//!
//! The casts are zerocopy's: its derives prove at compile time what hand-written `unsafe impl`s
//! would otherwise assert (alignment 1, no padding, every bit pattern valid), so neither this
//! module nor a block type defined elsewhere needs `unsafe`.

use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A little-endian IEEE half stored as two bytes (alignment 1, unlike `half::f16`).
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
pub struct F16Le(pub [u8; 2]);

impl F16Le {
    /// The value as f32.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        half::f16::from_bits(u16::from_le_bytes(self.0)).to_f32()
    }

    /// The nearest half to `v`.
    #[inline]
    pub fn from_f32(v: f32) -> Self {
        F16Le(half::f16::from_f32(v).to_bits().to_le_bytes())
    }
}

/// Q4_0: 32 weights, value `(q − 8)·d`.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..18  qs: byte j = element j (low nibble) | element j+16 (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: F16Le,
    /// Packed 4-bit codes.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// Q4_1: 32 weights, value `q·d + m`.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..4   m (f16)
/// byte 4..20  qs: byte j = element j (low nibble) | element j+16 (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16Le,
    /// Minimum (offset).
    pub m: F16Le,
    /// Packed 4-bit codes.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// Q5_0: 32 weights, value `(q − 16)·d` with 5-bit codes q.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..6   qh (u32, little-endian): bit j = bit 4 of element j's code (j = 0..32)
/// byte 6..22  qs: byte j = bits 0..4 of element j (low nibble) | of element j+16 (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: F16Le,
    /// The codes' fifth bits, one per element.
    pub qh: [u8; 4],
    /// Packed low 4 bits of the codes.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// Q5_1: 32 weights, value `q·d + m` with 5-bit codes q.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..4   m (f16)
/// byte 4..8   qh (u32, little-endian): bit j = bit 4 of element j's code (j = 0..32)
/// byte 8..24  qs: byte j = bits 0..4 of element j (low nibble) | of element j+16 (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: F16Le,
    /// Minimum (offset).
    pub m: F16Le,
    /// The codes' fifth bits, one per element.
    pub qh: [u8; 4],
    /// Packed low 4 bits of the codes.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// IQ4_NL: 32 weights, value `d·T[q]` with 4-bit indices q into the fixed codebook
/// [`IQ4_NL_VALUES`](crate::scalar::IQ4_NL_VALUES).
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..18  qs: byte j = element j (low nibble) | element j+16 (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockIQ4_NL {
    /// Scale.
    pub d: F16Le,
    /// Packed 4-bit codebook indices.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockIQ4_NL>() == 18);

/// Q8_0: 32 weights, value `q·d`.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..34  qs: element j as i8
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16Le,
    /// Signed 8-bit codes.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q4_K: 256 weights in eight sub-blocks of 32, value `d·sc[j]·q − dmin·m[j]` for sub-block j.
///
/// ```text
/// byte 0..2      d (f16), scale of the six-bit sub-block scales
/// byte 2..4      dmin (f16), scale of the six-bit sub-block mins
/// byte 4..16     scales: eight six-bit scales sc[j] and mins m[j], packed
///                  s[0..4]   bits 0..6 = sc[0..4]   bits 6..8 = sc[4..8] >> 4
///                  s[4..8]   bits 0..6 = m[0..4]    bits 6..8 = m[4..8] >> 4
///                  s[8..12]  bits 0..4 = sc[4..8] & 0xF   bits 4..8 = m[4..8] & 0xF
/// byte 16..144   qs: 4 chunks of 32 bytes; byte 32c + l holds
///                  element 64c + l      (low nibble, sub-block 2c)
///                  element 64c + 32 + l (high nibble, sub-block 2c + 1)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ4_K {
    /// Super-block scale of the sub-block scales.
    pub d: F16Le,
    /// Super-block scale of the sub-block mins.
    pub dmin: F16Le,
    /// Packed six-bit sub-block scales and mins.
    pub scales: [u8; 12],
    /// Packed 4-bit codes.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockQ4_K>() == 144);

/// Q5_K: 256 weights in eight sub-blocks of 32, value `d·sc[j]·q − dmin·m[j]` for sub-block j,
/// with 5-bit codes q: Q4_K's layout plus one high bit per weight.
///
/// ```text
/// byte 0..2      d (f16), scale of the six-bit sub-block scales
/// byte 2..4      dmin (f16), scale of the six-bit sub-block mins
/// byte 4..16     scales: eight six-bit scales and mins, packed exactly as in BlockQ4_K
/// byte 16..48    qh: bit j of qh[l] = bit 4 of element 32j + l (sub-block j, position l)
/// byte 48..176   qs: low 4 bits, 4 chunks of 32 bytes; byte 32c + l holds
///                  element 64c + l      (low nibble, sub-block 2c)
///                  element 64c + 32 + l (high nibble, sub-block 2c + 1)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ5_K {
    /// Super-block scale of the sub-block scales.
    pub d: F16Le,
    /// Super-block scale of the sub-block mins.
    pub dmin: F16Le,
    /// Packed six-bit sub-block scales and mins (as [`BlockQ4_K::scales`]).
    pub scales: [u8; 12],
    /// High (fifth) bits of the codes.
    pub qh: [u8; 32],
    /// Low 4 bits of the codes.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockQ5_K>() == 176);

/// IQ4_XS: 256 weights in eight sub-blocks of 32, value `d·(sc[j] − 32)·T[q]` for sub-block j,
/// with 4-bit codes q into IQ4_NL's 16-entry codebook `T` (`scalar::IQ4_NL_VALUES`) and six-bit
/// sub-block scales sc.
///
/// ```text
/// byte 0..2      d (f16)
/// byte 2..4      scales_h (u16, little-endian): bits 2j..2j+2 = sc[j] >> 4
/// byte 4..8      scales_l: scales_l[i] bits 0..4 = sc[2i] & 0xF, bits 4..8 = sc[2i+1] & 0xF
/// byte 8..136    qs: 8 runs of 16 bytes; byte 16j + i holds
///                  element 32j + i      (low nibble)
///                  element 32j + 16 + i (high nibble)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockIQ4_XS {
    /// Super-block scale.
    pub d: F16Le,
    /// High two bits of the eight sub-block scales (a little-endian u16).
    pub scales_h: [u8; 2],
    /// Low four bits of the eight sub-block scales.
    pub scales_l: [u8; 4],
    /// Packed 4-bit codebook indices.
    pub qs: [u8; 128],
}
const _: () = assert!(size_of::<BlockIQ4_XS>() == 136);

/// Q6_K: 256 weights in sixteen sub-blocks of 16, value `d·scales[e/16]·(q − 32)` for element e.
///
/// Two halves of 128 elements; half h uses `ql[64h..64h+64]`, `qh[32h..32h+32]`. Within a half,
/// for l in 0..32 (element numbers relative to the half):
///
/// ```text
/// byte 0..128     ql: low 4 bits of q
///                   ql[64h + l]      low nibble = element l,      high nibble = element l + 64
///                   ql[64h + 32 + l] low nibble = element l + 32, high nibble = element l + 96
/// byte 128..192   qh: high 2 bits of q; qh[32h + l] bits 2k..2k+2 = element l + 32k (k = 0..4)
/// byte 192..208   scales: 16 × i8, one per 16 consecutive elements
/// byte 208..210   d (f16)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ6_K {
    /// Low 4 bits of the codes.
    pub ql: [u8; 128],
    /// High 2 bits of the codes.
    pub qh: [u8; 64],
    /// Signed sub-block scales.
    pub scales: [i8; 16],
    /// Super-block scale.
    pub d: F16Le,
}
const _: () = assert!(size_of::<BlockQ6_K>() == 210);

/// Q3_K: 256 weights in sixteen sub-blocks of 16, value `d·(sc[e/16] − 32)·(q − 4·(1 − h))`
/// for element e with 2-bit code q and high bit h.
///
/// Two halves of 128 elements; for half h' (0..2), pair k (0..4) and l in 0..32, element
/// `128h' + 32k + l` takes bits `2k..2k+2` of `qs[32h' + l]` and bit `4h' + k` (that is, bit
/// `e / 32`) of `hmask[l]`. A set high bit means the code is q; a clear one, q − 4.
///
/// ```text
/// byte 0..32     hmask: hmask[l] bit n = high bit of element 32n + l
/// byte 32..96    qs: qs[32h' + l] bits 2k..2k+2 = low bits of element 128h' + 32k + l
/// byte 96..108   scales: sixteen six-bit sc[j] (value sc − 32), packed
///                  s[j] (j < 8)        bits 0..4 = sc[j] & 0xF,  bits 4..8 = sc[j + 8] & 0xF
///                  s[8 + i] (i < 4)    bits 2n..2n+2 = sc[4n + i] >> 4  (n = 0..4)
/// byte 108..110  d (f16)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ3_K {
    /// High bits of the codes, one bit-plane per 32 elements.
    pub hmask: [u8; 32],
    /// Low 2 bits of the codes.
    pub qs: [u8; 64],
    /// Packed six-bit sub-block scales (offset 32).
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: F16Le,
}
const _: () = assert!(size_of::<BlockQ3_K>() == 110);

/// Q2_K: 256 weights in sixteen sub-blocks of 16, value `d·sc[j]·q − dmin·m[j]` for sub-block
/// `j = e/16` of element e.
///
/// Codes are packed as Q3_K's low bits: element `128h' + 32k + l` is bits `2k..2k+2` of
/// `qs[32h' + l]`.
///
/// ```text
/// byte 0..16    scales: byte j = sc[j] (low nibble) | m[j] (high nibble)
/// byte 16..80   qs: qs[32h' + l] bits 2k..2k+2 = element 128h' + 32k + l
/// byte 80..82   d (f16), scale of the sub-block scales
/// byte 82..84   dmin (f16), scale of the sub-block mins
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockQ2_K {
    /// Four-bit sub-block scales (low nibbles) and mins (high nibbles).
    pub scales: [u8; 16],
    /// Packed 2-bit codes.
    pub qs: [u8; 64],
    /// Super-block scale of the sub-block scales.
    pub d: F16Le,
    /// Super-block scale of the sub-block mins.
    pub dmin: F16Le,
}
const _: () = assert!(size_of::<BlockQ2_K>() == 84);

/// TQ1_0: 256 ternary weights, value `(q − 1)·d` with trits q ∈ {0, 1, 2}.
///
/// A byte holding trits t0..t4 (t0 most significant) stores `ceil(v·256/243)` where
/// `v = t0·81 + t1·27 + t2·9 + t3·3 + t4`, a base-3 fixed-point fraction; trit n is recovered
/// as `((b·3^n mod 256)·3) >> 8`.
///
/// ```text
/// byte 0..32    qs[m]:      trit n = element m + 32n        (n = 0..5, elements 0..160)
/// byte 32..48   qs[32 + m]: trit n = element 160 + m + 16n  (n = 0..5, elements 160..240)
/// byte 48..52   qh[j]:      trit n = element 240 + j + 4n   (n = 0..4; trit 4 unused, 0)
/// byte 52..54   d (f16)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockTQ1_0 {
    /// Five trits per byte.
    pub qs: [u8; 48],
    /// Four trits per byte.
    pub qh: [u8; 4],
    /// Scale.
    pub d: F16Le,
}
const _: () = assert!(size_of::<BlockTQ1_0>() == 54);

/// TQ2_0: 256 ternary weights, value `(q − 1)·d` with 2-bit codes q ∈ {0, 1, 2}.
///
/// ```text
/// byte 0..64    qs: byte 32h + m bits 2n..2n+2 = element 128h + 32n + m
///               (h = 0..2, m = 0..32, n = 0..4; least significant pair first)
/// byte 64..66   d (f16)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockTQ2_0 {
    /// Packed 2-bit codes.
    pub qs: [u8; 64],
    /// Scale.
    pub d: F16Le,
}
const _: () = assert!(size_of::<BlockTQ2_0>() == 66);

/// I2_S (bitnet.cpp): 128 ternary weights, 2-bit codes q ∈ {0, 1, 2} for −1, 0, +1. The scale
/// is not in the block: it is one f32 per tensor, after all the blocks.
///
/// ```text
/// byte 0..32    qs: byte p bits 6−2k..8−2k (k = 0..4) = element p + 32k
///               (k = 0 in bits 7–6, k = 3 in bits 1–0; most significant pair first)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct BlockI2_S {
    /// Packed 2-bit codes.
    pub qs: [u8; 32],
}
const _: () = assert!(size_of::<BlockI2_S>() == 32);

/// A block type that may be viewed from any bytes of its size and back: alignment 1, no
/// padding, every bit pattern valid.
///
/// zerocopy's derives check each of these at compile time (`Unaligned`: alignment 1;
/// `IntoBytes`: no padding; `FromBytes`: any bits valid), so deriving them is all a block type
/// needs; this trait only names the set and is implemented for every type that has it.
pub trait Pod: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy {}

impl<T: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy> Pod for T {}

/// Views `bytes` as blocks, or `None` unless the length is a whole number of blocks.
#[inline]
pub fn as_blocks<B: Pod>(bytes: &[u8]) -> Option<&[B]> {
    // Blocks are `Unaligned`, so only the length can make the cast fail.
    <[B]>::ref_from_bytes(bytes).ok()
}

/// Mutable form of [`as_blocks`].
#[inline]
pub fn as_blocks_mut<B: Pod>(bytes: &mut [u8]) -> Option<&mut [B]> {
    <[B]>::mut_from_bytes(bytes).ok()
}

/// Views `blocks` as their bytes.
#[inline]
pub fn as_bytes<B: Pod>(blocks: &[B]) -> &[u8] {
    blocks.as_bytes()
}
