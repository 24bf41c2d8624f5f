//! Opening model files from disk (`std` only): memory-mapped, read on demand by the OS.

use std::fs::File;
use std::path::Path;
use std::string::ToString;

use alloc::boxed::Box;
use tern_kernels::Kernels;

use crate::error::LoadError;
use crate::model::{Model, Residency, WeightBytes};
use crate::source::{SourceError, WeightSource};

/// A read-only memory map of a whole file.
pub struct MappedFile(memmap2::Mmap);

impl WeightBytes for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn advise(&self, offset: usize, len: usize, residency: Residency) {
        // Hints only: a failure (e.g. an unaligned range on an exotic OS) changes nothing.
        #[cfg(unix)]
        match residency {
            Residency::WillNeed => {
                let _ = self.0.advise_range(memmap2::Advice::WillNeed, offset, len);
            }
            Residency::DontNeed => {
                // SAFETY: the map is private and read-only, so no modification can be lost:
                // dropped pages are read back from the file when next touched.
                let _ = unsafe {
                    self.0
                        .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len, residency);
    }
}

/// A file read with positioned reads (`pread`), for [`Model::from_source`]: nothing is mapped,
/// only what the streaming feed asks for is read.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let io = |e: std::io::Error| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(FileSource { file, len })
    }
}

impl WeightSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset);
        #[cfg(windows)]
        let r = {
            let mut done = 0;
            let mut r = Ok(());
            while done < buf.len() {
                match std::os::windows::fs::FileExt::seek_read(
                    &self.file,
                    &mut buf[done..],
                    offset + done as u64,
                ) {
                    Ok(0) => {
                        r = Err(std::io::ErrorKind::UnexpectedEof.into());
                        break;
                    }
                    Ok(n) => done += n,
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r
        };
        r.map_err(|e| SourceError {
            offset,
            message: e.to_string(),
        })
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
        Self::open_with_progress(path, kernels, &mut |_| {})
    }

    /// [`Model::open`], calling `progress` with the fraction done (0 to 1).
    pub fn open_with_progress(
        path: &Path,
        kernels: Kernels,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        let map = MappedFile::open(path)?;
        Model::from_bytes_with_progress(Box::new(map), kernels, progress)
    }
}
