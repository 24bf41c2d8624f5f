//! Loading a model from a path or a file descriptor, its options and what it reports.

use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex};

use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};
use tern_kernels::Kernels;
use tern_runtime::budget::SessionMemory;
use tern_runtime::constrain::ConstraintVocab;
use tern_runtime::fs::WeightMemory;
use tern_runtime::model::{Residency, WeightBytes};
use tern_runtime::pool::ThreadPool;
use tern_runtime::{ActivationPrecision, KvType};

use crate::channel::Queue;
use crate::delegate::{DelegateDecision, DelegateOptions};
use crate::error::TernError;

/// How a model's sessions run. `Default` matches the bindings' defaults.
#[derive(Clone, Debug, Default, PartialEq, uniffi::Record)]
pub struct ModelOptions {
    /// Threads each session computes on; 0 uses every core the system reports.
    #[uniffi(default = 0)]
    pub threads: u32,
    /// Context length of each session in tokens; 0 uses the model's own, capped at 4096. At
    /// most the model's trained context.
    #[uniffi(default = 0)]
    pub context_length: u32,
    /// How activations meet quantized weights; `null`/`nil` is the runtime's default: `Int8`
    /// where the CPU has fast int8 dot products (ARMv8.2 dotprod, x86 AVX2), `F32` elsewhere.
    /// Ask for `F32` for the most accurate logits. With `Int8` (and no resident cap) loading
    /// repacks the matrices in formats with a repacked layout (Q4_0, Q4_1, Q8_0, ...) into
    /// heap copies that run 1.5–3× faster and releases their file pages: the memory moves from
    /// the file's pages to the heap ([`estimate_memory`] counts it).
    #[uniffi(default = None)]
    pub activation_precision: Option<Precision>,
    /// How the KV cache stores keys and values; `null`/`nil` is the runtime's default (`F16`,
    /// half the memory of `F32`).
    #[uniffi(default = None)]
    pub kv_cache_precision: Option<KvCachePrecision>,
    /// Cap in bytes on the weights a session keeps resident; 0 is no cap. When the model's
    /// tensors exceed it, each layer's weights are released after use and read back from the
    /// file on the next token: slower, but a model larger than the cap still runs. A cap also
    /// keeps the file memory-mapped (without one, desktop Linux copies small models into huge
    /// pages for `F32`/`F16` sessions, which is faster but stays resident) and the weights in
    /// the file's layout (no int8 repacking, whose heap copy a cap could not release).
    #[uniffi(default = 0)]
    pub max_resident_bytes: u64,
    /// Memory in bytes one session may use (resident weights, KV cache, buffers); 0 is no
    /// limit. Loading fails with `OutOfMemoryBudget` when a session would need more: lower
    /// `context_length`, set `max_resident_bytes`, or pick a smaller model.
    #[uniffi(default = 0)]
    pub memory_budget_bytes: u64,
    /// Memory bandwidth in GB/s the app grants decoding (phones: 50–90 shared with
    /// everything else); `null`/`nil` is none. [`GenerationStats`](crate::GenerationStats)
    /// then report the decode speed it allows and the fraction of it reached.
    #[uniffi(default = None)]
    pub bandwidth_budget_gbps: Option<f64>,
    /// Runs the layer projections it can take on an NPU delegate (docs/npu.md), applied once
    /// at load; `null`/`nil` is the CPU only (the default). A missing library fails the load
    /// with `DelegateUnavailable`, a graph the NPU refuses with `DelegateFailed`; what it
    /// took: [`Model::delegate_decisions`].
    #[uniffi(default = None)]
    pub delegate: Option<DelegateOptions>,
}

impl ModelOptions {
    /// The runtime's session options for these.
    pub(crate) fn session_options(&self) -> tern_runtime::SessionOptions {
        tern_runtime::SessionOptions {
            context: self.context_length as usize,
            precision: self
                .activation_precision
                .map(Into::into)
                .unwrap_or_default(),
            max_resident: usize::try_from(self.max_resident_bytes).unwrap_or(usize::MAX),
            kv_type: self.kv_cache_precision.map(Into::into).unwrap_or_default(),
            memory_budget: self.memory_budget_bytes,
            ..tern_runtime::SessionOptions::default()
        }
    }
}

/// How activations meet quantized weights in the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Precision {
    /// Weights are dequantized on the fly against f32 activations: the most accurate.
    F32,
    /// Activations are quantized to int8 per block and meet the weights in integer dot
    /// products: faster, slightly less accurate.
    Int8,
    /// Activations are converted to f16 and meet the weights in half-precision arithmetic on
    /// phones that have it (ARMv8.2 FP16, Cortex-A55/A75 and later): faster than f32, a little
    /// less accurate; elsewhere the same as [`Precision::F32`].
    F16,
}

impl From<Precision> for ActivationPrecision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => ActivationPrecision::F32,
            Precision::Int8 => ActivationPrecision::Int8,
            Precision::F16 => ActivationPrecision::F16,
        }
    }
}

/// How the KV cache stores the keys and values of past positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum KvCachePrecision {
    /// Half precision: half the memory and attention bandwidth of `F32`, rounded once when
    /// stored (llama.cpp's default too).
    F16,
    /// Single precision: exact, twice the memory.
    F32,
}

impl From<KvCachePrecision> for KvType {
    fn from(p: KvCachePrecision) -> Self {
        match p {
            KvCachePrecision::F16 => KvType::F16,
            KvCachePrecision::F32 => KvType::F32,
        }
    }
}

/// What a loaded model is.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct ModelInfo {
    /// `general.name` from the file, if it has one.
    pub name: Option<String>,
    /// The architecture, e.g. `llama`.
    pub architecture: String,
    /// Parameters (weights) in all tensors.
    pub parameter_count: u64,
    /// The most common matrix format, e.g. `Q4_1`.
    pub quantization: String,
    /// The context length the model was trained with.
    pub context_length: u32,
    /// Bytes of weights one generated token reads: with the phone's memory bandwidth, this
    /// bounds tokens per second.
    pub bytes_per_token: u64,
    /// Whether the file carries a chat template.
    pub has_chat_template: bool,
    /// Tokens in the vocabulary.
    pub vocab_size: u32,
}

/// Where a model's GGUF bytes are.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ModelSource {
    /// A file on disk.
    Path {
        /// The file's path.
        path: String,
    },
    /// A region of an open file, e.g. an uncompressed Android asset inside the APK.
    Fd {
        /// The descriptor; it stays the caller's and may be closed once loading returns.
        fd: i32,
        /// Where the GGUF bytes start in the file.
        offset: u64,
        /// How many bytes they span.
        length: u64,
    },
}

/// Receives load progress from [`load_model`], on the loading thread.
#[uniffi::export(callback_interface)]
pub trait LoadProgress: Send + Sync {
    /// The fraction of loading done, from 0 to 1 (header parsed, layers validated, tokenizer
    /// built); the last call reports 1.
    fn on_progress(&self, fraction: f32);
}

/// A loaded model. Immutable: share one between threads and create several [`crate::Session`]s
/// on it; the weights are memory-mapped once.
#[derive(uniffi::Object)]
pub struct Model {
    pub(crate) inner: Arc<tern_runtime::Model>,
    pub(crate) options: ModelOptions,
    /// The constraint engine's view of the vocabulary, built by the first conversation that
    /// declares tools (about a second for a 150k-token vocabulary) and shared by the rest.
    constraint_vocab: Mutex<Option<Arc<ConstraintVocab>>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("inner", &self.inner)
            .field("options", &self.options)
            .finish()
    }
}

#[uniffi::export]
impl Model {
    /// Memory-maps the GGUF file at `path` and validates it. Blocks for as long as validation
    /// takes (milliseconds for small models); call it off the main thread, or use
    /// [`load_model`].
    #[uniffi::constructor(default(options))]
    pub fn new(path: String, options: ModelOptions) -> Result<Arc<Self>, TernError> {
        Self::load(&ModelSource::Path { path }, options, None).map(Arc::new)
    }

    /// Maps `length` bytes at `offset` of the open file `fd` (an Android asset's descriptor,
    /// for instance) and loads them. `fd` stays the caller's; it may be closed once this
    /// returns.
    #[uniffi::constructor(default(options))]
    pub fn open_fd(
        fd: i32,
        offset: u64,
        length: u64,
        options: ModelOptions,
    ) -> Result<Arc<Self>, TernError> {
        Self::load(&ModelSource::Fd { fd, offset, length }, options, None).map(Arc::new)
    }

    /// What the model is.
    pub fn info(&self) -> ModelInfo {
        let m = &self.inner;
        let (config, meta) = (m.config(), m.meta());
        ModelInfo {
            name: meta.name.clone(),
            architecture: config.arch.name().to_string(),
            parameter_count: meta.n_params,
            quantization: meta.main_format.clone(),
            context_length: saturate_u32(config.train_context),
            bytes_per_token: m.tensors().weight_bytes_per_token(),
            has_chat_template: meta.chat_template.is_some(),
            vocab_size: saturate_u32(config.vocab),
        }
    }

    /// The options the model was loaded with.
    pub fn options(&self) -> ModelOptions {
        self.options.clone()
    }

    /// What the NPU delegate of [`ModelOptions::delegate`] decided at load, per layer (its FFN
    /// block, then Q, K, V, O, gate, up, down), then the output head; empty without a delegate.
    pub fn delegate_decisions(&self) -> Vec<DelegateDecision> {
        self.inner
            .delegate_decisions()
            .iter()
            .map(DelegateDecision::from)
            .collect()
    }

    /// Tokens `text` encodes to as plain text (no BOS, special-token strings stay text): what
    /// a message's content costs in the context, before the template's markers.
    pub fn count_tokens(&self, text: String) -> u32 {
        saturate_u32(self.inner.tokenizer().encode(&text, false, false).len())
    }
}

/// Memory one session of a model would use, by part, from [`estimate_memory`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MemoryEstimate {
    /// File bytes resident at once: the whole file, less the matrices repacked at load (their
    /// pages are released), or about the resident cap.
    pub weights_bytes: u64,
    /// Weights repacked into heap buffers at load (int8 sessions: about the size of the
    /// matrices repacked).
    pub repacked_bytes: u64,
    /// The KV cache for the whole context.
    pub kv_cache_bytes: u64,
    /// Activations, scores and logits of the forward pass.
    pub scratch_bytes: u64,
    /// The sum: compare it with the device's free memory before loading. Measured on SmolLM2
    /// 135M and Gemma 3 270M, the peak a load and a session filling its context add is 6–10 %
    /// more (the tokenizer's tables, thread stacks, allocator slack are not counted).
    pub total_bytes: u64,
}

/// What loading `source` with `options` and running one session would take in memory, without
/// loading it: the file's header is read (its weights are mapped, not read), so an app can
/// pick a model and context length that fit the device instead of failing at load. It counts
/// what loading will do: an int8 load repacks (see [`ModelOptions::activation_precision`]).
#[uniffi::export(default(options))]
pub fn estimate_memory(
    source: ModelSource,
    options: ModelOptions,
) -> Result<MemoryEstimate, TernError> {
    let bytes: Box<dyn WeightBytes> = match &source {
        ModelSource::Path { path } => Box::new(map_path(path)?),
        ModelSource::Fd { fd, offset, length } => Box::new(map_fd(*fd, *offset, *length)?),
    };
    let inner = tern_runtime::Model::from_bytes_with_progress(bytes, Kernels::best(), &mut |_| {})?;
    let m = SessionMemory::estimate(&inner, &options.session_options());
    Ok(MemoryEstimate {
        weights_bytes: m.weights,
        repacked_bytes: m.repacked,
        kv_cache_bytes: m.kv_cache,
        scratch_bytes: m.scratch,
        total_bytes: m.total(),
    })
}

impl Model {
    /// A runtime session with these options on its own thread pool: the one place the FFI's
    /// sessions and conversations are made, so both fail the same way.
    pub(crate) fn runtime_session(&self) -> Result<tern_runtime::Session, TernError> {
        let threads = match self.options.threads {
            0 => ThreadPool::available_threads(),
            n => n as usize,
        };
        let pool = ThreadPool::new(threads)?;
        Ok(tern_runtime::Session::with_parallel(
            Arc::clone(&self.inner),
            &self.options.session_options(),
            Box::new(pool),
        )?)
    }

    /// The vocabulary for constrained decoding: built once, on first use, then shared (a
    /// same `Arc`). Concurrent first callers wait for the one build.
    pub(crate) fn constraint_vocab(&self) -> Result<Arc<ConstraintVocab>, TernError> {
        let mut cached = self
            .constraint_vocab
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(v) = &*cached {
            return Ok(Arc::clone(v));
        }
        let vocab = Arc::new(ConstraintVocab::new(
            self.inner.tokenizer(),
            self.inner.config().vocab,
        )?);
        *cached = Some(Arc::clone(&vocab));
        Ok(vocab)
    }

    /// Maps (or copies, see [`copy_path`]) `source` and validates it, reporting progress.
    pub(crate) fn load(
        source: &ModelSource,
        options: ModelOptions,
        progress: Option<&dyn LoadProgress>,
    ) -> Result<Self, TernError> {
        let mut report = |fraction: f32| {
            if let Some(p) = progress {
                p.on_progress(fraction);
            }
        };
        use tern_runtime::Model as Inner;
        let mapped = |bytes: Box<dyn WeightBytes>, report: &mut dyn FnMut(f32)| {
            Inner::from_bytes_with_progress(bytes, Kernels::best(), report)
        };
        // A path is copied into huge pages where the runtime's `WeightMemory::Auto` says it
        // pays (desktop Linux; never on phones), unless a resident cap needs a map to release.
        let mut inner = match source {
            ModelSource::Path { path } if copy_path(path, &options) => Inner::open_with(
                Path::new(path),
                Kernels::best(),
                WeightMemory::Copy,
                &mut report,
            )?,
            ModelSource::Path { path } => mapped(Box::new(map_path(path)?), &mut report)?,
            ModelSource::Fd { fd, offset, length } => {
                mapped(Box::new(map_fd(*fd, *offset, *length)?), &mut report)?
            }
        };
        let trained = inner.config().train_context;
        if options.context_length as usize > trained {
            return Err(TernError::InvalidArgument {
                reason: format!(
                    "context_length {} exceeds the model's trained context {trained}",
                    options.context_length
                ),
            });
        }
        if let Some(gbps) = options.bandwidth_budget_gbps {
            if !(gbps.is_finite() && gbps > 0.0) {
                return Err(TernError::InvalidArgument {
                    reason: format!("bandwidth_budget_gbps must be positive, got {gbps}"),
                });
            }
        }
        // Before sessions exist, as `tern --delegate` does; before the budget, which counts the
        // weights left on the CPU.
        if let Some(d) = &options.delegate {
            crate::delegate::apply(d, &mut inner)?;
        }
        // Int8 sessions (asked for, or the default where the CPU has fast int8 dots) run the
        // formats with a repacked layout on row-interleaved copies, as `tern` does; the map's
        // pages of what was repacked are released, which `SessionMemory` counts.
        if repacks(&options) {
            inner.repack_int8();
        }
        if options.memory_budget_bytes != 0 {
            let needed = SessionMemory::estimate(&inner, &options.session_options());
            if needed.total() > options.memory_budget_bytes {
                return Err(TernError::OutOfMemoryBudget {
                    needed_bytes: needed.total(),
                    budget_bytes: options.memory_budget_bytes,
                    reason: format!(
                        "weights {} + repacked {} + KV cache {} + buffers {} bytes",
                        needed.weights, needed.repacked, needed.kv_cache, needed.scratch
                    ),
                });
            }
        }
        Ok(Model {
            inner: Arc::new(inner),
            options,
            constraint_vocab: Mutex::new(None),
        })
    }
}

/// Loads a model on a background thread, so a coroutine or Swift task can await it, reporting
/// progress to `progress` if given.
#[uniffi::export(default(progress = None, options))]
pub async fn load_model(
    source: ModelSource,
    options: ModelOptions,
    progress: Option<Box<dyn LoadProgress>>,
) -> Result<Arc<Model>, TernError> {
    let done = Arc::new(Queue::new());
    let tx = Arc::clone(&done);
    std::thread::Builder::new()
        .name("tern-load".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                Model::load(&source, options, progress.as_deref())
            }))
            .unwrap_or_else(|p| Err(TernError::from_panic(&*p)));
            tx.push(result.map(Arc::new));
            tx.close();
        })
        .map_err(|e| TernError::Internal {
            reason: format!("cannot start the loader thread: {e}"),
        })?;
    done.pop().await.unwrap_or_else(|| {
        Err(TernError::Internal {
            reason: "the loader thread ended without a result".into(),
        })
    })
}

/// A read-only memory map of a GGUF file or of a region of one.
struct MappedRegion(Mmap);

impl WeightBytes for MappedRegion {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn advise(&self, offset: usize, len: usize, residency: Residency) {
        // Hints only, as for the runtime's own `MappedFile`: a failure changes nothing.
        let _ = match residency {
            Residency::WillNeed => self.0.advise_range(Advice::WillNeed, offset, len),
            // SAFETY: the map is private and read-only, so no modification can be lost:
            // dropped pages are read back from the file when next touched.
            Residency::DontNeed => unsafe {
                self.0
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len)
            },
        };
    }

    fn frees_released(&self) -> bool {
        true
    }
}

/// Whether [`Model::load`] repacks: int8 sessions without a resident cap, the rule
/// `SessionMemory::estimate` counts by.
fn repacks(options: &ModelOptions) -> bool {
    tern_runtime::budget::repacks_at_load(&options.session_options(), &Kernels::best())
}

/// Whether [`Model::load`] copies the file at `path` rather than mapping it (a missing or
/// unreadable path is left to the map, whose errors name the problem). Never when it repacks:
/// a copy cannot release what was repacked, and would hold those bytes twice (a map of
/// Gemma 3 270M keeps 73 of its 253 MB once its tied head and Q8_0 layers are repacked).
fn copy_path(path: &str, options: &ModelOptions) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.is_file()
        && options.max_resident_bytes == 0
        && !repacks(options)
        && WeightMemory::Auto.resolve(meta.len()) == WeightMemory::Copy
}

fn map_path(path: &str) -> Result<MappedRegion, TernError> {
    let file = File::open(path).map_err(|e| TernError::io(path, &e))?;
    // SAFETY: the map is read-only and private to this process. Another process truncating or
    // rewriting the file while it is mapped would change the bytes under us (or fault); model
    // files are not edited in place while they run, the risk every mmap-based runtime accepts.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| TernError::io(path, &e))?;
    tern_runtime::fs::advise_huge_pages(&map);
    Ok(MappedRegion(map))
}

fn map_fd(fd: RawFd, offset: u64, length: u64) -> Result<MappedRegion, TernError> {
    let name = format!("fd {fd}");
    if fd < 0 {
        return Err(TernError::InvalidArgument {
            reason: format!("{name} is not a file descriptor"),
        });
    }
    if length == 0 {
        return Err(TernError::InvalidArgument {
            reason: "length is 0".into(),
        });
    }
    // SAFETY: the caller passes a descriptor it keeps open for the duration of this call (the
    // documented contract of `Model::open_fd`); it is only borrowed to duplicate it, and a
    // number that is not open makes the duplication fail with EBADF, reported as an error.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let file = File::from(
        borrowed
            .try_clone_to_owned()
            .map_err(|e| TernError::io(&name, &e))?,
    );
    let file_len = file.metadata().map_err(|e| TernError::io(&name, &e))?.len();
    let end = offset.checked_add(length);
    if end.is_none_or(|end| end > file_len) {
        return Err(TernError::InvalidArgument {
            reason: format!("{length} bytes at offset {offset} extend past the end of {name} ({file_len} bytes)"),
        });
    }
    let len = usize::try_from(length).map_err(|_| TernError::InvalidArgument {
        reason: format!("{length} bytes do not fit in this device's address space"),
    })?;
    // SAFETY: as in `map_path`; the region lies inside the file (checked above), so no page of
    // the map is past its end, and the map stays valid after `file` is closed.
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(&file) }
        .map_err(|e| TernError::io(&name, &e))?;
    Ok(MappedRegion(map))
}

fn saturate_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
