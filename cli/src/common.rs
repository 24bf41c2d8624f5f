//! What the subcommands share: loading a model and making a session.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tern_kernels::Kernels;
use tern_runtime::pool::ThreadPool;
use tern_runtime::{Model, Session, SessionOptions};

use crate::args::{opt, Args, Spec};

/// Options every model-running subcommand takes.
pub const MODEL_OPTS: [Spec; 3] = [opt("model", Some("m")), opt("threads", Some("t")), opt("ctx-size", Some("c"))];

/// Loads `--model`, reporting how long it took in milliseconds.
pub fn load_model(args: &Args) -> Result<(Arc<Model>, f64), String> {
    let path = args.required("model")?;
    let start = Instant::now();
    let model = Model::open(Path::new(path), Kernels::best()).map_err(|e| format!("{path}: {e}"))?;
    Ok((Arc::new(model), start.elapsed().as_secs_f64() * 1e3))
}

/// A session with `--threads` workers (default: all cores) and `--ctx-size` (default: the
/// model's, capped).
pub fn session(model: Arc<Model>, args: &Args, default_ctx: usize) -> Result<Session, String> {
    let threads = args.get("threads", ThreadPool::available_threads())?.max(1);
    let context = args.get("ctx-size", default_ctx)?;
    let opts = SessionOptions { context, ..SessionOptions::default() };
    Ok(Session::with_parallel(model, &opts, Box::new(ThreadPool::new(threads))))
}
