//! The ggml tensor type table: names, block geometry and byte sizes.

use core::fmt;

#[cfg(feature = "kernels")]
use tern_kernels::Format;

/// A ggml tensor type number as stored in a GGUF tensor info. Unknown numbers are kept (not
/// rejected here) so callers can report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType(pub u32);

/// `(id, name, elements per block, bytes per block)`, from ggml's type traits
/// (`ggml-common.h` block structs). Ids 4, 5, 31–33 and 37–38 are retired upstream; 36 is
/// handled separately (see [`GgmlType::I2_S`]).
const TABLE: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    // bitnet.cpp's I2_S: 4 two-bit weights per byte. Its tensors also carry a 32-byte trailer,
    // which only `tensor_bytes` accounts for.
    (36, "I2_S", 4, 1),
    (39, "MXFP4", 32, 17),
];

/// Bytes after I2_S's packed weights: one f32 scale for the whole tensor, then padding.
const I2_S_TRAILER: u64 = 32;

impl GgmlType {
    /// 32-bit float.
    pub const F32: GgmlType = GgmlType(0);
    /// 16-bit IEEE half.
    pub const F16: GgmlType = GgmlType(1);
    /// 32 weights: f16 scale, 4-bit codes.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// 32 weights: f16 scale and min, 4-bit codes.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// 32 weights: f16 scale, 5-bit codes.
    pub const Q5_0: GgmlType = GgmlType(6);
    /// 32 weights: f16 scale and min, 5-bit codes.
    pub const Q5_1: GgmlType = GgmlType(7);
    /// 32 weights: f16 scale, int8 codes.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// 256-weight super-block, 2-bit k-quant.
    pub const Q2_K: GgmlType = GgmlType(10);
    /// 256-weight super-block, 3-bit k-quant.
    pub const Q3_K: GgmlType = GgmlType(11);
    /// 256-weight super-block, 4-bit k-quant.
    pub const Q4_K: GgmlType = GgmlType(12);
    /// 256-weight super-block, 5-bit k-quant.
    pub const Q5_K: GgmlType = GgmlType(13);
    /// 256-weight super-block, 6-bit k-quant.
    pub const Q6_K: GgmlType = GgmlType(14);
    /// 256-weight super-block, 4-bit indices into IQ4_NL's codebook, six-bit sub-block scales.
    pub const IQ4_XS: GgmlType = GgmlType(23);
    /// bfloat16.
    pub const BF16: GgmlType = GgmlType(30);
    /// Ternary, 1.69 bits per weight (256-weight blocks).
    pub const TQ1_0: GgmlType = GgmlType(34);
    /// Ternary, 2.06 bits per weight (256-weight blocks).
    pub const TQ2_0: GgmlType = GgmlType(35);
    /// bitnet.cpp's ternary type: 2 bits per weight and one f32 scale per tensor. Upstream ggml
    /// retired id 36 (formerly IQ4_NL_4_4), so a file using it comes from bitnet.cpp.
    pub const I2_S: GgmlType = GgmlType(36);

    fn entry(self) -> Option<(&'static str, u64, u64)> {
        TABLE
            .iter()
            .find(|&&(id, ..)| id == self.0)
            .map(|&(_, name, len, bytes)| (name, len, bytes))
    }

    /// The ggml name (`"Q4_0"`), or `None` for an unknown or retired id.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.0)
    }

    /// Elements per block; a row's length must be a multiple of it.
    pub fn block_len(self) -> Option<u64> {
        self.entry().map(|e| e.1)
    }

    /// Bytes per block (for I2_S, excluding the per-tensor trailer).
    pub fn block_bytes(self) -> Option<u64> {
        self.entry().map(|e| e.2)
    }

    /// Bytes of a tensor of `n_elements` with rows of `row_len`, or `None` if the type is
    /// unknown, either count is not a multiple of the block length, or the size overflows.
    pub fn tensor_bytes(self, n_elements: u64, row_len: u64) -> Option<u64> {
        let (_, len, bytes) = self.entry()?;
        if !row_len.is_multiple_of(len) || !n_elements.is_multiple_of(len) {
            return None;
        }
        let packed = (n_elements / len).checked_mul(bytes)?;
        if self == GgmlType::I2_S {
            // Not blocks × block size: bitnet.cpp appends the scale once per tensor.
            packed.checked_add(I2_S_TRAILER)
        } else {
            Some(packed)
        }
    }

    /// The kernel format for this type, if Tern's kernels compute with it: the row of
    /// `tern_kernels::format::FORMATS` with this ggml id. For I2_S, rows are the packed codes
    /// only; the tensor's scale sits in its 32-byte trailer and the I2_S row kernels leave it to
    /// the caller.
    #[cfg(feature = "kernels")]
    pub fn format(self) -> Option<Format> {
        Format::from_ggml_type(self.0)
    }
}

impl fmt::Display for GgmlType {
    /// The ggml name, or `type N` when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "type {}", self.0),
        }
    }
}
