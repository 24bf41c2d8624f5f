//! `tern inspect`: what a GGUF file holds and what one decoded token costs.

use serde_json::{json, Value as Json};
use tern_runtime::budget::{self, BandwidthBudget};
use tern_runtime::fs::MappedFile;
use tern_runtime::gguf::{Gguf, Value};
use tern_runtime::model::WeightBytes;
use tern_runtime::{ActivationPrecision, KvType, Model};

use crate::args::ModelOpts;
use crate::common::kernels;
use crate::error::{Context, Error, Result};

/// `tern inspect`'s options.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The memory bandwidth, GB/s, the decode ceiling is computed for.
    #[arg(long, value_name = "GBS", default_value_t = crate::bench::DEFAULT_BUDGET_GBPS)]
    pub bandwidth_budget: f64,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    model: ModelOpts,
}

/// Runs `tern inspect`.
pub fn main(args: InspectArgs) -> Result<()> {
    let budget = BandwidthBudget::new(args.bandwidth_budget);
    let path = args.model.model.display();
    let kernels = kernels(&args.model)?;
    let map = MappedFile::open(&args.model.model).context(&path)?;
    let file = map.bytes();
    let g = Gguf::parse(file, file.len() as u64).context(&path)?;
    if args.json {
        let mut report = file_json(&path.to_string(), file.len(), &g);
        match Model::from_bytes(Box::new(map), kernels) {
            Ok(mut model) => {
                let decisions = crate::delegate::apply(&args.model.delegate, &mut model)?;
                report["model"] = model_json(&model, &budget);
                if !decisions.is_empty() {
                    report["delegate"] = decisions
                        .iter()
                        .map(|d| {
                            json!({
                                "layer": d.layer,
                                "decision": d.to_string(),
                                "taken": d.taken(),
                            })
                        })
                        .collect();
                }
            }
            Err(e) => report["unsupported"] = Json::from(Error::from_err(e).report()),
        }
        println!("{report}");
        return Ok(());
    }

    println!(
        "file:        {path} ({:.1} MB, GGUF v{})",
        file.len() as f64 / 1e6,
        g.version
    );
    println!("\nmetadata ({} keys):", g.metadata().len());
    for (key, value) in g.metadata() {
        if *key == "tokenizer.chat_template" {
            let v = value.as_str().unwrap_or("");
            println!("  {key:<44} <{} bytes of Jinja>", v.len());
        } else {
            println!("  {key:<44} {value}");
        }
    }

    println!("\ntensors ({}):", g.tensors().len());
    println!(
        "  {:<28} {:<8} {:>18} {:>12}",
        "name", "type", "shape", "bytes"
    );
    for t in g.tensors() {
        let shape: Vec<String> = t.dims[..t.n_dims as usize]
            .iter()
            .map(u64::to_string)
            .collect();
        println!(
            "  {:<28} {:<8} {:>18} {:>12}",
            t.name,
            t.ggml_type.to_string(),
            shape.join(" x "),
            t.size
        );
    }

    match Model::from_bytes(Box::new(map), kernels) {
        Ok(mut model) => {
            let decisions = crate::delegate::apply(&args.model.delegate, &mut model)?;
            let c = model.config();
            let tok = model.tokenizer();
            println!("\nmodel:");
            println!(
                "  architecture   {} ({} layers, width {}, ffn {})",
                c.arch.name(),
                c.n_layers,
                c.dim,
                c.ffn_dim
            );
            println!(
                "  attention      {} query heads, {} kv heads, head width {}",
                c.n_heads, c.n_kv_heads, c.head_dim
            );
            for (i, r) in model.tensors().ropes.iter().enumerate() {
                println!(
                    "  rope {i}         base {}, {} dims, {:?}{}",
                    r.base,
                    r.dim,
                    r.style,
                    if r.uses_long(usize::MAX) {
                        " (LongRoPE: long factors past the original context)"
                    } else {
                        ""
                    }
                );
            }
            if let Some(cap) = model.tensors().logit_softcap {
                println!("  logit softcap  {cap}");
            }
            println!("  layers");
            for (range, what) in layer_runs(model.tensors()) {
                println!("    {range:<12} {what}");
            }
            println!("  context        {} (trained)", c.train_context);
            println!(
                "  parameters     {:.1} M, mostly {}",
                model.meta().n_params as f64 / 1e6,
                model.meta().main_format
            );
            println!(
                "  tokenizer      {} / pre '{}', {} tokens, bos {:?}, eos {:?}",
                tok.kind(),
                tok.pre(),
                tok.vocab_size(),
                tok.bos(),
                tok.eos()
            );
            println!(
                "  chat template  {}",
                if model.meta().chat_template.is_some() {
                    "yes"
                } else {
                    "no"
                }
            );
            let w = model.tensors().weight_bytes_per_token();
            // The KV cache as sessions store it unless told otherwise (`--kv-type`).
            let kv_type = KvType::default();
            let kv_per_pos = budget::bytes_per_token(&model, 1, kv_type)
                - budget::bytes_per_token(&model, 0, kv_type);
            let windowed = model
                .tensors()
                .layers
                .iter()
                .filter(|l| l.window.is_some())
                .count();
            println!("\nbytes one decoded token reads:");
            println!(
                "  weights        {:>12} bytes ({:.1} MB; output head {}tied)",
                w,
                w as f64 / 1e6,
                if model.tensors().tied_output {
                    ""
                } else {
                    "un"
                }
            );
            println!(
                "  KV cache       {:>12} bytes per position of history ({}{})",
                kv_per_pos,
                kv_type.name(),
                if windowed > 0 {
                    format!("; {windowed} sliding-window layers stop growing at their window")
                } else {
                    String::new()
                }
            );
            // The kernels each precision's products run on this CPU (`-` where the format
            // falls back to the f32 kernels).
            let k = model.kernels();
            println!(
                "\nkernels ({}): format, then --precision f32 / int8 / f16",
                k.backend().name()
            );
            println!(
                "  --precision auto (the default) runs {} here",
                ActivationPrecision::Auto.resolve(k).name()
            );
            for &f in tern_kernels::Format::ALL.iter() {
                let fk = k.format(f);
                let f32_name = fk.dot_rows.map_or(fk.dot.name, |r| r.name);
                let int8 = (fk.gemm_q8.map(|g| g.name))
                    .or(fk.dot_q8.map(|d| d.name))
                    .unwrap_or("-");
                let f16 = fk.dot_f16.map_or("-", |d| d.name);
                println!("  {:<6} {f32_name} / {int8} / {f16}", f.name());
            }
            // What loading repacked for its kernels (heap, beside the mapped file).
            println!(
                "\nrepacked at load: {} bytes",
                model.tensors().repacked_bytes()
            );
            for ch in model.ternary_choices() {
                println!("  {:?} {}x{}: {:?}", ch.format, ch.rows, ch.cols, ch.kernel);
            }
            println!(
                "\ndecode ceiling under a {:.0} GB/s bandwidth budget:",
                budget.gbps
            );
            for pos in [0usize, 512, 2048] {
                let total = budget::bytes_per_token(&model, pos, kv_type);
                println!(
                    "  at position {pos:<5} {:>9.1} MB/token -> at most {:>6.1} tok/s",
                    total as f64 / 1e6,
                    budget.ceiling_tok_s(total)
                );
            }
            if !decisions.is_empty() {
                println!("\ndelegate ({}):", crate::delegate::summary(&decisions));
                for d in &decisions {
                    println!("  {d}");
                }
            }
        }
        Err(e) => println!("\nTern cannot run this model: {e}"),
    }
    Ok(())
}

/// The file's header as JSON: metadata (arrays as their summary text) and tensors.
fn file_json(path: &str, len: usize, g: &Gguf<'_>) -> Json {
    let metadata: serde_json::Map<String, Json> = g
        .metadata()
        .iter()
        .map(|(key, value)| {
            let v = match value {
                Value::U8(v) => json!(v),
                Value::I8(v) => json!(v),
                Value::U16(v) => json!(v),
                Value::I16(v) => json!(v),
                Value::U32(v) => json!(v),
                Value::I32(v) => json!(v),
                Value::U64(v) => json!(v),
                Value::I64(v) => json!(v),
                Value::F32(v) => json!(v),
                Value::F64(v) => json!(v),
                Value::Bool(v) => json!(v),
                Value::Str(v) => json!(v),
                other => json!(other.to_string()),
            };
            (key.to_string(), v)
        })
        .collect();
    let tensors: Vec<Json> = g
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ggml_type.to_string(),
                "shape": &t.dims[..t.n_dims as usize],
                "bytes": t.size,
            })
        })
        .collect();
    json!({
        "file": path,
        "bytes": len,
        "gguf_version": g.version,
        "metadata": metadata,
        "tensors": tensors,
        "model": null,
    })
}

/// What Tern makes of the model, as JSON: the same figures as the report.
fn model_json(model: &Model, budget: &BandwidthBudget) -> Json {
    let c = model.config();
    let tok = model.tokenizer();
    let kv_type = KvType::default();
    let kv_per_pos =
        budget::bytes_per_token(model, 1, kv_type) - budget::bytes_per_token(model, 0, kv_type);
    let k = model.kernels();
    let kernels: Vec<Json> = tern_kernels::Format::ALL
        .iter()
        .map(|&f| {
            let fk = k.format(f);
            json!({
                "format": f.name(),
                "f32": fk.dot_rows.map_or(fk.dot.name, |r| r.name),
                "int8": fk.gemm_q8.map(|g| g.name).or(fk.dot_q8.map(|d| d.name)),
                "f16": fk.dot_f16.map(|d| d.name),
            })
        })
        .collect();
    let ceilings: Vec<Json> = [0usize, 512, 2048]
        .iter()
        .map(|&pos| {
            let total = budget::bytes_per_token(model, pos, kv_type);
            json!({
                "position": pos,
                "bytes_per_token": total,
                "tok_s": budget.ceiling_tok_s(total),
            })
        })
        .collect();
    let layers: Vec<Json> = layer_runs(model.tensors())
        .into_iter()
        .map(|(range, what)| json!({ "layers": range, "description": what }))
        .collect();
    json!({
        "architecture": c.arch.name(),
        "n_layers": c.n_layers,
        "dim": c.dim,
        "ffn_dim": c.ffn_dim,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "train_context": c.train_context,
        "n_params": model.meta().n_params,
        "main_format": model.meta().main_format,
        "layers": layers,
        "tokenizer": {
            "kind": tok.kind().to_string(),
            "pre": tok.pre().to_string(),
            "vocab": tok.vocab_size(),
            "bos": tok.bos(),
            "eos": tok.eos(),
        },
        "chat_template": model.meta().chat_template.is_some(),
        "weight_bytes_per_token": model.tensors().weight_bytes_per_token(),
        "tied_output": model.tensors().tied_output,
        "kv_type": kv_type.name(),
        "kv_bytes_per_position": kv_per_pos,
        "backend": k.backend().name(),
        "auto_precision": ActivationPrecision::Auto.resolve(k).name(),
        "kernels": kernels,
        "repacked_bytes": model.tensors().repacked_bytes(),
        "budget_gbps": budget.gbps,
        "decode_ceiling": ceilings,
    })
}

/// Runs of consecutive layers with the same description, as `("0-4", "attention …")`.
fn layer_runs(t: &tern_runtime::weights::ModelTensors) -> Vec<(String, String)> {
    let mut runs: Vec<(usize, usize, String)> = Vec::new();
    for (i, l) in t.layers.iter().enumerate() {
        let d = describe_layer(l);
        match runs.last_mut() {
            Some((_, last, prev)) if *prev == d => *last = i,
            _ => runs.push((i, i, d)),
        }
    }
    runs.into_iter()
        .map(|(a, b, d)| {
            (
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                },
                d,
            )
        })
        .collect()
}

/// One layer's description in a line: attention extras, window, rotation, FFN activation.
fn describe_layer(l: &tern_runtime::weights::LayerTensors) -> String {
    let mut attn = Vec::new();
    if l.qkv_bias.is_some() {
        attn.push("qkv bias");
    }
    if l.qk_norm.is_some() {
        attn.push("q/k norm");
    }
    if l.attn_sub_norm.is_some() {
        attn.push("sub-norm");
    }
    if l.attn_post_norm.is_some() {
        attn.push("post-norm");
    }
    let mut ffn = vec![match l.activation {
        tern_runtime::weights::FfnActivation::Silu => "silu",
        tern_runtime::weights::FfnActivation::ReluSquared => "relu²",
        tern_runtime::weights::FfnActivation::GeluTanh => "gelu-tanh",
    }];
    if l.ffn_sub_norm.is_some() {
        ffn.push("sub-norm");
    }
    if l.ffn_post_norm.is_some() {
        ffn.push("post-norm");
    }
    let window = match l.window {
        Some(w) => format!("local, window {w}"),
        None => "global".to_string(),
    };
    let extras = if attn.is_empty() {
        String::new()
    } else {
        format!(" ({})", attn.join(", "))
    };
    format!(
        "attention {window}, rope {}, scale {:.4}{extras}; ffn {}",
        l.rope,
        l.attn_scale,
        ffn.join(", ")
    )
}
