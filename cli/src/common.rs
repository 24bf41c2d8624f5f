//! What the subcommands share: loading a model and making a session.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tern_kernels::dispatch::{Backend, Named};
use tern_kernels::scalar;
use tern_kernels::Kernels;
use tern_runtime::feed::{stream_arena, StreamFeed};
use tern_runtime::fs::{FileSource, WeightMemory};
use tern_runtime::pool::ThreadPool;
use tern_runtime::ternary::TernaryKernel;
use tern_runtime::{ActivationPrecision, KvType, Model, Session, SessionOptions};

use crate::args::{opt, switch, Args, Spec};

/// Largest `--batch`: the activation buffers grow with it (a row of logits per token).
pub const MAX_BATCH: usize = 2048;

/// Options every model-running subcommand takes.
pub const MODEL_OPTS: [Spec; 12] = [
    opt("model", Some("m")),
    opt("threads", Some("t")),
    opt("ctx-size", Some("c")),
    opt("batch", Some("b")),
    opt("precision", None),
    opt("kv-type", None),
    opt("kernels", None),
    opt("ternary", None),
    opt("max-resident", None),
    opt("stream-arena", None),
    opt("load", None),
    switch("exact-exp"),
];

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
pub fn kernels(args: &Args) -> Result<Kernels, String> {
    let mut k = named_kernels(args)?;
    if args.flag("exact-exp") {
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
fn named_kernels(args: &Args) -> Result<Kernels, String> {
    match args.str("kernels").unwrap_or("auto") {
        "auto" => Ok(Kernels::best()),
        name => {
            let backend = Backend::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                format!("unknown --kernels '{name}' (auto, {})", names.join(", "))
            })?;
            Kernels::with_backend(backend)
                .ok_or_else(|| format!("this CPU cannot run the {name} kernels"))
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
/// needs a map, whose pages it can release), or streamed with `--stream-arena MB`.
pub fn load_model(args: &Args) -> Result<Loaded, String> {
    let path = args.required("model")?;
    let kernels = kernels(args)?;
    let start = Instant::now();
    let err = |e: tern_runtime::LoadError| format!("{path}: {e}");
    let mut bar = ProgressBar::new(start);
    let mut progress = |f: f32| bar.update(f);
    let memory = match args.str("load").unwrap_or("auto") {
        _ if args.str("max-resident").is_some() => WeightMemory::Map,
        "auto" => WeightMemory::Auto,
        "map" => WeightMemory::Map,
        "copy" => WeightMemory::Copy,
        other => return Err(format!("unknown --load '{other}' (auto, map, copy)")),
    };
    let (model, weights) = match args.str("stream-arena") {
        None => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            let memory = memory.resolve(len);
            let model =
                Model::open_with(Path::new(path), kernels, memory, &mut progress).map_err(err)?;
            (model, Weights::Mapped(memory))
        }
        Some(mb) => {
            let mb: f64 = mb
                .parse()
                .map_err(|e| format!("invalid --stream-arena '{mb}': {e}"))?;
            let source = FileSource::open(Path::new(path)).map_err(err)?;
            let model =
                Model::from_source_with_progress(&source, kernels, &mut progress).map_err(err)?;
            // Validated and allocated here, so `100000` or `inf` is an error, not an abort.
            let arena = stream_arena(&model, mb).map_err(|e| format!("--stream-arena: {e}"))?;
            (model, Weights::Streamed(source, arena))
        }
    };
    let mut model = model;
    if let Some(name) = args.str("ternary") {
        // Load already ran the default (auto) choice; this redoes it, as the user asked.
        let kernel = TernaryKernel::from_name(name)
            .ok_or_else(|| format!("unknown --ternary '{name}' (auto, mad, lut, f32)"))?;
        model.set_ternary_kernel(kernel);
    }
    if args.str("precision") == Some("int8") {
        // Int8 sessions run Q4_0, Q4_1 and Q8_0 on row-interleaved copies (issue 22).
        model.repack_int8();
    }
    Ok(Loaded {
        model: Arc::new(model),
        weights,
        load_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

impl Loaded {
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

/// This process's peak resident memory in MB (Linux `VmHWM`), if the OS tells.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `--kv-type`: how the KV cache stores keys and values (`f16` unless given).
pub fn kv_type(args: &Args) -> Result<KvType, String> {
    match args.str("kv-type") {
        None => Ok(KvType::default()),
        Some(t) => {
            KvType::from_name(t).ok_or_else(|| format!("unknown --kv-type '{t}' (f16, f32)"))
        }
    }
}

/// A session with `--threads` workers (default: all cores), `--ctx-size` (default: the
/// model's, capped), `--batch` (prompt tokens per forward pass, `default_batch` unless given),
/// `--precision` (`f32`, the default, `int8` or `f16`) and `--kv-type` (`f16`, the default, or
/// `f32`).
pub fn session(
    loaded: Loaded,
    args: &Args,
    default_ctx: usize,
    default_batch: usize,
) -> Result<Session, String> {
    let Loaded { model, weights, .. } = loaded;
    let threads = args.get("threads", ThreadPool::available_threads())?.max(1);
    let context = args.get("ctx-size", default_ctx)?;
    let trained = model.config().train_context;
    if context > trained {
        return Err(format!(
            "--ctx-size {context} exceeds the model's trained context of {trained} tokens"
        ));
    }
    let precision = match args.str("precision") {
        None => ActivationPrecision::F32,
        Some(p) => ActivationPrecision::from_name(p)
            .ok_or_else(|| format!("unknown --precision '{p}' (f32, int8, f16)"))?,
    };
    let kv_type = kv_type(args)?;
    let batch: usize = args.get("batch", default_batch)?;
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(format!("--batch {batch} is outside 1..={MAX_BATCH}"));
    }
    let max_resident_mb = args.get("max-resident", 0.0f64)?;
    if !(max_resident_mb.is_finite() && max_resident_mb >= 0.0) {
        return Err(format!(
            "--max-resident {max_resident_mb} is not a size in MB"
        ));
    }
    let max_resident = (max_resident_mb * 1e6) as usize;
    let opts = SessionOptions {
        context,
        precision,
        max_resident,
        kv_type,
        batch,
        memory_budget: 0,
    };
    let pool = Box::new(ThreadPool::new(threads).map_err(|e| format!("--threads: {e}"))?);
    let session = match weights {
        Weights::Mapped(_) => Session::with_parallel(model, &opts, pool),
        Weights::Streamed(source, arena) => {
            let feed = StreamFeed::new(source, arena);
            Session::with_feed(model, &opts, pool, Box::new(feed))
        }
    };
    session.map_err(|e| e.to_string())
}
