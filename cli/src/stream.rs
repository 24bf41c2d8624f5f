//! This machine's memory bandwidth, measured STREAM-style on buffers far larger than any
//! cache, with every thread: the physical limit decode speed is compared against.

use std::hint::black_box;
use std::time::Instant;

/// Bytes per buffer: 1 GiB each, beyond the largest L3 caches (hundreds of MB on servers).
const BUF_BYTES: usize = 1 << 30;

/// Measured bandwidths in GB/s.
pub struct Bandwidth {
    /// Reading (summing) a buffer.
    pub read_gbps: f64,
    /// Copying one buffer into another, counting bytes read plus bytes written (STREAM Copy).
    pub copy_gbps: f64,
}

/// Best of three passes of each test with `threads` threads.
pub fn measure(threads: usize) -> Bandwidth {
    let n = BUF_BYTES / 8;
    let src: Vec<u64> = (0..n as u64).collect();
    let mut dst = vec![0u64; n];
    let chunk = n.div_ceil(threads.max(1));
    let best = |f: &mut dyn FnMut() -> f64| (0..3).map(|_| f()).fold(0.0, f64::max);

    let read_gbps = best(&mut || {
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in src.chunks(chunk) {
                s.spawn(move || {
                    let mut acc = [0u64; 4];
                    for c in part.chunks_exact(4) {
                        for i in 0..4 {
                            acc[i] = acc[i].wrapping_add(c[i]);
                        }
                    }
                    black_box(acc);
                });
            }
        });
        BUF_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    let copy_gbps = best(&mut || {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, sp) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(sp));
            }
        });
        black_box(&dst);
        2.0 * BUF_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
    });
    Bandwidth {
        read_gbps,
        copy_gbps,
    }
}
