//! The int8 products of Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0, Q5_1 and IQ4_XS on both layouts,
//! SmolLM2-135M's shapes (IQ4_XS: `ffn_down`'s 576 × 1536 only, its rows being 256-weight
//! blocks; for Q5_0 also Qwen2.5-0.5B's 896-wide ones, its Q5_0 matrices), one thread, every
//! backend this CPU has: the GGUF layout (`gemm_q8`, the decoder's, and `gemm_i8`, the
//! batched GEMM that unpacks panels per call) against the repacked one (`gemm_repacked`), for
//! one token (decoding) and 128 (a prompt). Microseconds per call (fastest of many) and the
//! repacked layout's speed-up over the faster GGUF product, which is what `Repr` chooses by.
//!
//! Then one token over 96 MB of such matrices, as a decoded token reads its weights (from
//! memory, not from the L2 the single matrices above stay in): microseconds per pass (fastest
//! of several) and the bytes read per second. IQ4_XS, whose repacked layout is 18 % larger
//! than the file's, is also timed on its GGUF bytes through the row kernel (`gemm_q8`) that
//! reads it otherwise: whether repacking pays where the weights come from memory.
//!
//! `cargo bench -p tern-kernels --bench repacked` (`-- dram`: only the 96 MB passes)

use std::hint::black_box;
use std::time::{Duration, Instant};

use tern_kernels::scalar::{self, act_q8_bytes, repacked_bytes};
use tern_kernels::{Backend, Format, Kernels};

/// Fastest time of repeated calls within about `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    let (start, mut best) = (Instant::now(), f64::MAX);
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e6
}

fn main() {
    let budget = Duration::from_millis(300);
    let only_dram = std::env::args().any(|a| a == "dram");
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    println!(
        "{:<12} {:<6} {:<11} {:>4} {:>10} {:>10} {:>10} {:>8}",
        "backend", "format", "shape", "n", "gemm_q8", "gemm_i8", "repacked", "speed-up"
    );
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            continue;
        };
        let Some(rep) = k.gemm_repacked else { continue };
        if backend == Backend::Scalar || only_dram {
            continue;
        }
        // Each format once, in the layout this backend repacks it into.
        for layout in scalar::RepackedLayout::all() {
            let format = layout.format();
            let Some(layout) = k
                .repacked_layout(format)
                .filter(|_| scalar::RepackedLayout::of(format) == Some(layout))
            else {
                continue;
            };
            let shapes: &[(usize, usize)] = if format == Format::Q5_0 {
                &[(1536, 576), (576, 1536), (4864, 896), (896, 896)]
            } else if format == Format::IQ4_XS {
                &[(576, 1536)]
            } else {
                &[(1536, 576), (576, 1536)]
            };
            for &(m, cols) in shapes {
                let bb = format.block_bytes();
                let len = m * cols / format.block_len() * bb;
                let mut w: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                for b in w.chunks_exact_mut(bb) {
                    b[..2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                }
                let mut p = vec![0u8; repacked_bytes(layout, m, cols)];
                scalar::repack(layout, &w, m, &mut p);
                for n in [1usize, 128] {
                    let x: Vec<f32> = (0..n * cols)
                        .map(|_| (rnd() % 1000) as f32 / 500.0 - 1.0)
                        .collect();
                    let qb = act_q8_bytes(cols);
                    let mut xq = vec![0u8; n * qb];
                    for (xt, q) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
                        scalar::quantize_act_q8(xt, q);
                    }
                    let mut y = vec![0f32; n * m];
                    let q8 = k.format(format).gemm_q8.expect("int8 GEMM");
                    let t_q8 = time(budget, || (q8.f)(black_box(&w), m, &xq, n, &mut y, m));
                    let t_i8 = if k.has_gemm_i8(format) {
                        time(budget, || {
                            k.gemm_i8(format, black_box(&w), m, &xq, n, &mut y, m)
                        })
                    } else {
                        f64::NAN
                    };
                    let t_rep = time(budget, || {
                        (rep.f)(layout, black_box(&p), m, cols, &xq, n, &mut y, m)
                    });
                    let best = if t_i8.is_nan() { t_q8 } else { t_q8.min(t_i8) };
                    println!(
                        "{:<12} {:<6} {:<11} {:>4} {:>10.1} {:>10.1} {:>10.1} {:>7.2}x",
                        backend.name(),
                        format!("{format:?}"),
                        format!("{m}x{cols}"),
                        n,
                        t_q8,
                        t_i8,
                        t_rep,
                        best / t_rep
                    );
                }
            }
        }
    }
    println!(
        "\n{:<12} {:<6} {:<22} {:>10} {:>8}",
        "backend", "format", "one token over", "us/pass", "GB/s"
    );
    for backend in Backend::ALL {
        let Some(k) = Kernels::with_backend(backend) else {
            continue;
        };
        let Some(rep) = k.gemm_repacked else { continue };
        if backend == Backend::Scalar {
            continue;
        }
        for format in [Format::Q4_0, Format::Q4_1, Format::Q8_0, Format::IQ4_XS] {
            let layout = k.repacked_layout(format).expect("a repacked layout");
            // A layer's shapes in turn: 1536 rows of 576 (gate, up), 576 of 1536 (down); IQ4_XS
            // only the latter, twice.
            let shapes = if format == Format::IQ4_XS {
                [(576, 1536); 2]
            } else {
                [(1536usize, 576usize), (576, 1536)]
            };
            let bytes: Vec<usize> = shapes
                .iter()
                .map(|&(m, c)| repacked_bytes(layout, m, c))
                .collect();
            let count = (96 << 20) / (bytes[0] + bytes[1]);
            // IQ4_XS: GGUF rows (f16 d = 0.01, random sub-block scales and codes) and their
            // repacked copies, the same weights in both layouts.
            let mut gguf: Vec<Vec<u8>> = Vec::new();
            let mats: Vec<(usize, usize, Vec<u8>)> = (0..2 * count)
                .map(|i| {
                    let (m, cols) = shapes[i % 2];
                    if format != Format::IQ4_XS {
                        let p: Vec<u8> = (0..bytes[i % 2]).map(|_| rnd() as u8 & 0x77).collect();
                        return (m, cols, p);
                    }
                    let bb = format.block_bytes();
                    let mut w: Vec<u8> = (0..m * cols / 256 * bb).map(|_| rnd() as u8).collect();
                    for b in w.chunks_exact_mut(bb) {
                        b[..2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                    }
                    let mut p = vec![0u8; bytes[i % 2]];
                    scalar::repack(layout, &w, m, &mut p);
                    gguf.push(w);
                    (m, cols, p)
                })
                .collect();
            let total: usize = mats.iter().map(|(_, _, p)| p.len()).sum();
            let xq: Vec<Vec<u8>> = shapes
                .iter()
                .map(|&(_, cols)| {
                    let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 - 6.0).collect();
                    let mut q = vec![0u8; act_q8_bytes(cols)];
                    scalar::quantize_act_q8(&x, &mut q);
                    q
                })
                .collect();
            let mut y = vec![0f32; 1536];
            let t = time(Duration::from_millis(1500), || {
                for (i, (m, cols, p)) in mats.iter().enumerate() {
                    (rep.f)(layout, black_box(p), *m, *cols, &xq[i % 2], 1, &mut y, *m);
                }
            });
            println!(
                "{:<12} {:<6} {:<22} {:>10.0} {:>8.1}",
                backend.name(),
                format!("{format:?}"),
                format!("{} matrices, {} MB", mats.len(), total >> 20),
                t,
                total as f64 / t / 1e3
            );
            if !gguf.is_empty() {
                let q8 = k.format(format).gemm_q8.expect("int8 row kernel");
                let total: usize = gguf.iter().map(Vec::len).sum();
                let t = time(Duration::from_millis(1500), || {
                    for (i, w) in gguf.iter().enumerate() {
                        let (m, _) = shapes[i % 2];
                        (q8.f)(black_box(w), m, &xq[i % 2], 1, &mut y, m);
                    }
                });
                println!(
                    "{:<12} {:<6} {:<22} {:>10.0} {:>8.1}   GGUF layout ({})",
                    backend.name(),
                    format!("{format:?}"),
                    format!("{} matrices, {} MB", gguf.len(), total >> 20),
                    t,
                    total as f64 / t / 1e3,
                    q8.name
                );
            }
        }
    }
}
