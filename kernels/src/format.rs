//! The weight formats the kernels understand, named as GGUF names them.

/// A tensor storage format with a kernel implementation.
///
/// Block sizes and byte layouts follow ggml's `ggml-common.h`; see [`crate::blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
}

impl Format {
    /// Every format, in a fixed order (the index of [`Format::index`]).
    pub const ALL: [Format; 6] = [
        Format::F32,
        Format::F16,
        Format::BF16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
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
        }
    }

    /// Weights per block.
    pub const fn block_len(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q4_0 | Format::Q4_1 | Format::Q8_0 => 32,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
        }
    }

    /// Bytes of one row of `len` weights, or `None` when `len` is not a whole number of
    /// blocks or the size overflows.
    pub const fn row_bytes(self, len: usize) -> Option<usize> {
        if len % self.block_len() != 0 {
            return None;
        }
        (len / self.block_len()).checked_mul(self.block_bytes())
    }
}
