//! Block formats as types, byte for byte as GGUF stores them.
//!
//! Every block is `#[repr(C)]` with alignment 1, so a row of GGUF bytes can be viewed as a
//! slice of blocks wherever it sits in memory (see [`as_blocks`]).

use core::mem::{align_of, size_of};

/// A little-endian IEEE half stored as two bytes (alignment 1, unlike `half::f16`).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug)]
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
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16Le,
    /// Minimum (offset).
    pub m: F16Le,
    /// Packed 4-bit codes.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// Q8_0: 32 weights, value `q·d`.
///
/// ```text
/// byte 0..2   d (f16)
/// byte 2..34  qs: element j as i8
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16Le,
    /// Signed 8-bit codes.
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// A type that may be viewed from any bytes of its size.
///
/// # Safety
/// Implementors are `#[repr(C)]` or `#[repr(transparent)]`, have alignment 1, no padding, and
/// every bit pattern is a valid value.
pub unsafe trait Pod: Copy {}

// SAFETY: each is repr(C)/transparent over u8/i8 arrays: alignment 1, no padding, any bits valid.
unsafe impl Pod for F16Le {}
// SAFETY: as above.
unsafe impl Pod for BlockQ4_0 {}
// SAFETY: as above.
unsafe impl Pod for BlockQ4_1 {}
// SAFETY: as above.
unsafe impl Pod for BlockQ8_0 {}

/// Views `bytes` as blocks, or `None` unless the length is a whole number of blocks.
#[inline]
pub fn as_blocks<B: Pod>(bytes: &[u8]) -> Option<&[B]> {
    const { assert!(align_of::<B>() == 1) };
    if size_of::<B>() == 0 || bytes.len() % size_of::<B>() != 0 {
        return None;
    }
    let n = bytes.len() / size_of::<B>();
    // SAFETY: B is Pod (alignment 1, any bit pattern valid) and n·size_of::<B>() == bytes.len(),
    // so the new slice covers exactly the borrowed bytes.
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) })
}

/// Mutable form of [`as_blocks`].
#[inline]
pub fn as_blocks_mut<B: Pod>(bytes: &mut [u8]) -> Option<&mut [B]> {
    const { assert!(align_of::<B>() == 1) };
    if size_of::<B>() == 0 || bytes.len() % size_of::<B>() != 0 {
        return None;
    }
    let n = bytes.len() / size_of::<B>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the result.
    Some(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) })
}

/// Views `blocks` as their bytes.
#[inline]
pub fn as_bytes<B: Pod>(blocks: &[B]) -> &[u8] {
    // SAFETY: B is Pod (no padding), so every byte of the slice is initialized.
    unsafe { core::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), size_of_val(blocks)) }
}
