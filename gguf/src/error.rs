//! Why a GGUF file was rejected or a metadata lookup failed.

use alloc::string::String;
use core::fmt;

/// An error reading a GGUF file or one of its metadata values.
///
/// Offsets are byte positions in the file, so a message can be checked with a hex dump.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GgufError {
    /// The file does not start with the bytes `GGUF`.
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The format version is not 2 or 3.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The bytes end inside a field.
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where the field starts.
        offset: u64,
    },
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// The first invalid byte.
        offset: u64,
    },
    /// A metadata value type number outside 0..=12.
    InvalidValueType {
        /// The type number found.
        type_id: u32,
        /// Where the type number is.
        offset: u64,
    },
    /// A bool value other than 0 or 1.
    InvalidBool {
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        value: u8,
    },
    /// A count or length exceeds a cap or what the rest of the file could hold.
    TooLarge {
        /// The field being read.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The largest value accepted here.
        limit: u64,
        /// Where the field is.
        offset: u64,
    },
    /// Arrays nested deeper than [`super::MAX_ARRAY_NESTING`].
    NestingTooDeep {
        /// Where the too-deep array's element type is.
        offset: u64,
    },
    /// `general.alignment` is zero or not a power of two.
    InvalidAlignment {
        /// The alignment found.
        value: u64,
    },
    /// A tensor's dimension count or dimensions are invalid.
    InvalidDims {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor's ggml type number is not known.
    UnknownTensorType {
        /// The tensor's name.
        tensor: String,
        /// The type number found.
        type_id: u32,
    },
    /// A tensor's row length is not a multiple of its type's block length.
    RowNotBlockMultiple {
        /// The tensor's name.
        tensor: String,
        /// The row length (`ne[0]`).
        row_len: u64,
        /// The type's elements per block.
        block_len: u64,
    },
    /// A tensor's bytes extend past the end of the file.
    TensorOutOfBounds {
        /// The tensor's name.
        tensor: String,
        /// The tensor's absolute offset (saturated at `u64::MAX` if it overflowed).
        offset: u64,
        /// The tensor's size in bytes.
        size: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A tensor's offset is not a multiple of the file's alignment.
    MisalignedTensor {
        /// The tensor's name.
        tensor: String,
        /// The offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Two tensors share bytes.
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A metadata key appears twice.
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A tensor name appears twice.
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A required metadata key is absent.
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value has a type the caller cannot use.
    WrongType {
        /// The key.
        key: String,
        /// What the caller accepts.
        expected: &'static str,
        /// The value's type (or why its value does not fit).
        found: &'static str,
    },
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::BadMagic { found } => {
                write!(
                    f,
                    "not a GGUF file: magic is {found:02x?}, expected \"GGUF\""
                )
            }
            GgufError::UnsupportedVersion { version } => {
                write!(f, "GGUF version {version} is not supported (only 2 and 3)")
            }
            GgufError::Truncated { field, offset } => {
                write!(f, "GGUF truncated reading {field} at offset {offset}")
            }
            GgufError::InvalidUtf8 { field, offset } => {
                write!(
                    f,
                    "GGUF {field} is not valid UTF-8 (byte at offset {offset})"
                )
            }
            GgufError::InvalidValueType { type_id, offset } => {
                write!(
                    f,
                    "GGUF metadata value type {type_id} at offset {offset} is unknown"
                )
            }
            GgufError::InvalidBool { offset, value } => {
                write!(
                    f,
                    "GGUF bool at offset {offset} is {value}, expected 0 or 1"
                )
            }
            GgufError::TooLarge {
                field,
                value,
                limit,
                offset,
            } => {
                write!(
                    f,
                    "GGUF {field} at offset {offset} is too large: {value} > {limit}"
                )
            }
            GgufError::NestingTooDeep { offset } => write!(
                f,
                "GGUF arrays nested more than {} deep at offset {offset}",
                super::MAX_ARRAY_NESTING
            ),
            GgufError::InvalidAlignment { value } => {
                write!(
                    f,
                    "GGUF general.alignment {value} is not a nonzero power of two"
                )
            }
            GgufError::InvalidDims { tensor, reason } => {
                write!(f, "tensor '{tensor}' has invalid dimensions: {reason}")
            }
            GgufError::UnknownTensorType { tensor, type_id } => {
                write!(f, "tensor '{tensor}' has unknown ggml type {type_id}")
            }
            GgufError::RowNotBlockMultiple {
                tensor,
                row_len,
                block_len,
            } => write!(
                f,
                "tensor '{tensor}' row length {row_len} is not a multiple of its block length \
                 {block_len}"
            ),
            GgufError::TensorOutOfBounds {
                tensor,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "tensor '{tensor}' ({size} bytes at offset {offset}) extends past the end of the \
                 file ({file_len} bytes)"
            ),
            GgufError::MisalignedTensor {
                tensor,
                offset,
                alignment,
            } => write!(
                f,
                "tensor '{tensor}' data offset {offset} is not a multiple of the alignment \
                 {alignment}"
            ),
            GgufError::OverlappingTensors { first, second } => {
                write!(f, "tensors '{first}' and '{second}' overlap")
            }
            GgufError::DuplicateKey { key } => write!(f, "GGUF metadata key '{key}' appears twice"),
            GgufError::DuplicateTensor { name } => write!(f, "tensor '{name}' appears twice"),
            GgufError::MissingKey { key } => write!(f, "GGUF metadata key '{key}' is missing"),
            GgufError::WrongType {
                key,
                expected,
                found,
            } => {
                write!(
                    f,
                    "GGUF metadata key '{key}' is {found}, expected {expected}"
                )
            }
        }
    }
}

impl core::error::Error for GgufError {}
