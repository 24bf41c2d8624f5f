//! `tern plan`: which quantization of a model fits a bandwidth budget, a speed target and a
//! RAM cap, with the arithmetic shown.

use std::path::PathBuf;

use serde_json::json;

use tern_kernels::{Format, Kernels};
use tern_runtime::budget::{weight_bytes_as, BandwidthBudget};
use tern_runtime::fs::WeightMemory;
use tern_runtime::kv_cache::KvCache;
use tern_runtime::{ActivationPrecision, KvType, Model};

use crate::error::{Context, Result};

/// `tern plan`'s options.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The GGUF file.
    #[arg(short, long, value_name = "FILE")]
    pub model: PathBuf,
    /// The memory bandwidth, GB/s.
    #[arg(long, value_name = "GBS", default_value_t = crate::bench::DEFAULT_BUDGET_GBPS)]
    pub budget: f64,
    /// The decode speed to reach, tokens/s.
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    pub target_tok_s: f64,
    /// Most resident memory, MB [default: no cap].
    #[arg(long, value_name = "MB")]
    pub max_ram: Option<f64>,
    /// Context length [default: the model's, at most 4096].
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Candidates, most accurate first; rows that do not divide into a format's blocks take its
/// [`fallback`].
const CANDIDATES: [Format; 14] = [
    Format::F16,
    Format::Q8_0,
    Format::Q6_K,
    Format::Q5_K,
    Format::Q5_1,
    Format::Q5_0,
    Format::Q4_1,
    Format::Q4_K,
    Format::Q4_0,
    Format::IQ4_NL,
    Format::IQ4_XS,
    Format::Q3_K,
    Format::Q2_K,
    Format::TQ2_0,
];

/// The type a quantizer stores a matrix in when its rows do not divide into `f`'s blocks:
/// llama.cpp's fallbacks (`llama-quant.cpp`) for the k-quants, Q8_0 otherwise.
fn fallback(f: Format) -> Format {
    match f {
        Format::Q2_K | Format::Q3_K | Format::IQ4_XS => Format::IQ4_NL,
        Format::Q4_K => Format::Q5_0,
        Format::Q5_K => Format::Q5_1,
        Format::TQ2_0 => Format::Q4_0,
        _ => Format::Q8_0,
    }
}

/// Runs `tern plan`.
pub fn main(args: PlanArgs) -> Result<()> {
    let path = args.model.display();
    let budget = BandwidthBudget::new(args.budget);
    let target = args.target_tok_s;
    let max_ram_mb = args.max_ram.unwrap_or(f64::INFINITY);
    // Planning reads only the metadata: map the file, never copy it.
    let model = Model::open_with(
        &args.model,
        Kernels::scalar(),
        WeightMemory::Map,
        &mut |_| {},
    )
    .context(&path)?;
    let c = model.config();
    let ctx = args.ctx_size.unwrap_or(c.train_context.min(4096));
    // What `--precision auto` (the default) runs on this CPU's best kernels.
    let best = Kernels::best();
    let precision = ActivationPrecision::Auto.resolve(&best).name();

    // KV cache: f32 keys and values per layer and position (sliding-window layers hold only
    // their window); a decode step at the middle of the context reads about half of it.
    let windows = model.tensors().windows();
    let kv_read = KvCache::bytes_read_for(&windows, ctx / 2, c.kv_dim(), KvType::F32);
    let kv_total = KvCache::bytes_for(ctx, &windows, 1, c.kv_dim(), KvType::F32);
    let embedding = model.tensors().token_embd.len as u64;
    let tied = model.tensors().tied_output;

    let params: u64 = model
        .tensors()
        .layers
        .iter()
        .flat_map(|l| l.matrices())
        .map(|m| (m.t.rows * m.t.cols) as u64)
        .sum::<u64>()
        + (model.tensors().output.t.rows * model.tensors().output.t.cols) as u64;
    let rows: Vec<Candidate> = CANDIDATES
        .iter()
        .map(|&f| {
            let w = weight_bytes_as(&model, f, fallback(f));
            let per_token = w + kv_read;
            let ceiling = budget.ceiling_tok_s(per_token);
            // Resident: the matrices, the embedding when untied (kept in its own type), the
            // KV cache.
            let ram_mb = (w + if tied { 0 } else { embedding } + kv_total) as f64 / 1e6;
            let all = model
                .tensors()
                .layers
                .iter()
                .flat_map(|l| l.matrices())
                .chain([&model.tensors().output]);
            let (n_all, n_fallback) = all.fold((0, 0), |(a, b), m| {
                (a + 1, b + usize::from(f.row_bytes(m.t.cols).is_none()))
            });
            let verdict = match (ceiling >= target, ram_mb <= max_ram_mb) {
                (true, true) => "fits",
                (false, _) => "too slow",
                (_, false) => "too big",
            };
            Candidate {
                format: f,
                weight_bytes: w,
                per_token,
                ceiling,
                ram_mb,
                bits: 8.0 * w as f64 / params as f64,
                verdict,
                n_all,
                n_fallback,
            }
        })
        .collect();
    let pick = rows.iter().find(|r| r.verdict == "fits").map(|r| r.format);

    if args.json {
        let candidates: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "format": r.format.name(),
                    "weight_bytes_per_token": r.weight_bytes,
                    "kv_bytes_per_token": kv_read,
                    "ceiling_tok_s": r.ceiling,
                    "ram_mb": r.ram_mb,
                    "bits_per_weight": r.bits,
                    "verdict": r.verdict,
                    "fallback_format": fallback(r.format).name(),
                    "fallback_matrices": r.n_fallback,
                    "matrices": r.n_all,
                })
            })
            .collect();
        let result = json!({
            "model": path.to_string(),
            "budget_gbps": budget.gbps,
            "target_tok_s": target,
            "max_ram_mb": args.max_ram,
            "ctx": ctx,
            "kv_cache_bytes": kv_total,
            "kv_read_bytes_per_token": kv_read,
            "candidates": candidates,
            "pick": pick.map(|f| f.name()),
            "backend": best.backend().name(),
            "precision": precision,
        });
        println!("{result}");
        return Ok(());
    }
    println!(
        "model     {path}: {} layers, width {}, {:.1} M parameters, now mostly {}",
        c.n_layers,
        c.dim,
        model.meta().n_params as f64 / 1e6,
        model.meta().main_format
    );
    println!(
        "budget    {:.0} GB/s, target {target} tok/s, RAM cap {max_ram_mb} MB, context {ctx}",
        budget.gbps
    );
    println!(
        "KV cache  {:.1} MB at full context; a decode step reads {:.1} MB of it on average",
        kv_total as f64 / 1e6,
        kv_read as f64 / 1e6
    );
    println!(
        "precision {precision} (--precision auto on this CPU's {} kernels)\n",
        best.backend().name()
    );
    println!(
        "{:<7} {:>12} {:>10} {:>14} {:>10} {:>9}  verdict",
        "format", "weights/tok", "+KV/tok", "ceiling tok/s", "RAM MB", "bits/w"
    );
    for r in &rows {
        println!(
            "{:<7} {:>9.1} MB {:>7.1} MB {:>14.1} {:>10.1} {:>9.2}  {}  ({:.0} GB/s / {:.1} MB = {:.1} tok/s)",
            r.format.name(), r.weight_bytes as f64 / 1e6, kv_read as f64 / 1e6, r.ceiling, r.ram_mb,
            r.bits, r.verdict, budget.gbps, r.per_token as f64 / 1e6, r.ceiling
        );
        if r.n_fallback > 0 {
            println!(
                "        {} of {} matrices in {}: their rows do not divide into {}-weight blocks",
                r.n_fallback,
                r.n_all,
                fallback(r.format).name(),
                r.format.block_len()
            );
        }
    }
    match pick {
        Some(f) => println!(
            "\nmost accurate format that fits: {} (`tern quantize --type {}`)",
            f.name(),
            f.name().to_lowercase()
        ),
        None => {
            println!("\nno format fits: lower the target, raise the budget, or shorten the context")
        }
    }
    if CANDIDATES.contains(&Format::TQ2_0) {
        println!(
            "note: ternary formats keep quality only for models trained ternary (BitNet b1.58)"
        );
    }
    Ok(())
}

/// One candidate format's figures.
struct Candidate {
    format: Format,
    /// Weight bytes one decoded token reads.
    weight_bytes: u64,
    /// Weights plus KV cache per token.
    per_token: u64,
    /// Tokens/s the budget allows.
    ceiling: f64,
    /// Resident memory.
    ram_mb: f64,
    /// Bits per weight of the matrices.
    bits: f64,
    /// `fits`, `too slow` or `too big`.
    verdict: &'static str,
    /// Matrices in all.
    n_all: usize,
    /// Matrices whose rows do not divide into the format's blocks.
    n_fallback: usize,
}
