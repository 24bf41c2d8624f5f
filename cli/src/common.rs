//! What the subcommands share: loading a model and making a session.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tern_kernels::dispatch::Backend;
use tern_kernels::Kernels;
use tern_runtime::pool::ThreadPool;
use tern_runtime::{ActivationPrecision, Model, Session, SessionOptions};

use crate::args::{opt, Args, Spec};

/// Options every model-running subcommand takes.
pub const MODEL_OPTS: [Spec; 5] = [
    opt("model", Some("m")),
    opt("threads", Some("t")),
    opt("ctx-size", Some("c")),
    opt("precision", None),
    opt("kernels", None),
];

/// The kernels `--kernels` names (`auto`, the default, picks the best the CPU supports).
pub fn kernels(args: &Args) -> Result<Kernels, String> {
    match args.str("kernels").unwrap_or("auto") {
        "auto" => Ok(Kernels::best()),
        name => {
            let backend = Backend::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                format!("unknown --kernels '{name}' (auto, {})", names.join(", "))
            })?;
            Kernels::with_backend(backend).ok_or_else(|| format!("this CPU cannot run the {name} kernels"))
        }
    }
}

/// Loads `--model`, reporting how long it took in milliseconds.
pub fn load_model(args: &Args) -> Result<(Arc<Model>, f64), String> {
    let path = args.required("model")?;
    let kernels = kernels(args)?;
    let start = Instant::now();
    let model = Model::open(Path::new(path), kernels).map_err(|e| format!("{path}: {e}"))?;
    Ok((Arc::new(model), start.elapsed().as_secs_f64() * 1e3))
}

/// A session with `--threads` workers (default: all cores), `--ctx-size` (default: the
/// model's, capped) and `--precision` (`f32`, the default, or `int8`).
pub fn session(model: Arc<Model>, args: &Args, default_ctx: usize) -> Result<Session, String> {
    let threads = args.get("threads", ThreadPool::available_threads())?.max(1);
    let context = args.get("ctx-size", default_ctx)?;
    let precision = match args.str("precision") {
        None => ActivationPrecision::F32,
        Some(p) => ActivationPrecision::from_name(p).ok_or_else(|| format!("unknown --precision '{p}' (f32, int8)"))?,
    };
    let opts = SessionOptions { context, precision, ..SessionOptions::default() };
    Ok(Session::with_parallel(model, &opts, Box::new(ThreadPool::new(threads))))
}
