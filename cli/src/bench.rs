//! `tern bench`: prompt-processing and decode speed in the spirit of llama-bench, with the
//! bytes each decoded token streams and the bandwidth that implies.

use std::time::Instant;

use tern_runtime::budget::{self, BandwidthBudget};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::ActivationPrecision;

use crate::args::{opt, switch, Args};
use crate::common::{load_model, session, MODEL_OPTS};
use crate::json;

mod constrained;

/// The budget reports compare against unless `--bandwidth-budget` says otherwise: the middle of
/// the 50–90 GB/s phones offer.
pub const DEFAULT_BUDGET_GBPS: f64 = 60.0;

pub const USAGE: &str =
    "tern bench -m FILE [-t THREADS] [-p 128] [-n 128] [-r REPS] [--bandwidth-budget GBS]
           [--stream] [--precision f32|int8|f16] [--kernels NAME]
           [--ternary auto|mad|lut|f32] [--json]
           [--json-schema FILE | --grammar FILE] [--prompt TEXT]
  --json-schema FILE, --grammar FILE  also decode from --prompt with sampling, unconstrained
                      and constrained, alternating, and report both speeds and the difference";

pub fn main(argv: &[String]) -> Result<(), String> {
    let mut specs = Vec::from(MODEL_OPTS);
    specs.extend([
        opt("n-prompt", Some("p")),
        opt("n-gen", Some("n")),
        opt("reps", Some("r")),
        opt("bandwidth-budget", None),
        switch("stream"),
        switch("json"),
        opt("json-schema", None),
        opt("grammar", None),
        opt("prompt", None),
    ]);
    let args = Args::parse(argv, &specs)?;
    let n_prompt: usize = args.get("n-prompt", 128)?;
    let n_gen: usize = args.get("n-gen", 128)?;
    let reps: usize = args.get("reps", 5)?.max(1);
    // Under TERN_INSN_MARKERS=1 (bench/arm-insn-count.sh) the runs are counted, not timed: no
    // warm-up, and phase markers around the load and the first prompt and decode runs.
    let markers = std::env::var_os("TERN_INSN_MARKERS").is_some_and(|v| v == "1");
    let grammar = crate::run::grammar_source(&args)?;

    if markers {
        phase_marker::<1>();
    }
    let loaded = load_model(&args)?;
    let model = loaded.model.clone();
    let held = loaded.weights_held();
    let vocab = model.config().vocab as u32;
    // The whole prompt in one forward pass (up to 512 tokens), as llama-bench's default
    // micro-batch of 512 processes it.
    let batch = n_prompt.clamp(DEFAULT_BATCH, 512);
    let mut s = session(loaded, &args, (n_prompt + n_gen + 1).max(256), batch)?;
    // Fixed pseudo-random tokens, as llama-bench uses random ones: content does not change speed.
    let tokens: Vec<u32> = (0..n_prompt.max(n_gen) as u32)
        .map(|i| (i.wrapping_mul(7919) + 13) % vocab)
        .collect();

    let run_pp = |s: &mut tern_runtime::Session| -> Result<f64, String> {
        s.reset();
        let t = Instant::now();
        s.feed(&tokens[..n_prompt]).map_err(|e| e.to_string())?;
        Ok(n_prompt as f64 / t.elapsed().as_secs_f64())
    };
    let run_tg = |s: &mut tern_runtime::Session| -> Result<f64, String> {
        s.reset();
        let t = Instant::now();
        for &tok in &tokens[..n_gen] {
            s.feed(&[tok]).map_err(|e| e.to_string())?;
        }
        Ok(n_gen as f64 / t.elapsed().as_secs_f64())
    };
    // One warm-up of each: page in the weights, spin up the workers.
    if !markers {
        if n_prompt > 0 {
            run_pp(&mut s)?;
        }
        if n_gen > 0 {
            run_tg(&mut s)?;
        }
    }
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..reps {
        let mark = markers && rep == 0;
        if mark {
            phase_marker::<2>();
        }
        if n_prompt > 0 {
            pp.push(run_pp(&mut s)?);
        }
        if mark {
            phase_marker::<3>();
        }
        if n_gen > 0 {
            tg.push(run_tg(&mut s)?);
        }
        if mark {
            phase_marker::<4>();
        }
    }
    let (pp_mean, pp_sd) = mean_sd(&pp);
    let (tg_mean, tg_sd) = mean_sd(&tg);
    let constrained = match &grammar {
        Some(g) => Some(constrained::measure(&mut s, g, &args, n_gen.max(1), reps)?),
        None => None,
    };

    // Bytes per decoded token, averaged over the positions the decode run visits (linear in
    // the position, so the mean of the first and the last).
    let at = |pos: usize| budget::bytes_per_token(&model, pos, s.kv_type()) as f64;
    let bytes_per_token = (at(0) + at(n_gen.max(1) - 1)) / 2.0;
    let gbps = bytes_per_token * tg_mean / 1e9;
    let budget = BandwidthBudget::new(args.get("bandwidth-budget", DEFAULT_BUDGET_GBPS)?);
    let ceiling = budget.ceiling_tok_s(bytes_per_token as u64);
    let machine = args
        .flag("stream")
        .then(|| crate::stream::measure(s.threads()));
    // The kernel each format's decoding products run: the int8 GEMM under `--precision int8`,
    // the f16 dot under `--precision f16` where the backend has one, else the multi-row f32
    // kernel where the backend has one.
    let (int8, f16) = match s.precision() {
        ActivationPrecision::Int8 => (true, false),
        ActivationPrecision::F16 => (false, true),
        ActivationPrecision::F32 => (false, false),
    };
    let k = model.kernels();
    let kernels: Vec<String> = tern_kernels::Format::ALL
        .iter()
        .map(|&f| {
            let fk = k.format(f);
            let name = match (int8, fk.gemm_q8, f16, fk.dot_f16, fk.dot_rows) {
                (true, Some(g), ..) => g.name,
                (_, _, true, Some(h), _) => h.name,
                (.., Some(r)) => r.name,
                _ => fk.dot.name,
            };
            // Batched int8 prompts of the formats the shared int8 GEMM takes go through it.
            match k.gemm_i8 {
                Some(g) if int8 && k.has_gemm_i8(f) => format!("{}={name}+{}", f.name(), g.name),
                _ => format!("{}={}", f.name(), name),
            }
        })
        .collect();

    if args.flag("json") {
        let names: Vec<String> = kernels.iter().map(|k| json::string(k)).collect();
        println!(
            "{{\"model\":{},\"threads\":{},\"batch\":{},\"n_prompt\":{n_prompt},\"n_gen\":{n_gen},\"reps\":{reps},\"weights\":{},\"pp_tok_s\":{},\"pp_tok_s_sd\":{},\"tg_tok_s\":{},\"tg_tok_s_sd\":{},\"bytes_per_token\":{},\"gbps\":{},\"budget_gbps\":{},\"budget_ceiling_tok_s\":{},\"budget_fraction\":{},\"machine_read_gbps\":{},\"machine_copy_gbps\":{},\"machine_fraction\":{},\"kernels\":[{}],\"constrained\":{}}}",
            json::string(args.required("model")?),
            s.threads(),
            s.batch(),
            json::string(&held),
            json::number(pp_mean),
            json::number(pp_sd),
            json::number(tg_mean),
            json::number(tg_sd),
            bytes_per_token.round(),
            json::number(gbps),
            json::number(budget.gbps),
            json::number(ceiling),
            json::number(tg_mean / ceiling),
            json::number(machine.as_ref().map_or(f64::NAN, |m| m.read_gbps)),
            json::number(machine.as_ref().map_or(f64::NAN, |m| m.copy_gbps)),
            json::number(machine.as_ref().map_or(f64::NAN, |m| gbps / m.read_gbps)),
            names.join(","),
            constrained.as_ref().map_or("null".into(), constrained::Figures::json)
        );
    } else {
        println!("model     {}", args.required("model")?);
        println!("threads   {}   batch {}", s.threads(), s.batch());
        println!("kernels   {}", kernels.join(" "));
        println!("weights   {held}");
        for c in model.ternary_choices() {
            let timed = c.timed.map_or(String::new(), |(mad, lut)| {
                format!(" (mad {:.0} µs, lut {:.0} µs)", mad * 1e6, lut * 1e6)
            });
            println!(
                "ternary   {} {}x{}: {}{timed}",
                c.format.name(),
                c.rows,
                c.cols,
                c.kernel.name()
            );
        }
        println!("| test   |          tok/s | bytes/token |   GB/s |");
        println!("|--------|----------------|-------------|--------|");
        if n_prompt > 0 {
            println!("| pp{n_prompt:<4} | {pp_mean:>7.1} ± {pp_sd:<5.1} |             |        |");
        }
        if n_gen > 0 {
            println!(
                "| tg{n_gen:<4} | {tg_mean:>7.1} ± {tg_sd:<5.1} | {:>11.0} | {gbps:>6.2} |",
                bytes_per_token
            );
        }
        println!(
            "budget    {:.0} GB/s allows {ceiling:.0} tok/s at {:.1} MB/token; measured {tg_mean:.1} tok/s = {:.1} % of that ceiling",
            budget.gbps,
            bytes_per_token / 1e6,
            100.0 * tg_mean / ceiling
        );
        if let Some(c) = &constrained {
            c.print();
        }
        if let Some(m) = &machine {
            println!(
                "machine   {:.1} GB/s read, {:.1} GB/s copy ({} threads); decode streams {gbps:.1} GB/s = {:.1} % of the read bandwidth",
                m.read_gbps,
                m.copy_gbps,
                s.threads(),
                100.0 * gbps / m.read_gbps
            );
        }
    }
    Ok(())
}

/// A phase boundary for the instruction-counting plugin (bench/insn-plugin/insn_count.c):
/// `movz xzr, #(0x7e00 | PHASE)` writes the zero register, so it does nothing on any AArch64
/// CPU, and the plugin recognises its encoding. Phases: 1 load, 2 prefill, 3 decode, 4 end.
/// Hand-written because no intrinsic emits an instruction a compiler never would; elsewhere a
/// no-op.
#[inline(always)]
fn phase_marker<const PHASE: u16>() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the instruction writes only the zero register: no memory, stack or flags. Not
    // `nomem`, so the compiler keeps memory accesses on their side of the marker.
    unsafe {
        core::arch::asm!(
            "movz xzr, #{imm}",
            imm = const 0x7e00 | PHASE,
            options(nostack, preserves_flags)
        );
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}
