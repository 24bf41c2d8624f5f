//! Opening model files from disk (`std` only): memory-mapped and read on demand by the OS, or
//! copied into huge pages where that is faster and affordable ([`WeightMemory`]).

use std::fs::File;
use std::io::Read;
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

/// How [`Model::open_with`] holds a model file's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightMemory {
    /// [`WeightMemory::Copy`] on Linux (not Android) when transparent huge pages are enabled
    /// and the file is at most a quarter of the memory available; [`WeightMemory::Map`]
    /// everywhere else (phones keep weights in the page cache, where the system can reclaim
    /// them).
    #[default]
    Auto,
    /// Memory-map the file: pages are read on demand, shared with the page cache, reclaimable,
    /// and released again under [`crate::SessionOptions::max_resident`].
    Map,
    /// Read the whole file into anonymous memory advised for transparent huge pages. Decoding
    /// streams every weight once per token; through 4 KB pages that is a TLB miss every 4 KB,
    /// which 2 MB pages remove (SmolLM2-135M decode on x86_64: 8–15 % faster than a map, see
    /// `tern bench --load`). The bytes stay resident: the system cannot reclaim them, and
    /// `max_resident` cannot release them.
    Copy,
}

impl WeightMemory {
    /// [`WeightMemory::Auto`] decided for a file of `file_len` bytes on this machine; the other
    /// choices are returned as they are.
    pub fn resolve(self, file_len: u64) -> WeightMemory {
        match self {
            WeightMemory::Auto if copy_pays(file_len) => WeightMemory::Copy,
            WeightMemory::Auto => WeightMemory::Map,
            chosen => chosen,
        }
    }
}

/// Whether [`WeightMemory::Auto`] copies a file of `file_len` bytes: Linux with transparent huge
/// pages on (`always` or `madvise`), and the file at most a quarter of `MemAvailable`. (Android
/// is a target OS of its own, so phones never get here.)
#[cfg(target_os = "linux")]
fn copy_pays(file_len: u64) -> bool {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| s.contains("[always]") || s.contains("[madvise]"));
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    thp && available.is_some_and(|a| file_len <= a / 4)
}

#[cfg(not(target_os = "linux"))]
fn copy_pays(_file_len: u64) -> bool {
    false
}

/// Transparent huge pages are 2 MiB on x86_64 and (with 4 KB base pages) aarch64.
const HUGE_PAGE: usize = 2 << 20;

/// A whole file read into anonymous memory advised for huge pages ([`WeightMemory::Copy`]).
pub struct CopiedFile {
    map: memmap2::MmapMut,
    len: usize,
}

impl CopiedFile {
    /// Reads `path` into a fresh anonymous map, calling `progress` with the fraction read.
    pub fn read(path: &Path, progress: &mut dyn FnMut(f32)) -> Result<Self, LoadError> {
        let io = |e: std::io::Error| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = File::open(path).map_err(io)?;
        let len = usize::try_from(file.metadata().map_err(io)?.len()).map_err(|_| {
            io(std::io::Error::other(
                "the file is larger than the address space",
            ))
        })?;
        // A whole number of huge pages: Linux aligns such anonymous maps to a huge page, so
        // every 2 MiB of the file can sit in one.
        let mut map = memmap2::MmapMut::map_anon(len.next_multiple_of(HUGE_PAGE).max(HUGE_PAGE))
            .map_err(io)?;
        // A hint: without huge pages (fragmented memory, THP off) the copy still works.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        const CHUNK: usize = 16 << 20;
        for (i, chunk) in map[..len].chunks_mut(CHUNK).enumerate() {
            file.read_exact(chunk).map_err(io)?;
            progress(((i + 1) * CHUNK).min(len) as f32 / len.max(1) as f32);
        }
        Ok(CopiedFile { map, len })
    }

    /// Bytes of the copy that the kernel placed in huge pages (Linux; 0 elsewhere or when
    /// unknown), from `/proc/self/smaps`.
    fn huge_pages(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let start = self.map.as_ptr() as usize;
            let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
                return 0;
            };
            let mut inside = false;
            for line in smaps.lines() {
                let range = line
                    .split_whitespace()
                    .next()
                    .and_then(|r| r.split_once('-'));
                if let Some((lo, hi)) = range {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = lo <= start && start < hi;
                        continue;
                    }
                }
                if inside {
                    if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                        let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                        return kb * 1024;
                    }
                }
            }
            0
        }
        #[cfg(not(target_os = "linux"))]
        0
    }
}

impl WeightBytes for CopiedFile {
    fn bytes(&self) -> &[u8] {
        &self.map[..self.len]
    }
    // No `advise`: these pages are anonymous, and `DontNeed` would zero them.

    fn huge_page_bytes(&self) -> Option<u64> {
        Some(self.huge_pages())
    }
}

/// Asks Linux to back `map` with huge pages where it can (a hint; before the first touch). File
/// pages read through such a map land in 2 MiB page-cache folios mapped whole, when the file
/// is not already cached in small ones (a file just written or copied usually is: then only
/// [`WeightMemory::Copy`] gets huge pages).
pub fn advise_huge_pages(map: &memmap2::Mmap) {
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    #[cfg(not(target_os = "linux"))]
    let _ = map;
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
        advise_huge_pages(&map);
        Ok(MappedFile(map))
    }
}

impl Model {
    /// Loads the GGUF file at `path`, holding its bytes as [`WeightMemory::Auto`] decides.
    pub fn open(path: &Path, kernels: Kernels) -> Result<Self, LoadError> {
        Self::open_with_progress(path, kernels, &mut |_| {})
    }

    /// [`Model::open`], calling `progress` with the fraction done (0 to 1).
    pub fn open_with_progress(
        path: &Path,
        kernels: Kernels,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        Self::open_with(path, kernels, WeightMemory::Auto, progress)
    }

    /// Loads the GGUF file at `path`, its bytes memory-mapped or copied as `memory` says
    /// (see [`WeightMemory::resolve`]), calling `progress` with the fraction done.
    pub fn open_with(
        path: &Path,
        kernels: Kernels,
        memory: WeightMemory,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        match memory.resolve(len) {
            WeightMemory::Copy => {
                // Half the bar for reading, half for parsing.
                let copy = CopiedFile::read(path, &mut |f| progress(f / 2.0))?;
                let parse = &mut |f: f32| progress(0.5 + f / 2.0);
                Model::from_bytes_with_progress(Box::new(copy), kernels, parse)
            }
            _ => {
                let map = MappedFile::open(path)?;
                Model::from_bytes_with_progress(Box::new(map), kernels, progress)
            }
        }
    }
}
