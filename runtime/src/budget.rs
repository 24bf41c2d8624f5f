//! The memory-bandwidth budget: decoding streams every weight once per token, so on a phone
//! (50–90 GB/s shared with everything else) bytes per token set the speed limit.

use tern_kernels::Format;

use crate::kv_cache::{KvCache, KvType};
use crate::model::Model;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionMemory {
    /// Weight bytes resident at once: the whole model, or about the cap when one applies.
    pub weights: u64,
    /// Weights repacked into heap buffers at load (ternary lookup-table tiles).
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
        let tensors = model.meta().tensor_bytes;
        let weights = match opts.max_resident {
            0 => tensors,
            cap => tensors.min(cap as u64),
        };
        SessionMemory {
            weights,
            repacked: model.tensors().repacked_bytes() as u64,
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
