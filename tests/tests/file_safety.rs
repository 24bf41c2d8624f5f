//! Opening model files safely (issue 17): FIFOs and other non-regular paths are refused before
//! `open` can block, `--load copy` checks the header before copying, and a file that changes
//! while it loads, or that another writer holds open, is refused (the contract for updates is
//! write-then-rename: `tern_runtime::fs`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tern_kernels::Kernels;
use tern_runtime::fs::{FileSource, WeightMemory};
use tern_runtime::gguf::GgufError;
use tern_runtime::{LoadError, Model};
use tern_tests::generated_model;

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-file-safety-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `f` on another thread, failing (not hanging) if it takes more than 20 s.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("blocked: a FIFO was opened")
}

fn open(path: &Path, memory: WeightMemory) -> Result<Model, LoadError> {
    Model::open_with(path, Kernels::scalar(), memory, &mut |_| {})
}

#[test]
fn a_fifo_is_refused_before_open_blocks() {
    let dir = scratch("fifo");
    let fifo = dir.join("model.gguf");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    for memory in [WeightMemory::Auto, WeightMemory::Map, WeightMemory::Copy] {
        let path = fifo.clone();
        match within_deadline(move || open(&path, memory)) {
            Err(LoadError::NotARegularFile { kind, .. }) => assert_eq!(kind, "FIFO"),
            Err(e) => panic!("{memory:?}: refused for another reason: {e}"),
            Ok(_) => panic!("{memory:?}: a FIFO loaded"),
        }
    }
    let path = fifo.clone();
    match within_deadline(move || FileSource::open(&path).map(drop)) {
        Err(LoadError::NotARegularFile { kind, .. }) => assert_eq!(kind, "FIFO"),
        other => panic!("FileSource on a FIFO: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_is_refused() {
    let dir = scratch("dir");
    for memory in [WeightMemory::Map, WeightMemory::Copy] {
        match open(&dir, memory) {
            Err(LoadError::NotARegularFile { kind, .. }) => assert_eq!(kind, "directory"),
            other => panic!("{memory:?}: {:?}", other.map(drop)),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A large file of zeros is refused by its magic before the copy reads any of it: the copy's
/// progress (one call per 16 MiB read) is never reported.
#[test]
fn copy_checks_the_magic_before_copying() {
    let dir = scratch("zeros");
    let path = dir.join("zeros.gguf");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(256 << 20).unwrap(); // sparse: no disk space used
    drop(f);
    let mut calls = 0;
    let r = Model::open_with(&path, Kernels::scalar(), WeightMemory::Copy, &mut |_| {
        calls += 1
    });
    match r {
        Err(LoadError::Gguf(GgufError::BadMagic { found })) => assert_eq!(found, [0; 4]),
        other => panic!("{:?}", other.map(drop)),
    }
    assert_eq!(calls, 0, "the copy ran before the magic was checked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file another writer holds open (a download still running) is refused at load, on both
/// paths, naming the path; closed again, it loads. (Linux leases; the test's own process is
/// the writer, which the kernel counts like any other.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn a_file_open_for_writing_is_refused() {
    let dir = scratch("writer");
    let path = dir.join("model.gguf");
    std::fs::copy(generated_model("qwen2_small"), &path).unwrap();
    for memory in [WeightMemory::Map, WeightMemory::Copy] {
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        match open(&path, memory) {
            Err(e @ LoadError::FileBeingWritten { .. }) => {
                assert!(e.to_string().contains("model.gguf"), "{e}")
            }
            other => panic!("{memory:?}: {:?}", other.map(drop)),
        }
        drop(writer);
        open(&path, memory).expect("loads once the writer is gone");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file appended to while it loads (the progress callback writes to it) is refused, on both
/// the map and the copy path; the same file left alone loads.
#[test]
fn a_file_written_during_load_is_refused() {
    let dir = scratch("changed");
    for memory in [WeightMemory::Map, WeightMemory::Copy] {
        let path = dir.join("model.gguf");
        std::fs::copy(generated_model("qwen2_small"), &path).unwrap();
        open(&path, memory).expect("the untouched copy loads");
        let mut written = false;
        let r = Model::open_with(&path, Kernels::scalar(), memory, &mut |_| {
            if !written {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                f.write_all(&[0; 4096]).unwrap();
                written = true;
            }
        });
        match r {
            Err(LoadError::FileChanged { .. }) => {}
            other => panic!("{memory:?}: {:?}", other.map(drop)),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
