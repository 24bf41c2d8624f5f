//! Opening model files from disk (`std` only): memory-mapped and read on demand by the OS, or
//! copied into huge pages where that is faster and affordable ([`WeightMemory`]).
//!
//! # Files that change under a running model
//!
//! A memory-mapped file is read on demand for as long as the model runs. If another process
//! truncates it (an in-place update or download, a removed SD card), the next read of a page
//! past the new end raises `SIGBUS`, which kills the process: Rust cannot turn a fault in the
//! middle of a kernel's loop into an error without a signal handler that jumps out of
//! arbitrary code, which no safe runtime can do (and a process-wide `SIGBUS` handler would
//! also swallow the app's own faults). So Tern chooses prevention:
//!
//! - **Update model files by writing a temporary file and renaming it over the old one.** A
//!   rename replaces the directory entry; the running model keeps the old file's pages (the
//!   inode lives until unmapped), so nothing is ever read from a truncated file. Writing or
//!   truncating a model file in place while it runs is not supported.
//! - **Load refuses a file that changes while it loads** ([`LoadError::FileChanged`]): size and
//!   modification time are taken with `fstat` when the file is opened and compared when the
//!   load ends (after the header is parsed and every tensor checked, or after the copy).
//! - **Load refuses a file another process has open for writing**
//!   ([`LoadError::FileBeingWritten`], Linux and Android): a download still in progress or an
//!   in-place update. The check takes a read lease (`fcntl(F_SETLEASE, F_RDLCK)`), which the
//!   kernel grants only while no one holds the file open for writing, and drops it at once (a
//!   held lease would make the next writer wait for us). It is a check at load time, not a
//!   guard; it is skipped where leases cannot tell (a file the process does not own, file
//!   systems without leases, other systems).
//! - **An app that cannot keep the file still** (a file on removable storage, a file another
//!   app owns) chooses [`WeightMemory::Copy`], which reads the whole file once into memory,
//!   or [`FileSource`] with a streaming feed, which reads with `pread` and reports a short read
//!   as [`crate::GenerateError::WeightRead`]: neither maps the file, so neither can fault.
//!
//! Paths are checked with `stat` before `open`: a FIFO, socket, device or directory is refused
//! ([`LoadError::NotARegularFile`]) before `open` could block on a FIFO without a writer. The
//! copy path checks the GGUF header before copying a byte of tensor data.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::string::ToString;
use std::time::SystemTime;

use alloc::boxed::Box;
use alloc::vec;
use tern_kernels::Kernels;

use crate::error::LoadError;
use crate::gguf::{Gguf, GgufError};
use crate::model::{Model, Residency, WeightBytes};
use crate::source::{SourceError, WeightSource};

/// What `fstat` says of a file that a load compares at its end: a file written in place
/// changes one or the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> LoadError + '_ {
    move |e| LoadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Refuses anything but a regular file (following symlinks), naming what it is.
fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), LoadError> {
    let ty = meta.file_type();
    if ty.is_file() {
        return Ok(());
    }
    #[cfg(unix)]
    let kind = {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            "FIFO"
        } else if ty.is_socket() {
            "socket"
        } else if ty.is_block_device() || ty.is_char_device() {
            "device"
        } else if ty.is_dir() {
            "directory"
        } else {
            "other"
        }
    };
    #[cfg(not(unix))]
    let kind = if ty.is_dir() { "directory" } else { "other" };
    Err(LoadError::NotARegularFile {
        path: path.display().to_string(),
        kind,
    })
}

/// Opens `path` for reading if it is a regular file: `stat` first, so a FIFO is refused before
/// `open` could block on it, then `fstat` on what was opened (the path may have been replaced
/// in between). Returns the file and its stamp.
fn open_regular(path: &Path) -> Result<(File, Stamp), LoadError> {
    let io = io_error(path);
    check_regular(path, &std::fs::metadata(path).map_err(&io)?)?;
    let file = File::open(path).map_err(&io)?;
    let meta = file.metadata().map_err(&io)?;
    check_regular(path, &meta)?;
    if open_for_writing(&file) == Some(true) {
        return Err(LoadError::FileBeingWritten {
            path: path.display().to_string(),
        });
    }
    Ok((file, Stamp::of(&meta)))
}

/// Whether some process has `file` (opened read-only by us) open for writing: `Some(true)` when
/// the kernel refuses a read lease for that reason, `None` when leases cannot tell (not the
/// file's owner, no lease support, not Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_for_writing(file: &File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (borrowed from
    // `file`); F_SETLEASE takes an int argument and touches no memory.
    let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if taken == 0 {
        // SAFETY: as above; dropping our own lease at once, so no writer ever waits on it.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return Some(false);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        // The kernel's answer when the file is open for writing (or mapped writable).
        Some(libc::EAGAIN) => Some(true),
        // EACCES/EPERM (not our file, no CAP_LEASE), EINVAL (no lease support): unknown.
        _ => None,
    }
}

/// Leases are a Linux facility; elsewhere the load-time stamp check is what remains.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_for_writing(_file: &File) -> Option<bool> {
    None
}

/// Refuses `file` if its stamp is no longer `before`: it was written during the load.
fn check_unchanged(path: &Path, file: &File, before: Stamp) -> Result<(), LoadError> {
    let now = Stamp::of(&file.metadata().map_err(io_error(path))?);
    if now == before {
        Ok(())
    } else {
        Err(LoadError::FileChanged {
            path: path.display().to_string(),
        })
    }
}

/// Parses the GGUF header at the start of `file` (`len` bytes), reading a growing prefix, and
/// leaves the file positioned at its start. Errors as the full load would on the header: a file
/// that is not GGUF is refused after reading a few kilobytes, not after copying all of it.
fn check_header(path: &Path, file: &mut File, len: u64) -> Result<(), LoadError> {
    let io = io_error(path);
    let mut want = (64 * 1024).min(len);
    loop {
        let mut prefix = vec![0u8; usize::try_from(want).unwrap_or(usize::MAX)];
        file.seek(SeekFrom::Start(0)).map_err(&io)?;
        file.read_exact(&mut prefix).map_err(&io)?;
        match Gguf::parse(&prefix, len) {
            Ok(_) => break,
            Err(GgufError::Truncated { .. }) if want < len => want = (want * 4).min(len),
            Err(e) => return Err(e.into()),
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(&io)?;
    Ok(())
}

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

    fn frees_released(&self) -> bool {
        cfg!(unix)
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
    ///
    /// Refuses a path that is not a regular file and a file whose GGUF header is invalid
    /// before copying, and a file that changed during the copy after it.
    pub fn read(path: &Path, progress: &mut dyn FnMut(f32)) -> Result<Self, LoadError> {
        let io = io_error(path);
        let (mut file, stamp) = open_regular(path)?;
        let len = usize::try_from(stamp.len).map_err(|_| {
            io(std::io::Error::other(
                "the file is larger than the address space",
            ))
        })?;
        check_header(path, &mut file, stamp.len)?;
        // A whole number of huge pages: Linux aligns such anonymous maps to a huge page, so
        // every 2 MiB of the file can sit in one.
        let mut map = memmap2::MmapMut::map_anon(len.next_multiple_of(HUGE_PAGE).max(HUGE_PAGE))
            .map_err(&io)?;
        // A hint: without huge pages (fragmented memory, THP off) the copy still works.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        const CHUNK: usize = 16 << 20;
        for (i, chunk) in map[..len].chunks_mut(CHUNK).enumerate() {
            file.read_exact(chunk).map_err(&io)?;
            progress(((i + 1) * CHUNK).min(len) as f32 / len.max(1) as f32);
        }
        check_unchanged(path, &file, stamp)?;
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
    /// Opens `path` for reading (a regular file only: see the module docs).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let (file, stamp) = open_regular(path)?;
        Ok(FileSource {
            file,
            len: stamp.len,
        })
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
    /// Maps `path` read-only (a regular file only: see the module docs).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        Self::open_stamped(path).map(|(map, _, _)| map)
    }

    /// [`MappedFile::open`], also returning the open file and its stamp for
    /// [`check_unchanged`] at the end of the load.
    fn open_stamped(path: &Path) -> Result<(Self, File, Stamp), LoadError> {
        let (file, stamp) = open_regular(path)?;
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // or rewriting the file while it is mapped would change the bytes under us (or fault
        // with SIGBUS); the module docs set the contract (replace files by rename, never write
        // them in place), and the load refuses a file seen changing.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
        advise_huge_pages(&map);
        Ok((MappedFile(map), file, stamp))
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
        // `stat` only: a FIFO is refused by the opener before anything blocks.
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        match memory.resolve(len) {
            WeightMemory::Copy => {
                // Half the bar for reading, half for parsing.
                let copy = CopiedFile::read(path, &mut |f| progress(f / 2.0))?;
                let parse = &mut |f: f32| progress(0.5 + f / 2.0);
                Model::from_bytes_with_progress(Box::new(copy), kernels, parse)
            }
            _ => {
                let (map, file, stamp) = MappedFile::open_stamped(path)?;
                let model = Model::from_bytes_with_progress(Box::new(map), kernels, progress)?;
                check_unchanged(path, &file, stamp)?;
                Ok(model)
            }
        }
    }
}
