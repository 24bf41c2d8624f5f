//! `tern run`: generate text from a prompt, streaming it as it comes.

use std::io::Write;
use std::time::Instant;

use tern_runtime::constrain::{self, ConstraintVocab, GrammarSource};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::{Event, Flow, Sampler, SamplerOptions};

use crate::args::{opt, switch, Args};
use crate::common::{load_model, peak_rss_mb, session, MODEL_OPTS};
use crate::json;

pub const USAGE: &str =
    "tern run -m FILE -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]
         [--repeat-penalty R] [--seed S] [--threads T] [-c CTX] [--json]
         [--json-schema FILE | --grammar FILE]
  --json-schema FILE  constrain the output to one JSON document valid under the schema
  --grammar FILE      constrain the output to a llama.cpp GBNF grammar (a .lark file: Lark)";

pub fn main(argv: &[String]) -> Result<(), String> {
    let mut specs = Vec::from(MODEL_OPTS);
    specs.extend([
        opt("prompt", Some("p")),
        opt("n-predict", Some("n")),
        opt("temp", None),
        opt("top-k", None),
        opt("top-p", None),
        opt("min-p", None),
        opt("repeat-penalty", None),
        opt("seed", None),
        switch("json"),
        opt("json-schema", None),
        opt("grammar", None),
    ]);
    let args = Args::parse(argv, &specs)?;
    let prompt = args.required("prompt")?;
    let n_predict: usize = args.get("n-predict", 128)?;
    let d = SamplerOptions::default();
    let sampling = SamplerOptions {
        temperature: args.get("temp", d.temperature)?,
        top_k: args.get("top-k", d.top_k)?,
        top_p: args.get("top-p", d.top_p)?,
        min_p: args.get("min-p", d.min_p)?,
        repeat_penalty: args.get("repeat-penalty", d.repeat_penalty)?,
        seed: args.get("seed", d.seed)?,
        ..d
    }
    .validated()
    .map_err(|e| format!("invalid sampling option: {e}"))?;
    let as_json = args.flag("json");
    let grammar = grammar_source(&args)?;

    let loaded = load_model(&args)?;
    let (model, load_ms) = (loaded.model.clone(), loaded.load_ms);
    let mut session = session(loaded, &args, 0, DEFAULT_BATCH)?;
    let mut constraint = match &grammar {
        Some(g) => {
            let vocab = ConstraintVocab::new(model.tokenizer(), model.config().vocab)
                .map_err(|e| e.to_string())?;
            Some(vocab.compile(g).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let prompt_tokens = model.tokenizer().encode(prompt, true, true);
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
            n_predict,
            &mut on_event,
        )
        .map_err(|e| e.to_string())?,
        None => session
            .generate(&prompt_tokens, &mut sampler, n_predict, &mut on_event)
            .map_err(|e| e.to_string())?,
    };
    let end = Instant::now();
    let (mask_time, n_masks) = constraint
        .as_ref()
        .map_or((Default::default(), 0), |c| c.cost());

    let prompt_ms = (prompt_done - start).as_secs_f64() * 1e3;
    let first_token_ms = (first_token.unwrap_or(end) - start).as_secs_f64() * 1e3;
    let gen_ms = (end - prompt_done).as_secs_f64() * 1e3;
    let prompt_tok_s = prompt_tokens.len() as f64 / (prompt_ms / 1e3);
    // The first generated token is sampled from the prompt's logits: decode speed counts the
    // forward passes after it.
    let decoded = generated.len().saturating_sub(1).max(1) as f64;
    let gen_tok_s = if generated.len() > 1 {
        decoded / (gen_ms / 1e3)
    } else {
        f64::NAN
    };
    if as_json {
        let timings = format!(
            "{{\"load_ms\":{},\"first_token_ms\":{},\"prompt_ms\":{},\"gen_ms\":{},\"prompt_tok_s\":{},\"gen_tok_s\":{},\"peak_rss_mb\":{},\"constraint_ms\":{}}}",
            json::number(load_ms),
            json::number(load_ms + first_token_ms),
            json::number(prompt_ms),
            json::number(gen_ms),
            json::number(prompt_tok_s),
            json::number(gen_tok_s),
            json::number(peak_rss_mb().unwrap_or(f64::NAN)),
            json::number(mask_time.as_secs_f64() * 1e3)
        );
        let _ = writeln!(
            out,
            "{{\"prompt_tokens\":{},\"tokens\":{},\"text\":{},\"stop\":{},\"timings\":{}}}",
            json::ids(&prompt_tokens),
            json::ids(&generated),
            json::string(&text),
            json::string(&format!("{stop:?}")),
            timings
        );
    } else {
        let _ = writeln!(out);
        eprintln!(
            "\n[{} prompt tokens: {:.1} tok/s | {} generated: {:.1} tok/s | load {:.0} ms | peak RSS {:.0} MB | threads {} | stop: {:?}]",
            prompt_tokens.len(),
            prompt_tok_s,
            generated.len(),
            gen_tok_s,
            load_ms,
            peak_rss_mb().unwrap_or(f64::NAN),
            session.threads(),
            stop
        );
        if n_masks > 0 {
            eprintln!(
                "[constraint: {} masks, {:.3} ms per token]",
                n_masks,
                mask_time.as_secs_f64() * 1e3 / n_masks as f64
            );
        }
    }
    Ok(())
}

/// The grammar `--json-schema FILE` or `--grammar FILE` names (GBNF, or Lark for `.lark`).
pub fn grammar_source(args: &Args) -> Result<Option<GrammarSource>, String> {
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    match (args.str("json-schema"), args.str("grammar")) {
        (Some(_), Some(_)) => Err("give --json-schema or --grammar, not both".into()),
        (Some(p), None) => Ok(Some(GrammarSource::JsonSchema(read(p)?))),
        (None, Some(p)) if p.ends_with(".lark") => Ok(Some(GrammarSource::Lark(read(p)?))),
        (None, Some(p)) => Ok(Some(GrammarSource::Gbnf(read(p)?))),
        (None, None) => Ok(None),
    }
}
