//! A small persistent thread pool for the forward pass (`std` only).
//!
//! A decode step runs a few hundred short parallel sections (one per matrix); starting threads
//! for each would cost more than the work. Workers spin briefly on an epoch counter for the
//! next job, then sleep on a condition variable, so an idle pool burns no CPU.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::vec::Vec;

use crate::parallel::Parallel;

/// Spins before a worker sleeps: long enough to bridge the gap between two matrices of one
/// token, short enough not to matter when generation stops.
const SPIN_ITERS: u32 = 20_000;

type Task = dyn Fn(usize) + Sync;

struct Job {
    /// The caller's task, its lifetime erased; `run` does not return before every worker is
    /// done with it.
    task: *const Task,
    n_tasks: usize,
}

struct Shared {
    /// Incremented once per job; workers wait for it to change.
    epoch: AtomicUsize,
    /// The current job, written only while no worker reads it (between jobs).
    job: Mutex<Option<JobPtr>>,
    /// Next task index to claim.
    next: AtomicUsize,
    /// Workers still busy with the current job.
    busy: AtomicUsize,
    shutdown: AtomicBool,
    /// Set when a task panicked on a worker; `run` re-raises it on the caller.
    panicked: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the Job lives on the stack of `run`, which waits for all workers before returning.
unsafe impl Send for JobPtr {}

/// A fixed set of worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    caller: Mutex<()>,
}

impl ThreadPool {
    /// A pool whose [`Parallel::run`] uses `threads` threads in all (at least 1; the caller is
    /// one of them).
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(std::format!("tern-worker-{i}"))
                    .spawn(move || worker(&shared))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            caller: Mutex::new(()),
        }
    }

    /// The number of threads the machine offers, as `std` reports it.
    pub fn available_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn claim_and_run(shared: &Shared, job: &Job) {
    // SAFETY: `run` keeps the task alive until `busy` drops to zero, after this returns.
    let task = unsafe { &*job.task };
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.n_tasks {
            break;
        }
        task(i);
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0usize;
    loop {
        // Wait for a new epoch: spin first, then sleep.
        let mut spins = 0u32;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = shared.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPIN_ITERS {
                spins += 1;
                core::hint::spin_loop();
            } else {
                let guard = shared.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
                if shared.epoch.load(Ordering::Acquire) == seen
                    && !shared.shutdown.load(Ordering::Acquire)
                {
                    drop(shared.wake.wait(guard));
                }
            }
        }
        let ptr = *shared.job.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(JobPtr(job)) = ptr {
            // SAFETY: the job outlives this use: `run` waits for `busy` to reach zero.
            let job = unsafe { &*job };
            let result = catch_unwind(AssertUnwindSafe(|| claim_and_run(shared, job)));
            if result.is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        shared.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Parallel for ThreadPool {
    fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n_tasks <= 1 {
            for i in 0..n_tasks {
                task(i);
            }
            return;
        }
        let _one_job = self.caller.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY (lifetime erasure): this function does not return, nor unwind, until every
        // worker has decremented `busy`, i.e. finished with the task: panics in tasks are
        // caught on workers and on this thread alike, and re-raised only after the wait.
        let task: *const Task =
            unsafe { core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Task>(task) };
        let job = Job { task, n_tasks };
        let sh = &*self.shared;
        sh.next.store(0, Ordering::Relaxed);
        sh.busy.store(self.workers.len(), Ordering::Release);
        *sh.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(JobPtr(&job));
        {
            let _g = sh.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
            sh.epoch.fetch_add(1, Ordering::AcqRel);
            sh.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| claim_and_run(sh, &job)));
        while sh.busy.load(Ordering::Acquire) != 0 {
            core::hint::spin_loop();
        }
        *sh.job.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if sh.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task panicked on a worker thread");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _g = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
