//! Signals and process facts through `libc`: a closed pipe ends `tern` quietly, Ctrl-C stops
//! a chat answer, and the peak resident memory for the stats lines.
//!
//! Rust starts programs with `SIGPIPE` ignored, so writing to a pipe whose reader has gone
//! fails with `EPIPE`, and `println!` turns that into a panic. Every Unix filter instead dies of
//! `SIGPIPE` at the first such write, silently, which is what a pipeline expects (`tern inspect
//! … | head -1`, `tern run … | head -3`): the exit status says so (141 in a shell), nothing is
//! printed, and generation stops at once instead of computing tokens no one reads. `tern`
//! restores that default before doing anything.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set while an answer is being generated: Ctrl-C then stops the answer instead of exiting.
pub static GENERATING: AtomicBool = AtomicBool::new(false);
/// Set by Ctrl-C during an answer.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Restores the default `SIGPIPE` action (terminate). Best effort: on failure a closed pipe
/// is reported as an error.
pub fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal to its default action touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ctrl-C: sets [`INTERRUPTED`] while [`GENERATING`] is set, else exits with status 130.
/// Best effort: on failure (or off Unix) Ctrl-C keeps its default, ending the program.
pub fn install_sigint() {
    #[cfg(unix)]
    {
        extern "C" fn on_sigint(_: libc::c_int) {
            // Only async-signal-safe work here: lock-free atomics and `_exit`.
            if GENERATING.load(Ordering::SeqCst) {
                INTERRUPTED.store(true, Ordering::SeqCst);
            } else {
                // SAFETY: `_exit` is async-signal-safe and takes any status.
                unsafe { libc::_exit(130) }
            }
        }
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        // SAFETY: `on_sigint` is an `extern "C" fn(c_int)` that lives for the whole program
        // and only touches atomics or calls `_exit`, both allowed in a signal handler;
        // `sighandler_t` is the integer form of a handler pointer, as `signal(2)` takes it.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }
}

/// This process's peak resident memory in MB, if the OS tells (`getrusage`).
pub fn peak_rss_mb() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage` for the call to fill.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        // Linux and Android count kilobytes, Apple's systems bytes.
        let unit = if cfg!(target_vendor = "apple") {
            1.0
        } else {
            1024.0
        };
        Some(usage.ru_maxrss as f64 * unit / (1024.0 * 1024.0))
    }
    #[cfg(not(unix))]
    None
}
