//! How the forward pass spreads work over cores: a [`Parallel`] runs numbered tasks.
//!
//! `no_std` builds use [`Serial`]; with `std`, [`crate::pool::ThreadPool`] keeps a few
//! persistent workers so a decode step does not pay for thread start-up.

/// Runs `n_tasks` numbered tasks, possibly at once, and returns when all are done.
pub trait Parallel: Sync {
    /// Threads that run tasks (including the caller's).
    fn threads(&self) -> usize;

    /// Calls `task(i)` once for every `i` in `0..n_tasks`.
    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Parallel for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks {
            task(i);
        }
    }
}

/// A raw pointer to an output buffer that tasks write disjoint parts of.
///
/// The forward pass splits an output among tasks by index ranges that it proves disjoint;
/// this wrapper lets those tasks share the base pointer.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

// SAFETY: SharedOut is only dereferenced through `slice`, whose callers guarantee disjointness.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SharedOut(out.as_mut_ptr())
    }

    /// The sub-slice `start..start + len` of the buffer.
    ///
    /// # Safety
    /// The range lies inside the buffer `new` was given, that buffer outlives the returned
    /// slice, and no two live slices from the same buffer overlap.
    #[inline]
    #[expect(
        clippy::mut_from_ref,
        reason = "disjoint sub-slices of one buffer handed to threads; the caller's contract (see # Safety) keeps them apart"
    )]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        // SAFETY: the caller upholds range, lifetime and disjointness.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}
