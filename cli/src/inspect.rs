//! `tern inspect`: what a GGUF file holds and what one decoded token costs.

use std::path::Path;

use tern_kernels::Kernels;
use tern_runtime::budget::{self, BandwidthBudget};
use tern_runtime::fs::MappedFile;
use tern_runtime::gguf::Gguf;
use tern_runtime::model::WeightBytes;
use tern_runtime::{KvType, Model};

use crate::args::{opt, Args};

pub const USAGE: &str = "tern inspect -m FILE [--bandwidth-budget GBS]";

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &[opt("model", Some("m")), opt("bandwidth-budget", None)],
    )?;
    let budget =
        BandwidthBudget::new(args.get("bandwidth-budget", crate::bench::DEFAULT_BUDGET_GBPS)?);
    let path = args.required("model")?;
    let map = MappedFile::open(Path::new(path)).map_err(|e| e.to_string())?;
    let file = map.bytes();
    let g = Gguf::parse(file, file.len() as u64).map_err(|e| format!("{path}: {e}"))?;

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

    match Model::from_bytes(Box::new(map), Kernels::best()) {
        Ok(model) => {
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
            println!(
                "  rope           base {}, {} dims, {:?}",
                c.rope_base, c.rope_dim, c.rope_style
            );
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
                "  KV cache       {:>12} bytes per position of history ({})",
                kv_per_pos,
                kv_type.name()
            );
            // The kernels each precision's products run on this CPU (`-` where the format
            // falls back to the f32 kernels).
            let k = model.kernels();
            println!(
                "\nkernels ({}): format, then --precision f32 / int8 / f16",
                k.backend().name()
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
            let ternary = model.ternary();
            println!("\nrepacked at load: {} bytes", ternary.repacked_bytes());
            for ch in ternary.choices() {
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
        }
        Err(e) => println!("\nTern cannot run this model: {e}"),
    }
    Ok(())
}
