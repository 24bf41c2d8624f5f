//! Ternary kernels on the BitNet b1.58 "large" (700M) shapes, every backend this CPU has, one
//! thread: GB/s of weight bytes streamed.
//!
//! Groups per format (TQ1_0, TQ2_0, I2_S) and shape (rows × cols):
//! - `f32 dot`: the f32-activation reference slot (what the emulation path costs);
//! - `q8row`: the integer dot on the GGUF bytes, including the one activation quantization
//!   per matrix-vector product (the decode path, "MAD");
//! - `lut`: the lookup-table GEMV on the repacked index tiles, including the table build
//!   (the decode path, "LUT"); bytes counted are the index tiles and scales;
//! - `gemm x32`: 32 tokens at once on codes unpacked once per call from the GGUF bytes (the
//!   MAD prompt path); GB/s counts the weight bytes once per token, as if streamed per token;
//! - `lut gemm x32`: the same on a repacked matrix (tiles decoded back to codes, then the same
//!   batched kernel): the prompt path of a matrix that chose LUT.
//!
//! Each figure is the fastest of many passes (other processes only ever add time).
//!
//! `cargo bench -p tern-kernels --bench ternary [-- FILTER]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tern_kernels::scalar::{self, lut_tables_bytes, lut_tile_bytes, ActQ8Row, LUT_TILE_ROWS};
use tern_kernels::{Backend, Format, Kernels};

const MIN_TIME: Duration = Duration::from_millis(300);

const SHAPES: [(usize, usize, &str); 3] = [
    (1536, 1536, "1536x1536 (attn q/k/v/o)"),
    (1536, 4096, "1536x4096 (ffn_down)"),
    (4096, 1536, "4096x1536 (ffn_gate/up)"),
];

const BATCH: usize = 32;

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
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
    println!("one thread; GB/s = weight bytes streamed per second (gemm: per token)\n");
    println!(
        "{:<44} {:<30} {:>10} {:>8} {:>8}",
        "group", "kernel", "us/matvec", "GB/s", "×scalar"
    );
    for format in [Format::TQ2_0, Format::I2_S, Format::TQ1_0] {
        for (rows, cols, shape) in SHAPES {
            bench(&backends, format, rows, cols, shape, &filter);
        }
    }
}

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

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let (mut best, mut passes, start) = (f64::INFINITY, 0, Instant::now());
    while passes < 3 || start.elapsed() < MIN_TIME {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        passes += 1;
    }
    best
}

fn report(group: &str, name: &str, secs: f64, bytes: usize, base: &mut Option<f64>) {
    let speedup = base.get_or_insert(secs).to_owned() / secs;
    println!(
        "{group:<44} {name:<30} {:>10.1} {:>8.2} {:>8.2}",
        secs * 1e6,
        bytes as f64 / secs / 1e9,
        speedup
    );
}

struct Matrix {
    bytes: Vec<u8>,
    row_bytes: usize,
    /// Index tiles, and per tile 32 scales per 256-column block (none for I2_S).
    tiles: Vec<u8>,
    tile_scales: Vec<f32>,
}

fn matrix(format: Format, rows: usize, cols: usize) -> Matrix {
    let row_bytes = format.row_bytes(cols).unwrap();
    let mut bytes = vec![0u8; rows * row_bytes];
    for (r, row) in bytes.chunks_exact_mut(row_bytes).enumerate() {
        let w = randoms(cols, r as u64 + 1);
        match format {
            Format::TQ1_0 => scalar::quantize_tq1_0(&w, row),
            Format::TQ2_0 => scalar::quantize_tq2_0(&w, row),
            _ => {
                scalar::quantize_i2_s(&w, row);
            }
        }
    }
    let unpack = Kernels::scalar().format(format).unpack.unwrap().f;
    let nb = if format == Format::I2_S {
        0
    } else {
        cols / 256
    };
    let tiles_n = rows.div_ceil(LUT_TILE_ROWS);
    let mut tiles = vec![0u8; tiles_n * lut_tile_bytes(cols)];
    let mut tile_scales = vec![0f32; tiles_n * LUT_TILE_ROWS * nb];
    let mut codes = vec![0u8; LUT_TILE_ROWS * cols];
    let mut scales = vec![0f32; nb];
    for t in 0..tiles_n {
        let r0 = t * LUT_TILE_ROWS;
        let n = (rows - r0).min(LUT_TILE_ROWS);
        for r in 0..n {
            unpack(
                &bytes[(r0 + r) * row_bytes..][..row_bytes],
                &mut codes[r * cols..(r + 1) * cols],
                &mut scales,
            );
            for b in 0..nb {
                tile_scales[t * LUT_TILE_ROWS * nb + LUT_TILE_ROWS * b + r] = scales[b];
            }
        }
        assert!(scalar::lut_pack_tile(
            &codes[..n * cols],
            n,
            &mut tiles[t * lut_tile_bytes(cols)..][..lut_tile_bytes(cols)]
        ));
    }
    Matrix {
        bytes,
        row_bytes,
        tiles,
        tile_scales,
    }
}

fn bench(
    backends: &[Kernels],
    format: Format,
    rows: usize,
    cols: usize,
    shape: &str,
    filter: &Option<String>,
) {
    let m = matrix(format, rows, cols);
    let x = randoms(cols, 7);
    let mut qs = vec![0i8; cols];
    let mut sums = vec![0i32; cols / 128];
    let mut y = vec![0f32; rows];
    let nb = if format == Format::I2_S {
        0
    } else {
        cols / 256
    };
    let tile_bytes = lut_tile_bytes(cols);
    let mut tables = vec![0u8; lut_tables_bytes(cols)];
    let lut_bytes = m.tiles.len() + 4 * m.tile_scales.len();

    for kind in ["f32 dot", "q8row", "lut", "gemm x32", "lut gemm x32"] {
        let group = format!("{} {kind} {shape}", format.name());
        if filter.as_ref().is_some_and(|f| !group.contains(f.as_str())) {
            continue;
        }
        let (mut base, mut seen) = (None, Vec::new());
        for k in backends {
            let fk = k.format(format);
            let name = match kind {
                "f32 dot" => fk.dot.name,
                "q8row" => fk.dot_q8_row.unwrap().name,
                "lut" => k.ternary.lut_gemv.name,
                "lut gemm x32" => k.ternary.lut_unpack.name,
                _ => k.ternary.gemm_codes.name,
            };
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let secs = match kind {
                "f32 dot" => time(|| {
                    for (yr, row) in y.iter_mut().zip(m.bytes.chunks_exact(m.row_bytes)) {
                        *yr = (fk.dot.f)(black_box(row), &x);
                    }
                    black_box(&y);
                }),
                "q8row" => {
                    let dot = fk.dot_q8_row.unwrap().f;
                    time(|| {
                        scalar::quantize_act_q8_row(black_box(&x), &mut qs, &mut sums);
                        let a = ActQ8Row::new(&qs, &sums);
                        for (yr, row) in y.iter_mut().zip(m.bytes.chunks_exact(m.row_bytes)) {
                            *yr = dot(black_box(row), &a);
                        }
                        black_box(&y);
                    })
                }
                "lut" => time(|| {
                    scalar::quantize_act_q8_row(black_box(&x), &mut qs, &mut sums);
                    (k.ternary.lut_tables.f)(&qs, &mut tables);
                    let mut out = [0f32; LUT_TILE_ROWS];
                    for (t, tile) in m.tiles.chunks_exact(tile_bytes).enumerate() {
                        let sc =
                            &m.tile_scales[t * LUT_TILE_ROWS * nb..(t + 1) * LUT_TILE_ROWS * nb];
                        (k.ternary.lut_gemv.f)(black_box(tile), &tables, sc, &mut out);
                        let r0 = t * LUT_TILE_ROWS;
                        let n = (rows - r0).min(LUT_TILE_ROWS);
                        y[r0..r0 + n].copy_from_slice(&out[..n]);
                    }
                    black_box(&y);
                }),
                "lut gemm x32" => {
                    let (unpack, gemm) = (k.ternary.lut_unpack.f, k.ternary.gemm_codes.f);
                    let xs = batch(cols);
                    let acts: Vec<ActQ8Row<'_>> =
                        xs.iter().map(|(q, s)| ActQ8Row::new(q, s)).collect();
                    let mut codes = vec![0u8; LUT_TILE_ROWS * cols];
                    let mut scales = vec![0f32; LUT_TILE_ROWS * nb];
                    let mut out = vec![0f32; LUT_TILE_ROWS * BATCH];
                    let secs = time(|| {
                        for (t, tile) in m.tiles.chunks_exact(tile_bytes).enumerate() {
                            unpack(black_box(tile), &mut codes);
                            let ts = &m.tile_scales
                                [t * LUT_TILE_ROWS * nb..(t + 1) * LUT_TILE_ROWS * nb];
                            for r in 0..LUT_TILE_ROWS {
                                for b in 0..nb {
                                    scales[r * nb + b] = ts[b * LUT_TILE_ROWS + r];
                                }
                            }
                            gemm(&codes, LUT_TILE_ROWS, &scales, &acts, &mut out);
                            black_box(&out);
                        }
                    });
                    secs / BATCH as f64
                }
                _ => {
                    let unpack = fk.unpack.unwrap().f;
                    let gemm = k.ternary.gemm_codes.f;
                    let xs = batch(cols);
                    let acts: Vec<ActQ8Row<'_>> =
                        xs.iter().map(|(q, s)| ActQ8Row::new(q, s)).collect();
                    const GROUP: usize = 16;
                    let mut codes = vec![0u8; GROUP * cols];
                    let mut scales = vec![0f32; GROUP * nb];
                    let mut out = vec![0f32; GROUP * BATCH];
                    let secs = time(|| {
                        for (g, rows_bytes) in m.bytes.chunks(GROUP * m.row_bytes).enumerate() {
                            let n = rows_bytes.len() / m.row_bytes;
                            for r in 0..n {
                                unpack(
                                    &rows_bytes[r * m.row_bytes..(r + 1) * m.row_bytes],
                                    &mut codes[r * cols..(r + 1) * cols],
                                    &mut scales[r * nb..(r + 1) * nb],
                                );
                            }
                            gemm(
                                &codes[..n * cols],
                                n,
                                &scales[..n * nb],
                                &acts,
                                &mut out[..n * BATCH],
                            );
                            black_box((g, &out));
                        }
                    });
                    secs / BATCH as f64
                }
            };
            let bytes = if kind.starts_with("lut") {
                lut_bytes
            } else {
                m.bytes.len()
            };
            report(&group, name, secs, bytes, &mut base);
        }
    }
}

/// `BATCH` tokens of random activations, quantized per token.
fn batch(cols: usize) -> Vec<(Vec<i8>, Vec<i32>)> {
    (0..BATCH)
        .map(|t| {
            let x = randoms(cols, 100 + t as u64);
            let (mut q, mut s) = (vec![0i8; cols], vec![0i32; cols / 128]);
            scalar::quantize_act_q8_row(&x, &mut q, &mut s);
            (q, s)
        })
        .collect()
}
