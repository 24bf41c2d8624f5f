//! The memory-bandwidth budget: decoding streams every weight once per token, so on a phone
//! (50–90 GB/s shared with everything else) bytes per token set the speed limit.

use tern_kernels::Format;

use crate::kv_cache::{KvCache, KvType};
use crate::matmul::ActivationPrecision;
use crate::model::Model;
use crate::weights::Repr;

/// A memory-bandwidth budget in GB/s (10⁹ bytes per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandwidthBudget {
    /// Bytes per second the app may stream, in GB/s.
    pub gbps: f64,
}

impl BandwidthBudget {
    /// A budget of `gbps` GB/s.
    pub fn new(gbps: f64) -> Self {
        BandwidthBudget { gbps }
    }

    /// The fastest decode the budget allows for a token that reads `bytes_per_token`.
    pub fn ceiling_tok_s(&self, bytes_per_token: u64) -> f64 {
        self.gbps * 1e9 / bytes_per_token as f64
    }

    /// The fraction of the budget a measured decode speed uses.
    pub fn fraction(&self, tok_s: f64, bytes_per_token: u64) -> f64 {
        tok_s * bytes_per_token as f64 / (self.gbps * 1e9)
    }
}

/// Bytes one decoded token reads at context position `pos` with a KV cache of `kv_type`:
/// every weight matrix, one embedding row, and the keys and values of `pos + 1` positions.
pub fn bytes_per_token(model: &Model, pos: usize, kv_type: KvType) -> u64 {
    let c = model.config();
    let windows = model.tensors().windows();
    model.tensors().weight_bytes_per_token()
        + KvCache::bytes_read_for(&windows, pos, c.kv_dim(), kv_type)
}

/// Bytes per token the model's matrices would read if stored as `format`, with rows that do
/// not divide into its blocks kept in `fallback` (as a quantizer would): the arithmetic behind
/// `tern plan`. The tied output head counts once, as the embedding's row read is negligible.
pub fn weight_bytes_as(model: &Model, format: Format, fallback: Format) -> u64 {
    let t = model.tensors();
    let size = |rows: usize, cols: usize| -> u64 {
        let rb = format
            .row_bytes(cols)
            .or_else(|| fallback.row_bytes(cols))
            .unwrap_or(cols * 4);
        (rb * rows) as u64
    };
    let layers: u64 = t
        .layers
        .iter()
        .flat_map(|l| l.matrices())
        .map(|m| size(m.t.rows, m.t.cols))
        .sum();
    layers + size(t.output.t.rows, t.output.t.cols)
}

/// Heap and resident bytes one session of `model` needs with `opts` (context 0 meaning the
/// model's default, as [`crate::Session::new`] reads it): what an app compares with the memory
/// the OS gives it before it opens a session.
///
/// It describes the model as the FFI loads it: when [`repacks_at_load`] (int8, no resident
/// cap), the matrices [`Model::repack_int8`] repacks count as repacked whether it has run or
/// not, so an estimate from a freshly parsed header is the loaded model's. The
/// repacked copy is the largest term it adds (the same bytes as the file's matrices); what it
/// takes away is the file pages repacking releases, where the weight holder frees them (a
/// memory map: [`crate::model::WeightBytes::frees_released`]; a copy in anonymous memory keeps
/// them). Repacking releases one slice at a time ([`crate::model::REPACK_SLICE_BYTES`]), so
/// the load's transient peak is within a slice of this.
///
/// Not counted: the tokenizer's tables (a few MB; about 16 MB for a 262,144-token
/// vocabulary), thread stacks, allocator slack and code, and the rows of a released tied
/// embedding while they are read (the forward pass releases them again): the FFI's test
/// bounds the whole difference on real models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionMemory {
    /// File bytes resident at once: the whole file in the address space (the tensors of a
    /// streamed model), less the tensors released after being repacked or delegated when the
    /// holder frees released pages, or about the resident cap when one applies.
    pub weights: u64,
    /// Weights repacked into heap buffers at load: ternary lookup-table tiles and, for int8
    /// sessions, the row-interleaved copies of [`Model::repack_int8`] (counted before it runs).
    pub repacked: u64,
    /// The KV cache (keys and values for every position of the context; sliding-window
    /// layers hold their window only).
    pub kv_cache: u64,
    /// Activations, scores and logits of the forward pass.
    pub scratch: u64,
}

impl SessionMemory {
    /// The estimate for `model` and `opts`.
    pub fn estimate(model: &Model, opts: &crate::SessionOptions) -> Self {
        let c = model.config();
        let ctx = crate::session::context_for(c, opts.context);
        let batch = crate::session::batch_for(opts.batch, ctx);
        let int8 = opts.precision.resolve(model.kernels()) == ActivationPrecision::Int8;
        let (pending_heap, pending_file) = match repacks_at_load(opts, model.kernels()) {
            true => model.repack_int8_pending(),
            false => (0, 0),
        };
        let frees = model.weight_bytes().is_some_and(|w| w.frees_released());
        let released = match frees {
            true => (released_bytes(model, int8) + pending_file) as u64,
            false => 0,
        };
        // A map holds the header's pages too (the tokenizer reads them at load).
        let file = model
            .weight_bytes()
            .map_or(model.meta().tensor_bytes, |w| w.bytes().len() as u64);
        let resident = file.saturating_sub(released);
        let weights = match opts.max_resident {
            0 => resident,
            cap => resident.min(cap as u64),
        };
        SessionMemory {
            weights,
            repacked: (model.tensors().repacked_bytes() + pending_heap) as u64,
            kv_cache: KvCache::bytes_for(
                ctx,
                &model.tensors().windows(),
                batch,
                c.kv_dim(),
                opts.kv_type,
            ),
            scratch: crate::forward::Scratch::bytes_for(model, ctx, batch),
        }
    }

    /// All of it.
    pub fn total(&self) -> u64 {
        self.weights + self.repacked + self.kv_cache + self.scratch
    }
}

/// Whether a model loaded for sessions with `opts` is repacked ([`Model::repack_int8`]):
/// when their precision resolves to int8 with `kernels` and no resident cap applies (a cap
/// keeps the weights in the file, where they can be released; a repacked copy would stay on
/// the heap). The FFI loads by this rule and [`SessionMemory::estimate`] assumes it.
pub fn repacks_at_load(opts: &crate::SessionOptions, kernels: &tern_kernels::Kernels) -> bool {
    opts.max_resident == 0 && opts.precision.resolve(kernels) == ActivationPrecision::Int8
}

/// File bytes of the matrices whose products no longer read them in a session with (`int8`)
/// or without int8 activations: released at load, so not resident on a memory map.
fn released_bytes(model: &Model, int8: bool) -> usize {
    let t = model.tensors();
    // A tied head is the embedding: a delegate keeps its pages for the embedding's rows.
    t.layers
        .iter()
        .flat_map(|l| l.matrices())
        .map(|m| (m, false))
        .chain([(&t.output, t.tied_output)])
        .filter(|(m, tied)| match m.repr() {
            Repr::Delegated(_) => !tied,
            Repr::TernaryLut(_) => int8 || m.int8_activations,
            Repr::Repacked(_) => int8,
            Repr::Gguf | Repr::TernaryMad => false,
        })
        .map(|(m, _)| m.t.len)
        .sum()
}

/// The memory budget for one session's KV cache and buffers when the app sets none: half
/// of the device's physical memory (`MemTotal` in `/proc/meminfo` on Linux and Android),
/// or [`FALLBACK_MEMORY_BUDGET`] where the runtime cannot ask (other systems, `no_std`).
///
/// Half, because the weights, the app and the system need the rest, and Android's
/// low-memory killer ends a foreground app well before it holds all of RAM; it is a guard
/// against a context length that cannot possibly fit (a 2²⁴-token KV cache is hundreds of
/// gigabytes), not a fine-grained limit: apps that know better set
/// [`crate::SessionOptions::memory_budget`].
pub fn default_memory_budget() -> u64 {
    physical_memory().map_or(FALLBACK_MEMORY_BUDGET, |total| total / 2)
}

/// The default budget where physical memory is unknown: 2 GiB, about half of a
/// low-end phone's RAM.
pub const FALLBACK_MEMORY_BUDGET: u64 = 2 << 30;

/// Physical memory in bytes, where the system tells.
#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(not(all(feature = "std", any(target_os = "linux", target_os = "android"))))]
fn physical_memory() -> Option<u64> {
    None
}
