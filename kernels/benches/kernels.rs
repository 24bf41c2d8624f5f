//! Kernel throughput on SmolLM2-135M's shapes, every backend this CPU has, one thread.
//!
//! For each weight format and matrix shape: the row · f32 dot (`dot`) and its multi-row
//! version (`dot_rows`), the int8 path (`dot_q8` row by row and `gemm_q8` many rows at once,
//! each including the one activation quantization per matrix-vector product), the f16 path
//! (`dot_f16` row by row, including the activation conversion: FEAT_FP16 kernels on aarch64,
//! the scalar reference, which emulates f16 arithmetic, everywhere; other SIMD tables have
//! none), the
//! dequantization, and the two prompt-processing products over a batch of 64 tokens
//! (`gemm_q8 x64`; `dequant+gemm_f32 x64`, dequantizing 64-row panels once), those figures per
//! token. Reported as nanoseconds per row and GB/s of weight bytes streamed (per token for
//! the batches), scalar reference first in each group, so every
//! figure sits next to a phone's memory bandwidth (roughly 10–30 GB/s per cluster). The
//! 576-wide matrices fit in L2/L3, so their figures are compute-bound; the 49152 × 576
//! output head (30 MB in Q8_0) streams from memory. The 256-weight formats (Q4_K, Q5_K, Q6_K,
//! IQ4_XS, Q3_K, Q2_K) need rows a multiple of 256, which SmolLM2's 576 is not, so besides its
//! ffn_down they run on Llama 3.2 1B's shapes (up to 9 MB in Q4_K); their 64-token int8 batch
//! runs on the ffn_down shape only
//! (the scalar reference would take seconds per pass on the 1B shapes). Qwen2.5-0.5B's FFN
//! shapes (`Qwen 0.5B`: Q5_0 and Q8_0 gate/up, Q4_K and Q6_K down) get the decode kinds.
//!
//! A last group of prompt products runs on Qwen2.5-0.5B's shapes and formats with 128 tokens:
//! the f32 path, the per-format int8 GEMM (`gemm_q8`) and the batched int8 GEMM (`gemm_i8`),
//! in GFLOP/s and relative to the f32 path.
//!
//! Each figure is the fastest of many passes over the matrix (see [`time`]). Q4_0 also runs on
//! the k-quants' shapes, and the run ends with a table of every format's GB/s as a share of
//! Q4_0's for the same kind, shape and backend in the same run (issue 15's targets: ≥ 80 % for
//! the 4- and 5-bit types, ≥ 70 % for Q2_K and Q3_K), so the comparison never mixes runs of a
//! shared, noisy machine.
//!
//! `cargo bench -p tern-kernels [-- FILTER...]`: each FILTER keeps the groups whose title contains
//! it (e.g. `-- "Q4_0 dot_q8 576x1536" "Q2_K dot_q8 576x1536"` measures those two side by side).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tern_kernels::scalar::{self, act_f16_bytes, act_q8_bytes};
use tern_kernels::{Backend, Format, Kernels};

/// Minimum measuring time per kernel.
const MIN_TIME: Duration = Duration::from_millis(250);

/// `(rows, cols)`: attention projections, FFN down, FFN gate/up, the output head.
const SHAPES: [(usize, usize, &str); 3] = [
    (576, 576, "576x576 (attn q/o)"),
    (576, 1536, "576x1536 (ffn_down)"),
    (1536, 576, "1536x576 (ffn_gate/up)"),
];
const HEAD: (usize, usize, &str) = (49152, 576, "49152x576 (output head)");
/// The k-quants' shapes: rows a multiple of 256 (SmolLM2's ffn_down, then Llama 3.2 1B).
const KQUANT_SHAPES: [(usize, usize, &str); 3] = [
    (576, 1536, "576x1536 (ffn_down)"),
    (2048, 2048, "2048x2048 (1B attn q/o)"),
    (8192, 2048, "8192x2048 (1B ffn_gate/up)"),
];

/// Qwen2.5-0.5B's FFN shapes (width 896, hidden 4864; 10–17 MB per matrix: from L3 or
/// memory).
const QWEN_GATE: (usize, usize, &str) = (4864, 896, "4864x896 (Qwen 0.5B ffn_gate/up)");
const QWEN_DOWN: (usize, usize, &str) = (896, 4864, "896x4864 (Qwen 0.5B ffn_down)");
/// Qwen2.5-0.5B's tied Q8_0 output head (136 MB: from memory, as in decoding).
const QWEN_HEAD: (usize, usize, &str) = (151936, 896, "151936x896 (Qwen 0.5B tied head)");
/// The decode kinds measured on the Qwen shapes.
const QWEN_KINDS: [&str; 4] = ["dot", "dot_rows", "dot_q8", "gemm_q8"];

/// What [`bench_matrix`] measures: every kind for the 32-weight formats, the single-row
/// kinds on the output head, and for the k-quants every kind but the f32 batch (which is the
/// same dequantization and `gemm_f32` as for the other formats), the int8 batch only on the
/// small shape.
const ALL_KINDS: [&str; 8] = [
    "dot",
    "dot_rows",
    "dot_q8",
    "gemm_q8",
    "dot_f16",
    "dequant",
    "gemm_q8 x64",
    "dequant+gemm_f32 x64",
];
const HEAD_KINDS: [&str; 5] = ["dot", "dot_rows", "dot_q8", "gemm_q8", "dot_f16"];
const KQUANT_KINDS: [&str; 5] = ["dot", "dot_rows", "dot_q8", "gemm_q8", "dequant"];
const KQUANT_SMALL_KINDS: [&str; 6] = [
    "dot",
    "dot_rows",
    "dot_q8",
    "gemm_q8",
    "dequant",
    "gemm_q8 x64",
];

fn main() {
    let filter = Filter(
        std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    );
    let backends: Vec<Kernels> = Backend::ALL
        .iter()
        .rev()
        .filter_map(|&b| Kernels::with_backend(b))
        .collect();
    let names: Vec<&str> = backends.iter().map(|k| k.backend().name()).collect();
    println!(
        "backends: {}   (best: {})",
        names.join(", "),
        Kernels::best().backend().name()
    );
    println!("one thread; GB/s = weight bytes streamed per second\n");
    println!(
        "{:<44} {:<28} {:>10} {:>8} {:>8}",
        "group", "kernel", "ns/row", "GB/s", "×scalar"
    );

    let start = Instant::now();
    let mut results = Vec::new();
    for format in [
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
        Format::Q5_0,
        Format::Q5_1,
        Format::IQ4_NL,
    ] {
        for (rows, cols, shape) in SHAPES {
            let kinds = &ALL_KINDS;
            bench_matrix(
                &backends,
                format,
                rows,
                cols,
                shape,
                &filter,
                kinds,
                &mut results,
            );
        }
    }
    // Qwen2.5-0.5B's decode: its FFN gate/up (Q5_0 in the Q4_K_M file) and its ffn_down
    // (Q4_K or Q6_K), the shapes that dominate its tokens.
    for (format, (rows, cols, shape)) in [
        (Format::Q4_0, QWEN_GATE),
        (Format::Q5_0, QWEN_GATE),
        (Format::Q8_0, QWEN_GATE),
        (Format::Q4_K, QWEN_DOWN),
        (Format::Q6_K, QWEN_DOWN),
    ] {
        bench_matrix(
            &backends,
            format,
            rows,
            cols,
            shape,
            &filter,
            &QWEN_KINDS,
            &mut results,
        );
    }
    // The same shape in Q5_0: a decode product from memory for the Q5_0 kernel too (the
    // 11 MB gate/up matrices above can stay in a large L3).
    let (rows, cols, shape) = QWEN_HEAD;
    for format in [Format::Q8_0, Format::Q5_0] {
        bench_matrix(
            &backends,
            format,
            rows,
            cols,
            shape,
            &filter,
            &["gemm_q8"],
            &mut results,
        );
    }
    let (rows, cols, shape) = HEAD;
    let kinds = &HEAD_KINDS;
    bench_matrix(
        &backends,
        Format::Q8_0,
        rows,
        cols,
        shape,
        &filter,
        kinds,
        &mut results,
    );
    // Q4_0 on the k-quants' larger shapes (576x1536 ran above), the reference of the table.
    for (rows, cols, shape) in &KQUANT_SHAPES[1..] {
        let kinds = &KQUANT_KINDS;
        bench_matrix(
            &backends,
            Format::Q4_0,
            *rows,
            *cols,
            shape,
            &filter,
            kinds,
            &mut results,
        );
    }
    for format in [
        Format::Q4_K,
        Format::Q5_K,
        Format::Q6_K,
        Format::IQ4_XS,
        Format::Q3_K,
        Format::Q2_K,
    ] {
        for (rows, cols, shape) in KQUANT_SHAPES {
            let kinds: &[&str] = if rows * cols <= 1 << 20 {
                &KQUANT_SMALL_KINDS
            } else {
                &KQUANT_KINDS
            };
            bench_matrix(
                &backends,
                format,
                rows,
                cols,
                shape,
                &filter,
                kinds,
                &mut results,
            );
        }
    }
    print_vs_q4_0(&results);
    bench_prefill(&backends, &filter);
    bench_dot_f32(&backends, &filter);
    bench_attention(&backends, &filter);
    bench_f16_head(&backends, &filter);
    bench_lut(&backends, &filter);
    println!("\ntotal {:.1} s", start.elapsed().as_secs_f64());
}

/// Deterministic values in [−1, 1).
fn randoms(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A `rows × cols` matrix of random weights quantized to `format`, row after row (IQ4_XS,
/// which has no quantizer here: random blocks with a typical super-block scale).
fn matrix(format: Format, rows: usize, cols: usize) -> Vec<u8> {
    let quantize: fn(&[f32], &mut [u8]) = match format {
        Format::Q4_0 => scalar::quantize_q4_0,
        Format::Q4_1 => scalar::quantize_q4_1,
        Format::Q5_0 => scalar::quantize_q5_0,
        Format::Q5_1 => scalar::quantize_q5_1,
        Format::Q4_K => scalar::quantize_q4_k,
        Format::Q5_K => scalar::quantize_q5_k,
        Format::Q6_K => scalar::quantize_q6_k,
        Format::Q3_K => scalar::quantize_q3_k,
        Format::Q2_K => scalar::quantize_q2_k,
        Format::IQ4_XS => random_iq4_xs,
        Format::IQ4_NL => scalar::quantize_iq4_nl,
        _ => scalar::quantize_q8_0,
    };
    let row_bytes = format.row_bytes(cols).expect("whole blocks");
    let mut out = vec![0u8; rows * row_bytes];
    for (r, row) in out.chunks_exact_mut(row_bytes).enumerate() {
        quantize(&randoms(cols, r as u64 + 1), row);
    }
    out
}

/// Random IQ4_XS blocks for `x.len()` weights (the values of `x` only seed them), `d` = 0.01.
fn random_iq4_xs(x: &[f32], out: &mut [u8]) {
    let mut s = x[0].to_bits() as u64 | 1;
    for (i, b) in out.iter_mut().enumerate() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = match i % 136 {
            0 | 1 => half::f16::from_f32(0.01).to_le_bytes()[i % 136],
            _ => (s >> 32) as u8,
        };
    }
}

/// Runs `f` (one pass over the matrix) repeatedly for at least [`MIN_TIME`] and 3 passes;
/// seconds of the fastest pass. The minimum, not the mean: other processes sharing the CPU
/// only ever add time, so the fastest pass is the best estimate of the kernel's own cost.
fn time(mut f: impl FnMut()) -> f64 {
    f(); // warm caches and page in
    let (mut best, mut passes, start) = (f64::INFINITY, 0, Instant::now());
    while passes < 3 || start.elapsed() < MIN_TIME {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        passes += 1;
    }
    best
}

/// One table line; `base` is the scalar time of the group.
fn report(group: &str, name: &str, secs: f64, rows: usize, bytes: usize, base: &mut Option<f64>) {
    let speedup = base.get_or_insert(secs).to_owned() / secs;
    println!(
        "{group:<44} {name:<28} {:>10.1} {:>8.2} {:>8.2}",
        secs * 1e9 / rows as f64,
        bytes as f64 / secs / 1e9,
        speedup
    );
}

/// The tied F16 output head of the 700M BitNet b1.58 (32002 × 1536, 98 MB: streams from
/// memory): the row dot one row at a time (`dot`), and the multi-row kernel (`dot_rows`).
fn bench_f16_head(backends: &[Kernels], filter: &Filter) {
    let (rows, cols) = (32002, 1536);
    let group = "F16 32002x1536 (BitNet 700M head)";
    if filter.skips(group) {
        return;
    }
    let w: Vec<u8> = randoms(rows * cols, 7)
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let x = randoms(cols, 8);
    let mut y = vec![0.0f32; rows];
    println!();
    let mut base = None;
    for k in backends {
        let fk = k.format(Format::F16);
        let secs = time(|| {
            for (yr, row) in y.iter_mut().zip(w.chunks_exact(2 * cols)) {
                *yr = (fk.dot.f)(black_box(row), black_box(&x));
            }
        });
        report(group, fk.dot.name, secs, rows, w.len(), &mut base);
        if let Some(rows_k) = fk.dot_rows {
            let secs = time(|| (rows_k.f)(black_box(&w), black_box(&x), &mut y));
            report(group, rows_k.name, secs, rows, w.len(), &mut base);
        }
    }
}

/// Tokens of the batched (prompt-processing) groups.
const BATCH: usize = 64;

/// The groups to measure: those whose title contains one of the command line's FILTER words
/// (every group without any).
struct Filter(Vec<String>);

impl Filter {
    /// Whether `group` is left out.
    fn skips(&self, group: &str) -> bool {
        !self.0.is_empty() && !self.0.iter().any(|f| group.contains(f.as_str()))
    }
}

/// One measured figure: format, kind, shape, backend, GB/s.
type Measured = (Format, &'static str, String, &'static str, f64);

#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
fn bench_matrix(
    backends: &[Kernels],
    format: Format,
    rows: usize,
    cols: usize,
    shape: &str,
    filter: &Filter,
    kinds: &[&'static str],
    results: &mut Vec<Measured>,
) {
    let title = |kind: &str| format!("{} {kind} {shape}", format.name());
    if kinds.iter().all(|k| filter.skips(&title(k))) {
        return; // skip quantizing a matrix nothing measures
    }
    let w = matrix(format, rows, cols);
    let row_bytes = w.len() / rows;
    let x = randoms(cols, 7);
    let xs: Vec<f32> = (0..BATCH)
        .flat_map(|t| randoms(cols, 100 + t as u64))
        .collect();
    let mut y = vec![0.0f32; rows];
    let mut ys = vec![0.0f32; rows * BATCH];
    let mut xq = vec![0u8; act_q8_bytes(cols)];
    let mut xqs = vec![0u8; BATCH * act_q8_bytes(cols)];
    let mut xh = vec![0u8; act_f16_bytes(cols)];
    let mut out = vec![0.0f32; cols];
    // The batched f32 path dequantizes a task's rows into a panel, then runs `gemm_f32`.
    const PANEL: usize = 64;
    let mut panel = vec![0.0f32; PANEL * cols];
    for &kind in kinds {
        let group = title(kind);
        if filter.skips(&group) {
            continue;
        }
        let (mut base, mut seen): (_, Vec<(&str, f64)>) = (None, Vec::new());
        for k in backends {
            let fk = k.format(format);
            let name = match kind {
                "dot" => fk.dot.name,
                "dot_rows" => fk.dot_rows.expect("multi-row kernel").name,
                "dot_q8" => fk.dot_q8.expect("int8 kernel").name,
                "gemm_q8" | "gemm_q8 x64" => fk.gemm_q8.expect("int8 GEMM").name,
                // SIMD tables without native f16 arithmetic have no f16 kernels.
                "dot_f16" => match fk.dot_f16 {
                    Some(d) => d.name,
                    None => continue,
                },
                "dequant+gemm_f32 x64" => k.gemm_f32.name,
                _ => fk.dequant.name,
            };
            let gbs = |secs: f64| w.len() as f64 / secs / 1e9;
            let backend = k.backend().name();
            if let Some(&(_, secs)) = seen.iter().find(|(n, _)| *n == name) {
                // A backend that reuses another's kernel for this slot: same figure.
                results.push((format, kind, shape.to_string(), backend, gbs(secs)));
                continue;
            }
            let quantize = k.quantize_act_q8.f;
            let qb = act_q8_bytes(cols);
            let secs = match kind {
                "dot" => time(|| {
                    for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
                        *yr = (fk.dot.f)(black_box(row), &x);
                    }
                    black_box(&y);
                }),
                "dot_rows" => {
                    let f = fk.dot_rows.unwrap().f;
                    time(|| {
                        f(black_box(&w), &x, &mut y);
                        black_box(&y);
                    })
                }
                "dot_q8" => {
                    let dot = fk.dot_q8.expect("int8 kernel").f;
                    time(|| {
                        quantize(black_box(&x), &mut xq);
                        for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
                            *yr = dot(black_box(row), &xq);
                        }
                        black_box(&y);
                    })
                }
                "dot_f16" => {
                    let (dot, convert) = (fk.dot_f16.unwrap().f, k.quantize_act_f16.f);
                    time(|| {
                        convert(black_box(&x), &mut xh);
                        for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
                            *yr = dot(black_box(row), &xh);
                        }
                        black_box(&y);
                    })
                }
                "gemm_q8" => {
                    let gemm = fk.gemm_q8.unwrap().f;
                    time(|| {
                        quantize(black_box(&x), &mut xq);
                        gemm(black_box(&w), rows, &xq, 1, &mut y, rows);
                        black_box(&y);
                    })
                }
                "gemm_q8 x64" => {
                    let gemm = fk.gemm_q8.unwrap().f;
                    time(|| {
                        for (xt, qt) in xs.chunks_exact(cols).zip(xqs.chunks_exact_mut(qb)) {
                            quantize(black_box(xt), qt);
                        }
                        gemm(black_box(&w), rows, &xqs, BATCH, &mut ys, rows);
                        black_box(&ys);
                    }) / BATCH as f64
                }
                "dequant+gemm_f32 x64" => {
                    let gemm = k.gemm_f32.f;
                    time(|| {
                        for (r0, chunk) in w.chunks(PANEL * row_bytes).enumerate() {
                            let m = chunk.len() / row_bytes;
                            for (row, o) in chunk
                                .chunks_exact(row_bytes)
                                .zip(panel.chunks_exact_mut(cols))
                            {
                                (fk.dequant.f)(row, o);
                            }
                            let yt = &mut ys[r0 * PANEL..];
                            gemm(&panel[..m * cols], m, &xs, BATCH, yt, rows);
                        }
                        black_box(&ys);
                    }) / BATCH as f64
                }
                _ => time(|| {
                    for row in w.chunks_exact(row_bytes) {
                        (fk.dequant.f)(black_box(row), &mut out);
                        black_box(&out);
                    }
                }),
            };
            report(&group, name, secs, rows, w.len(), &mut base);
            seen.push((name, secs));
            results.push((format, kind, shape.to_string(), backend, gbs(secs)));
        }
    }
}

/// Every SIMD figure of a format other than Q4_0 beside Q4_0's for the same kind, shape and
/// backend, as a share of it (the int8 kinds against Q4_0's int8 kernels).
fn print_vs_q4_0(results: &[Measured]) {
    let rows: Vec<String> = results
        .iter()
        .filter(|r| r.0 != Format::Q4_0 && r.3 != "scalar")
        .filter_map(|(format, kind, shape, backend, gbs)| {
            let q4 = results.iter().find(|r| {
                r.0 == Format::Q4_0 && r.1 == *kind && r.2 == *shape && r.3 == *backend
            })?;
            Some(format!(
                "{:<8} {:<22} {:<26} {:<11} {:>7.2} {:>7.2} {:>6.0} %",
                format.name(),
                kind,
                shape,
                backend,
                gbs,
                q4.4,
                100.0 * gbs / q4.4
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    println!(
        "
GB/s beside Q4_0's (same kind, shape and backend, this run)"
    );
    println!(
        "{:<8} {:<22} {:<26} {:<11} {:>7} {:>7} {:>8}",
        "format", "kind", "shape", "backend", "GB/s", "Q4_0", "of Q4_0"
    );
    for r in rows {
        println!("{r}");
    }
}

/// Tokens of the prefill GEMM groups (`tern bench -p 128`).
const PREFILL: usize = 128;

/// The prompt-processing products on Qwen2.5-0.5B's shapes and formats, 128 tokens: the f32
/// path (dequantize 16-row panels, `gemm_f32`, as the runtime's tasks do), the per-format int8
/// GEMM (`gemm_q8`) and the batched int8 GEMM (`gemm_i8`), both including the activation
/// quantization. GFLOP/s = 2·rows·cols·tokens per second; SIMD backends only (the scalar
/// references take seconds per pass here).
fn bench_prefill(backends: &[Kernels], filter: &Filter) {
    const SHAPES: [(Format, usize, usize, &str); 4] = [
        (Format::Q5_0, 896, 896, "896x896 (q/o)"),
        (Format::Q5_0, 4864, 896, "4864x896 (gate/up)"),
        (Format::Q6_K, 896, 4864, "896x4864 (down)"),
        (Format::Q8_0, 128, 896, "128x896 (v)"),
    ];
    println!();
    println!(
        "{:<44} {:<28} {:>10} {:>8} {:>8}",
        "prefill x128 group", "kernel", "ms", "GFLOP/s", "×f32"
    );
    for (format, rows, cols, shape) in SHAPES {
        let group = format!("prefill {} {shape}", format.name());
        if filter.skips(&group) {
            continue;
        }
        let w = matrix(format, rows, cols);
        let rb = w.len() / rows;
        let xs: Vec<f32> = (0..PREFILL)
            .flat_map(|t| randoms(cols, 300 + t as u64))
            .collect();
        let qb = act_q8_bytes(cols);
        let mut xq = vec![0u8; PREFILL * qb];
        let mut ys = vec![0.0f32; rows * PREFILL];
        const PANEL: usize = 16;
        let mut panel = vec![0.0f32; PANEL * cols];
        let flops = 2.0 * (rows * cols * PREFILL) as f64;
        for k in backends.iter().filter(|k| k.backend() != Backend::Scalar) {
            let fk = k.format(format);
            let quantize = |xq: &mut [u8]| {
                for (xt, qt) in xs.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
                    (k.quantize_act_q8.f)(black_box(xt), qt);
                }
            };
            let f32_secs = time(|| {
                for (r0, chunk) in w.chunks(PANEL * rb).enumerate() {
                    let m = chunk.len() / rb;
                    for (row, o) in chunk.chunks_exact(rb).zip(panel.chunks_exact_mut(cols)) {
                        (fk.dequant.f)(row, o);
                    }
                    (k.gemm_f32.f)(
                        &panel[..m * cols],
                        m,
                        &xs,
                        PREFILL,
                        &mut ys[r0 * PANEL..],
                        rows,
                    );
                }
                black_box(&ys);
            });
            let q8_secs = time(|| {
                quantize(&mut xq);
                (fk.gemm_q8.expect("int8 GEMM").f)(
                    black_box(&w),
                    rows,
                    &xq,
                    PREFILL,
                    &mut ys,
                    rows,
                );
                black_box(&ys);
            });
            let i8_secs = k.has_gemm_i8(format).then(|| {
                time(|| {
                    quantize(&mut xq);
                    k.gemm_i8(format, black_box(&w), rows, &xq, PREFILL, &mut ys, rows);
                    black_box(&ys);
                })
            });
            let name = format!("dequant+{}", k.gemm_f32.name);
            let mut lines = vec![
                (name.as_str(), f32_secs),
                (fk.gemm_q8.expect("int8 GEMM").name, q8_secs),
            ];
            if let (Some(secs), Some(g)) = (i8_secs, k.gemm_i8) {
                lines.push((g.name, secs));
            }
            for (name, secs) in lines {
                println!(
                    "{group:<44} {name:<28} {:>10.2} {:>8.1} {:>8.2}",
                    secs * 1e3,
                    flops / secs / 1e9,
                    f32_secs / secs
                );
            }
        }
    }
}

/// `dot_f32` as attention uses it: 64-wide heads against 1024 cached keys, and 576-wide rows.
fn bench_dot_f32(backends: &[Kernels], filter: &Filter) {
    for (len, count, what) in [
        (64usize, 1024usize, "64 x 1024 (attention)"),
        (576, 576, "576 x 576"),
    ] {
        let group = format!("f32 dot_f32 {what}");
        if filter.skips(&group) {
            continue;
        }
        let a = randoms(len, 1);
        let b = randoms(len * count, 2);
        let mut out = vec![0.0f32; count];
        let (mut base, mut seen) = (None, Vec::new());
        for k in backends {
            if seen.contains(&k.dot_f32.name) {
                continue;
            }
            seen.push(k.dot_f32.name);
            let secs = time(|| {
                for (o, b) in out.iter_mut().zip(b.chunks_exact(len)) {
                    *o = (k.dot_f32.f)(black_box(&a), b);
                }
                black_box(&out);
            });
            report(
                &group,
                k.dot_f32.name,
                secs,
                count,
                4 * len * count,
                &mut base,
            );
        }
    }
}

/// One attention head over 512 cached positions of 64 (SmolLM2) and 96 (BitNet 700M) values:
/// scores and the weighted sum of values, with an f32 KV cache (one `dot_f32` and one `axpy`
/// call per position) and with the default f16 one (one F16 row-kernel call for the scores,
/// one `axpy_rows_f16` for the values). Softmax is left out (the same for both). "ns/row" is
/// per position; "GB/s" counts the key and value bytes read.
fn bench_attention(backends: &[Kernels], filter: &Filter) {
    const POSITIONS: usize = 512;
    for hd in [64usize, 96] {
        let group = format!("attention head {hd} x {POSITIONS} positions");
        if filter.skips(&group) {
            continue;
        }
        let q = randoms(hd, 3);
        let keys = randoms(hd * POSITIONS, 4);
        let values = randoms(hd * POSITIONS, 5);
        let to_f16 = |v: &[f32]| -> Vec<u8> {
            v.iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect()
        };
        let (keys16, values16) = (to_f16(&keys), to_f16(&values));
        let weights: Vec<f32> = randoms(POSITIONS, 6).iter().map(|w| w.abs()).collect();
        let mut scores = vec![0.0f32; POSITIONS];
        let mut out = vec![0.0f32; hd];
        println!();
        let (mut base, mut seen) = (None, Vec::new());
        // Each kernel pair once, however many backends share it.
        let mut measure = |name: String, bytes: usize, run: &mut dyn FnMut()| {
            if !seen.contains(&name) {
                let secs = time(run);
                report(&group, &name, secs, POSITIONS, bytes, &mut base);
                seen.push(name);
            }
        };
        for k in backends {
            measure(
                format!("f32 KV: {}", k.dot_f32.name),
                8 * hd * POSITIONS,
                &mut || {
                    for (s, key) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
                        *s = (k.dot_f32.f)(black_box(&q), key);
                    }
                    out.fill(0.0);
                    for (&w, v) in weights.iter().zip(values.chunks_exact(hd)) {
                        (k.axpy.f)(&mut out, w, v);
                    }
                    black_box((&scores, &out));
                },
            );
            let rows = k
                .format(Format::F16)
                .dot_rows
                .expect("every backend has one");
            measure(
                format!("f16 KV: {}", k.axpy_rows_f16.name),
                4 * hd * POSITIONS,
                &mut || {
                    (rows.f)(black_box(&keys16), black_box(&q), &mut scores);
                    out.fill(0.0);
                    (k.axpy_rows_f16.f)(&mut out, black_box(&weights), black_box(&values16));
                    black_box((&scores, &out));
                },
            );
        }
    }
}

/// The table exp against the exact one (`libm::expf`): softmax over attention rows of 256
/// and 4096 positions, and SwiGLU over SmolLM2's 1536-wide feed-forward. The exact scalar
/// kernel comes first, so `×scalar` is the speed-up over exact `expf`; "GB/s" here counts the
/// f32 values read.
fn bench_lut(backends: &[Kernels], filter: &Filter) {
    for len in [256usize, 4096] {
        let group = format!("f32 softmax {len} (exact expf vs table exp)");
        if filter.skips(&group) {
            continue;
        }
        let x: Vec<f32> = randoms(len, 11).iter().map(|v| v * 8.0).collect();
        let mut buf = x.clone();
        let mut base = None;
        let secs = time(|| {
            buf.copy_from_slice(&x);
            scalar::softmax(black_box(&mut buf));
        });
        report(
            &group,
            "softmax/scalar (exact expf)",
            secs,
            len,
            4 * len,
            &mut base,
        );
        let mut seen = Vec::new();
        for k in backends {
            if seen.contains(&k.softmax.name) {
                continue;
            }
            seen.push(k.softmax.name);
            let secs = time(|| {
                buf.copy_from_slice(&x);
                (k.softmax.f)(black_box(&mut buf));
            });
            report(&group, k.softmax.name, secs, len, 4 * len, &mut base);
        }
    }
    let group = "f32 swiglu 1536 (exact expf vs table exp)".to_string();
    if filter.skips(&group) {
        return;
    }
    let len = 1536;
    let g: Vec<f32> = randoms(len, 12).iter().map(|v| v * 6.0).collect();
    let u = randoms(len, 13);
    let mut buf = g.clone();
    let mut base = None;
    let secs = time(|| {
        buf.copy_from_slice(&g);
        scalar::swiglu(black_box(&mut buf), &u);
    });
    report(
        &group,
        "swiglu/scalar (exact expf)",
        secs,
        len,
        8 * len,
        &mut base,
    );
    let mut seen = Vec::new();
    for k in backends {
        if seen.contains(&k.swiglu.name) {
            continue;
        }
        seen.push(k.swiglu.name);
        let secs = time(|| {
            buf.copy_from_slice(&g);
            (k.swiglu.f)(black_box(&mut buf), &u);
        });
        report(&group, k.swiglu.name, secs, len, 8 * len, &mut base);
    }
}
