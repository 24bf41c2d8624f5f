//! Where weight bytes come from: a slice in memory (a memory map or a buffer), or any
//! random-access source such as a flash partition on a device without a file system.

use alloc::string::String;
use core::fmt;

/// Why a read from a [`WeightSource`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// Offset of the failed read.
    pub offset: u64,
    /// What the source reported.
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read at offset {} failed: {}", self.offset, self.message)
    }
}

impl core::error::Error for SourceError {}

/// Random-access bytes of a GGUF file.
pub trait WeightSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;
}

impl WeightSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|r| r.end <= <[u8]>::len(self));
        match range {
            Some(r) => {
                buf.copy_from_slice(&self[r]);
                Ok(())
            }
            None => Err(SourceError {
                offset,
                message: String::from("past the end"),
            }),
        }
    }
}
