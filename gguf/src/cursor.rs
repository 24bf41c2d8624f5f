//! A bounds-checked little-endian reader over the parsed prefix of a GGUF file.

use super::{GgufError, MAX_STRING_LEN};

/// Reads fields front to back; every read either succeeds whole or names the field it failed on.
#[derive(Clone)]
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Current position as a file offset.
    pub(super) fn offset(&self) -> u64 {
        // usize → u64 never loses bits on supported targets.
        self.pos as u64
    }

    /// Bytes left in the parsed prefix after the current position.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, or `Truncated` naming `field` at the current offset.
    pub(super) fn take(&mut self, n: u64, field: &'static str) -> Result<&'a [u8], GgufError> {
        let truncated = GgufError::Truncated {
            field,
            offset: self.offset(),
        };
        let n = usize::try_from(n).map_err(|_| truncated.clone())?;
        let end = self.pos.checked_add(n).ok_or_else(|| truncated.clone())?;
        let slice = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, GgufError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub(super) fn magic(&mut self) -> Result<[u8; 4], GgufError> {
        self.array("magic")
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes without a terminator.
    pub(super) fn str(&mut self, field: &'static str) -> Result<&'a str, GgufError> {
        let len_offset = self.offset();
        let len = self.u64(field)?;
        if len > MAX_STRING_LEN {
            let limit = MAX_STRING_LEN;
            return Err(GgufError::TooLarge {
                field,
                value: len,
                limit,
                offset: len_offset,
            });
        }
        let start = self.offset();
        let bytes = self.take(len, field)?;
        core::str::from_utf8(bytes).map_err(|e| GgufError::InvalidUtf8 {
            field,
            offset: start.saturating_add(e.valid_up_to() as u64),
        })
    }
}
