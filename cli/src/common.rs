//! What the subcommands share: loading a model and making a session.

use std::sync::Arc;
use std::time::Instant;

use tern_kernels::dispatch::{Backend, Named};
use tern_kernels::scalar;
use tern_kernels::Kernels;
use tern_runtime::feed::{stream_arena, StreamFeed};
use tern_runtime::fs::{FileSource, WeightMemory};
use tern_runtime::pool::ThreadPool;
use tern_runtime::ternary::TernaryKernel;
use tern_runtime::{ActivationPrecision, Model, Session, SessionOptions};

use crate::args::{LoadMode, LoadOpts, ModelOpts, SessionOpts};
use crate::error::{Context, Error, Result};

/// Largest `--batch`: the activation buffers grow with it (a row of logits per token).
pub const MAX_BATCH: usize = 2048;

/// How weights reach the forward pass.
pub enum Weights {
    /// Memory-mapped, or copied into memory (`--load`): either way all in the address space.
    Mapped(WeightMemory),
    /// Read with `pread` through this arena (`--stream-arena MB`).
    Streamed(FileSource, Box<[u8]>),
}

/// The kernels `--kernels` names (`auto`, the default, picks the best the CPU supports);
/// `--exact-exp` swaps the table exp of softmax and SwiGLU for `expf`, to measure what the
/// table costs in accuracy (perplexity) and saves in time.
pub fn kernels(opts: &ModelOpts) -> Result<Kernels> {
    let mut k = named_kernels(&opts.kernels)?;
    if opts.exact_exp {
        k.softmax = Named {
            f: scalar::softmax,
            name: "softmax/exact-expf",
        };
        k.swiglu = Named {
            f: scalar::swiglu,
            name: "swiglu/exact-expf",
        };
    }
    Ok(k)
}

/// The backend `--kernels` names.
fn named_kernels(name: &str) -> Result<Kernels> {
    match name {
        "auto" => Ok(Kernels::best()),
        name => {
            let backend = Backend::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                Error::usage(format!(
                    "unknown --kernels '{name}' (auto, {})",
                    names.join(", ")
                ))
            })?;
            Kernels::with_backend(backend)
                .ok_or_else(|| Error::from(format!("this CPU cannot run the {name} kernels")))
        }
    }
}

/// A loaded model and how its weights are read.
pub struct Loaded {
    pub model: Arc<Model>,
    pub weights: Weights,
    pub load_ms: f64,
}

/// Loads `--model`: memory-mapped or copied into huge pages (`--load`; `--max-resident`
/// needs a map, whose pages it can release), or streamed with `--stream-arena MB`; then hands
/// what `--delegate` takes to the delegate, and for `--precision int8` (or `auto` resolved
/// to int8) repacks the rest of the Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0 and Q5_1 matrices (issue 22).
pub fn load_model(
    opts: &ModelOpts,
    load: &LoadOpts,
    precision: ActivationPrecision,
) -> Result<Loaded> {
    let path = opts.model.as_path();
    let kernels = kernels(opts)?;
    let start = Instant::now();
    let context = path.display();
    let mut bar = ProgressBar::new(start);
    let mut progress = |f: f32| bar.update(f);
    let memory = match load.load {
        _ if load.max_resident.is_some() => WeightMemory::Map,
        LoadMode::Auto => WeightMemory::Auto,
        LoadMode::Map => WeightMemory::Map,
        LoadMode::Copy => WeightMemory::Copy,
    };
    let (model, weights) = match load.stream_arena {
        None => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            let memory = memory.resolve(len);
            let model = Model::open_with(path, kernels, memory, &mut progress).context(&context)?;
            (model, Weights::Mapped(memory))
        }
        Some(mb) => {
            let source = FileSource::open(path).context(&context)?;
            let model = Model::from_source_with_progress(&source, kernels, &mut progress)
                .context(&context)?;
            // Validated and allocated here, so `100000` or `inf` is an error, not an abort.
            let arena = stream_arena(&model, mb).context("--stream-arena")?;
            (model, Weights::Streamed(source, arena))
        }
    };
    let mut model = model;
    if let Some(name) = &opts.ternary {
        // Load already ran the default (auto) choice; this redoes it, as the user asked.
        let kernel = TernaryKernel::from_name(name).ok_or_else(|| {
            Error::usage(format!("unknown --ternary '{name}' (auto, mad, lut, f32)"))
        })?;
        model.set_ternary_kernel(kernel);
    }
    let decisions = crate::delegate::apply(&opts.delegate, &mut model)?;
    if !decisions.is_empty() {
        eprintln!(
            "delegate: {} (tern inspect --delegate … lists each with its reason)",
            crate::delegate::summary(&decisions)
        );
    }
    // `auto` resolves here as the session will (int8 where the kernels' int8 dots are fast).
    if precision.resolve(model.kernels()) == ActivationPrecision::Int8 {
        // Int8 sessions run Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0 and Q5_1 on row-interleaved copies
        // (issue 22).
        model.repack_int8();
    }
    Ok(Loaded {
        model: Arc::new(model),
        weights,
        load_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

impl Loaded {
    /// Another handle on the same weights for a second session, when they are mapped or
    /// copied (`None` when streamed: each session needs its own arena).
    pub fn share(&self) -> Option<Loaded> {
        match &self.weights {
            Weights::Mapped(m) => Some(Loaded {
                model: Arc::clone(&self.model),
                weights: Weights::Mapped(*m),
                load_ms: self.load_ms,
            }),
            Weights::Streamed(..) => None,
        }
    }

    /// How the weights are held, in a few words (`tern bench` prints it): `mapped`, `copied`
    /// with how much of the copy sits in huge pages, or `streamed`.
    pub fn weights_held(&self) -> String {
        match &self.weights {
            Weights::Mapped(WeightMemory::Copy) => {
                let huge = self
                    .model
                    .weight_bytes()
                    .and_then(|w| w.huge_page_bytes())
                    .unwrap_or(0);
                format!("copied ({:.1} MB in huge pages)", huge as f64 / 1e6)
            }
            Weights::Mapped(_) => "mapped".into(),
            Weights::Streamed(_, arena) => {
                format!("streamed ({:.1} MB arena)", arena.len() as f64 / 1e6)
            }
        }
    }
}

/// A load progress bar on stderr, shown only when loading takes longer than a moment and
/// stderr is a terminal.
struct ProgressBar {
    start: Instant,
    shown: bool,
}

impl ProgressBar {
    fn new(start: Instant) -> Self {
        ProgressBar {
            start,
            shown: false,
        }
    }

    fn update(&mut self, fraction: f32) {
        use std::io::{IsTerminal, Write};
        if !std::io::stderr().is_terminal() || self.start.elapsed().as_millis() < 300 {
            return;
        }
        let filled = (fraction.clamp(0.0, 1.0) * 30.0) as usize;
        eprint!(
            "\rloading [{}{}] {:>3.0}%",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            fraction * 100.0
        );
        if fraction >= 1.0 {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
        self.shown = true;
    }
}

/// A session with `threads` workers (`None`: all cores), `--ctx-size` (`default_ctx` unless
/// given; 0 is the model's, capped), `--batch` (prompt tokens per forward pass,
/// `default_batch` unless given), `--precision` and `--kv-type`.
pub fn session(
    loaded: Loaded,
    opts: &SessionOpts,
    load: &LoadOpts,
    threads: Option<usize>,
    default_ctx: usize,
    default_batch: usize,
) -> Result<Session> {
    let Loaded { model, weights, .. } = loaded;
    let threads = threads.unwrap_or_else(ThreadPool::available_threads).max(1);
    let context = opts.ctx_size.unwrap_or(default_ctx);
    let trained = model.config().train_context;
    if context > trained {
        return Err(Error::usage(format!(
            "--ctx-size {context} exceeds the model's trained context of {trained} tokens"
        )));
    }
    let batch = opts.batch.unwrap_or(default_batch);
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::usage(format!(
            "--batch {batch} is outside 1..={MAX_BATCH}"
        )));
    }
    let max_resident_mb = load.max_resident.unwrap_or(0.0);
    if !(max_resident_mb.is_finite() && max_resident_mb >= 0.0) {
        return Err(Error::usage(format!(
            "--max-resident {max_resident_mb} is not a size in MB"
        )));
    }
    let max_resident = (max_resident_mb * 1e6) as usize;
    let session_opts = SessionOptions {
        context,
        precision: opts.precision,
        max_resident,
        kv_type: opts.kv_type,
        batch,
        memory_budget: 0,
    };
    let pool = Box::new(ThreadPool::new(threads).context("--threads")?);
    let session = match weights {
        Weights::Mapped(_) => Session::with_parallel(model, &session_opts, pool),
        Weights::Streamed(source, arena) => {
            let feed = StreamFeed::new(source, arena);
            Session::with_feed(model, &session_opts, pool, Box::new(feed))
        }
    };
    session.map_err(Error::from_err)
}
