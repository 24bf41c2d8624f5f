//! A huge metadata array costs no memory per element when parsed (issue 17: a 16 MB array used
//! to cost 508–865 MB of RSS, ~24–32 bytes per element in decoded `Value`s).
//!
//! A counting global allocator measures the peak of live heap bytes during `Gguf::parse`; this
//! file is its own test binary so no other test's allocations interleave.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_runtime::gguf::{Gguf, Value};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A GGUF file with no tensors and two metadata arrays: `n` u32s and `n / 4` short strings.
fn file_with_arrays(n: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&2u64.to_le_bytes()); // metadata pairs
    let key = |b: &mut Vec<u8>, k: &str| {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
    };
    key(&mut b, "junk.numbers");
    b.extend_from_slice(&9u32.to_le_bytes()); // array
    b.extend_from_slice(&4u32.to_le_bytes()); // of u32
    b.extend_from_slice(&n.to_le_bytes());
    for i in 0..n as u32 {
        b.extend_from_slice(&i.to_le_bytes());
    }
    key(&mut b, "junk.strings");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes()); // of string
    b.extend_from_slice(&(n / 4).to_le_bytes());
    for _ in 0..n / 4 {
        key(&mut b, "ab");
    }
    b
}

#[test]
fn a_16m_element_array_costs_no_memory_per_element() {
    let n = 1u64 << 24; // the cap, MAX_ARRAY_LEN: 64 MB of u32s plus 4 M strings
    let bytes = file_with_arrays(n);
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let g = Gguf::parse(&bytes, bytes.len() as u64).expect("parses");
    let peak = PEAK.load(Ordering::SeqCst) - before;
    // Before compact arrays: 16 M × 32 bytes + 4 M × 32 bytes = 640 MiB.
    assert!(
        peak < 64 * 1024,
        "parsing allocated {peak} bytes at its peak for {n} array elements"
    );
    let numbers = g.get("junk.numbers").and_then(Value::as_array).unwrap();
    assert_eq!(numbers.len(), n as usize);
    assert_eq!(numbers.heap_bytes(), 0);
    assert_eq!(numbers.get(12345), Some(Value::U32(12345)));
    assert_eq!(numbers.iter().last(), Some(Value::U32(n as u32 - 1)));
    let strings = g.get("junk.strings").and_then(Value::as_array).unwrap();
    assert_eq!(strings.len(), n as usize / 4);
    assert!(strings.iter().all(|s| s == Value::Str("ab")));
}
