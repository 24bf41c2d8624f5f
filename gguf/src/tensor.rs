//! Tensor infos: each tensor's name, shape, type and where its bytes are.

use alloc::string::ToString;

use super::cursor::Cursor;
use super::{GgmlType, GgufError, MAX_DIM, MAX_DIMS};

/// One tensor's description. Shapes follow ggml: `dims[0]` is the contiguous (row) dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo<'a> {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: &'a str,
    /// `ne[0..4]`; dimensions past `n_dims` are 1.
    pub dims: [u64; 4],
    /// Number of dimensions stored in the file, 1..=4.
    pub n_dims: u32,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Absolute offset of the tensor's bytes in the file.
    pub offset: u64,
    /// Size of the tensor's bytes.
    pub size: u64,
}

impl TensorInfo<'_> {
    /// Product of all dimensions (saturating; parsed tensors never saturate).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Elements per row: `dims[0]`.
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }

    /// Number of rows: the product of `dims[1..]` (saturating).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..]
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// The tensor's bytes within `file`, the whole file; `None` if they lie outside it.
    pub fn data<'b>(&self, file: &'b [u8]) -> Option<&'b [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.size).ok()?;
        file.get(start..start.checked_add(len)?)
    }
}

/// A tensor info as stored: offset still relative to the data section, size not yet computed.
pub(super) struct RawTensor<'a> {
    pub(super) name: &'a str,
    dims: [u64; 4],
    n_dims: u32,
    ggml_type: GgmlType,
    rel_offset: u64,
}

/// Reads one tensor info, validating what needs no knowledge of the data section: dimension
/// count and sizes. The type is checked in [`RawTensor::resolve`].
pub(super) fn read_tensor_info<'a>(cur: &mut Cursor<'a>) -> Result<RawTensor<'a>, GgufError> {
    let name = cur.str("tensor name")?;
    let invalid = |reason| GgufError::InvalidDims {
        tensor: name.to_string(),
        reason,
    };
    let n_dims = cur.u32("tensor dimension count")?;
    if n_dims == 0 {
        return Err(invalid("zero dimensions"));
    }
    if n_dims as usize > MAX_DIMS {
        return Err(invalid("more than 4 dimensions"));
    }
    let mut dims = [1u64; MAX_DIMS];
    let mut n_elements = 1u64;
    for d in dims.iter_mut().take(n_dims as usize) {
        *d = cur.u64("tensor dimension")?;
        if *d > MAX_DIM {
            return Err(invalid("dimension exceeds 2^40"));
        }
        n_elements = n_elements
            .checked_mul(*d)
            .ok_or_else(|| invalid("element count overflows u64"))?;
    }
    let ggml_type = GgmlType(cur.u32("tensor type")?);
    let rel_offset = cur.u64("tensor offset")?;
    Ok(RawTensor {
        name,
        dims,
        n_dims,
        ggml_type,
        rel_offset,
    })
}

impl<'a> RawTensor<'a> {
    /// Resolves the type's size and the absolute position, checking them against the file.
    pub(super) fn resolve(
        self,
        data_offset: u64,
        alignment: u64,
        file_len: u64,
    ) -> Result<TensorInfo<'a>, GgufError> {
        let tensor = || self.name.to_string();
        let ty = self.ggml_type;
        let block_len = ty.block_len().ok_or_else(|| GgufError::UnknownTensorType {
            tensor: tensor(),
            type_id: ty.0,
        })?;
        let row_len = self.dims[0];
        if !row_len.is_multiple_of(block_len) {
            return Err(GgufError::RowNotBlockMultiple {
                tensor: tensor(),
                row_len,
                block_len,
            });
        }
        // The product was checked in `read_tensor_info`, so this never saturates.
        let n_elements = self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d));
        // With a known type and a block-multiple row, only overflow can fail here.
        let size = ty
            .tensor_bytes(n_elements, row_len)
            .ok_or_else(|| GgufError::InvalidDims {
                tensor: tensor(),
                reason: "byte size overflows u64",
            })?;
        if !self.rel_offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                tensor: tensor(),
                offset: self.rel_offset,
                alignment,
            });
        }
        let range = data_offset
            .checked_add(self.rel_offset)
            .and_then(|start| Some((start, start.checked_add(size)?)));
        match range {
            Some((offset, end)) if end <= file_len => Ok(TensorInfo {
                name: self.name,
                dims: self.dims,
                n_dims: self.n_dims,
                ggml_type: ty,
                offset,
                size,
            }),
            _ => Err(GgufError::TensorOutOfBounds {
                tensor: tensor(),
                offset: data_offset.saturating_add(self.rel_offset),
                size,
                file_len,
            }),
        }
    }
}
