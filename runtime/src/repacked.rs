//! Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0, Q5_1 and IQ4_XS matrices
//! (`tern_kernels::scalar::has_repacked`) repacked at load into row-interleaved block groups
//! (`tern_kernels::scalar::repack`), and their products with int8 activations. The kernels name
//! the layout (`Kernels::repacked_layout`: Q8_0 keeps its signed codes on NEON, which `sdot`
//! meets as stored, and is stored plus 128 for x86's `vpdpbusd`), and the matrix keeps it.
//!
//! The repacked form holds the same bytes as the GGUF rows in another order (eight rows
//! interleaved four bytes at a time; Q5's fifth bits regrouped to match), so one vector load
//! feeds eight rows' integer dot products with no per-call unpacking or transpose. IQ4_XS is
//! the exception in size: each 32-weight sub-block's scale `d·(sc − 32)` is stored as f32, 160
//! bytes per 8 rows × 32 columns where the file has 136 (`RepackedMatrix::bytes_for` counts
//! them, and with it the memory estimate and report).
//! `Kernels::gemm_repacked` computes exactly what `Kernels::gemm_i8` computes on the GGUF
//! bytes, so the choice changes speed, not results.
//! Measured (`cargo bench -p tern-kernels --bench repacked`, SmolLM2-135M shapes, one thread,
//! AVX512-VNNI): about 3× the GGUF layout's `gemm_q8` for one token and 1.2× `gemm_i8` for 128
//! tokens; AVX2 about 2.4× and 2.1× (Q4_0), 1.7× and 1.6× (Q8_0); on matrices that do not fit
//! in cache, one token runs the kernels' own one-token path at 2–3× the GEMM tile's bandwidth
//! (`-- dram`). So a repacked matrix uses it for decoding and prompts alike; products with f32
//! or f16 activations read the file's bytes.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use tern_kernels::scalar::{act_q8_bytes, repack, repacked_bytes, RepackedLayout, REPACK_ROWS};
use tern_kernels::Kernels;

use crate::parallel::{Parallel, SharedOut};
use crate::weights::{QMatrix, TensorRef};

/// A matrix in the repacked layout, on the heap.
#[derive(Clone)]
pub struct RepackedMatrix {
    layout: RepackedLayout,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl core::fmt::Debug for RepackedMatrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RepackedMatrix")
            .field("layout", &self.layout)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl RepackedMatrix {
    /// The layout `k` repacks `t` into, if `k` has the repacked GEMM and the format a repacked
    /// layout.
    fn layout_for(t: &TensorRef, k: &Kernels) -> Option<RepackedLayout> {
        if t.rows == 0 || !t.cols.is_multiple_of(32) {
            return None;
        }
        k.repacked_layout(t.format)
    }

    /// Heap bytes of `t` repacked, if `k` has the repacked GEMM and the format a repacked
    /// layout ([`RepackedMatrix::repack`] repacks exactly these): what memory estimates count
    /// before anything is repacked.
    pub fn bytes_for(t: &TensorRef, k: &Kernels) -> Option<usize> {
        Some(repacked_bytes(Self::layout_for(t, k)?, t.rows, t.cols))
    }

    /// The matrix repacked, if `k` has the repacked GEMM and the format a repacked layout.
    pub fn repack(m: QMatrix<'_>, k: &Kernels) -> Option<Self> {
        Self::repack_releasing(m, k, usize::MAX, &mut |_| {})
    }

    /// [`RepackedMatrix::repack`] a slice of about `slice_bytes` source bytes at a time (whole
    /// groups of [`REPACK_ROWS`] rows), calling `release` with each slice's byte range in
    /// `m.data` once it is copied: a caller that frees those file pages there holds one slice
    /// of the source at a time instead of the whole matrix beside its copy (Gemma 3 270M's
    /// 178 MB tied head). The result does not depend on the slicing.
    pub fn repack_releasing(
        m: QMatrix<'_>,
        k: &Kernels,
        slice_bytes: usize,
        release: &mut dyn FnMut(Range<usize>),
    ) -> Option<Self> {
        let (rows, cols) = (m.t.rows, m.t.cols);
        let layout = Self::layout_for(&m.t, k)?;
        let mut data = vec![0u8; repacked_bytes(layout, rows, cols)];
        let row_bytes = m.data.len() / rows;
        let group_src = REPACK_ROWS * row_bytes;
        let group_dst = repacked_bytes(layout, REPACK_ROWS, cols);
        let groups_per_slice = (slice_bytes / group_src).max(1);
        let mut r0 = 0;
        while r0 < rows {
            let n = (groups_per_slice * REPACK_ROWS).min(rows - r0);
            let src = r0 * row_bytes..(r0 + n) * row_bytes;
            let dst = r0 / REPACK_ROWS * group_dst;
            let out = &mut data[dst..dst + repacked_bytes(layout, n, cols)];
            repack(layout, &m.data[src.clone()], n, out);
            release(src);
            r0 += n;
        }
        Some(RepackedMatrix {
            layout,
            rows,
            cols,
            data,
        })
    }

    /// Heap bytes.
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
    }

    /// The layout the bytes are in.
    pub fn layout(&self) -> RepackedLayout {
        self.layout
    }
}

/// Rows per task: about four tasks per thread, a multiple of 32 rows (the widest tile), at
/// least 32 and at most 512.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads)
        .clamp(32, 512)
        .next_multiple_of(32)
}

/// `y (n, rows) = x (n, cols) · Wᵀ` with int8 activations (quantized here, once).
pub(crate) fn project(
    k: &Kernels,
    par: &dyn Parallel,
    w: &RepackedMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    project_many(k, par, x, n, &mut [(w, y)]);
}

/// [`project`] for several matrices of the same input (Q, K, V; gate, up) as one parallel
/// section: the activations are quantized once and the tasks of every matrix claimed from one
/// counter. Every matrix has `cols` columns, and each `y` holds `n · rows` outputs.
pub(crate) fn project_many(
    k: &Kernels,
    par: &dyn Parallel,
    x: &[f32],
    n: usize,
    mats: &mut [(&RepackedMatrix, &mut [f32])],
) {
    let gemm = k
        .gemm_repacked
        .expect("a matrix is repacked only when the kernels have the GEMM");
    let Some(cols) = mats.first().map(|(w, _)| w.cols) else {
        return;
    };
    assert!(mats
        .iter()
        .all(|(w, y)| w.cols == cols && y.len() >= n * w.rows));
    let qb = act_q8_bytes(cols);
    let mut xq = vec![0u8; n * qb];
    for (xt, qt) in x[..n * cols]
        .chunks_exact(cols)
        .zip(xq.chunks_exact_mut(qb))
    {
        (k.quantize_act_q8.f)(xt, qt);
    }
    // (matrix, rows per task, first task, its output)
    let jobs: Vec<(&RepackedMatrix, usize, usize, SharedOut)> = mats
        .iter_mut()
        .scan(0, |first, (w, y)| {
            // One thread decoding gains nothing from splitting a matrix into tasks: each
            // call re-reads the activations' block sums.
            let chunk = if n == 1 && par.threads() == 1 {
                w.rows
            } else {
                rows_per_task(w.rows, par.threads())
            };
            let job = (*w, chunk, *first, SharedOut::new(&mut y[..n * w.rows]));
            *first += w.rows.div_ceil(chunk);
            Some(job)
        })
        .collect();
    let tasks = jobs
        .last()
        .map_or(0, |(w, chunk, first, _)| first + w.rows.div_ceil(*chunk));
    par.run(tasks, &|task| {
        let Some((w, chunk, first, out)) = jobs.iter().rev().find(|j| j.2 <= task) else {
            return;
        };
        let (rows, chunk) = (w.rows, *chunk);
        let r0 = (task - first) * chunk;
        let m = chunk.min(rows - r0);
        let group_bytes = repacked_bytes(w.layout, REPACK_ROWS, cols);
        let wt = &w.data[r0 / REPACK_ROWS * group_bytes..][..repacked_bytes(w.layout, m, cols)];
        if n == 1 {
            // SAFETY: tasks own disjoint columns r0..r0 + m of the matrix's one output row,
            // inside its `y`, which outlives the parallel section.
            let yt = unsafe { out.slice(r0, m) };
            (gemm.f)(w.layout, wt, m, cols, &xq, 1, yt, m);
        } else {
            let mut buf = vec![0.0f32; n * m];
            (gemm.f)(w.layout, wt, m, cols, &xq, n, &mut buf, m);
            for (t, bt) in buf.chunks_exact(m).enumerate() {
                // SAFETY: (token t, columns r0..r0 + m) of this matrix belong to this task
                // only and lie inside its `y`, which outlives the parallel section.
                unsafe { out.slice(t * rows + r0, m) }.copy_from_slice(bt);
            }
        }
    });
}

#[cfg(all(test, feature = "std"))]
mod tests {
    //! Whole small models (`tests/reference/make_arch_models.py`) and the real Qwen2.5-Coder-0.5B
    //! with their repacked matrices (Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0,
    //! Q5_1) against the same model on its GGUF bytes, both at int8 precision.

    extern crate std;

    use alloc::sync::Arc;
    use std::path::PathBuf;

    use super::*;
    use crate::matmul::ActivationPrecision;
    use crate::model::Model;
    use crate::weights::Repr;
    use crate::{Session, SessionOptions};

    /// The real Qwen2.5-Coder-0.5B-Instruct Q4_K_M (`scripts/fetch-models.sh`): its 896-wide
    /// matrices are Q5_0.
    const QWEN_05B: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

    /// The CPU's best kernels, or the scalar ones where the best have no repacked GEMM (plain
    /// NEON): the scalar reference has it, so the layout is tested on every CPU.
    fn kernels() -> Kernels {
        let best = Kernels::best();
        if best.gemm_repacked.is_some() {
            best
        } else {
            Kernels::scalar()
        }
    }

    fn model(name: &str, repack: bool) -> Option<Model> {
        model_with(name, repack, kernels())
    }

    fn model_with(name: &str, repack: bool, kernels: Kernels) -> Option<Model> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        assert!(
            path.exists(),
            "{} is missing (run tests/reference/make_arch_models.sh)",
            path.display()
        );
        let mut m = Model::open(&path, kernels).expect("model loads");
        if repack {
            let bytes = m.repack_int8();
            assert!(bytes > 0, "{name}: nothing repacked");
            assert_eq!(
                m.tensors().repacked_bytes(),
                bytes,
                "counted in the memory report"
            );
            // A tied head in a repackable format is repacked like any other matrix (the
            // embedding keeps reading its rows from the file bytes).
            let t = m.tensors();
            if t.tied_output && tern_kernels::scalar::has_repacked(t.output.t.format) {
                assert!(
                    matches!(t.output.repr(), Repr::Repacked(_)),
                    "{name}: the tied output head was not repacked"
                );
            }
        }
        Some(m)
    }

    /// Repacking slice by slice gives the whole matrix's bytes, and the released ranges cover
    /// its source bytes once, in order: one group per slice, a few groups, and one slice.
    #[test]
    fn repacking_in_slices_equals_repacking_whole() {
        let m = model("qwen2_small.gguf", false).unwrap();
        let file = m.weight_bytes().unwrap().bytes();
        let t = m.tensors();
        let mut seen = 0;
        for w in t.layers[0].matrices().into_iter().chain([&t.output]) {
            let Some(whole) = RepackedMatrix::repack(w.t.view(file), m.kernels()) else {
                continue;
            };
            assert_eq!(
                Some(whole.heap_bytes()),
                RepackedMatrix::bytes_for(&w.t, m.kernels())
            );
            seen += 1;
            let group = REPACK_ROWS * w.t.row_bytes();
            for slice in [1, 3 * group + 1, usize::MAX] {
                let mut ranges = Vec::new();
                let sliced = RepackedMatrix::repack_releasing(
                    w.t.view(file),
                    m.kernels(),
                    slice,
                    &mut |r| ranges.push(r),
                )
                .unwrap();
                assert!(sliced.data == whole.data, "{:?} slice {slice}", w.t);
                let mut end = 0;
                for r in &ranges {
                    assert_eq!(r.start, end);
                    end = r.end;
                }
                assert_eq!(end, w.t.len);
            }
        }
        assert!(seen > 0, "nothing repackable in qwen2_small");
    }

    /// Logits of a 24-token prompt, then of three tokens fed one at a time, at int8.
    fn logits(m: Model) -> Vec<Vec<f32>> {
        let prompt: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 200 + 3).collect();
        let options = SessionOptions {
            context: 64,
            precision: ActivationPrecision::Int8,
            ..Default::default()
        };
        let mut s = Session::new(Arc::new(m), &options).unwrap();
        let mut out = vec![s.feed(&prompt).unwrap().to_vec()];
        for t in [7u32, 11, 13] {
            out.push(s.feed(&[t]).unwrap().to_vec());
        }
        out
    }

    /// Whole models: the logits agree with the GGUF layout's. With NEON dotprod or i8mm every
    /// int8 tile of the GGUF layout runs `scalar::gemm_i8`'s arithmetic, as the repacked layout
    /// does, so the two agree bit for bit. Elsewhere (x86, and the scalar tables plain NEON
    /// falls back to) the GGUF layout's `gemm_q8` (fewer than four tokens, the output head)
    /// sums the same exact integer terms in another order: float rounding, carried
    /// through the layers, within 1e-5 of the largest logit (seen: below 1e-6). A rounding
    /// difference can also move an activation across a .5 code boundary when it is requantized
    /// to int8, which moves a small model's logits by ~1e-2 (seen under qemu on gemma3_small
    /// before the NEON tiles summed as `gemm_i8`); the bound would catch that. The exact
    /// per-product agreement is the next test.
    #[test]
    fn repacked_models_compute_what_the_gguf_layout_computes() {
        for name in ["llama3_small.gguf", "qwen2_small.gguf", "gemma3_small.gguf"] {
            let Some(plain) = model(name, false) else {
                continue;
            };
            let want = logits(plain);
            let got = logits(model(name, true).unwrap());
            for (step, (g, w)) in got.iter().zip(&want).enumerate() {
                let top = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                let worst = g.iter().zip(w).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                std::eprintln!("{name} step {step}: largest |Δ| {worst:.2e} (max |logit| {top})");
                // gemma3_small off the bit-exact NEON path: its tied head is repacked too,
                // and x86's GGUF-layout `gemm_q8` sums in another order than `gemm_i8`; on this
                // random model such a rounding difference flips int8 codes across a .5
                // boundary (the mechanism found under qemu, above) and the logits move by up to
                // 2.4 % of the largest (seen on x86_64: 0.38 of 16.0 at the second decoded
                // token; any two head kernels differ as much, while each product alone equals
                // its reference, the repacked one `gemm_i8` bit for bit in the next test).
                let bit_exact =
                    cfg!(target_arch = "aarch64") && Kernels::best().gemm_repacked.is_some();
                let bound = if name == "gemma3_small.gguf" && !bit_exact {
                    5e-2
                } else {
                    1e-5
                };
                assert!(worst <= bound * top, "{name} step {step}: {worst}");
                if bit_exact {
                    assert!(
                        g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{name} step {step}: not bit for bit"
                    );
                }
            }
        }
    }

    /// Every repacked matrix of a layer and the output head, through `Matrix::project` at int8
    /// with 1 and 24 tokens and two threads, equals `scalar::gemm_i8` on its GGUF bytes bit for
    /// bit. The real Qwen2.5-Coder-0.5B Q4_K_M brings Q5_0 (its 896-wide matrices); natively
    /// only: on aarch64, which CI runs under qemu, repacking its 400 MB costs 20-40 s, and the
    /// NEON Q5_0 paths are checked on random inputs in `tests/repacked_kernels.rs`.
    #[test]
    fn one_projection_equals_gemm_i8_on_the_file_bytes() {
        use crate::feed::SliceFeed;
        use crate::matrix::Exec;
        use crate::pool::ThreadPool;

        for name in [
            "llama3_small.gguf",
            "qwen2_small.gguf",
            "gemma3_small.gguf",
            QWEN_05B,
        ] {
            if name == QWEN_05B && cfg!(target_arch = "aarch64") {
                continue;
            }
            let Some(m) = model(name, true) else {
                return;
            };
            let pool = ThreadPool::new(2).expect("threads start");
            let file = m.weight_bytes().unwrap().bytes();
            let reference = Kernels::scalar();
            let (mut seen, mut formats) = (0, Vec::new());
            // Layer 0's matrices, and the output head (tied in qwen2_small and gemma3_small).
            // Qwen2.5-0.5B is here for its Q5_0 matrices: its 151936-row Q8_0 head is a format
            // the small models cover, and its scalar reference alone takes seconds.
            let t = m.tensors();
            let head = (name != QWEN_05B).then_some(&t.output);
            for w in t.layers[0].matrices().into_iter().chain(head) {
                if !matches!(w.repr(), Repr::Repacked(_)) {
                    continue;
                }
                seen += 1;
                let t = w.t;
                formats.push(t.format);
                if let Repr::Repacked(r) = w.repr() {
                    // The kernels' layout: Q8_0 signed on NEON dotprod / i8mm.
                    assert_eq!(Some(r.layout()), m.kernels().repacked_layout(t.format));
                }
                for n in [1usize, 24] {
                    let x: Vec<f32> = (0..n * t.cols)
                        .map(|i| ((i * 7919 + 13) % 1000) as f32 / 250.0 - 2.0)
                        .collect();
                    let mut y = vec![f32::NAN; n * t.rows];
                    let mut feed = SliceFeed::new(m.weight_bytes().unwrap(), None);
                    let ex = Exec {
                        k: m.kernels(),
                        par: &pool,
                        precision: ActivationPrecision::Int8,
                    };
                    w.project(&mut feed, ex, &x, n, &mut y).unwrap();
                    let qb = act_q8_bytes(t.cols);
                    let mut xq = vec![0u8; n * qb];
                    for (xt, q) in x.chunks_exact(t.cols).zip(xq.chunks_exact_mut(qb)) {
                        (m.kernels().quantize_act_q8.f)(xt, q);
                    }
                    let mut want = vec![0f32; n * t.rows];
                    let bytes = &file[t.offset..t.offset + t.len];
                    reference.gemm_i8(t.format, bytes, t.rows, &xq, n, &mut want, t.rows);
                    for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{name} {:?} {}x{} n={n} at {i}",
                            t.format,
                            t.rows,
                            t.cols
                        );
                    }
                }
            }
            assert!(seen > 0, "layer 0 has repacked matrices");
            if name == QWEN_05B {
                assert!(formats.contains(&tern_kernels::Format::Q5_0), "{formats:?}");
            }
        }
    }
}
