//! `tern plan`: which quantization of a model fits a bandwidth budget, a speed target and a
//! RAM cap, with the arithmetic shown.

use std::path::Path;

use tern_kernels::{Format, Kernels};
use tern_runtime::budget::{weight_bytes_as, BandwidthBudget};
use tern_runtime::fs::WeightMemory;
use tern_runtime::kv_cache::KvCache;
use tern_runtime::{KvType, Model};

use crate::args::{opt, Args};

pub const USAGE: &str = "tern plan -m FILE --budget GBS --target-tok-s N [--max-ram MB] [-c CTX]";

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

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &[
            opt("model", Some("m")),
            opt("budget", None),
            opt("target-tok-s", None),
            opt("max-ram", None),
            opt("ctx-size", Some("c")),
        ],
    )?;
    let path = args.required("model")?;
    let budget = BandwidthBudget::new(args.get("budget", crate::bench::DEFAULT_BUDGET_GBPS)?);
    let target: f64 = args.get("target-tok-s", 20.0)?;
    let max_ram_mb: f64 = args.get("max-ram", f64::INFINITY)?;
    // Planning reads only the metadata: map the file, never copy it.
    let model = Model::open_with(
        Path::new(path),
        Kernels::scalar(),
        WeightMemory::Map,
        &mut |_| {},
    )
    .map_err(|e| format!("{path}: {e}"))?;
    let c = model.config();
    let ctx: usize = args.get("ctx-size", c.train_context.min(4096))?;

    // KV cache: f32 keys and values per layer and position (sliding-window layers hold only
    // their window); a decode step at the middle of the context reads about half of it.
    let windows = model.tensors().windows();
    let kv_read = KvCache::bytes_read_for(&windows, ctx / 2, c.kv_dim(), KvType::F32);
    let kv_total = KvCache::bytes_for(ctx, &windows, 1, c.kv_dim(), KvType::F32);
    let embedding = model.tensors().token_embd.len as u64;
    let tied = model.tensors().tied_output;

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
        "KV cache  {:.1} MB at full context; a decode step reads {:.1} MB of it on average\n",
        kv_total as f64 / 1e6,
        kv_read as f64 / 1e6
    );
    println!(
        "{:<7} {:>12} {:>10} {:>14} {:>10} {:>9}  verdict",
        "format", "weights/tok", "+KV/tok", "ceiling tok/s", "RAM MB", "bits/w"
    );
    let mut pick = None;
    for f in CANDIDATES {
        let w = weight_bytes_as(&model, f, fallback(f));
        let per_token = w + kv_read;
        let ceiling = budget.ceiling_tok_s(per_token);
        // Resident: the matrices, the embedding when untied (kept in its own type), the KV cache.
        let ram = w + if tied { 0 } else { embedding } + kv_total;
        let ram_mb = ram as f64 / 1e6;
        let params: u64 = model
            .tensors()
            .layers
            .iter()
            .flat_map(|l| l.matrices())
            .map(|m| (m.t.rows * m.t.cols) as u64)
            .sum::<u64>()
            + (model.tensors().output.t.rows * model.tensors().output.t.cols) as u64;
        let bits = 8.0 * w as f64 / params as f64;
        let fits = ceiling >= target && ram_mb <= max_ram_mb;
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
        println!(
            "{:<7} {:>9.1} MB {:>7.1} MB {:>14.1} {:>10.1} {:>9.2}  {verdict}  ({:.0} GB/s / {:.1} MB = {ceiling:.1} tok/s)",
            f.name(), w as f64 / 1e6, kv_read as f64 / 1e6, ceiling, ram_mb, bits, budget.gbps, per_token as f64 / 1e6
        );
        if n_fallback > 0 {
            println!(
                "        {n_fallback} of {n_all} matrices in {}: their rows do not divide into {}-weight blocks",
                fallback(f).name(),
                f.block_len()
            );
        }
        if fits && pick.is_none() {
            pick = Some(f);
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
