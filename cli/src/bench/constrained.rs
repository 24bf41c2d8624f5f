//! `tern bench --json-schema FILE` / `--grammar FILE`: what constrained decoding costs per
//! token, measured against unconstrained sampling in the same run.
//!
//! Both runs decode from the same prompt with the same sampler (greedy by default: the
//! reference llama.cpp figure is greedy too), timing every step after the prompt: forward
//! pass, sampling over the whole vocabulary, and for the constrained run the mask computation
//! and the grammar's advance. Runs alternate (constrained, unconstrained, …) so drift in the
//! machine's speed hits both alike. The constrained run ends where the grammar does and the
//! unconstrained one then decodes as many tokens, so both cover the same positions.

use std::time::{Duration, Instant};

use tern_runtime::constrain::{ConstraintVocab, GrammarSource};
use tern_runtime::{Sampler, SamplerOptions, Session};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The prompt used when `--prompt` is not given: an instruction-model chat turn asking for
/// JSON, in ChatML (Qwen, SmolLM); other families need `--prompt`.
const DEFAULT_PROMPT: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nDescribe three fictional people as JSON: names, ages, cities, hobbies.<|im_end|>\n<|im_start|>assistant\n";

/// The figures of one `--json-schema` / `--grammar` benchmark.
pub struct Figures {
    /// Unconstrained decode speed, tokens/s (mean, standard deviation).
    free: (f64, f64),
    /// Constrained decode speed, tokens/s (mean, standard deviation).
    constrained: (f64, f64),
    /// Mean time in the constraint engine per constrained token.
    engine_per_token: Duration,
    /// Tokens per constrained run (mean).
    tokens: f64,
    /// Time to build the vocabulary's trie and compile the grammar, once.
    setup: Duration,
    /// Vocabulary size.
    n_vocab: usize,
}

impl Figures {
    /// Percent the constrained run adds to the unconstrained per-token time.
    fn overhead_pct(&self) -> f64 {
        100.0 * (self.free.0 / self.constrained.0 - 1.0)
    }

    /// The figures as a JSON object.
    pub fn json(&self) -> Value {
        json!({
            "free_tok_s": self.free.0,
            "free_tok_s_sd": self.free.1,
            "constrained_tok_s": self.constrained.0,
            "constrained_tok_s_sd": self.constrained.1,
            "overhead_pct": self.overhead_pct(),
            "engine_us_per_token": self.engine_per_token.as_secs_f64() * 1e6,
            "tokens_per_run": self.tokens,
            "setup_ms": self.setup.as_secs_f64() * 1e3,
            "n_vocab": self.n_vocab,
        })
    }

    /// The figures as two lines after the table.
    pub fn print(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "free      {:.1} ± {:.1} tok/s sampled decode, {} tokens vocabulary",
            self.free.0, self.free.1, self.n_vocab
        )?;
        writeln!(
            out,
            "constr    {:.1} ± {:.1} tok/s same, constrained: {:+.1} % per token, engine {:.0} µs/token, {:.0} tokens/run, setup {:.0} ms",
            self.constrained.0,
            self.constrained.1,
            self.overhead_pct(),
            self.engine_per_token.as_secs_f64() * 1e6,
            self.tokens,
            self.setup.as_secs_f64() * 1e3
        )
    }
}

/// Runs `reps` alternating pairs of decodes of up to `n_gen` tokens.
pub fn measure(
    s: &mut Session,
    grammar: &GrammarSource,
    prompt: Option<&str>,
    n_gen: usize,
    reps: usize,
) -> Result<Figures> {
    let model = std::sync::Arc::clone(s.model());
    let tok = model.tokenizer();
    let prompt = tok.encode(prompt.unwrap_or(DEFAULT_PROMPT), true, true);
    let t = Instant::now();
    let vocab = ConstraintVocab::new(tok, model.config().vocab).map_err(Error::from_err)?;
    let compiled = vocab.compile(grammar).map_err(Error::from_err)?;
    let setup = t.elapsed();
    let opts = SamplerOptions::greedy();

    let run =
        |s: &mut Session, constrained: bool, n_gen: usize| -> Result<(f64, Duration, usize)> {
            s.reset();
            s.feed(&prompt).map_err(Error::from_err)?;
            let mut sampler = Sampler::new(opts.clone());
            let mut c = constrained.then(|| compiled.clone());
            let mut n = 0;
            let t = Instant::now();
            while n < n_gen {
                let logits = s.logits().ok_or("no logits")?;
                let id = match &mut c {
                    Some(c) => {
                        let mask = c.compute_mask().map_err(Error::from_err)?;
                        sampler.sample_masked(logits, s.tokens(), Some(mask))
                    }
                    None => sampler.sample(logits, s.tokens()),
                };
                if let Some(c) = &mut c {
                    if tok.is_end_of_generation(id) {
                        break;
                    }
                    c.commit(id).map_err(Error::from_err)?;
                }
                n += 1;
                s.feed(&[id]).map_err(Error::from_err)?;
            }
            let secs = t.elapsed().as_secs_f64();
            let engine = c.map_or(Duration::ZERO, |c| c.cost().0);
            Ok((n.max(1) as f64 / secs, engine, n))
        };
    // Warm-up.
    run(s, true, n_gen)?;
    run(s, false, n_gen)?;
    let (mut free, mut con, mut engine, mut tokens) = (Vec::new(), Vec::new(), Duration::ZERO, 0);
    for _ in 0..reps {
        // The unconstrained run decodes as many tokens as the constrained one did, so both
        // cover the same positions.
        let (tok_s, e, n) = run(s, true, n_gen)?;
        free.push(run(s, false, n)?.0);
        con.push(tok_s);
        engine += e;
        tokens += n;
    }
    Ok(Figures {
        free: super::mean_sd(&free),
        constrained: super::mean_sd(&con),
        engine_per_token: engine / tokens.max(1) as u32,
        tokens: tokens as f64 / reps as f64,
        setup,
        n_vocab: vocab.n_vocab(),
    })
}
