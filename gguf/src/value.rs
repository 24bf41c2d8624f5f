//! Metadata values: the typed, borrowed form of a GGUF key's value and its decoder.
//!
//! Arrays are kept compact: the parser validates every element once (UTF-8, bools, nesting,
//! lengths) and then keeps only the array's encoded bytes, a borrowed slice of the file, so a
//! metadata array costs a few words however long it is (a 16 M-element array used to cost
//! ~32 bytes per element in `Value`s). Elements are decoded again when iterated, which is cheap
//! and happens once per load for the arrays a model uses (the vocabulary, scores, merges).

use alloc::vec::Vec;
use core::fmt;

use super::cursor::Cursor;
use super::{GgufError, MAX_ARRAY_LEN, MAX_ARRAY_NESTING};

/// A metadata value. Strings borrow from the file bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (stored as one byte, 0 or 1).
    Bool(bool),
    /// Type 8.
    Str(&'a str),
    /// Type 9: elements all of one type, possibly arrays themselves.
    Array(Array<'a>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl Value<'_> {
    /// Integers as `i128`, which holds every GGUF integer type exactly.
    fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any integer type whose value is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_int().and_then(|v| u64::try_from(v).ok())
    }

    /// Any integer type whose value fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_int().and_then(|v| i64::try_from(v).ok())
    }

    /// `f32`, `f64` (rounded) or any integer type (rounded to the nearest `f32`).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_int().map(|v| v as f32),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&Array<'_>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF type's short name: `u8`, `i32`, `f32`, `bool`, `string`, `array`, ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }

    /// `array of <element type>` for error messages; `array` when empty or not an array.
    pub(super) fn array_type_name(&self) -> &'static str {
        let first = match self {
            Value::Array(items) => items.get(0),
            _ => None,
        };
        match first {
            Some(Value::U8(_)) => "array of u8",
            Some(Value::I8(_)) => "array of i8",
            Some(Value::U16(_)) => "array of u16",
            Some(Value::I16(_)) => "array of i16",
            Some(Value::U32(_)) => "array of u32",
            Some(Value::I32(_)) => "array of i32",
            Some(Value::F32(_)) => "array of f32",
            Some(Value::Bool(_)) => "array of bool",
            Some(Value::Str(_)) => "array of string",
            Some(Value::Array(_)) => "array of array",
            Some(Value::U64(_)) => "array of u64",
            Some(Value::I64(_)) => "array of i64",
            Some(Value::F64(_)) => "array of f64",
            None => self.type_name(),
        }
    }
}

/// Array elements shown by `Display` before eliding the rest.
const DISPLAY_ITEMS: usize = 8;
/// Characters of a string shown by `Display` (chat templates run to kilobytes).
const DISPLAY_CHARS: usize = 60;

impl fmt::Display for Value<'_> {
    /// A short human form: long strings are cut, arrays show their first few elements and
    /// their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Str(s) => match s.char_indices().nth(DISPLAY_CHARS) {
                // Debug form quotes and escapes newlines, keeping the output on one line.
                Some((cut, _)) => write!(f, "{:?}…", s.get(..cut).unwrap_or(s)),
                None => write!(f, "{s:?}"),
            },
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().take(DISPLAY_ITEMS).enumerate() {
                    let item = &item;
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > DISPLAY_ITEMS {
                    write!(f, ", … ({} items)", items.len())?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Value type numbers as stored in the file.
mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// The fewest bytes one value of `ty` occupies, used to reject impossible array lengths before
/// allocating. `ty` must already be known valid.
fn min_encoded_len(ty: u32) -> u64 {
    match ty {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        // String: its u64 length.
        type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
        // Array: u32 element type + u64 count.
        _ => 12,
    }
}

/// Reads a value type number, rejecting unknown ones.
pub(super) fn read_type(cur: &mut Cursor<'_>, field: &'static str) -> Result<u32, GgufError> {
    let offset = cur.offset();
    let ty = cur.u32(field)?;
    if ty > type_id::F64 {
        return Err(GgufError::InvalidValueType {
            type_id: ty,
            offset,
        });
    }
    Ok(ty)
}

/// Reads one value of type `ty` (already validated by [`read_type`]). `depth` counts the arrays
/// enclosing this value, bounding recursion.
pub(super) fn read_value<'a>(
    cur: &mut Cursor<'a>,
    ty: u32,
    depth: usize,
) -> Result<Value<'a>, GgufError> {
    Ok(match ty {
        type_id::U8 => Value::U8(cur.u8("u8 value")?),
        type_id::I8 => Value::I8(cur.u8("i8 value")? as i8),
        type_id::U16 => Value::U16(cur.u16("u16 value")?),
        type_id::I16 => Value::I16(cur.u16("i16 value")? as i16),
        type_id::U32 => Value::U32(cur.u32("u32 value")?),
        type_id::I32 => Value::I32(cur.u32("i32 value")? as i32),
        type_id::F32 => Value::F32(f32::from_bits(cur.u32("f32 value")?)),
        type_id::BOOL => {
            let offset = cur.offset();
            match cur.u8("bool value")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                value => return Err(GgufError::InvalidBool { offset, value }),
            }
        }
        type_id::STRING => Value::Str(cur.str("string value")?),
        type_id::ARRAY => Value::Array(read_array(cur, depth)?),
        type_id::U64 => Value::U64(cur.u64("u64 value")?),
        type_id::I64 => Value::I64(cur.u64("i64 value")? as i64),
        type_id::F64 => Value::F64(f64::from_bits(cur.u64("f64 value")?)),
        // Unreachable for validated types; kept as an error rather than a panic.
        other => {
            let offset = cur.offset();
            return Err(GgufError::InvalidValueType {
                type_id: other,
                offset,
            });
        }
    })
}

/// Reads an array body (element type, count, elements) enclosed in `depth` other arrays,
/// validating every element but keeping only the encoded bytes.
fn read_array<'a>(cur: &mut Cursor<'a>, depth: usize) -> Result<Array<'a>, GgufError> {
    let type_offset = cur.offset();
    if depth >= MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            offset: type_offset,
        });
    }
    let elem_ty = read_type(cur, "array element type")?;
    let count_offset = cur.offset();
    let count = cur.u64("array length")?;
    if count > MAX_ARRAY_LEN {
        return Err(GgufError::TooLarge {
            field: "array length",
            value: count,
            limit: MAX_ARRAY_LEN,
            offset: count_offset,
        });
    }
    // Every element takes at least `min_encoded_len` bytes: reject a count the remaining bytes
    // cannot hold before walking it.
    let fits = cur.remaining() as u64 / min_encoded_len(elem_ty);
    if count > fits {
        return Err(GgufError::Truncated {
            field: "array elements",
            offset: cur.offset(),
        });
    }
    let start = cur.offset();
    let bytes = match fixed_len(elem_ty) {
        // Fixed-size elements other than bool need no look: any bit pattern is valid.
        Some(size) if elem_ty != type_id::BOOL => cur.take(count * size, "array elements")?,
        _ => {
            // Strings and arrays decode without allocating: this walk validates them.
            let mut walk = cur.clone();
            for _ in 0..count {
                read_value(&mut walk, elem_ty, depth + 1)?;
            }
            let len = walk.offset() - start;
            cur.take(len, "array elements")?
        }
    };
    Ok(Array(Repr::Encoded {
        elem_ty,
        // At most MAX_ARRAY_LEN (2^24): fits every usize.
        len: count as usize,
        bytes,
    }))
}

/// Bytes per element of the fixed-size types; `None` for strings and arrays.
fn fixed_len(ty: u32) -> Option<u64> {
    match ty {
        type_id::STRING | type_id::ARRAY => None,
        other => Some(min_encoded_len(other)),
    }
}

/// An array value. As parsed, its elements stay encoded in the file's bytes (validated, a few
/// words of memory whatever the length); as built for writing, they are [`Value`]s.
#[derive(Clone)]
pub struct Array<'a>(Repr<'a>);

#[derive(Clone)]
enum Repr<'a> {
    /// `len` validated elements of type `elem_ty`, encoded back to back in `bytes`.
    Encoded {
        elem_ty: u32,
        len: usize,
        bytes: &'a [u8],
    },
    /// Elements built in memory (all of one type: the writer checks).
    Built(Vec<Value<'a>>),
}

impl<'a> Array<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Encoded { len, .. } => *len,
            Repr::Built(items) => items.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in order, decoded as they are reached.
    pub fn iter(&self) -> ArrayIter<'_, 'a> {
        ArrayIter {
            array: self,
            cursor: match &self.0 {
                Repr::Encoded { bytes, .. } => Cursor::new(bytes),
                Repr::Built(_) => Cursor::new(&[]),
            },
            index: 0,
        }
    }

    /// Element `i`: constant time for fixed-size elements, a walk for strings and arrays.
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        match &self.0 {
            Repr::Encoded {
                elem_ty,
                len,
                bytes,
            } if i < *len => match fixed_len(*elem_ty) {
                Some(size) => {
                    let at = i * size as usize;
                    let mut cur = Cursor::new(bytes.get(at..)?);
                    read_value(&mut cur, *elem_ty, 1).ok()
                }
                None => self.iter().nth(i),
            },
            Repr::Encoded { .. } => None,
            Repr::Built(items) => items.get(i).cloned(),
        }
    }

    /// Heap bytes this value holds beyond its own size: 0 as parsed, the elements' `Value`s
    /// (recursively) as built. What a model's metadata costs in memory besides the file.
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Encoded { .. } => 0,
            Repr::Built(items) => {
                items.capacity() * core::mem::size_of::<Value<'_>>()
                    + items
                        .iter()
                        .map(|v| match v {
                            Value::Array(a) => a.heap_bytes(),
                            _ => 0,
                        })
                        .sum::<usize>()
            }
        }
    }
}

impl<'a> Array<'a> {
    /// The element type, length and encoded elements of a parsed array, for writing it back
    /// unchanged; `None` for a built one.
    pub(super) fn encoded(&self) -> Option<(u32, usize, &'a [u8])> {
        match self.0 {
            Repr::Encoded {
                elem_ty,
                len,
                bytes,
            } => Some((elem_ty, len, bytes)),
            Repr::Built(_) => None,
        }
    }
}

impl<'a> From<Vec<Value<'a>>> for Array<'a> {
    fn from(items: Vec<Value<'a>>) -> Self {
        Array(Repr::Built(items))
    }
}

impl<'a> FromIterator<Value<'a>> for Array<'a> {
    fn from_iter<I: IntoIterator<Item = Value<'a>>>(iter: I) -> Self {
        Array(Repr::Built(iter.into_iter().collect()))
    }
}

impl PartialEq for Array<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over an [`Array`]'s elements.
pub struct ArrayIter<'r, 'a> {
    array: &'r Array<'a>,
    cursor: Cursor<'a>,
    index: usize,
}

impl<'a> Iterator for ArrayIter<'_, 'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        let i = self.index;
        if i >= self.array.len() {
            return None;
        }
        self.index += 1;
        match &self.array.0 {
            // Validated when parsed: decoding again cannot fail (an error would end the
            // iteration early rather than panic).
            Repr::Encoded { elem_ty, .. } => read_value(&mut self.cursor, *elem_ty, 1).ok(),
            Repr::Built(items) => items.get(i).cloned(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.array.len() - self.index.min(self.array.len());
        (left, Some(left))
    }
}
