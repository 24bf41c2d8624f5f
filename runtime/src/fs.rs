//! Opening model files from disk (`std` only): memory-mapped, read on demand by the OS.

use std::fs::File;
use std::path::Path;
use std::string::ToString;

use alloc::boxed::Box;
use tern_kernels::Kernels;

use crate::error::LoadError;
use crate::model::{Model, WeightBytes};

/// A read-only memory map of a whole file.
pub struct MappedFile(memmap2::Mmap);

impl WeightBytes for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |e: std::io::Error| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // or rewriting the file while it is mapped would change the bytes under us (or fault);
        // model files are not edited in place while they run, the risk every mmap-based
        // runtime accepts.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(MappedFile(map))
    }
}

impl Model {
    /// Memory-maps the GGUF file at `path` and loads it; tensor data is read by the OS as the
    /// forward pass touches it, not up front.
    pub fn open(path: &Path, kernels: Kernels) -> Result<Self, LoadError> {
        let map = MappedFile::open(path)?;
        Model::from_bytes(Box::new(map), kernels)
    }
}
