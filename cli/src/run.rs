//! `tern run`: generate text from a prompt, streaming it as it comes.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tern_runtime::constrain::{self, ConstraintVocab, GrammarSource};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::stats::GenerationStats;
use tern_runtime::{Event, Flow, Sampler, SamplerOptions};

use crate::args::{GrammarOpts, LoadOpts, ModelOpts, SamplingOpts, SessionOpts, ThreadOpts};
use crate::common::{load_model, session};
use crate::error::{Context, Error, Result};
use crate::signals::peak_rss_mb;

/// `tern run`'s options.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The prompt.
    #[arg(short, long, required_unless_present = "words")]
    pub prompt: Option<String>,
    /// The prompt after `--`, words joined by spaces: `tern run -m M -- -5 is less than`.
    #[arg(last = true, value_name = "PROMPT", conflicts_with = "prompt")]
    pub words: Vec<String>,
    /// Most tokens to generate.
    #[arg(short, long, value_name = "N", default_value_t = 128)]
    pub n_predict: usize,
    /// Print one JSON object (tokens, text, stop reason, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    sampling: SamplingOpts,
    #[command(flatten)]
    grammar: GrammarOpts,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    load: LoadOpts,
    #[command(flatten)]
    session: SessionOpts,
    #[command(flatten)]
    threads: ThreadOpts,
}

/// Runs `tern run`.
pub fn main(args: RunArgs) -> Result<()> {
    let sampling = sampler_options(&args.sampling)?;
    let as_json = args.json;
    let grammar = grammar_source(&args.grammar)?;

    let loaded = load_model(&args.model, &args.load, args.session.precision)?;
    let (model, load_ms) = (loaded.model.clone(), loaded.load_ms);
    let mut session = session(
        loaded,
        &args.session,
        &args.load,
        args.threads.threads,
        0,
        DEFAULT_BATCH,
    )?;
    let mut constraint = match &grammar {
        Some(g) => {
            let vocab = ConstraintVocab::new(model.tokenizer(), model.config().vocab)
                .map_err(Error::from_err)?;
            Some(vocab.compile(g).map_err(Error::from_err)?)
        }
        None => None,
    };
    let prompt = args.prompt.clone().unwrap_or_else(|| args.words.join(" "));
    let prompt_tokens = model.tokenizer().encode(&prompt, true, true);
    let mut sampler = Sampler::new(sampling);
    let mut out = std::io::stdout().lock();
    let mut generated = Vec::new();
    let mut text = String::new();

    let start = Instant::now();
    let mut prompt_done = start;
    let mut first_token = None;
    let mut on_event = |ev: Event<'_>| {
        match ev {
            Event::PromptDone { .. } => prompt_done = Instant::now(),
            Event::Token { id, text: piece } => {
                first_token.get_or_insert_with(Instant::now);
                generated.push(id);
                text.push_str(piece);
                if !as_json {
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
            }
        }
        Flow::Continue
    };
    let stop = match &mut constraint {
        Some(c) => constrain::generate(
            &mut session,
            &prompt_tokens,
            &mut sampler,
            c,
            args.n_predict,
            &mut on_event,
        )
        .map_err(Error::from_err)?,
        None => session
            .generate(&prompt_tokens, &mut sampler, args.n_predict, &mut on_event)
            .map_err(Error::from_err)?,
    };
    let end = Instant::now();
    let (mask_time, n_masks) = constraint
        .as_ref()
        .map_or((Default::default(), 0), |c| c.cost());
    let stats = GenerationStats::from_offsets(
        prompt_tokens.len(),
        generated.len(),
        prompt_done - start,
        first_token.map(|t| t - start),
        end - start,
        stop,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let peak_rss = peak_rss_mb();
    if as_json {
        let result = json!({
            "prompt_tokens": prompt_tokens,
            "tokens": generated,
            "text": text,
            "stop": format!("{stop:?}"),
            "timings": {
                "load_ms": load_ms,
                "first_token_ms": stats.first_token.map(|t| load_ms + ms(t)),
                "prompt_ms": ms(stats.prompt_time),
                "gen_ms": ms(stats.decode_time),
                "prompt_tok_s": stats.prompt_tok_s(),
                "gen_tok_s": stats.decode_tok_s(),
                "peak_rss_mb": peak_rss,
                "constraint_ms": ms(mask_time),
            },
        });
        let _ = writeln!(out, "{result}");
    } else {
        let _ = writeln!(out);
        eprintln!(
            "\n[{} prompt tokens: {} tok/s | {} generated: {} tok/s | first token {} ms | load {:.0} ms | peak RSS {} MB | threads {} | stop: {:?}]",
            stats.prompt_tokens,
            figure(stats.prompt_tok_s(), 1),
            stats.generated,
            figure(stats.decode_tok_s(), 1),
            figure(stats.first_token.map(ms), 0),
            load_ms,
            figure(peak_rss, 0),
            session.threads(),
            stats.stop
        );
        if n_masks > 0 {
            eprintln!(
                "[constraint: {} masks, {:.3} ms per token]",
                n_masks,
                ms(mask_time) / n_masks as f64
            );
        }
    }
    Ok(())
}

/// A figure with `decimals` decimals, or `-` when there is none.
pub fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// The sampler the options ask for, checked.
pub fn sampler_options(o: &SamplingOpts) -> Result<SamplerOptions> {
    let d = SamplerOptions::default();
    SamplerOptions {
        temperature: o.temp.unwrap_or(d.temperature),
        top_k: o.top_k.unwrap_or(d.top_k),
        top_p: o.top_p.unwrap_or(d.top_p),
        min_p: o.min_p.unwrap_or(d.min_p),
        repeat_penalty: o.repeat_penalty.unwrap_or(d.repeat_penalty),
        seed: o.seed.unwrap_or(d.seed),
        ..d
    }
    .validated()
    .map_err(|e| Error::usage(format!("invalid sampling option: {e}")))
}

/// The grammar `--json-schema FILE` or `--grammar FILE` names (GBNF, or Lark for `.lark`).
pub fn grammar_source(o: &GrammarOpts) -> Result<Option<GrammarSource>> {
    let read = |path: &Path| std::fs::read_to_string(path).context(path.display());
    match (&o.json_schema, &o.grammar) {
        (Some(_), Some(_)) => Err(Error::usage("give --json-schema or --grammar, not both")),
        (Some(p), None) => Ok(Some(GrammarSource::JsonSchema(read(p)?))),
        (None, Some(p)) if p.extension().is_some_and(|e| e == "lark") => {
            Ok(Some(GrammarSource::Lark(read(p)?)))
        }
        (None, Some(p)) => Ok(Some(GrammarSource::Gbnf(read(p)?))),
        (None, None) => Ok(None),
    }
}
