//! The weight formats the kernels understand, named as GGUF names them.

/// A tensor storage format with a kernel implementation.
///
/// Block sizes and byte layouts follow ggml's `ggml-common.h`; see [`crate::blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)] // GGUF's names (Q4_K, I2_S), so readers can grep the spec.
pub enum Format {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 32 weights: f16 scale, 4-bit codes, value (q − 8)·d.
    Q4_0,
    /// 32 weights: f16 scale and min, 4-bit codes, value q·d + m.
    Q4_1,
    /// 32 weights: f16 scale, int8 codes, value q·d.
    Q8_0,
    /// 256 weights: f16 super-scale and super-min, eight 32-weight sub-blocks with six-bit
    /// scale and min, 4-bit codes, value d·sc·q − dmin·m.
    Q4_K,
    /// 256 weights: f16 super-scale, sixteen 16-weight sub-blocks with int8 scales, 6-bit
    /// codes, value d·sc·(q − 32).
    Q6_K,
    /// 256 ternary weights, 5 per byte in base 3 (1.6875 bits each), f16 scale, value (q − 1)·d.
    TQ1_0,
    /// 256 ternary weights, 2 bits each, f16 scale, value (q − 1)·d.
    TQ2_0,
    /// bitnet.cpp's ternary format: 2-bit codes in 128-weight blocks of 32 bytes, value
    /// (q − 1)·s with ONE f32 scale `s` per tensor. The tensor adds a 32-byte trailer after its
    /// packed blocks (the scale, then padding) that is not part of any row, and the row kernels
    /// compute with `s = 1`: the caller multiplies their results by the tensor's scale.
    I2_S,
    /// 256 weights: Q4_K's scales and mins with 5-bit codes, value d·sc·q − dmin·m.
    Q5_K,
    /// 256 weights: f16 super-scale, eight six-bit sub-block scales (−32), 4-bit indices into
    /// IQ4_NL's 16-value codebook T, value d·(sc − 32)·T[q].
    IQ4_XS,
}

impl Format {
    /// Every format, in a fixed order (the index of [`Format::index`]).
    pub const ALL: [Format; 13] = [
        Format::F32,
        Format::F16,
        Format::BF16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
        Format::Q4_K,
        Format::Q6_K,
        Format::TQ1_0,
        Format::TQ2_0,
        Format::I2_S,
        Format::Q5_K,
        Format::IQ4_XS,
    ];

    /// Number of formats; the length of per-format kernel tables.
    pub const COUNT: usize = Self::ALL.len();

    /// Position of this format in [`Format::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::BF16 => 2,
            Format::Q4_0 => 3,
            Format::Q4_1 => 4,
            Format::Q8_0 => 5,
            Format::Q4_K => 6,
            Format::Q6_K => 7,
            Format::TQ1_0 => 8,
            Format::TQ2_0 => 9,
            Format::I2_S => 10,
            Format::Q5_K => 11,
            Format::IQ4_XS => 12,
        }
    }

    /// GGUF's name for the format.
    pub const fn name(self) -> &'static str {
        match self {
            Format::F32 => "F32",
            Format::F16 => "F16",
            Format::BF16 => "BF16",
            Format::Q4_0 => "Q4_0",
            Format::Q4_1 => "Q4_1",
            Format::Q8_0 => "Q8_0",
            Format::Q4_K => "Q4_K",
            Format::Q6_K => "Q6_K",
            Format::TQ1_0 => "TQ1_0",
            Format::TQ2_0 => "TQ2_0",
            Format::I2_S => "I2_S",
            Format::Q5_K => "Q5_K",
            Format::IQ4_XS => "IQ4_XS",
        }
    }

    /// Weights per block.
    pub const fn block_len(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q4_0 | Format::Q4_1 | Format::Q8_0 => 32,
            Format::I2_S => 128,
            Format::Q4_K | Format::Q6_K | Format::TQ1_0 | Format::TQ2_0 => 256,
            Format::Q5_K => 256,
            Format::IQ4_XS => 256,
        }
    }

    /// Bytes per block. For [`Format::I2_S`] this is the packed codes only: a whole I2_S tensor
    /// is `n/4` bytes of blocks plus a 32-byte trailer holding its f32 scale.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
            Format::Q4_K => 144,
            Format::Q6_K => 210,
            Format::TQ1_0 => 54,
            Format::TQ2_0 => 66,
            Format::I2_S => 32,
            Format::Q5_K => 176,
            Format::IQ4_XS => 136,
        }
    }

    /// Whether weights are ternary ({−1, 0, +1} times a scale): TQ1_0, TQ2_0, I2_S.
    pub const fn is_ternary(self) -> bool {
        matches!(self, Format::TQ1_0 | Format::TQ2_0 | Format::I2_S)
    }

    /// Bytes of one row of `len` weights, or `None` when `len` is not a whole number of
    /// blocks or the size overflows.
    pub const fn row_bytes(self, len: usize) -> Option<usize> {
        if !len.is_multiple_of(self.block_len()) {
            return None;
        }
        (len / self.block_len()).checked_mul(self.block_bytes())
    }
}
