//! The streaming executor's promise to devices without a growing heap: once a session exists
//! and has seen its prompt, decoding a token through the fixed stream arena allocates nothing.
//! Counted by a global allocator wrapper, so any allocation anywhere in the decode step fails
//! the test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tern_kernels::Kernels;
use tern_runtime::feed::StreamFeed;
use tern_runtime::fs::FileSource;
use tern_runtime::parallel::Serial;
use tern_runtime::sampler::argmax_logits;
use tern_runtime::{Model, Session, SessionOptions};
use tern_tests::{smollm2, smollm2_path};

/// The system allocator, counting allocations while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` unchanged; counting has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc`/`realloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as for `alloc`; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_through_the_stream_arena_allocates_nothing() {
    let prompt = smollm2()
        .tokenizer()
        .encode("The capital of France is", true, true);
    let source = FileSource::open(&smollm2_path()).unwrap();
    let model = Arc::new(Model::from_source(&source, Kernels::best()).unwrap());
    let feed = StreamFeed::new(source, vec![0u8; 2 << 20].into_boxed_slice());
    let opts = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut s = Session::with_feed(model, &opts, Box::new(Serial), Box::new(feed)).unwrap();
    let mut id = argmax_logits(s.feed(&prompt).unwrap());

    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..16 {
        id = argmax_logits(s.feed(&[id]).unwrap());
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(n, 0, "{n} heap allocations while decoding 16 tokens");
}
