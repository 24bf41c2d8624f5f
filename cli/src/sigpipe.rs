//! A closed pipe ends `tern` quietly (`tern inspect … | head -1`, `tern run … | head -3`).
//!
//! Rust starts programs with `SIGPIPE` ignored, so writing to a pipe whose reader has gone
//! fails with `EPIPE`, and `println!` turns that into a panic. Every Unix filter instead dies of
//! `SIGPIPE` at the first such write, silently, which is what a pipeline expects: the exit
//! status says so (141 in a shell), nothing is printed, and generation stops at once instead
//! of computing tokens no one reads. `tern` restores that default before doing anything.

/// Restores the default `SIGPIPE` action (terminate). Best effort: on failure a closed pipe
/// is reported as an error.
#[cfg(unix)]
pub fn restore_default() {
    use std::ffi::c_int;

    /// `SIGPIPE` is 13 on every Unix Rust supports (Linux, Android, macOS, iOS, the BSDs).
    const SIGPIPE: c_int = 13;

    // `chat`'s SIGINT module declares `signal` with a non-null handler; this one needs the null
    // `SIG_DFL`. `Option<extern "C" fn>` has the same ABI (a nullable pointer).
    #[allow(clashing_extern_declarations)]
    extern "C" {
        /// C's `signal(2)`; `None` is `SIG_DFL` (a null handler).
        fn signal(signum: c_int, handler: Option<extern "C" fn(c_int)>) -> usize;
    }

    // SAFETY: `signal` is the C library's, with its C signature (a nullable function pointer
    // as `Option<fn>`); setting a signal to its default action touches no Rust state.
    unsafe {
        signal(SIGPIPE, None);
    }
}

/// Elsewhere there is no `SIGPIPE`: a closed pipe is a write error.
#[cfg(not(unix))]
pub fn restore_default() {}
