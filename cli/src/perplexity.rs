//! `tern perplexity`: perplexity over a text file, computed as llama.cpp's perplexity tool does
//! so the two figures can be compared.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use tern_runtime::session::DEFAULT_BATCH;

use crate::args::{LoadOpts, ModelOpts, SessionOpts, ThreadOpts};
use crate::common::{load_model, session};
use crate::error::{Context, Error, Result};

/// `tern perplexity`'s options.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// The text to score (UTF-8).
    #[arg(short, long, value_name = "TEXT")]
    pub file: PathBuf,
    /// Score at most N windows [default: all].
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// Print one JSON object instead of the figures.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    load: LoadOpts,
    #[command(flatten)]
    session: SessionOpts,
    #[command(flatten)]
    threads: ThreadOpts,
}

/// Runs `tern perplexity`.
pub fn main(args: PerplexityArgs) -> Result<()> {
    let path = args.file.display();
    let bytes = std::fs::read(&args.file).context(&path)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::from(format!("{path} is not UTF-8 text: {e}")))?;
    let n_ctx = args.session.ctx_size.unwrap_or(512);
    if n_ctx < 4 {
        return Err(Error::usage("--ctx-size must be at least 4"));
    }
    let max_chunks = args.chunks.unwrap_or(usize::MAX);

    let loaded = load_model(&args.model, &args.load, args.session.precision)?;
    let model = loaded.model.clone();
    let mut session = session(
        loaded,
        &args.session,
        &args.load,
        args.threads.threads,
        n_ctx,
        DEFAULT_BATCH,
    )?;
    let tok = model.tokenizer();
    let tokens = tok.encode(&text, true, false);
    let bos = tok.bos().filter(|_| tokens.first() == tok.bos().as_ref());
    let n_chunks = (tokens.len() / n_ctx).min(max_chunks);
    if n_chunks == 0 {
        return Err(Error::from(format!(
            "{path} has {} tokens, fewer than one window of {n_ctx}",
            tokens.len()
        )));
    }
    eprintln!(
        "perplexity: {} tokens, {n_chunks} chunks of {n_ctx}, scoring the second half of each",
        tokens.len()
    );

    let start = Instant::now();
    let mut stats = NllStats::default();
    let first = n_ctx / 2;
    // Perplexity over the windows so far, after each one (llama.cpp prints the same figures).
    let mut running = Vec::with_capacity(n_chunks);
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        // Each window starts with BOS when the model adds one, as llama.cpp does.
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        session
            .feed_scoring(&chunk, |i, logits| {
                if i >= first && i + 1 < n_ctx {
                    stats.add(logits, chunk[i + 1] as usize);
                }
            })
            .map_err(Error::from_err)?;
        running.push(stats.ppl());
        eprint!("[{}]{:.4} ", c + 1, stats.ppl());
    }
    eprintln!();
    let secs = start.elapsed().as_secs_f64();
    let (ppl, err) = (stats.ppl(), stats.ppl_error());
    if args.json {
        let result = json!({
            "ppl": ppl,
            "ppl_error": err,
            "chunks": n_chunks,
            "ctx": n_ctx,
            "tokens": tokens.len(),
            "tokens_scored": stats.count,
            "running_ppl": running,
            "seconds": secs,
        });
        println!("{result}");
    } else {
        eprintln!("{} tokens scored in {secs:.1} s", stats.count);
        // llama.cpp's closing line, figure for figure, for the scripts that read it.
        println!("Final estimate: PPL = {ppl:.4} +/- {err:.5}");
    }
    Ok(())
}

/// Running negative log-likelihood statistics.
#[derive(Default)]
struct NllStats {
    sum: f64,
    sum_sq: f64,
    count: usize,
}

impl NllStats {
    /// Adds −log p(target) under softmax(logits).
    fn add(&mut self, logits: &[f32], target: usize) {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let nll = lse - logits[target] as f64;
        self.sum += nll;
        self.sum_sq += nll * nll;
        self.count += 1;
    }

    fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }

    /// Standard error of the perplexity estimate, propagated from the spread of the
    /// per-token log-likelihoods (the estimate llama.cpp prints after `+/-`).
    fn ppl_error(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum_sq / n - mean * mean;
        if var > 0.0 && n > 1.0 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            0.0
        }
    }
}
