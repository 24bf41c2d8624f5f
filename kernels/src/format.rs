//! The weight formats the kernels understand, named as GGUF names them, and one table of their
//! facts.
//!
//! Every per-format fact (GGUF name, ggml type id, block geometry, whether it is ternary) lives
//! in one row of [`FORMATS`], in the spirit of ggml's `type_traits`: adding a format adds a
//! variant, its row, its kernels and their tests; the GGUF reader maps ggml ids through the
//! same rows ([`Format::from_ggml_type`]).

/// A tensor storage format with a kernel implementation.
///
/// Block sizes and byte layouts follow ggml's `ggml-common.h`; see [`crate::blocks`]. The
/// discriminant is the format's row in [`FORMATS`] (checked at compile time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[expect(
    non_camel_case_types,
    reason = "GGUF's names (Q4_K, I2_S), so readers can grep the spec"
)]
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
    /// 32 weights: f16 scale, 5-bit codes (the low four in nibbles, the fifth bits in a 32-bit
    /// mask), value (q − 16)·d.
    Q5_0,
    /// 32 weights: f16 scale and min, 5-bit codes as Q5_0's, value q·d + m.
    Q5_1,
    /// 32 weights: f16 scale, 4-bit indices into a fixed non-linear int8 codebook T, value
    /// `d·T[q]`.
    IQ4_NL,
    /// 256 weights: f16 super-scale, sixteen 16-weight sub-blocks with six-bit signed scales,
    /// 3-bit codes (2 low bits + a high-bit plane), value d·(sc − 32)·(q − 4).
    Q3_K,
    /// 256 weights: f16 super-scale and super-min, sixteen 16-weight sub-blocks with four-bit
    /// scale and min, 2-bit codes, value d·sc·q − dmin·m.
    Q2_K,
    /// 256 weights: Q4_K's scales and mins with 5-bit codes, value d·sc·q − dmin·m.
    Q5_K,
    /// 256 weights: f16 super-scale, eight six-bit sub-block scales (−32), 4-bit indices into
    /// IQ4_NL's 16-value codebook T, value `d·(sc − 32)·T[q]`.
    IQ4_XS,
}

/// The facts of one format: one row of [`FORMATS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    /// The format this row describes.
    pub format: Format,
    /// GGUF's name.
    pub name: &'static str,
    /// ggml's type id (`enum ggml_type`; bitnet.cpp's for I2_S).
    pub ggml_type: u32,
    /// Weights per block.
    pub block_len: usize,
    /// Bytes per block (for I2_S the packed codes only, see [`Format::block_bytes`]).
    pub block_bytes: usize,
    /// Whether weights are ternary ({−1, 0, +1} times a scale).
    pub ternary: bool,
    /// How the weights enter the batched int8 GEMM, for the formats it takes.
    pub int8: Option<Int8Layout>,
}

/// How a format's weights enter the batched int8 GEMM (`Kernels::gemm_i8`): every weight is
/// `scale·q + bias` with an integer `q` in −128..=127 and one f32 `scale` (and `bias`) per group
/// of `group` consecutive weights of a row, as the format's `unpack_i8` kernel writes them, so
/// the GEMM's integer sums are exactly the format's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Layout {
    /// Weights per scale: 32 (one activation block), or 16 (Q6_K's, Q3_K's and Q2_K's
    /// sub-blocks).
    pub group: usize,
    /// Whether groups have a bias (Q4_1, Q5_1, Q4_K, Q5_K, Q2_K): a 32-weight group's meets the
    /// activation block's sum `s`, a 16-weight group's the half-block's (`scalar::gemm_i8`).
    pub bias: bool,
}

/// An [`Int8Layout`] for a [`FORMATS`] row.
const fn i8l(group: usize, bias: bool) -> Option<Int8Layout> {
    Some(Int8Layout { group, bias })
}

/// One row: `(format, name, ggml type id, weights per block, bytes per block, ternary, int8
/// GEMM layout)`.
const fn row(
    format: Format,
    name: &'static str,
    ggml_type: u32,
    block_len: usize,
    block_bytes: usize,
    ternary: bool,
    int8: Option<Int8Layout>,
) -> FormatInfo {
    FormatInfo {
        format,
        name,
        ggml_type,
        block_len,
        block_bytes,
        ternary,
        int8,
    }
}

/// Every format's facts, in [`Format`] order (row `i` is the format with discriminant `i`).
/// Sizes from ggml's `ggml-common.h` block structs; ids from `ggml.h` (I2_S: bitnet.cpp's 36).
#[rustfmt::skip]
pub const FORMATS: [FormatInfo; 18] = [
    row(Format::F32,    "F32",    0,  1,   4,   false, None),
    row(Format::F16,    "F16",    1,  1,   2,   false, None),
    row(Format::BF16,   "BF16",   30, 1,   2,   false, None),
    row(Format::Q4_0,   "Q4_0",   2,  32,  18,  false, i8l(32, false)),
    row(Format::Q4_1,   "Q4_1",   3,  32,  20,  false, i8l(32, true)),
    row(Format::Q8_0,   "Q8_0",   8,  32,  34,  false, i8l(32, false)),
    row(Format::Q4_K,   "Q4_K",   12, 256, 144, false, i8l(32, true)),
    row(Format::Q6_K,   "Q6_K",   14, 256, 210, false, i8l(16, false)),
    row(Format::TQ1_0,  "TQ1_0",  34, 256, 54,  true,  None),
    row(Format::TQ2_0,  "TQ2_0",  35, 256, 66,  true,  None),
    row(Format::I2_S,   "I2_S",   36, 128, 32,  true,  None),
    row(Format::Q5_0,   "Q5_0",   6,  32,  22,  false, i8l(32, false)),
    row(Format::Q5_1,   "Q5_1",   7,  32,  24,  false, i8l(32, true)),
    row(Format::IQ4_NL, "IQ4_NL", 20, 32,  18,  false, i8l(32, false)),
    row(Format::Q3_K,   "Q3_K",   11, 256, 110, false, i8l(16, false)),
    row(Format::Q2_K,   "Q2_K",   10, 256, 84,  false, i8l(16, true)),
    row(Format::Q5_K,   "Q5_K",   13, 256, 176, false, i8l(32, true)),
    row(Format::IQ4_XS, "IQ4_XS", 23, 256, 136, false, i8l(32, false)),
];

// Row i describes the format whose discriminant is i, and no two rows share a ggml id; int8
// groups are 16 or 32 weights and tile the format's blocks.
const _: () = {
    let mut i = 0;
    while i < FORMATS.len() {
        assert!(FORMATS[i].format as usize == i);
        if let Some(l) = FORMATS[i].int8 {
            assert!(l.group == 16 || l.group == 32);
            assert!(FORMATS[i].block_len.is_multiple_of(l.group));
        }
        let mut j = i + 1;
        while j < FORMATS.len() {
            assert!(FORMATS[i].ggml_type != FORMATS[j].ggml_type);
            j += 1;
        }
        i += 1;
    }
};

impl Format {
    /// Every format, in a fixed order (the index of [`Format::index`]).
    pub const ALL: [Format; FORMATS.len()] = {
        let mut all = [Format::F32; FORMATS.len()];
        let mut i = 0;
        while i < FORMATS.len() {
            all[i] = FORMATS[i].format;
            i += 1;
        }
        all
    };

    /// Number of formats; the length of per-format kernel tables.
    pub const COUNT: usize = Self::ALL.len();

    /// This format's row of [`FORMATS`].
    pub const fn info(self) -> &'static FormatInfo {
        &FORMATS[self as usize]
    }

    /// The format of ggml type id `ggml_type`, if the kernels compute with it.
    pub const fn from_ggml_type(ggml_type: u32) -> Option<Format> {
        let mut i = 0;
        while i < FORMATS.len() {
            if FORMATS[i].ggml_type == ggml_type {
                return Some(FORMATS[i].format);
            }
            i += 1;
        }
        None
    }

    /// Position of this format in [`Format::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// GGUF's name for the format.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// ggml's type id for the format.
    pub const fn ggml_type(self) -> u32 {
        self.info().ggml_type
    }

    /// Weights per block.
    pub const fn block_len(self) -> usize {
        self.info().block_len
    }

    /// Bytes per block. For [`Format::I2_S`] this is the packed codes only: a whole I2_S tensor
    /// is `n/4` bytes of blocks plus a 32-byte trailer holding its f32 scale.
    pub const fn block_bytes(self) -> usize {
        self.info().block_bytes
    }

    /// Whether weights are ternary ({−1, 0, +1} times a scale): TQ1_0, TQ2_0, I2_S.
    pub const fn is_ternary(self) -> bool {
        self.info().ternary
    }

    /// How the weights enter the batched int8 GEMM, if it takes the format.
    pub const fn int8(self) -> Option<Int8Layout> {
        self.info().int8
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
