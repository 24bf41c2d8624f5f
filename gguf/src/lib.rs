//! GGUF reader: header, metadata and tensor infos, validated so later stages can slice tensor
//! bytes without further checks.
//!
//! Supports GGUF versions 2 and 3 (little-endian). Parsing borrows from the file bytes: keys,
//! string values and tensor names are `&str` into them. Every length, count and offset is
//! checked against caps and the file size before use, so a corrupt or hostile file yields a
//! [`GgufError`], never a panic or an unbounded allocation. The [`write`](mod@write) module is
//! the inverse: a [`write::GgufWriter`] produces files this reader accepts.
//!
//! `no_std` + `alloc`. Features: `std` adds [`write::GgufWriter::stream`] over
//! `std::io::Write`; `kernels` adds [`GgmlType::format`], the `tern-kernels` format that computes
//! with a tensor type. Tern's runtime re-exports this crate as `tern_runtime::gguf`.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod cursor;
mod error;
mod tensor;
mod types;
mod value;
pub mod write;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use cursor::Cursor;
pub use error::GgufError;
pub use tensor::TensorInfo;
pub use types::GgmlType;
pub use value::{Array, ArrayIter, Value};

/// Most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata key/value pairs a file may declare.
pub const MAX_KV: u64 = 1 << 20;
/// Longest string (key, value or tensor name) in bytes.
pub const MAX_STRING_LEN: u64 = 1 << 26;
/// Most elements in one metadata array (vocabularies are ~10^5–10^6).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of metadata arrays (an array of arrays is depth 2).
pub const MAX_ARRAY_NESTING: usize = 4;
/// Largest single tensor dimension.
pub const MAX_DIM: u64 = 1 << 40;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";

const MAGIC: [u8; 4] = *b"GGUF";
/// Smallest possible encodings, to bound preallocation by what the bytes could hold.
const MIN_KV_LEN: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 8 + 4 + 8;

/// A parsed GGUF file: metadata and tensor infos, borrowing from the file bytes.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    /// Format version: 2 or 3.
    pub version: u32,
    /// Alignment of the data section and of every tensor offset within it.
    pub alignment: u64,
    /// Absolute offset of the tensor-data section.
    pub data_offset: u64,
    metadata: Vec<(&'a str, Value<'a>)>,
    tensors: Vec<TensorInfo<'a>>,
    key_index: BTreeMap<&'a str, usize>,
    tensor_index: BTreeMap<&'a str, usize>,
}

impl<'a> Gguf<'a> {
    /// Parses header, metadata and tensor infos from `bytes`, a prefix of a file whose total
    /// length is `file_len` (the whole file when memory-mapped; a prefix when streaming from
    /// flash). Tensor data ranges are validated against `file_len`. If `bytes` ends before the
    /// tensor infos do, returns [`GgufError::Truncated`]. Bytes beyond `file_len` are ignored.
    pub fn parse(bytes: &'a [u8], file_len: u64) -> Result<Gguf<'a>, GgufError> {
        let bytes = match usize::try_from(file_len) {
            Ok(len) if len < bytes.len() => bytes.get(..len).unwrap_or(bytes),
            _ => bytes,
        };
        let mut cur = Cursor::new(bytes);

        let found = cur.magic()?;
        if found != MAGIC {
            return Err(GgufError::BadMagic { found });
        }
        // v1 used 32-bit counts and lengths; later versions are unknown layouts.
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensor_count = read_count(&mut cur, "tensor count", MAX_TENSORS)?;
        let kv_count = read_count(&mut cur, "metadata count", MAX_KV)?;

        let mut metadata = Vec::with_capacity(capacity(&cur, kv_count, MIN_KV_LEN));
        let mut key_index = BTreeMap::new();
        for _ in 0..kv_count {
            let key = cur.str("metadata key")?;
            let ty = value::read_type(&mut cur, "metadata value type")?;
            let value = value::read_value(&mut cur, ty, 0)?;
            if key_index.insert(key, metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey {
                    key: key.to_string(),
                });
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get(ALIGNMENT_KEY).and_then(|&i| metadata.get(i)) {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, Value::U32(a))) => {
                return Err(GgufError::InvalidAlignment {
                    value: u64::from(*a),
                })
            }
            Some((_, other)) => {
                return Err(GgufError::WrongType {
                    key: ALIGNMENT_KEY.to_string(),
                    expected: "u32",
                    found: other.type_name(),
                })
            }
        };

        let mut raw = Vec::with_capacity(capacity(&cur, tensor_count, MIN_TENSOR_INFO_LEN));
        let mut tensor_index = BTreeMap::new();
        for _ in 0..tensor_count {
            let info = tensor::read_tensor_info(&mut cur)?;
            if tensor_index.insert(info.name, raw.len()).is_some() {
                return Err(GgufError::DuplicateTensor {
                    name: info.name.to_string(),
                });
            }
            raw.push(info);
        }

        // Saturating: an impossible data offset just makes every tensor out of bounds.
        let data_offset = align_up(cur.offset(), alignment).unwrap_or(u64::MAX);
        let tensors = raw
            .into_iter()
            .map(|t| t.resolve(data_offset, alignment, file_len))
            .collect::<Result<Vec<_>, _>>()?;
        check_overlaps(&tensors)?;

        Ok(Gguf {
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            key_index,
            tensor_index,
        })
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> &[(&'a str, Value<'a>)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        let &i = self.key_index.get(key)?;
        self.metadata.get(i).map(|(_, v)| v)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        let &i = self.tensor_index.get(name)?;
        self.tensors.get(i)
    }

    /// Looks `key` up and converts it with `convert`, which returns `Err(found)` naming what
    /// it got instead of `expected`.
    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&Value<'a>) -> Result<T, &'static str>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).map_err(|found| GgufError::WrongType {
                key: key.to_string(),
                expected,
                found,
            }),
        }
    }

    /// An unsigned integer; any integer type with a non-negative value. Errors if absent.
    pub fn req_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| missing(key))
    }

    /// An unsigned integer; any integer type with a non-negative value. `None` if absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "non-negative integer", |v| {
            v.as_u64().ok_or(if v.as_i64().is_some() {
                "negative integer"
            } else {
                v.type_name()
            })
        })
    }

    /// A number: `f32`, `f64` (rounded) or any integer type. Errors if absent.
    pub fn req_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.opt_f32(key)?.ok_or_else(|| missing(key))
    }

    /// A number: `f32`, `f64` (rounded) or any integer type. `None` if absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "number", |v| v.as_f32().ok_or(v.type_name()))
    }

    /// A string. Errors if absent.
    pub fn req_str(&self, key: &str) -> Result<&'a str, GgufError> {
        self.opt_str(key)?.ok_or_else(|| missing(key))
    }

    /// A string. `None` if absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, GgufError> {
        self.typed(key, "string", |v| match *v {
            Value::Str(s) => Ok(s),
            _ => Err(v.type_name()),
        })
    }

    /// A bool. `None` if absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "bool", |v| v.as_bool().ok_or(v.type_name()))
    }

    /// An array of strings. `None` if absent.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>, GgufError> {
        self.typed(key, "array of string", |v| {
            collect(v, |e| match e {
                Value::Str(s) => Ok(s),
                _ => Err(v.array_type_name()),
            })
        })
    }

    /// An array of numbers (`f32`, `f64` rounded, or integers). `None` if absent.
    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        self.typed(key, "array of f32", |v| {
            collect(v, |e| e.as_f32().ok_or(v.array_type_name()))
        })
    }

    /// An array of integers of any type whose values fit `i32`. `None` if absent.
    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        self.typed(key, "array of i32", |v| {
            collect(v, |e| match e.as_i64() {
                Some(i) => i32::try_from(i).map_err(|_| "array with values outside i32"),
                None => Err(v.array_type_name()),
            })
        })
    }
}

fn missing(key: &str) -> GgufError {
    GgufError::MissingKey {
        key: String::from(key),
    }
}

/// Converts every element of the array `v`; `Err(found)` if `v` is not an array or an element
/// does not convert.
fn collect<'a, T>(
    v: &Value<'a>,
    convert: impl Fn(Value<'a>) -> Result<T, &'static str>,
) -> Result<Vec<T>, &'static str> {
    match v {
        Value::Array(items) => items.iter().map(convert).collect(),
        _ => Err(v.type_name()),
    }
}

/// Reads a u64 count, rejecting values above `cap`.
fn read_count(cur: &mut Cursor<'_>, field: &'static str, cap: u64) -> Result<u64, GgufError> {
    let offset = cur.offset();
    let value = cur.u64(field)?;
    if value > cap {
        return Err(GgufError::TooLarge {
            field,
            value,
            limit: cap,
            offset,
        });
    }
    Ok(value)
}

/// Preallocation for `count` items of at least `min_len` bytes each: no more than the rest of
/// the parsed bytes could hold, so a forged count cannot force a huge allocation.
fn capacity(cur: &Cursor<'_>, count: u64, min_len: u64) -> usize {
    let fits = cur.remaining() as u64 / min_len;
    usize::try_from(count.min(fits)).unwrap_or(0)
}

/// `x` rounded up to a multiple of `align`, a power of two.
fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(x.checked_add(mask)? & !mask)
}

/// Rejects tensors sharing bytes. Empty tensors occupy no bytes and never overlap.
fn check_overlaps(tensors: &[TensorInfo<'_>]) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo<'_>> = tensors.iter().filter(|t| t.size > 0).collect();
    order.sort_unstable_by_key(|t| (t.offset, t.size));
    // The tensor reaching furthest so far; sorted by start, any later start before its end
    // overlaps it.
    let mut furthest: Option<(&TensorInfo<'_>, u64)> = None;
    for t in order {
        // Ranges were checked against the file length, so `offset + size` cannot overflow.
        let end = t.offset.saturating_add(t.size);
        if let Some((prev, prev_end)) = furthest {
            if t.offset < prev_end {
                return Err(GgufError::OverlappingTensors {
                    first: prev.name.to_string(),
                    second: t.name.to_string(),
                });
            }
        }
        if furthest.is_none_or(|(_, prev_end)| end > prev_end) {
            furthest = Some((t, end));
        }
    }
    Ok(())
}
