//! A small persistent thread pool for the forward pass (`std` only).
//!
//! A decode step runs a couple of hundred short parallel sections (one per matrix, or per fused
//! group of matrices); starting threads for each would cost more than the work. So workers
//! stay alive between sections: they spin briefly on the job word for the next section, then
//! yield, then sleep on a condition variable, so an idle pool burns no CPU.
//!
//! Tasks are claimed one at a time from a shared counter, and the caller claims them too. The
//! caller waits only for tasks that were *claimed*, never for a worker to wake up: when a
//! worker is slow to notice a job (asleep, or descheduled on a busy phone), the caller simply
//! runs the tasks itself. That is what keeps two threads from being slower than one on an
//! oversubscribed machine.
//!
//! # The job word
//!
//! One `AtomicU64` holds `epoch (32 bits) | n_tasks (16 bits) | next (16 bits)`. A worker
//! claims task `next` with a compare-exchange that also checks the epoch and the bound, so a
//! late worker can never claim a task of a finished job: once a job's `next` reaches its
//! `n_tasks`, no compare-exchange on that job's word can succeed again, and the next job has a
//! new epoch. The job's task pointer is read between the load and the compare-exchange; a
//! successful exchange proves no newer job was published in between (a newer job needs every
//! task of this one claimed first), so the pointer is this job's, and the task stays alive
//! because the caller waits until every claimed task has finished.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

use crate::parallel::Parallel;

/// How long an idle worker polls for the next job before it sleeps: long enough to bridge the
/// gap between two matrices of one token (microseconds) and between two tokens, short enough
/// not to matter when generation stops.
const SPIN_TIME: Duration = Duration::from_micros(200);
/// Of that, how long it spins with `pause` before it starts yielding the core between polls
/// (which lets other threads, such as a descheduled caller, run on a busy machine).
const PURE_SPIN_TIME: Duration = Duration::from_micros(30);
/// Polls between two looks at the clock.
const POLLS_PER_CLOCK: u32 = 64;
/// Most tasks one job word holds; larger `run`s are split into rounds.
const MAX_TASKS: usize = u16::MAX as usize;

type Task = dyn Fn(usize) + Sync;

/// What workers need of the current job besides the job word: the task, behind a thin
/// pointer (the caller's stack frame outlives every use, see the module docs).
struct Job {
    task: *const Task,
    /// First task index of this round (rounds split jobs of more than [`MAX_TASKS`]).
    base: usize,
}

/// The job word: `epoch | n_tasks | next`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(epoch: u32, n_tasks: usize) -> Self {
        debug_assert!(n_tasks <= MAX_TASKS);
        Word(((epoch as u64) << 32) | ((n_tasks as u64) << 16))
    }
    fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }
    fn n_tasks(self) -> usize {
        ((self.0 >> 16) & 0xFFFF) as usize
    }
    fn next(self) -> usize {
        (self.0 & 0xFFFF) as usize
    }
}

struct Shared {
    /// The job word (see the module docs).
    word: AtomicU64,
    /// The current job, written before its epoch is published.
    job: AtomicPtr<Job>,
    /// Tasks of the current job that finished (claimed ones only ever finish).
    done: AtomicUsize,
    /// Workers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    /// Set when a task panicked on a worker; `run` re-raises it on the caller.
    panicked: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

/// A fixed set of worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time. Holds the epoch of the last job.
    caller: Mutex<u32>,
}

/// Most threads a pool takes per core the system reports: more only adds contention, and an
/// unbounded count from an app (30,000) exhausts the process's threads or memory.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// Why a [`ThreadPool`] could not be made. No thread of it is left running.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// More threads than [`MAX_THREADS_PER_CORE`] times the cores.
    TooManyThreads {
        /// Threads asked for.
        requested: usize,
        /// The most this machine allows.
        max: usize,
    },
    /// The system refused to start a worker (thread or memory limits).
    Spawn {
        /// Workers that had started (and were stopped again).
        started: usize,
        /// The system's message.
        message: std::string::String,
    },
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PoolError::TooManyThreads { requested, max } => write!(
                f,
                "{requested} threads requested, at most {max} ({MAX_THREADS_PER_CORE} per core)"
            ),
            PoolError::Spawn { started, message } => write!(
                f,
                "cannot start worker thread {} of the pool: {message}",
                started + 1
            ),
        }
    }
}

impl std::error::Error for PoolError {}

impl ThreadPool {
    /// A pool whose [`Parallel::run`] uses `threads` threads in all (at least 1; the caller is
    /// one of them), at most [`MAX_THREADS_PER_CORE`] per core. When a worker cannot be
    /// started, those already started are stopped and joined before the error returns.
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        Self::build(threads, None)
    }

    /// [`new`](Self::new), failing to spawn worker `fail_at` when given (for tests).
    fn build(threads: usize, fail_at: Option<usize>) -> Result<Self, PoolError> {
        let max = Self::available_threads().saturating_mul(MAX_THREADS_PER_CORE);
        if threads > max {
            return Err(PoolError::TooManyThreads {
                requested: threads,
                max,
            });
        }
        let shared = Arc::new(Shared {
            word: AtomicU64::new(Word::new(0, 0).0),
            job: AtomicPtr::new(core::ptr::null_mut()),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        // Built up in the pool itself, so an early return drops it: `Drop` stops and joins
        // the workers started so far.
        let mut pool = ThreadPool {
            shared,
            workers: Vec::new(),
            caller: Mutex::new(0),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let spawned = if fail_at == Some(i) {
                Err(std::io::Error::other("injected spawn failure"))
            } else {
                std::thread::Builder::new()
                    .name(std::format!("tern-worker-{i}"))
                    .spawn(move || worker(&shared))
            };
            match spawned {
                Ok(handle) => pool.workers.push(handle),
                Err(e) => {
                    return Err(PoolError::Spawn {
                        started: pool.workers.len(),
                        message: std::string::ToString::to_string(&e),
                    })
                }
            }
        }
        Ok(pool)
    }

    /// The number of threads the machine offers, as `std` reports it.
    pub fn available_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Claims and runs tasks of job `epoch` until none is left. Returns the payload of the first
/// task that panicked, after running the rest (a stopped claimer could leave tasks nobody
/// else is awake to run).
fn claim_and_run(shared: &Shared, epoch: u32) -> Option<std::boxed::Box<dyn std::any::Any + Send>> {
    let mut payload = None;
    loop {
        let w = Word(shared.word.load(Ordering::Acquire));
        if w.epoch() != epoch || w.next() >= w.n_tasks() {
            return payload;
        }
        let job = shared.job.load(Ordering::Acquire);
        if shared
            .word
            .compare_exchange_weak(w.0, w.0 + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // SAFETY: the exchange succeeded on this job's word with `next < n_tasks`, so no newer
        // job was published since the load above (module docs): `job` is this job's, and the
        // caller keeps it and its task alive until `done` counts the task claimed here.
        let job = unsafe { &*job };
        // SAFETY: as above; the task reference was valid when `run` stored it.
        let task = unsafe { &*job.task };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| task(job.base + w.next()))) {
            payload.get_or_insert(p);
        }
        shared.done.fetch_add(1, Ordering::Release);
    }
}

fn worker(shared: &Shared) {
    let mut seen = Word(shared.word.load(Ordering::Acquire)).epoch();
    loop {
        // Wait for a new epoch: spin, then yield, then sleep.
        let mut start = Instant::now();
        let (mut polls, mut waited) = (0u32, Duration::ZERO);
        let epoch = loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = Word(shared.word.load(Ordering::Acquire)).epoch();
            if e != seen {
                break e;
            }
            polls += 1;
            if polls % POLLS_PER_CLOCK == 0 {
                waited = start.elapsed();
            }
            if waited < PURE_SPIN_TIME {
                core::hint::spin_loop();
            } else if waited < SPIN_TIME {
                std::thread::yield_now();
            } else {
                sleep_until_new_epoch(shared, seen);
                (start, polls, waited) = (Instant::now(), 0, Duration::ZERO);
            }
        };
        seen = epoch;
        if claim_and_run(shared, epoch).is_some() {
            shared.panicked.store(true, Ordering::Release);
        }
    }
}

/// Sleeps until the epoch differs from `seen` or the pool shuts down. The `sleepers` count
/// and the epoch are a Dekker pair (both sequentially consistent): either this worker sees the
/// new epoch, or the publisher sees `sleepers > 0` and notifies under the lock.
fn sleep_until_new_epoch(shared: &Shared, seen: u32) {
    let mut guard = shared.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
    shared.sleepers.fetch_add(1, Ordering::SeqCst);
    while Word(shared.word.load(Ordering::SeqCst)).epoch() == seen
        && !shared.shutdown.load(Ordering::SeqCst)
    {
        guard = shared.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
    }
    shared.sleepers.fetch_sub(1, Ordering::SeqCst);
}

impl ThreadPool {
    /// Runs tasks `base..base + n` (`n ≤ MAX_TASKS`) as one job.
    fn round(&self, epoch: &mut u32, base: usize, n: usize, task: &(dyn Fn(usize) + Sync)) {
        let sh = &*self.shared;
        // SAFETY (lifetime erasure): this function does not return, nor unwind, before `done`
        // reaches `n`, i.e. before every task claimed by anyone has finished with `task`;
        // panics in tasks are caught on workers and here alike and re-raised after the wait.
        let task: *const Task =
            // SAFETY: as above: `task` outlives every use made of it through the job.
            unsafe { core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Task>(task) };
        let job = Job { task, base };
        *epoch = epoch.wrapping_add(1);
        sh.done.store(0, Ordering::Relaxed);
        sh.job
            .store(&job as *const Job as *mut Job, Ordering::Relaxed);
        sh.word.store(Word::new(*epoch, n).0, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
            sh.wake.notify_all();
        }
        let mine = claim_and_run(sh, *epoch);
        // Wait for tasks claimed by workers; yield after a moment, since a worker that holds a
        // task but lost its core needs one to finish.
        let start = Instant::now();
        let (mut polls, mut yielding) = (0u32, false);
        while sh.done.load(Ordering::Acquire) < n {
            polls += 1;
            if polls % POLLS_PER_CLOCK == 0 {
                yielding = start.elapsed() >= PURE_SPIN_TIME;
            }
            if yielding {
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        if let Some(payload) = mine {
            resume_unwind(payload);
        }
        if sh.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task panicked on a worker thread");
        }
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
        let mut epoch = self.caller.lock().unwrap_or_else(|p| p.into_inner());
        let mut base = 0;
        while base < n_tasks {
            let n = (n_tasks - base).min(MAX_TASKS);
            self.round(&mut epoch, base, n, task);
            base += n;
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
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once() {
        let pool = ThreadPool::new(3).unwrap();
        for n in [0usize, 1, 2, 7, 64, 1000] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
        }
    }

    #[test]
    fn many_short_jobs_and_sleeping_workers() {
        let pool = ThreadPool::new(2).unwrap();
        let sum = AtomicUsize::new(0);
        for round in 0..2000 {
            pool.run(5, &|i| {
                sum.fetch_add(i + 1, Ordering::Relaxed);
            });
            if round % 500 == 0 {
                // Let the worker fall asleep, so the next job must wake it (or run without it).
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert_eq!(sum.load(Ordering::Relaxed), 2000 * 15);
    }

    #[test]
    fn more_tasks_than_one_word_holds() {
        let pool = ThreadPool::new(2).unwrap();
        let n = MAX_TASKS + 10;
        let count = AtomicUsize::new(0);
        let last = AtomicUsize::new(0);
        pool.run(n, &|i| {
            count.fetch_add(1, Ordering::Relaxed);
            last.fetch_max(i, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), n);
        assert_eq!(last.load(Ordering::Relaxed), n - 1);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(16, &|i| {
                if i == 9 {
                    panic!("task 9");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(16, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn thread_counts_are_capped_and_spawn_failures_unwind() {
        let max = ThreadPool::available_threads() * MAX_THREADS_PER_CORE;
        assert_eq!(
            ThreadPool::new(30_000).err(),
            Some(PoolError::TooManyThreads {
                requested: 30_000,
                max
            })
        );
        assert_eq!(ThreadPool::new(max).map(|p| p.threads()).ok(), Some(max));
        // Worker 3 fails: workers 1 and 2 had started and must be joined again.
        let e = ThreadPool::build(5.min(max), Some(3)).err();
        if max >= 5 {
            assert!(
                matches!(e, Some(PoolError::Spawn { started: 2, .. })),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_failed_pool_leaves_no_thread_running() {
        fn threads_now() -> usize {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    let l = s.lines().find(|l| l.starts_with("Threads:"))?;
                    l.split_whitespace().nth(1)?.parse().ok()
                })
                .unwrap_or(0)
        }
        let before = threads_now();
        for _ in 0..50 {
            assert!(ThreadPool::build(4, Some(3)).is_err());
        }
        // Other tests run in parallel threads: allow for them, but 50 leaked pools would be
        // 100 threads.
        assert!(threads_now() < before + 20, "{before} -> {}", threads_now());
    }
}
