//! The ternary representations of a matrix: TQ1_0, TQ2_0 and I2_S weights meet per-token int8
//! activations in BitNet b1.58's integer matrix product, on the GGUF bytes (MAD) or on a
//! lookup-table repacking chosen per matrix shape at load (LUT).
//!
//! This module is the arithmetic of those representations and nothing else: it sees weight
//! bytes and shapes (`GgufRows`, [`LutMatrix`]), never a model, a feed or the forward pass.
//! Which matrices take which representation is decided once at load
//! (`crate::model::Model::set_ternary_kernel`) and stored in the matrix
//! ([`crate::weights::Repr`]); `crate::matrix` dispatches each product here.
//!
//! # When the integer path runs
//!
//! A matrix in a ternary representation ([`crate::weights::Repr::TernaryMad`],
//! [`crate::weights::Repr::TernaryLut`]) takes it when its activations are int8:
//!
//! - BitNet models (`bitnet`, `bitnet-b1.58`): always, for every ternary matrix
//!   ([`crate::weights::Matrix::int8_activations`]). The model defines its activations as
//!   per-token absmax int8 (the paper; bitnet.cpp), so this is not an approximation: each token
//!   row is quantized once with exactly the rounding of [`scalar::absmax_int8_roundtrip`] (the
//!   f32 emulation the GGUF path runs), and the result equals that emulation up to float
//!   summation order.
//! - Llama-family models with ternary matrices: when the session asks for
//!   `ActivationPrecision::Int8`. The default `ActivationPrecision::F32` keeps its promise of
//!   f32 activations (and its scalar ternary dot) by running the GGUF path.
//! - A token row whose activations are not finite (`Quantized::new` returns `None`) sends
//!   the whole product back to the GGUF path, which propagates the NaN as before.
//!
//! # Kernels and the choice between them
//!
//! Every kernel returns the same bits for the same weights and activations (the exactness
//! contract of `tern_kernels::scalar::ternary_int8`), so the choice below is about speed and
//! memory only, never about results:
//!
//! - **MAD** (multiply-add): the `dot_q8_row` kernel straight on the GGUF bytes for one token;
//!   for a batch, each task decodes its rows once (`unpack`) and runs `gemm_codes` over all the
//!   tokens, reusing every decoded weight block for every token.
//! - **LUT**: the matrix is repacked at load into 32-row index tiles (`lut_pack_tile`; the
//!   GGUF bytes stay the input and are not read again: the loader tells the memory system
//!   they are not needed). One token builds its tables once per product and every tile is
//!   `lut_gemv` (Q, K, V and gate, up share one table build and one parallel section:
//!   `gemv_many`, for MAD too); a batch decodes each tile back to codes (`lut_unpack`) and
//!   runs the same `gemm_codes`. One resident copy of the weights either way: the index tiles
//!   are 2 bits per weight (plus f32 block scales for TQ formats), the size of TQ2_0 and I2_S.
//!
//! [`TernaryKernel::Auto`] times both on the first matrix of each distinct shape at load
//! (`choose`; with `std`: a few milliseconds per shape, cache-hot, i.e. the kernels' compute
//! cost) and repacks the shapes where LUT wins by more than [`LUT_MARGIN`] (about 0.35 s for
//! the 700M BitNet shape, almost all of it the repack). Without `std` there is no clock, and
//! Auto means MAD. Models streamed from a [`WeightSource`](crate::source::WeightSource) are
//! never repacked (that would hold the whole model in RAM).

use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::scalar::{self, ActQ8Row, ACT_SUM_RUN, LUT_TILE_ROWS};
use tern_kernels::{Format, Kernels};

use crate::parallel::{Parallel, SharedOut};

/// Which kernel computes ternary matrix-vector products for single tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TernaryKernel {
    /// Time both at load and take the faster per shape (MAD without `std`).
    #[default]
    Auto,
    /// The integer multiply-add dot on the GGUF bytes; nothing repacked.
    Mad,
    /// The lookup-table GEMV on weights repacked at load.
    Lut,
    /// No integer path at all: ternary matrices take the f32 path, where BitNet's int8
    /// activations are emulated in f32 (`absmax_int8_roundtrip`). The reference for tests.
    F32,
}

impl TernaryKernel {
    /// The name the CLI accepts (`auto`, `mad`, `lut`).
    pub fn name(self) -> &'static str {
        match self {
            TernaryKernel::Auto => "auto",
            TernaryKernel::Mad => "mad",
            TernaryKernel::Lut => "lut",
            TernaryKernel::F32 => "f32",
        }
    }

    /// Parses [`TernaryKernel::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(TernaryKernel::Auto),
            "mad" => Some(TernaryKernel::Mad),
            "lut" => Some(TernaryKernel::Lut),
            "f32" => Some(TernaryKernel::F32),
            _ => None,
        }
    }
}

/// How much faster (as a fraction) LUT must time than MAD at load for Auto to repack a shape:
/// repacking costs load time, and within this margin the two are a coin toss.
pub const LUT_MARGIN: f64 = 0.05;

/// What the load-time choice found for one matrix shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShapeChoice {
    /// Weight format.
    pub format: Format,
    /// Rows × columns.
    pub rows: usize,
    /// Columns (weights per row).
    pub cols: usize,
    /// The kernel single tokens use.
    pub kernel: TernaryKernel,
    /// Seconds per matrix-vector product measured at load for MAD and LUT (`None` when not
    /// timed).
    pub timed: Option<(f64, f64)>,
}

/// Whether a matrix of `format` with `cols` columns has the integer path with kernels `k`:
/// a ternary format with an int8 row dot, and rows a whole number of activation-sum runs.
pub(crate) fn has_integer_path(k: &Kernels, format: Format, cols: usize) -> bool {
    format.is_ternary() && k.format(format).dot_q8_row.is_some() && cols.is_multiple_of(ACT_SUM_RUN)
}

/// Whole rows of a ternary matrix in their GGUF bytes: what MAD reads, and what LUT repacks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GgufRows<'a> {
    /// Weight format.
    pub format: Format,
    /// Weights per row.
    pub cols: usize,
    /// Bytes per row.
    pub row_bytes: usize,
    /// `rows · row_bytes` bytes.
    pub data: &'a [u8],
}

impl GgufRows<'_> {
    fn rows(&self) -> usize {
        self.data.len() / self.row_bytes
    }
}

/// A matrix repacked into lookup-table index tiles: the representation
/// [`crate::weights::Repr::TernaryLut`] holds.
#[derive(Clone)]
pub struct LutMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// `rows.div_ceil(32)` tiles of `lut_tile_bytes(cols)` bytes.
    tiles: Vec<u8>,
    /// Per tile, 32 block scales per 256 columns, block-major (empty for I2_S).
    scales: Vec<f32>,
}

impl core::fmt::Debug for LutMatrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LutMatrix")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.heap_bytes())
            .finish()
    }
}

impl LutMatrix {
    /// The matrix `w` as index tiles, or `None` if a code has no index (a code 3) or the
    /// format cannot be unpacked: such a matrix stays on MAD.
    pub(crate) fn repack(w: GgufRows<'_>, k: &Kernels) -> Option<Self> {
        let unpack = k.format(w.format).unpack?.f;
        let (rows, cols, rb) = (w.rows(), w.cols, w.row_bytes);
        let nb = blocks_per_row(w.format, cols);
        let tile_bytes = scalar::lut_tile_bytes(cols);
        let n_tiles = rows.div_ceil(LUT_TILE_ROWS);
        let mut tiles = vec![0u8; n_tiles * tile_bytes];
        let mut scales = vec![0.0f32; n_tiles * LUT_TILE_ROWS * nb];
        let mut codes = vec![0u8; LUT_TILE_ROWS * cols];
        let mut row_scales = vec![0.0f32; nb];
        for tile in 0..n_tiles {
            let r0 = tile * LUT_TILE_ROWS;
            let n = (rows - r0).min(LUT_TILE_ROWS);
            for r in 0..n {
                let row = &w.data[(r0 + r) * rb..(r0 + r + 1) * rb];
                unpack(row, &mut codes[r * cols..(r + 1) * cols], &mut row_scales);
                for (b, &s) in row_scales.iter().enumerate() {
                    scales[(tile * nb + b) * LUT_TILE_ROWS + r] = s;
                }
            }
            let out = &mut tiles[tile * tile_bytes..(tile + 1) * tile_bytes];
            if !scalar::lut_pack_tile(&codes[..n * cols], n, out) {
                return None;
            }
        }
        Some(LutMatrix {
            format: w.format,
            rows,
            cols,
            tiles,
            scales,
        })
    }

    /// Heap bytes of the tiles and their scales.
    pub fn heap_bytes(&self) -> usize {
        self.tiles.len() + 4 * self.scales.len()
    }
}

/// Block scales per row: TQ formats have one per 256 weights, I2_S none (its scale is the
/// tensor's, applied by the caller).
fn blocks_per_row(format: Format, cols: usize) -> usize {
    match format {
        Format::I2_S => 0,
        _ => cols / 256,
    }
}

/// Times MAD and LUT for one matrix-vector product of `w` and picks the faster.
#[cfg(feature = "std")]
pub(crate) fn choose(w: GgufRows<'_>, k: &Kernels) -> (TernaryKernel, Option<(f64, f64)>) {
    use std::time::Instant;

    let Some(lut) = LutMatrix::repack(w, k) else {
        return (TernaryKernel::Mad, None);
    };
    let x: Vec<f32> = (0..w.cols)
        .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 64.0)
        .collect();
    let Some(q) = Quantized::new(k, &x, 1, w.cols) else {
        // Finite by construction; without activations there is nothing to time.
        return (TernaryKernel::Mad, None);
    };
    let mut y = vec![0.0f32; w.rows()];
    let serial = crate::parallel::Serial;
    let mut best = |f: &mut dyn FnMut(&mut [f32])| {
        f(&mut y); // warm up
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let s = Instant::now();
            f(&mut y);
            best = best.min(s.elapsed().as_secs_f64());
        }
        best
    };
    let mad = best(&mut |y| mad_gemv(k, &serial, w, &q, y, 0));
    let lutt = best(&mut |y| lut_gemv(k, &serial, &lut, &q, y));
    let kernel = if lutt * (1.0 + LUT_MARGIN) < mad {
        TernaryKernel::Lut
    } else {
        TernaryKernel::Mad
    };
    (kernel, Some((mad, lutt)))
}

/// Without a clock: MAD (nothing repacked).
#[cfg(not(feature = "std"))]
pub(crate) fn choose(_: GgufRows<'_>, _: &Kernels) -> (TernaryKernel, Option<(f64, f64)>) {
    (TernaryKernel::Mad, None)
}

/// `n` token rows quantized to int8 with one scale each (BitNet's per-token absmax).
pub(crate) struct Quantized {
    cols: usize,
    /// Codes, `(n, cols)`.
    qs: Vec<i8>,
    /// 128-run sums, `(n, cols / 128)`.
    sums: Vec<i32>,
    /// Step per token: `x ≈ qs · d`.
    d: Vec<f32>,
}

impl Quantized {
    /// The `n` rows of `x` `(n, cols)` quantized, or `None` if one has a value that is not
    /// finite. `cols` is a multiple of the activation-sum run (see [`has_integer_path`]).
    pub(crate) fn new(k: &Kernels, x: &[f32], n: usize, cols: usize) -> Option<Self> {
        let s = cols / ACT_SUM_RUN;
        let mut q = Quantized {
            cols,
            qs: vec![0; n * cols],
            sums: vec![0; n * s],
            d: vec![0.0; n],
        };
        for t in 0..n {
            q.d[t] = (k.ternary.quantize_act_row.f)(
                &x[t * cols..(t + 1) * cols],
                &mut q.qs[t * cols..(t + 1) * cols],
                &mut q.sums[t * s..(t + 1) * s],
            )?;
        }
        Some(q)
    }

    fn act(&self, t: usize) -> ActQ8Row<'_> {
        let (c, s) = (self.cols, self.cols / ACT_SUM_RUN);
        ActQ8Row::new(&self.qs[t * c..(t + 1) * c], &self.sums[t * s..(t + 1) * s])
    }
}

/// MAD on rows `row0..` of a matrix (`w`, one slice of the rows the feed handed out) for the
/// `n` tokens of `q`: `y[t][row0 + r] = d[t] · W[r] · q[t]`, with `y` `(n, y_stride)`.
#[expect(
    clippy::too_many_arguments,
    reason = "the matrix slice, the tokens and the output window, as `matmul` takes them"
)]
pub(crate) fn mad(
    k: &Kernels,
    par: &dyn Parallel,
    w: GgufRows<'_>,
    row0: usize,
    q: &Quantized,
    n: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    if n == 1 {
        mad_gemv(k, par, w, q, y, row0);
    } else {
        mad_gemm(k, par, w, row0, q, n, y, y_stride);
    }
}

/// LUT on a repacked matrix for the `n` tokens of `q`: `y` `(n, rows)`.
pub(crate) fn lut(
    k: &Kernels,
    par: &dyn Parallel,
    lut: &LutMatrix,
    q: &Quantized,
    n: usize,
    y: &mut [f32],
) {
    if n == 1 {
        lut_gemv(k, par, lut, q, y);
    } else {
        lut_gemm(k, par, lut, q, n, y);
    }
}

/// Rows per task for the row-parallel products: about four tasks per thread, at least 16
/// rows each (a multiple of 32 for the tile-based ones).
fn rows_per_task(rows: usize, threads: usize, multiple: usize) -> usize {
    rows.div_ceil(4 * threads)
        .max(16)
        .next_multiple_of(multiple)
}

/// One token, MAD: `y[col0 + r] = d · dot(row r of w)` for the rows in `w`.
fn mad_gemv(
    k: &Kernels,
    par: &dyn Parallel,
    w: GgufRows<'_>,
    q: &Quantized,
    y: &mut [f32],
    col0: usize,
) {
    let dot = k
        .format(w.format)
        .dot_q8_row
        .expect("the integer path is chosen only with a row dot (has_integer_path)")
        .f;
    let (data, rb, rows) = (w.data, w.row_bytes, w.rows());
    let (act, d) = (q.act(0), q.d[0]);
    let chunk = rows_per_task(rows, par.threads(), 1);
    let out = SharedOut::new(&mut y[col0..col0 + rows]);
    par.run(rows.div_ceil(chunk), &|task| {
        let (r0, r1) = (task * chunk, ((task + 1) * chunk).min(rows));
        // SAFETY: tasks own disjoint ranges r0..r1 of the `rows` outputs; `y` outlives `run`.
        let ys = unsafe { out.slice(r0, r1 - r0) };
        for (r, yr) in (r0..r1).zip(ys) {
            *yr = dot(&data[r * rb..(r + 1) * rb], &act) * d;
        }
    });
}

/// A batch, MAD: each task decodes its rows once and runs the batched kernel over all tokens.
#[expect(
    clippy::too_many_arguments,
    reason = "the matrix slice, the tokens and the output window, as `matmul` takes them"
)]
fn mad_gemm(
    k: &Kernels,
    par: &dyn Parallel,
    w: GgufRows<'_>,
    col0: usize,
    q: &Quantized,
    n: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    let (cols, rb, data) = (w.cols, w.row_bytes, w.data);
    let unpack = k.format(w.format).unpack.expect("ternary formats unpack").f;
    let gemm = k.ternary.gemm_codes.f;
    let nb = blocks_per_row(w.format, cols);
    let rows = w.rows();
    let chunk = rows_per_task(rows, par.threads(), 1).min(32);
    let acts: Vec<ActQ8Row<'_>> = (0..n).map(|t| q.act(t)).collect();
    let out = SharedOut::new(y);
    par.run(rows.div_ceil(chunk), &|task| {
        let (r0, r1) = (task * chunk, ((task + 1) * chunk).min(rows));
        let m = r1 - r0;
        let mut codes = vec![0u8; m * cols];
        let mut scales = vec![0.0f32; m * nb];
        for r in 0..m {
            let row = &data[(r0 + r) * rb..(r0 + r + 1) * rb];
            unpack(
                row,
                &mut codes[r * cols..(r + 1) * cols],
                &mut scales[r * nb..(r + 1) * nb],
            );
        }
        let mut res = vec![0.0f32; m * n];
        gemm(&codes, m, &scales, &acts, &mut res);
        for t in 0..n {
            // SAFETY: (token t, columns col0 + r0..col0 + r1) belong to this task only and lie
            // inside `y` (n, y_stride); `y` outlives `run`.
            let ys = unsafe { out.slice(t * y_stride + col0 + r0, m) };
            for (yr, v) in ys.iter_mut().zip(&res[t * m..(t + 1) * m]) {
                *yr = v * q.d[t];
            }
        }
    });
}

/// One token, LUT: tables built once, then every tile.
fn lut_gemv(k: &Kernels, par: &dyn Parallel, lut: &LutMatrix, q: &Quantized, y: &mut [f32]) {
    gemv_many(k, par, &mut [(Weights::Lut(lut), y)], q);
}

/// Most matrices [`gemv_many`] takes at once (Q, K and V; gate and up).
pub(crate) const MAX_FUSED: usize = 4;

/// Where one matrix of [`gemv_many`] is read from.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// Repacked for LUT.
    Lut(&'a LutMatrix),
    /// The GGUF bytes of every row, for MAD.
    Mad(GgufRows<'a>),
}

impl Weights<'_> {
    fn format(&self) -> Format {
        match self {
            Weights::Lut(l) => l.format,
            Weights::Mad(w) => w.format,
        }
    }

    fn rows(&self) -> usize {
        match self {
            Weights::Lut(l) => l.rows,
            Weights::Mad(w) => w.rows(),
        }
    }

    fn cols(&self) -> usize {
        match self {
            Weights::Lut(l) => l.cols,
            Weights::Mad(w) => w.cols,
        }
    }
}

/// One token through several matrices of the same input (`cols` columns each) as one parallel
/// section: the activations are quantized once by the caller, LUT tables are built once, and
/// the tasks of every matrix are claimed from one counter, so the threads synchronize once
/// per group rather than once per matrix. Each `y` holds at least its matrix's rows.
pub(crate) fn gemv_many(
    k: &Kernels,
    par: &dyn Parallel,
    mats: &mut [(Weights<'_>, &mut [f32])],
    q: &Quantized,
) {
    assert!(!mats.is_empty() && mats.len() <= MAX_FUSED);
    let cols = mats[0].0.cols();
    let any_lut = mats.iter().any(|m| matches!(m.0, Weights::Lut(_)));
    let mut tables = vec![
        0u8;
        if any_lut {
            scalar::lut_tables_bytes(cols)
        } else {
            0
        }
    ];
    if any_lut {
        (k.ternary.lut_tables.f)(&q.qs[..cols], &mut tables);
    }
    let (act, d) = (q.act(0), q.d[0]);
    let gemv = k.ternary.lut_gemv.f;
    let tile_bytes = scalar::lut_tile_bytes(cols);
    /// One matrix's share of the section.
    struct Job<'a> {
        weights: Weights<'a>,
        rows: usize,
        out: SharedOut,
        /// Rows per task (a multiple of the tile height for LUT).
        chunk: usize,
    }
    let mut jobs: [Option<Job<'_>>; MAX_FUSED] = [None, None, None, None];
    let mut starts = [0usize; MAX_FUSED + 1];
    for (i, (weights, y)) in mats.iter_mut().enumerate() {
        assert_eq!(weights.cols(), cols, "fused matrices share their input");
        let multiple = match weights {
            Weights::Lut(_) => LUT_TILE_ROWS,
            Weights::Mad(_) => 1,
        };
        let rows = weights.rows();
        let chunk = rows_per_task(rows, par.threads(), multiple);
        starts[i + 1] = starts[i] + rows.div_ceil(chunk);
        jobs[i] = Some(Job {
            weights: *weights,
            rows,
            out: SharedOut::new(&mut y[..rows]),
            chunk,
        });
    }
    let n_jobs = mats.len();
    par.run(starts[n_jobs], &|task| {
        let i = (1..=n_jobs).find(|&i| task < starts[i]).unwrap_or(1) - 1;
        let Some(job) = &jobs[i] else { return };
        let task = task - starts[i];
        let (r0, r1) = (task * job.chunk, ((task + 1) * job.chunk).min(job.rows));
        // SAFETY: rows r0..r1 of matrix i belong to this task only and lie inside that
        // matrix's `y`, which outlives `run`.
        let ys = unsafe { job.out.slice(r0, r1 - r0) };
        match job.weights {
            Weights::Mad(w) => {
                let dot = k
                    .format(w.format)
                    .dot_q8_row
                    .expect("the integer path is chosen only with a row dot (has_integer_path)")
                    .f;
                let rb = w.row_bytes;
                for (r, yr) in (r0..r1).zip(ys) {
                    *yr = dot(&w.data[r * rb..(r + 1) * rb], &act) * d;
                }
            }
            Weights::Lut(lut) => {
                let ns = LUT_TILE_ROWS * blocks_per_row(job.weights.format(), cols);
                let mut res = [0.0f32; LUT_TILE_ROWS];
                // r0 is a multiple of the tile height (the chunk is).
                for (tile, ys) in (r0 / LUT_TILE_ROWS..).zip(ys.chunks_mut(LUT_TILE_ROWS)) {
                    gemv(
                        &lut.tiles[tile * tile_bytes..(tile + 1) * tile_bytes],
                        &tables,
                        &lut.scales[tile * ns..(tile + 1) * ns],
                        &mut res,
                    );
                    for (yr, v) in ys.iter_mut().zip(&res) {
                        *yr = v * d;
                    }
                }
            }
        }
    });
}

/// A batch on a repacked matrix: each task decodes its tiles back to codes once and runs the
/// batched kernel over all tokens.
fn lut_gemm(
    k: &Kernels,
    par: &dyn Parallel,
    lut: &LutMatrix,
    q: &Quantized,
    n: usize,
    y: &mut [f32],
) {
    let (rows, cols, y_stride) = (lut.rows, lut.cols, lut.rows);
    let nb = blocks_per_row(lut.format, cols);
    let (gemm, unpack) = (k.ternary.gemm_codes.f, k.ternary.lut_unpack.f);
    let tile_bytes = scalar::lut_tile_bytes(cols);
    let n_tiles = rows.div_ceil(LUT_TILE_ROWS);
    let acts: Vec<ActQ8Row<'_>> = (0..n).map(|t| q.act(t)).collect();
    let out = SharedOut::new(y);
    par.run(n_tiles, &|tile| {
        let r0 = tile * LUT_TILE_ROWS;
        let m = (rows - r0).min(LUT_TILE_ROWS);
        let mut codes = vec![0u8; LUT_TILE_ROWS * cols];
        unpack(
            &lut.tiles[tile * tile_bytes..(tile + 1) * tile_bytes],
            &mut codes,
        );
        // Tile scales are block-major; the batched kernel wants them row-major.
        let ts = &lut.scales[tile * LUT_TILE_ROWS * nb..(tile + 1) * LUT_TILE_ROWS * nb];
        let mut scales = vec![0.0f32; m * nb];
        for r in 0..m {
            for b in 0..nb {
                scales[r * nb + b] = ts[b * LUT_TILE_ROWS + r];
            }
        }
        let mut res = vec![0.0f32; m * n];
        gemm(&codes[..m * cols], m, &scales, &acts, &mut res);
        for t in 0..n {
            // SAFETY: (token t, rows r0..r0 + m) belong to this tile's task only and lie inside
            // `y` (n, y_stride); `y` outlives `run`.
            let ys = unsafe { out.slice(t * y_stride + r0, m) };
            for (yr, v) in ys.iter_mut().zip(&res[t * m..(t + 1) * m]) {
                *yr = v * q.d[t];
            }
        }
    });
}
