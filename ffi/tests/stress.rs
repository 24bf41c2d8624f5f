//! Issue 17's stress test: 4 threads × 200 rounds (1000 in scripts/test-heavy.sh) of create
//! session → generate → cancel at a random point → drop, on SmolLM2, through the API the
//! bindings call. No round may fail, no text may arrive after a cancel, every cancel must land
//! within about one prompt batch, and the process's resident memory must come back to within
//! 5 % of where it was after warm-up. A test binary of its own, so no other test moves the
//! memory it measures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_ffi::*;

const THREADS: usize = 4;
/// Rounds per thread in `cargo test` (issue 17 asks for 200 in the suite);
/// `TERN_STRESS_ROUNDS` raises it (scripts/test-heavy.sh's `stress` step runs 1000).
const ROUNDS: usize = 200;

#[cfg(target_env = "gnu")]
extern "C" {
    /// glibc: returns freed heap memory of every arena to the system.
    fn malloc_trim(pad: usize) -> i32;
    /// glibc: sets an allocator parameter.
    fn mallopt(param: i32, value: i32) -> i32;
}

/// glibc's `M_ARENA_MAX`.
#[cfg(target_env = "gnu")]
const M_ARENA_MAX: i32 = -8;
/// glibc's `M_MMAP_THRESHOLD`.
#[cfg(target_env = "gnu")]
const M_MMAP_THRESHOLD: i32 = -3;

/// Anonymous resident memory of this process in bytes (Linux `RssAnon`: heap and stacks, not
/// the mapped model, whose pages the kernel may drop or fault in at will), after handing freed
/// heap back to the system: glibc keeps freed blocks in per-thread arenas, whose size swings
/// by tens of MB between runs of this test with no leak at all.
fn rss() -> u64 {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers and may be called at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Lets the last rounds' worker threads exit (each drops its share of a session after giving
/// the session back) before memory is measured.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// Records the end of a generation and counts text delivered after the cancel.
struct Watch {
    cancelled: Arc<AtomicBool>,
    late: Arc<AtomicUsize>,
    done: Mutex<Sender<Result<(), TernError>>>,
}

impl TokenListener for Watch {
    fn on_token(&self, _text: String) {
        if self.cancelled.load(Ordering::SeqCst) {
            self.late.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_complete(&self, _stats: GenerationStats) {
        let _ = self.done.lock().unwrap().send(Ok(()));
    }
    fn on_error(&self, error: TernError) {
        let _ = self.done.lock().unwrap().send(Err(error));
    }
}

/// One round: a session, a generation cancelled after `delay`, the latency of the cancel.
fn round(model: &Arc<Model>, prompt: &str, delay: Duration) -> Duration {
    let session = Session::new(Arc::clone(model)).expect("session");
    let (tx, rx) = channel();
    let cancelled = Arc::new(AtomicBool::new(false));
    let late = Arc::new(AtomicUsize::new(0));
    let watch = Watch {
        cancelled: Arc::clone(&cancelled),
        late: Arc::clone(&late),
        done: Mutex::new(tx),
    };
    let options = GenerateOptions {
        max_tokens: 2,
        ..GenerateOptions::default()
    };
    let handle = session
        .generate(prompt.into(), options, Box::new(watch))
        .expect("generation starts");
    std::thread::sleep(delay);
    handle.cancel();
    // Set after `cancel` returns: a token whose delivery began before it may still land.
    let at = Instant::now();
    cancelled.store(true, Ordering::SeqCst);
    let end = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the generation ends");
    let latency = at.elapsed();
    match end {
        Ok(()) | Err(TernError::Cancelled) => {}
        Err(e) => panic!("round failed: {e}"),
    }
    assert!(
        late.load(Ordering::SeqCst) <= 1,
        "text arrived after the cancel"
    );
    // Waits for the generation's job to give the session back, so that the rounds' memory is
    // free when the last one returns.
    session.reset().expect("a finished session resets");
    latency
}

#[test]
fn sessions_created_cancelled_and_dropped_from_four_threads() {
    // One heap arena: with one per thread, freed memory scattered over up to 16 arenas swings
    // the resident size by tens of MB from run to run, hiding or faking a leak. And a fixed
    // mmap threshold: glibc's default one rises to the size of the largest block freed, so the
    // sessions' KV caches (6 MB each) moved into the heap, where a small block still in use
    // above them kept up to 25 MB resident after `malloc_trim` (measured: before/after pairs
    // of 122.8/147.9 and 147.5/122.9 MB in one afternoon; within 50 kB with this setting).
    #[cfg(target_env = "gnu")]
    // SAFETY: called before this test starts any thread; mallopt takes no pointers.
    unsafe {
        mallopt(M_ARENA_MAX, 1);
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m-instruct-q4_1.gguf");
    let options = ModelOptions {
        threads: 1,
        context_length: 256,
        ..ModelOptions::default()
    };
    let model = Model::new(path.display().to_string(), options).expect("loads");
    let words = "the quick brown fox jumps over the lazy dog ".repeat(12);

    // One 64-token batch alone, for the latency bound.
    let batch_prompt: String = words.split(' ').take(60).collect::<Vec<_>>().join(" ");
    let start = Instant::now();
    let s = Session::new(Arc::clone(&model)).unwrap();
    let (tx, rx) = channel();
    let watch = Watch {
        cancelled: Arc::new(AtomicBool::new(false)),
        late: Arc::new(AtomicUsize::new(0)),
        done: Mutex::new(tx),
    };
    let one = GenerateOptions {
        max_tokens: 1,
        ..GenerateOptions::default()
    };
    let _h = s.generate(batch_prompt, one, Box::new(watch)).unwrap();
    rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
    let batch_time = start.elapsed();

    let run = |rounds: usize, seed: u64| -> Duration {
        let worst = Mutex::new(Duration::ZERO);
        std::thread::scope(|scope| {
            for t in 0..THREADS as u64 {
                let (model, words, worst) = (&model, &words, &worst);
                scope.spawn(move || {
                    // xorshift64: a different, reproducible sequence per thread.
                    let mut x = seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut next = move |n: u64| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x % n
                    };
                    for _ in 0..rounds {
                        // Short prompts (1 to 12 words) keep 800 rounds within CI's time;
                        // the latency bound above is for a whole batch.
                        let n = 1 + next(12) as usize;
                        let prompt: String = words.split(' ').take(n).collect::<Vec<_>>().join(" ");
                        let delay = Duration::from_micros(next(20_000));
                        let latency = round(model, &prompt, delay);
                        let mut w = worst.lock().unwrap();
                        *w = (*w).max(latency);
                    }
                });
            }
        });
        worst.into_inner().unwrap()
    };
    run(10, 1);
    settle();
    let before = rss();
    let start = Instant::now();
    let rounds = std::env::var("TERN_STRESS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let worst = run(rounds, 2);
    let took = start.elapsed();
    settle();
    let after = rss();
    eprintln!(
        "stress: {} rounds in {took:?}, worst cancel latency {worst:?} (one batch alone: \
         {batch_time:?}), RSS {before} -> {after}",
        THREADS * rounds
    );
    assert!(
        after as f64 <= before as f64 * 1.05,
        "RSS grew from {before} to {after} bytes"
    );
    // Four generations share two cores: a batch takes up to four times as long as alone,
    // plus scheduling.
    let bound = batch_time * 2 * THREADS as u32 + Duration::from_millis(200);
    assert!(
        worst <= bound,
        "a cancel took {worst:?}, more than about one batch ({bound:?})"
    );
}
