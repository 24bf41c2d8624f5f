//! GGUF writer: header, metadata, tensor infos and aligned tensor data, the inverse of
//! [`Gguf::parse`](super::Gguf::parse).
//!
//! A [`GgufWriter`] collects metadata (the reader's [`Value`]s) and tensor declarations (name,
//! shape, type), validating each against the same caps the reader enforces, so whatever it
//! writes parses back. The file is then produced in one of two ways:
//! - [`GgufWriter::to_bytes`] builds the whole file in memory from every tensor's bytes;
//! - [`GgufWriter::header`] gives the bytes before the data section and
//!   [`GgufWriter::tensor_padding`] the zeros after each tensor, for a caller that streams tensors
//!   to a file one by one (`std`: [`GgufWriter::stream`] does exactly that over `io::Write`).
//!
//! Layout, as gguf-py and ggml's `gguf_write` produce it: `GGUF`, version 3, tensor count, metadata
//! count (u64s), the metadata pairs in insertion order, the tensor infos in declaration order, zero
//! padding to the alignment, then each tensor's bytes followed by zero padding to the alignment
//! (the last tensor too). Tensor offsets are assigned in declaration order. The alignment is
//! [`DEFAULT_ALIGNMENT`] unless `general.alignment` is set (as a power-of-two `u32`).
//!
//! bitnet.cpp's I2_S (type 36) is sized as the reader sizes it: `n/4` packed bytes plus a 32-byte
//! trailer (see [`GgmlType::tensor_bytes`]); the writer only checks the byte count, so the trailer's
//! scale and padding are whatever the caller supplies.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::{
    align_up, GgmlType, Gguf, Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_LEN,
    MAX_ARRAY_NESTING, MAX_DIM, MAX_DIMS, MAX_KV, MAX_STRING_LEN, MAX_TENSORS,
};

/// Format version written.
pub const VERSION: u32 = 3;

/// Why a GGUF file cannot be written as asked. The writer rejects whatever the reader would, so
/// every file it produces parses.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WriteError {
    /// A string (key, string value or tensor name) or an array is longer than the reader
    /// accepts, or there are too many tensors or metadata pairs.
    TooLarge {
        /// What is too large, e.g. `"array length"`.
        field: &'static str,
        /// Its size.
        value: u64,
        /// The largest size accepted.
        limit: u64,
    },
    /// An array's elements are not all of one type (GGUF stores one element type per array).
    MixedArray {
        /// The metadata key.
        key: String,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_NESTING`].
    NestingTooDeep {
        /// The metadata key.
        key: String,
    },
    /// `general.alignment` is not a nonzero power of two.
    InvalidAlignment {
        /// The alignment given.
        value: u64,
    },
    /// `general.alignment` is not a `u32`.
    WrongType {
        /// The key.
        key: String,
        /// The type required.
        expected: &'static str,
        /// The type given.
        found: &'static str,
    },
    /// A tensor name is declared twice.
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor's dimension count or dimensions are invalid.
    InvalidDims {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor's ggml type number is not known to the reader.
    UnknownTensorType {
        /// The tensor's name.
        tensor: String,
        /// The type number.
        type_id: u32,
    },
    /// A tensor's row length is not a multiple of its type's block length.
    RowNotBlockMultiple {
        /// The tensor's name.
        tensor: String,
        /// The row length (`dims[0]`).
        row_len: u64,
        /// The type's elements per block.
        block_len: u64,
    },
    /// The bytes given for a tensor are not the size its shape and type require.
    DataSize {
        /// The tensor's name.
        tensor: String,
        /// The size its declaration implies.
        expected: u64,
        /// The size given.
        found: u64,
    },
    /// Tensor data was given for more or fewer tensors than were declared.
    TensorCount {
        /// Tensors declared.
        declared: usize,
        /// Tensors whose data was given.
        given: usize,
    },
    /// Writing to the output failed (`std` streaming only).
    Io {
        /// The I/O error's message.
        message: String,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::TooLarge {
                field,
                value,
                limit,
            } => write!(f, "GGUF {field} too large to write: {value} > {limit}"),
            WriteError::MixedArray { key } => {
                write!(
                    f,
                    "GGUF metadata '{key}' is an array of mixed element types"
                )
            }
            WriteError::NestingTooDeep { key } => write!(
                f,
                "GGUF metadata '{key}' nests arrays more than {MAX_ARRAY_NESTING} deep"
            ),
            WriteError::InvalidAlignment { value } => {
                write!(f, "GGUF alignment {value} is not a nonzero power of two")
            }
            WriteError::WrongType {
                key,
                expected,
                found,
            } => write!(f, "GGUF metadata '{key}' is {found}, expected {expected}"),
            WriteError::DuplicateTensor { name } => {
                write!(f, "tensor '{name}' is declared twice")
            }
            WriteError::InvalidDims { tensor, reason } => {
                write!(f, "tensor '{tensor}' has invalid dimensions: {reason}")
            }
            WriteError::UnknownTensorType { tensor, type_id } => {
                write!(f, "tensor '{tensor}' has unknown ggml type {type_id}")
            }
            WriteError::RowNotBlockMultiple {
                tensor,
                row_len,
                block_len,
            } => write!(
                f,
                "tensor '{tensor}' row length {row_len} is not a multiple of its block length \
                 {block_len}"
            ),
            WriteError::DataSize {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor '{tensor}' needs {expected} bytes of data, {found} were given"
            ),
            WriteError::TensorCount { declared, given } => {
                write!(f, "{declared} tensors declared but data given for {given}")
            }
            WriteError::Io { message } => write!(f, "writing GGUF failed: {message}"),
        }
    }
}

impl core::error::Error for WriteError {}

/// One declared tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDecl {
    /// The tensor's name.
    pub name: String,
    /// `ne[0..n_dims]`, row length first (ggml order).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Bytes of the tensor's data (without alignment padding).
    pub size: u64,
}

/// A GGUF file being assembled: metadata pairs and tensor declarations, in order.
#[derive(Debug, Clone)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value<'a>)>,
    tensors: Vec<TensorDecl>,
    alignment: u64,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty file: no metadata, no tensors, alignment [`DEFAULT_ALIGNMENT`].
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// A file starting with every metadata pair of `src`, in its order (alignment included);
    /// no tensors. Borrowed strings keep pointing into `src`'s bytes.
    pub fn with_metadata_of(src: &Gguf<'a>) -> Result<Self, WriteError> {
        let mut w = Self::new();
        for (key, value) in src.metadata() {
            w.set(key, value.clone())?;
        }
        Ok(w)
    }

    /// Sets `key` to `value`: replaces the value in place if the key exists, else appends the
    /// pair. Setting [`ALIGNMENT_KEY`] (a power-of-two `u32`) changes the data alignment.
    ///
    /// An empty array is written with element type `u8`: the reader's [`Value`] does not keep
    /// the element type of an empty array.
    pub fn set(&mut self, key: &str, value: Value<'a>) -> Result<(), WriteError> {
        check_len("metadata key", key.len())?;
        check_value(key, &value, 0)?;
        if key == ALIGNMENT_KEY {
            self.alignment = match value {
                Value::U32(a) if a.is_power_of_two() => u64::from(a),
                Value::U32(a) => {
                    return Err(WriteError::InvalidAlignment {
                        value: u64::from(a),
                    })
                }
                ref other => {
                    return Err(WriteError::WrongType {
                        key: key.to_string(),
                        expected: "u32",
                        found: other.type_name(),
                    })
                }
            };
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => {
                check_count("metadata count", self.metadata.len() + 1, MAX_KV)?;
                self.metadata.push((key.to_string(), value));
            }
        }
        Ok(())
    }

    /// Removes `key`, returning its value if it was set. Removing [`ALIGNMENT_KEY`] restores
    /// [`DEFAULT_ALIGNMENT`].
    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        if key == ALIGNMENT_KEY {
            self.alignment = DEFAULT_ALIGNMENT;
        }
        Some(self.metadata.remove(i).1)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value<'a>)] {
        &self.metadata
    }

    /// Declares the next tensor: `dims` in ggml order (`dims[0]` is the row length), 1 to 4 of
    /// them. Returns the size its data must have, in bytes.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
    ) -> Result<u64, WriteError> {
        check_len("tensor name", name.len())?;
        check_count("tensor count", self.tensors.len() + 1, MAX_TENSORS)?;
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(WriteError::DuplicateTensor {
                name: name.to_string(),
            });
        }
        let invalid = |reason| WriteError::InvalidDims {
            tensor: name.to_string(),
            reason,
        };
        if dims.is_empty() {
            return Err(invalid("zero dimensions"));
        }
        if dims.len() > MAX_DIMS {
            return Err(invalid("more than 4 dimensions"));
        }
        if dims.iter().any(|&d| d > MAX_DIM) {
            return Err(invalid("dimension exceeds 2^40"));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| invalid("element count overflows u64"))?;
        let block_len = ggml_type
            .block_len()
            .ok_or_else(|| WriteError::UnknownTensorType {
                tensor: name.to_string(),
                type_id: ggml_type.0,
            })?;
        let row_len = dims[0];
        if !row_len.is_multiple_of(block_len) {
            return Err(WriteError::RowNotBlockMultiple {
                tensor: name.to_string(),
                row_len,
                block_len,
            });
        }
        let size = ggml_type
            .tensor_bytes(n_elements, row_len)
            .ok_or_else(|| invalid("byte size overflows u64"))?;
        self.tensors.push(TensorDecl {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            size,
        });
        Ok(size)
    }

    /// The declared tensors, in file order.
    pub fn tensors(&self) -> &[TensorDecl] {
        &self.tensors
    }

    /// The data alignment (from `general.alignment`, else [`DEFAULT_ALIGNMENT`]).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of each tensor relative to the data section, in declaration order.
    pub fn tensor_offsets(&self) -> Result<Vec<u64>, WriteError> {
        let mut next = 0u64;
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            out.push(next);
            next = next
                .checked_add(t.size)
                .and_then(|end| align_up(end, self.alignment))
                .ok_or(WriteError::TooLarge {
                    field: "data section",
                    value: u64::MAX,
                    limit: u64::MAX,
                })?;
        }
        Ok(out)
    }

    /// Zero bytes to write after the `i`-th tensor's data so the next one is aligned.
    pub fn tensor_padding(&self, i: usize) -> usize {
        self.tensors
            .get(i)
            .map_or(0, |t| padding(t.size, self.alignment))
    }

    /// The file's bytes before the data section: header, metadata, tensor infos and the zero
    /// padding up to the alignment.
    pub fn header(&self) -> Result<Vec<u8>, WriteError> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        put_u32(&mut b, VERSION);
        put_u64(&mut b, self.tensors.len() as u64);
        put_u64(&mut b, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            put_str(&mut b, key);
            put_u32(&mut b, value_type(value));
            put_value(&mut b, value);
        }
        for (t, offset) in self.tensors.iter().zip(self.tensor_offsets()?) {
            put_str(&mut b, &t.name);
            // At most MAX_DIMS (4) dimensions, checked in `add_tensor`.
            put_u32(&mut b, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut b, d);
            }
            put_u32(&mut b, t.ggml_type.0);
            put_u64(&mut b, offset);
        }
        b.resize(b.len() + padding(b.len() as u64, self.alignment), 0);
        Ok(b)
    }

    /// The whole file, with `data[i]` the bytes of the `i`-th declared tensor.
    pub fn to_bytes(&self, data: &[&[u8]]) -> Result<Vec<u8>, WriteError> {
        if data.len() != self.tensors.len() {
            return Err(WriteError::TensorCount {
                declared: self.tensors.len(),
                given: data.len(),
            });
        }
        let mut b = self.header()?;
        for (i, (t, bytes)) in self.tensors.iter().zip(data).enumerate() {
            check_size(t, bytes.len())?;
            b.extend_from_slice(bytes);
            b.resize(b.len() + self.tensor_padding(i), 0);
        }
        Ok(b)
    }
}

#[cfg(feature = "std")]
impl GgufWriter<'_> {
    /// Writes the header to `out` and returns a [`GgufStream`] that takes the tensors' bytes
    /// one by one, in declaration order.
    pub fn stream<W: std::io::Write>(&self, mut out: W) -> Result<GgufStream<W>, WriteError> {
        let header = self.header()?;
        out.write_all(&header).map_err(io_error)?;
        Ok(GgufStream {
            out,
            tensors: self
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), self.tensor_padding(i)))
                .collect(),
            next: 0,
        })
    }
}

/// A GGUF file being written to an `io::Write`: the header is out, tensor data follows
/// (`std` only). Made by [`GgufWriter::stream`].
#[cfg(feature = "std")]
pub struct GgufStream<W: std::io::Write> {
    out: W,
    tensors: Vec<(TensorDecl, usize)>,
    next: usize,
}

#[cfg(feature = "std")]
impl<W: std::io::Write> GgufStream<W> {
    /// The next tensor to be written, if any remain.
    pub fn next_tensor(&self) -> Option<&TensorDecl> {
        self.tensors.get(self.next).map(|(t, _)| t)
    }

    /// Writes the next tensor's bytes (exactly its declared size) and its padding.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let Some((t, pad)) = self.tensors.get(self.next) else {
            return Err(WriteError::TensorCount {
                declared: self.tensors.len(),
                given: self.next + 1,
            });
        };
        check_size(t, bytes.len())?;
        self.out.write_all(bytes).map_err(io_error)?;
        const ZEROS: [u8; 64] = [0; 64];
        let mut pad = *pad;
        while pad > 0 {
            let n = pad.min(ZEROS.len());
            self.out.write_all(&ZEROS[..n]).map_err(io_error)?;
            pad -= n;
        }
        self.next += 1;
        Ok(())
    }

    /// Checks every declared tensor was written, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if self.next != self.tensors.len() {
            return Err(WriteError::TensorCount {
                declared: self.tensors.len(),
                given: self.next,
            });
        }
        self.out.flush().map_err(io_error)?;
        Ok(self.out)
    }
}

#[cfg(feature = "std")]
fn io_error(e: std::io::Error) -> WriteError {
    WriteError::Io {
        message: e.to_string(),
    }
}

fn check_size(t: &TensorDecl, found: usize) -> Result<(), WriteError> {
    if found as u64 != t.size {
        return Err(WriteError::DataSize {
            tensor: t.name.clone(),
            expected: t.size,
            found: found as u64,
        });
    }
    Ok(())
}

/// Zero bytes after `len` bytes to reach a multiple of `align` (a power of two).
fn padding(len: u64, align: u64) -> usize {
    // `align` is at most 2^31, so the padding fits usize.
    ((align - len % align) % align) as usize
}

fn check_len(field: &'static str, len: usize) -> Result<(), WriteError> {
    check_count(field, len, MAX_STRING_LEN)
}

fn check_count(field: &'static str, n: usize, limit: u64) -> Result<(), WriteError> {
    if n as u64 > limit {
        return Err(WriteError::TooLarge {
            field,
            value: n as u64,
            limit,
        });
    }
    Ok(())
}

/// Checks `v` (enclosed in `depth` arrays) is writable and reads back as written: strings and
/// arrays within the reader's caps, arrays of one element type, nesting within the cap.
fn check_value(key: &str, v: &Value<'_>, depth: usize) -> Result<(), WriteError> {
    match v {
        Value::Str(s) => check_len("string value", s.len()),
        Value::Array(items) => {
            if depth >= MAX_ARRAY_NESTING {
                return Err(WriteError::NestingTooDeep {
                    key: key.to_string(),
                });
            }
            check_count("array length", items.len(), MAX_ARRAY_LEN)?;
            // A parsed array was validated by the reader.
            if items.encoded().is_some() {
                return Ok(());
            }
            if let Some(first) = items.get(0) {
                let ty = value_type(&first);
                if items.iter().any(|e| value_type(&e) != ty) {
                    return Err(WriteError::MixedArray {
                        key: key.to_string(),
                    });
                }
            }
            items
                .iter()
                .try_for_each(|e| check_value(key, &e, depth + 1))
        }
        _ => Ok(()),
    }
}

/// GGUF's value type number of `v`.
fn value_type(v: &Value<'_>) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

/// A value's payload (its type number is written by the caller).
fn put_value(b: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => put_u32(b, *x),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::Str(s) => put_str(b, s),
        Value::Array(items) => {
            if let Some((elem_ty, len, bytes)) = items.encoded() {
                put_u32(b, elem_ty);
                put_u64(b, len as u64);
                b.extend_from_slice(bytes);
                return;
            }
            // An empty array's element type is unknown (see `GgufWriter::set`): u8.
            put_u32(b, items.get(0).as_ref().map_or(0, value_type));
            put_u64(b, items.len() as u64);
            for item in items.iter() {
                put_value(b, &item);
            }
        }
        Value::U64(x) => put_u64(b, *x),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    //! Round trips through the reader (every value type, nested and empty arrays, every known
    //! tensor type including I2_S's trailer, alignments), the streaming path, and every error.

    extern crate std;

    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    /// Every value type, a nested array, an empty array and a long string array.
    fn rich_metadata(w: &mut GgufWriter<'static>) {
        let pairs: Vec<(&str, Value<'static>)> = vec![
            ("general.architecture", Value::Str("bitnet")),
            ("u8", Value::U8(200)),
            ("i8", Value::I8(-5)),
            ("u16", Value::U16(60000)),
            ("i16", Value::I16(-30000)),
            ("u32", Value::U32(4_000_000_000)),
            ("i32", Value::I32(-7)),
            ("f32", Value::F32(1e-5)),
            ("bool.t", Value::Bool(true)),
            ("bool.f", Value::Bool(false)),
            ("str", Value::Str("héllo ✓")),
            ("str.empty", Value::Str("")),
            ("u64", Value::U64(u64::MAX)),
            ("i64", Value::I64(i64::MIN)),
            ("f64", Value::F64(10000.5)),
            (
                "tokens",
                Value::Array(vec![Value::Str("<s>"), Value::Str("▁a"), Value::Str("")].into()),
            ),
            (
                "scores",
                Value::Array(vec![Value::F32(-1.5), Value::F32(0.0)].into()),
            ),
            (
                "nested",
                Value::Array(
                    vec![
                        Value::Array(vec![Value::I32(1), Value::I32(2)].into()),
                        Value::Array(vec![].into()),
                        Value::Array(vec![Value::Array(vec![Value::U8(9)].into())].into()),
                    ]
                    .into(),
                ),
            ),
            ("empty", Value::Array(vec![].into())),
        ];
        for (k, v) in pairs {
            w.set(k, v).unwrap();
        }
    }

    /// Distinct bytes for a tensor of `size` bytes.
    fn pattern(size: u64, seed: u8) -> Vec<u8> {
        (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Declares one tensor of every type the reader knows, with shapes fitting each block.
    fn every_type(w: &mut GgufWriter<'_>) -> Vec<Vec<u8>> {
        let types: [(u32, &[u64]); 8] = [
            (0, &[3, 2]),     // F32
            (1, &[5]),        // F16
            (30, &[4, 1, 2]), // BF16
            (2, &[64, 3]),    // Q4_0
            (8, &[32, 2, 1, 2]),
            (35, &[256, 2]), // TQ2_0
            (34, &[512]),    // TQ1_0
            (36, &[256, 3]), // I2_S: 192 + 32 bytes
        ];
        let mut data = Vec::new();
        for (i, (ty, dims)) in types.iter().enumerate() {
            let size = w
                .add_tensor(&alloc::format!("t{i}.weight"), dims, GgmlType(*ty))
                .unwrap();
            data.push(pattern(size, i as u8));
        }
        data
    }

    fn check_round_trip(w: &GgufWriter<'_>, data: &[Vec<u8>]) {
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let bytes = w.to_bytes(&slices).unwrap();
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(g.version, VERSION);
        assert_eq!(g.alignment, w.alignment());
        assert_eq!(g.data_offset, w.header().unwrap().len() as u64);
        assert_eq!(g.data_offset % w.alignment(), 0);
        // Metadata: same keys, order and values.
        assert_eq!(g.metadata().len(), w.metadata().len());
        for ((k1, v1), (k2, v2)) in g.metadata().iter().zip(w.metadata()) {
            assert_eq!(k1, k2);
            assert_eq!(v1, v2, "{k1}");
        }
        // Tensors: same names, shapes, types, offsets in order, and bytes.
        let offsets = w.tensor_offsets().unwrap();
        assert_eq!(g.tensors().len(), w.tensors().len());
        for (((t, d), want), off) in g.tensors().iter().zip(w.tensors()).zip(data).zip(offsets) {
            assert_eq!(t.name, d.name);
            assert_eq!(&t.dims[..t.n_dims as usize], &d.dims[..]);
            assert_eq!(t.ggml_type, d.ggml_type);
            assert_eq!(t.size, d.size);
            assert_eq!(t.offset, g.data_offset + off);
            assert_eq!(t.data(&bytes).unwrap(), &want[..]);
        }
        // Every tensor is padded, the last one too.
        let end = offsets_end(w);
        assert_eq!(bytes.len() as u64, g.data_offset + end);
    }

    fn offsets_end(w: &GgufWriter<'_>) -> u64 {
        let offsets = w.tensor_offsets().unwrap();
        match (offsets.last(), w.tensors().last()) {
            (Some(o), Some(t)) => align_up(o + t.size, w.alignment()).unwrap(),
            _ => 0,
        }
    }

    #[test]
    fn round_trip_every_value_and_tensor_type() {
        let mut w = GgufWriter::new();
        rich_metadata(&mut w);
        let data = every_type(&mut w);
        check_round_trip(&w, &data);
    }

    #[test]
    fn round_trip_alignments_and_empty_files() {
        // No metadata, no tensors.
        let w = GgufWriter::new();
        check_round_trip(&w, &[]);
        // 24 header bytes, padded to the default alignment.
        assert_eq!(w.to_bytes(&[]).unwrap().len(), 32);
        for align in [1u32, 8, 64, 4096] {
            let mut w = GgufWriter::new();
            w.set(ALIGNMENT_KEY, Value::U32(align)).unwrap();
            let data = every_type(&mut w);
            check_round_trip(&w, &data);
            // Offsets are multiples of the alignment, in declaration order.
            let offsets = w.tensor_offsets().unwrap();
            assert!(offsets.iter().all(|o| o % u64::from(align) == 0));
            assert!(offsets.windows(2).all(|p| p[0] < p[1]));
        }
        // Removing the key restores the default.
        let mut w = GgufWriter::new();
        w.set(ALIGNMENT_KEY, Value::U32(128)).unwrap();
        assert_eq!(w.remove(ALIGNMENT_KEY), Some(Value::U32(128)));
        assert_eq!(w.alignment(), DEFAULT_ALIGNMENT);
    }

    #[test]
    fn empty_array_reads_back_empty() {
        let mut w = GgufWriter::new();
        w.set("a", Value::Array(vec![].into())).unwrap();
        let bytes = w.to_bytes(&[]).unwrap();
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(g.get("a"), Some(&Value::Array(vec![].into())));
    }

    #[test]
    fn set_replaces_in_place_and_copies_metadata() {
        let mut w = GgufWriter::new();
        w.set("a", Value::U32(1)).unwrap();
        w.set("b", Value::Str("x")).unwrap();
        w.set("a", Value::F32(2.0)).unwrap();
        assert_eq!(w.metadata().len(), 2);
        assert_eq!(w.metadata()[0], ("a".to_string(), Value::F32(2.0)));
        assert_eq!(w.get("b"), Some(&Value::Str("x")));
        assert_eq!(w.remove("b"), Some(Value::Str("x")));
        assert_eq!(w.remove("b"), None);

        // with_metadata_of: a parsed file's metadata, alignment included, in order.
        let mut src = GgufWriter::new();
        rich_metadata(&mut src);
        src.set(ALIGNMENT_KEY, Value::U32(64)).unwrap();
        let bytes = src.to_bytes(&[]).unwrap();
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        let copy = GgufWriter::with_metadata_of(&g).unwrap();
        assert_eq!(copy.alignment(), 64);
        assert_eq!(copy.to_bytes(&[]).unwrap(), bytes);
    }

    #[cfg(feature = "std")]
    #[test]
    fn streaming_matches_in_memory() {
        let mut w = GgufWriter::new();
        rich_metadata(&mut w);
        let data = every_type(&mut w);
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut s = w.stream(Vec::new()).unwrap();
        for (i, d) in data.iter().enumerate() {
            assert_eq!(s.next_tensor().unwrap().name, w.tensors()[i].name);
            s.write_tensor(d).unwrap();
        }
        assert!(s.next_tensor().is_none());
        assert_eq!(s.finish().unwrap(), w.to_bytes(&slices).unwrap());
    }

    #[cfg(feature = "std")]
    #[test]
    fn streaming_errors() {
        let mut w = GgufWriter::new();
        w.add_tensor("a", &[32], GgmlType::F32).unwrap();
        w.add_tensor("b", &[32], GgmlType::Q8_0).unwrap();
        // Too few tensors.
        let mut s = w.stream(Vec::new()).unwrap();
        s.write_tensor(&[0; 128]).unwrap();
        assert_eq!(
            s.finish().unwrap_err(),
            WriteError::TensorCount {
                declared: 2,
                given: 1
            }
        );
        // Wrong size, then too many.
        let mut s = w.stream(Vec::new()).unwrap();
        assert_eq!(
            s.write_tensor(&[0; 127]).unwrap_err(),
            WriteError::DataSize {
                tensor: "a".to_string(),
                expected: 128,
                found: 127
            }
        );
        s.write_tensor(&[0; 128]).unwrap();
        s.write_tensor(&[0; 34]).unwrap();
        assert!(matches!(
            s.write_tensor(&[]).unwrap_err(),
            WriteError::TensorCount { .. }
        ));
        // An output that fails.
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = w.stream(Broken).err().unwrap();
        assert!(matches!(e, WriteError::Io { .. }));
        assert!(e.to_string().contains("disk full"));
    }

    #[test]
    fn tensor_declaration_errors() {
        let mut w = GgufWriter::new();
        let dims = |reason| WriteError::InvalidDims {
            tensor: "t".to_string(),
            reason,
        };
        assert_eq!(
            w.add_tensor("t", &[], GgmlType::F32),
            Err(dims("zero dimensions"))
        );
        assert_eq!(
            w.add_tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32),
            Err(dims("more than 4 dimensions"))
        );
        assert_eq!(
            w.add_tensor("t", &[1 << 41], GgmlType::F32),
            Err(dims("dimension exceeds 2^40"))
        );
        assert_eq!(
            w.add_tensor("t", &[1 << 40, 1 << 40], GgmlType::F32),
            Err(dims("element count overflows u64"))
        );
        assert_eq!(
            w.add_tensor("t", &[1 << 40, 1 << 23], GgmlType::F32),
            Err(dims("byte size overflows u64"))
        );
        assert_eq!(
            w.add_tensor("t", &[4], GgmlType(31)),
            Err(WriteError::UnknownTensorType {
                tensor: "t".to_string(),
                type_id: 31
            })
        );
        assert_eq!(
            w.add_tensor("t", &[576, 2], GgmlType::TQ2_0),
            Err(WriteError::RowNotBlockMultiple {
                tensor: "t".to_string(),
                row_len: 576,
                block_len: 256
            })
        );
        assert_eq!(
            w.add_tensor("t", &[576, 2], GgmlType::Q4_0),
            Ok(18 * 18 * 2)
        );
        assert_eq!(
            w.add_tensor("t", &[32], GgmlType::Q4_0),
            Err(WriteError::DuplicateTensor {
                name: "t".to_string()
            })
        );
        // Data count and size.
        assert_eq!(
            w.to_bytes(&[]),
            Err(WriteError::TensorCount {
                declared: 1,
                given: 0
            })
        );
        assert!(matches!(
            w.to_bytes(&[&[0u8; 10]]),
            Err(WriteError::DataSize { .. })
        ));
    }

    #[test]
    fn metadata_errors() {
        let mut w = GgufWriter::new();
        assert_eq!(
            w.set(
                "mixed",
                Value::Array(vec![Value::U8(1), Value::I8(1)].into())
            ),
            Err(WriteError::MixedArray {
                key: "mixed".to_string()
            })
        );
        let mut deep = Value::Array(vec![Value::U8(1)].into());
        for _ in 0..MAX_ARRAY_NESTING - 1 {
            deep = Value::Array(vec![deep].into());
        }
        w.set("deep.ok", deep.clone()).unwrap();
        assert_eq!(
            w.set("deep", Value::Array(vec![deep].into())),
            Err(WriteError::NestingTooDeep {
                key: "deep".to_string()
            })
        );
        assert_eq!(
            w.set(ALIGNMENT_KEY, Value::U32(48)),
            Err(WriteError::InvalidAlignment { value: 48 })
        );
        assert_eq!(
            w.set(ALIGNMENT_KEY, Value::U32(0)),
            Err(WriteError::InvalidAlignment { value: 0 })
        );
        assert_eq!(
            w.set(ALIGNMENT_KEY, Value::U64(64)),
            Err(WriteError::WrongType {
                key: ALIGNMENT_KEY.to_string(),
                expected: "u32",
                found: "u64"
            })
        );
        assert_eq!(w.alignment(), DEFAULT_ALIGNMENT);
        // Caps (checked through the helper: a 2^24-element array is too big for a unit test).
        assert_eq!(
            check_count("array length", MAX_ARRAY_LEN as usize + 1, MAX_ARRAY_LEN),
            Err(WriteError::TooLarge {
                field: "array length",
                value: MAX_ARRAY_LEN + 1,
                limit: MAX_ARRAY_LEN
            })
        );
        // Nothing rejected was kept; what was kept still parses.
        let bytes = w.to_bytes(&[]).unwrap();
        let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(g.metadata().len(), 1);
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = WriteError::RowNotBlockMultiple {
            tensor: "blk.0.attn_q.weight".to_string(),
            row_len: 576,
            block_len: 256,
        };
        assert_eq!(
            e.to_string(),
            "tensor 'blk.0.attn_q.weight' row length 576 is not a multiple of its block length 256"
        );
        let e = WriteError::DataSize {
            tensor: "x".to_string(),
            expected: 66,
            found: 64,
        };
        assert_eq!(
            e.to_string(),
            "tensor 'x' needs 66 bytes of data, 64 were given"
        );
    }
}
