//! `tern bench`: prompt-processing and decode speed as llama-bench measures and prints them,
//! with the bytes each decoded token streams and the bandwidth that implies.
//!
//! Like llama-bench: tests `ppN` (one N-token prompt, timed as a whole) and `tgN` (N tokens
//! decoded one at a time), comma-separated sweeps (`-t 1,2 -p 128,512 -n 128`), the same
//! defaults (pp512, tg128, 5 repetitions), `t/s` as mean ± sample standard deviation, and
//! `-o md|csv|json|jsonl`. Fixed pseudo-random tokens stand in for text, as llama-bench's
//! random ones do: content does not change speed. Tern's own figures (kernels, how weights
//! are held, bytes per token against a bandwidth budget) go beside the table; `--json` keeps
//! the single summary object that `bench/vs-llamacpp.sh` reads.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};
use tern_runtime::budget::{self, BandwidthBudget};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::{ActivationPrecision, Model, Session};

use crate::args::{GrammarOpts, LoadOpts, ModelOpts, SessionOpts};
use crate::common::{load_model, session};
use crate::error::{Error, Result};

mod constrained;

/// The budget reports compare against unless `--bandwidth-budget` says otherwise: the middle of
/// the 50–90 GB/s phones offer.
pub const DEFAULT_BUDGET_GBPS: f64 = 60.0;

/// `tern bench`'s options.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Prompt lengths to time, comma-separated (0: no prompt test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Decode lengths to time, comma-separated (0: no decode test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts, comma-separated [default: all cores].
    #[arg(short = 't', long, value_name = "N,...", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(
        short = 'r',
        long = "repetitions",
        alias = "reps",
        value_name = "N",
        default_value_t = 5
    )]
    pub repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Md)]
    pub output: Output,
    /// One JSON object of Tern's figures for one -t, -p and -n (what bench/vs-llamacpp.sh reads).
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// The memory bandwidth, GB/s, the decode ceiling is computed for.
    #[arg(long, value_name = "GBS", default_value_t = DEFAULT_BUDGET_GBPS)]
    pub bandwidth_budget: f64,
    /// Also measure this machine's memory bandwidth (STREAM-style, 1 GiB buffers).
    #[arg(long)]
    pub stream: bool,
    /// With --json-schema or --grammar (which also decode from this prompt, unconstrained and
    /// constrained, alternating, and report both speeds): the prompt [default: a ChatML
    /// request for JSON].
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    #[command(flatten)]
    grammar: GrammarOpts,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    load: LoadOpts,
    #[command(flatten)]
    session: SessionOpts,
}

/// `-o`: llama-bench's output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A markdown table.
    Md,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON array of results.
    Json,
    /// One JSON object per result and line.
    Jsonl,
}

/// One test: a prompt of `n` tokens, or `n` tokens decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    Prompt(usize),
    Gen(usize),
}

impl Test {
    /// llama-bench's name for it: `pp512`, `tg128`.
    fn name(self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Gen(n) => format!("tg{n}"),
        }
    }

    /// Tokens one run processes.
    fn tokens(self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => n,
        }
    }
}

/// One row of results: a test at a thread count, its timed runs.
struct Row {
    threads: usize,
    batch: usize,
    test: Test,
    /// Seconds of each run.
    seconds: Vec<f64>,
    /// For decode tests: bytes one decoded token reads, averaged over the positions visited.
    bytes_per_token: Option<f64>,
}

impl Row {
    /// Tokens per second of each run.
    fn samples_ts(&self) -> Vec<f64> {
        let n = self.test.tokens() as f64;
        self.seconds.iter().map(|s| n / s).collect()
    }

    /// Mean and sample standard deviation of tokens per second.
    fn ts(&self) -> (f64, f64) {
        mean_sd(&self.samples_ts())
    }

    /// GB/s the decode runs streamed.
    fn gbps(&self) -> Option<f64> {
        self.bytes_per_token.map(|b| b * self.ts().0 / 1e9)
    }
}

/// What the table says about the model, once.
struct ModelFacts {
    filename: String,
    /// `arch size type`, as llama-bench's model column (`llama 135M Q4_1`).
    kind: String,
    file_bytes: u64,
    n_params: u64,
    backend: &'static str,
    /// The precision the session runs (`--precision auto` resolved), then what was asked.
    precision: (&'static str, &'static str),
    kernels: Vec<String>,
    weights: String,
}

/// Runs `tern bench`.
pub fn main(args: BenchArgs) -> Result<()> {
    let mut n_prompt = args.n_prompt.clone();
    let mut n_gen = args.n_gen.clone();
    n_prompt.dedup();
    n_gen.dedup();
    let reps = args.repetitions.max(1);
    if args.json && (n_prompt.len() > 1 || n_gen.len() > 1 || args.threads.len() > 1) {
        return Err(Error::usage(
            "--json reports one -t, -p and -n; use -o json or -o jsonl for sweeps",
        ));
    }
    // Under TERN_INSN_MARKERS=1 (bench/arm-insn-count.sh) the runs are counted, not timed: no
    // warm-up, and phase markers around the load and the first prompt and decode runs.
    let markers = std::env::var_os("TERN_INSN_MARKERS").is_some_and(|v| v == "1");
    let grammar = crate::run::grammar_source(&args.grammar)?;

    if markers {
        phase_marker::<1>();
    }
    let loaded = load_model(&args.model, &args.load, args.session.precision)?;
    let model = loaded.model.clone();
    let max_p = n_prompt.iter().copied().max().unwrap_or(0);
    let max_n = n_gen.iter().copied().max().unwrap_or(0);
    // The whole prompt in one forward pass (up to 512 tokens), as llama-bench's default
    // micro-batch of 512 processes it.
    let batch = max_p.clamp(DEFAULT_BATCH, 512);
    let ctx = (max_p + max_n + 1).max(256);
    let vocab = model.config().vocab as u32;
    let tokens: Vec<u32> = (0..max_p.max(max_n) as u32)
        .map(|i| (i.wrapping_mul(7919) + 13) % vocab)
        .collect();
    let thread_counts: Vec<Option<usize>> = if args.threads.is_empty() {
        vec![None]
    } else {
        args.threads.iter().map(|&t| Some(t)).collect()
    };

    let mut facts = None;
    let mut rows = Vec::new();
    let mut constrained = None;
    let mut machine = None;
    let mut loaded = Some(loaded);
    for (i, &threads) in thread_counts.iter().enumerate() {
        // Weights mapped or copied are shared by every session; streamed ones have an arena
        // per session, so each thread count after the first loads the model again.
        let this = match loaded.take() {
            Some(l) => l,
            None => load_model(&args.model, &args.load, args.session.precision)?,
        };
        if let Some(next) = this.share() {
            loaded = Some(next);
        }
        let held = this.weights_held();
        let mut s = session(this, &args.session, &args.load, threads, ctx, batch)?;
        if facts.is_none() {
            facts = Some(model_facts(&args, &model, &s, held));
        }
        let tests: Vec<Test> = n_prompt
            .iter()
            .filter(|&&p| p > 0)
            .map(|&p| Test::Prompt(p))
            .chain(n_gen.iter().filter(|&&n| n > 0).map(|&n| Test::Gen(n)))
            .collect();
        let mut seconds = vec![Vec::new(); tests.len()];
        // One warm-up of each: page in the weights, spin up the workers.
        if !markers {
            for &t in &tests {
                run_test(&mut s, &tokens, t)?;
            }
        }
        for rep in 0..reps {
            let mark = markers && rep == 0 && i == 0;
            if mark {
                phase_marker::<2>();
            }
            for (k, &t) in tests.iter().enumerate() {
                if mark
                    && matches!(t, Test::Gen(_))
                    && !tests[..k].iter().any(|t| matches!(t, Test::Gen(_)))
                {
                    phase_marker::<3>();
                }
                seconds[k].push(run_test(&mut s, &tokens, t)?);
            }
            if mark {
                phase_marker::<4>();
            }
        }
        for (t, seconds) in tests.into_iter().zip(seconds) {
            // Bytes per decoded token, averaged over the positions the decode run visits
            // (linear in the position, so the mean of the first and the last).
            let bytes_per_token = match t {
                Test::Gen(n) => {
                    let at = |pos: usize| budget::bytes_per_token(&model, pos, s.kv_type()) as f64;
                    Some((at(0) + at(n - 1)) / 2.0)
                }
                Test::Prompt(_) => None,
            };
            rows.push(Row {
                threads: s.threads(),
                batch: s.batch(),
                test: t,
                seconds,
                bytes_per_token,
            });
        }
        if i == 0 {
            if let Some(g) = &grammar {
                let n = n_gen.first().copied().unwrap_or(128).max(1);
                let prompt = args.prompt.as_deref();
                constrained = Some(constrained::measure(&mut s, g, prompt, n, reps)?);
            }
            if args.stream {
                machine = Some(crate::stream::measure(s.threads()));
            }
        }
    }
    // The loop ran at least once (`thread_counts` is never empty).
    let facts = facts.ok_or("no thread count to run")?;
    let budget = BandwidthBudget::new(args.bandwidth_budget);

    if args.json {
        let pp = rows.iter().find(|r| matches!(r.test, Test::Prompt(_)));
        let tg = rows.iter().find(|r| matches!(r.test, Test::Gen(_)));
        let (pp_mean, pp_sd) = pp.map_or((None, None), |r| (Some(r.ts().0), Some(r.ts().1)));
        let (tg_mean, tg_sd) = tg.map_or((None, None), |r| (Some(r.ts().0), Some(r.ts().1)));
        let bytes = tg.and_then(|r| r.bytes_per_token);
        let gbps = tg.and_then(Row::gbps);
        let ceiling = bytes.map(|b| budget.ceiling_tok_s(b as u64));
        let result = json!({
            "model": args.model.model.display().to_string(),
            "threads": rows.first().map(|r| r.threads),
            "batch": rows.first().map(|r| r.batch),
            "n_prompt": n_prompt.first(),
            "n_gen": n_gen.first(),
            "reps": reps,
            "weights": facts.weights,
            "precision": facts.precision.0,
            "pp_tok_s": pp_mean,
            "pp_tok_s_sd": pp_sd,
            "tg_tok_s": tg_mean,
            "tg_tok_s_sd": tg_sd,
            "bytes_per_token": bytes.map(f64::round),
            "gbps": gbps,
            "budget_gbps": budget.gbps,
            "budget_ceiling_tok_s": ceiling,
            "budget_fraction": tg_mean.zip(ceiling).map(|(t, c)| t / c),
            "machine_read_gbps": machine.as_ref().map(|m| m.read_gbps),
            "machine_copy_gbps": machine.as_ref().map(|m| m.copy_gbps),
            "machine_fraction": gbps.zip(machine.as_ref()).map(|(g, m)| g / m.read_gbps),
            "kernels": facts.kernels,
            "constrained": constrained.as_ref().map(constrained::Figures::json),
        });
        println!("{result}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let result = match args.output {
        Output::Md => {
            print_header(&facts, &model);
            print_markdown(&mut out, &facts, &rows).and_then(|()| {
                print_extras(
                    &mut out,
                    &rows,
                    &budget,
                    constrained.as_ref(),
                    machine.as_ref(),
                )
            })
        }
        Output::Csv => print_csv(&mut out, &facts, &rows, &args),
        Output::Json => {
            let all: Vec<Value> = rows.iter().map(|r| row_json(&facts, r, &args)).collect();
            writeln!(out, "{}", Value::Array(all))
        }
        Output::Jsonl => rows
            .iter()
            .try_for_each(|r| writeln!(out, "{}", row_json(&facts, r, &args))),
    };
    result.map_err(Error::from_err)
}

/// Times one run of `test` from an empty context; returns its seconds.
fn run_test(s: &mut Session, tokens: &[u32], test: Test) -> Result<f64> {
    s.reset();
    let t = Instant::now();
    match test {
        Test::Prompt(n) => {
            s.feed(&tokens[..n]).map_err(Error::from_err)?;
        }
        Test::Gen(n) => {
            for &tok in &tokens[..n] {
                s.feed(&[tok]).map_err(Error::from_err)?;
            }
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The model's description, size and kernels.
fn model_facts(args: &BenchArgs, model: &Model, s: &Session, weights: String) -> ModelFacts {
    let meta = model.meta();
    let params = meta.n_params as f64;
    let size = if params < 1e9 {
        format!("{:.0}M", params / 1e6)
    } else {
        format!("{:.1}B", params / 1e9)
    };
    ModelFacts {
        filename: args.model.model.display().to_string(),
        kind: format!("{} {size} {}", model.config().arch.name(), meta.main_format),
        file_bytes: std::fs::metadata(&args.model.model).map_or(meta.tensor_bytes, |m| m.len()),
        n_params: meta.n_params,
        backend: model.kernels().backend().name(),
        precision: (s.precision().name(), args.session.precision.name()),
        kernels: kernel_names(model, s.precision()),
        weights,
    }
}

/// The kernel each format's decoding products run: the int8 GEMM under `--precision int8`,
/// the f16 dot under `--precision f16` where the backend has one, else the multi-row f32
/// kernel where the backend has one.
fn kernel_names(model: &Model, precision: ActivationPrecision) -> Vec<String> {
    let (int8, f16) = match precision {
        ActivationPrecision::Int8 => (true, false),
        ActivationPrecision::F16 => (false, true),
        // A session's precision is resolved; `Auto` would run as f32 kernels.
        ActivationPrecision::F32 | ActivationPrecision::Auto => (false, false),
    };
    let k = model.kernels();
    tern_kernels::Format::ALL
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
        .collect()
}

/// Tern's facts before the table, on stderr (stdout holds the table alone, as llama-bench's).
fn print_header(facts: &ModelFacts, model: &Model) {
    eprintln!("model     {}", facts.filename);
    eprintln!(
        "precision {} (--precision {})",
        facts.precision.0, facts.precision.1
    );
    eprintln!("kernels   {}", facts.kernels.join(" "));
    eprintln!("weights   {}", facts.weights);
    for c in model.ternary_choices() {
        let timed = c.timed.map_or(String::new(), |(mad, lut)| {
            format!(" (mad {:.0} µs, lut {:.0} µs)", mad * 1e6, lut * 1e6)
        });
        eprintln!(
            "ternary   {} {}x{}: {}{timed}",
            c.format.name(),
            c.rows,
            c.cols,
            c.kernel.name()
        );
    }
}

/// llama-bench's size column: MiB below a GiB, else GiB.
fn size_label(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let b = bytes as f64;
    if b < GIB {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", b / GIB)
    }
}

/// llama-bench's params column: millions below a billion, else billions.
fn params_label(n: u64) -> String {
    let n = n as f64;
    if n < 1e9 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} B", n / 1e9)
    }
}

/// The table: `| model | size | params | backend | threads | test | t/s |`.
fn print_markdown(out: &mut impl Write, facts: &ModelFacts, rows: &[Row]) -> std::io::Result<()> {
    // (header, width, right-aligned), llama-bench's widths.
    let cols = [
        ("model", 30, false),
        ("size", 10, true),
        ("params", 10, true),
        ("backend", 10, false),
        ("threads", 7, true),
        ("test", 13, true),
        ("t/s", 20, true),
    ];
    let cells = |values: [String; 7]| {
        let mut line = String::from("|");
        for ((_, w, right), v) in cols.iter().zip(values) {
            if *right {
                line.push_str(&format!(" {v:>w$} |"));
            } else {
                line.push_str(&format!(" {v:<w$} |"));
            }
        }
        line
    };
    writeln!(out, "{}", cells(cols.map(|(h, ..)| h.to_string())))?;
    let rule: Vec<String> = cols
        .iter()
        .map(|&(_, w, right)| {
            if right {
                format!(" {}: |", "-".repeat(w - 1))
            } else {
                format!(" {} |", "-".repeat(w))
            }
        })
        .collect();
    writeln!(out, "|{}", rule.concat())?;
    for r in rows {
        let (mean, sd) = r.ts();
        writeln!(
            out,
            "{}",
            cells([
                facts.kind.clone(),
                size_label(facts.file_bytes),
                params_label(facts.n_params),
                facts.backend.to_string(),
                r.threads.to_string(),
                r.test.name(),
                format!("{mean:.2} ± {sd:.2}"),
            ])
        )?;
    }
    Ok(())
}

/// Tern's figures after the table: bytes per decoded token against the bandwidth budget, the
/// constrained-decoding comparison, the machine's measured bandwidth.
fn print_extras(
    out: &mut impl Write,
    rows: &[Row],
    budget: &BandwidthBudget,
    constrained: Option<&constrained::Figures>,
    machine: Option<&crate::stream::Bandwidth>,
) -> std::io::Result<()> {
    writeln!(out)?;
    for r in rows {
        let (Some(bytes), Some(gbps)) = (r.bytes_per_token, r.gbps()) else {
            continue;
        };
        let ceiling = budget.ceiling_tok_s(bytes as u64);
        let tg = r.ts().0;
        writeln!(
            out,
            "{} at {} threads: {:.1} MB/token, {gbps:.2} GB/s; a {:.0} GB/s budget allows {ceiling:.0} tok/s, measured {:.1} % of that",
            r.test.name(),
            r.threads,
            bytes / 1e6,
            budget.gbps,
            100.0 * tg / ceiling
        )?;
        if let Some(m) = machine {
            writeln!(
                out,
                "machine   {:.1} GB/s read, {:.1} GB/s copy; decode streams {gbps:.1} GB/s = {:.1} % of the read bandwidth",
                m.read_gbps,
                m.copy_gbps,
                100.0 * gbps / m.read_gbps
            )?;
        }
    }
    if let Some(c) = constrained {
        c.print(out)?;
    }
    Ok(())
}

/// One result as a JSON object, with llama-bench's field names where it has the field.
fn row_json(facts: &ModelFacts, r: &Row, args: &BenchArgs) -> Value {
    let (avg_ts, stddev_ts) = r.ts();
    let ns: Vec<f64> = r.seconds.iter().map(|s| (s * 1e9).round()).collect();
    let (avg_ns, stddev_ns) = mean_sd(&ns);
    let ns: Vec<u64> = ns.iter().map(|&n| n as u64).collect();
    let (n_prompt, n_gen) = match r.test {
        Test::Prompt(n) => (n, 0),
        Test::Gen(n) => (0, n),
    };
    json!({
        "model_filename": facts.filename,
        "model_type": facts.kind,
        "model_size": facts.file_bytes,
        "model_n_params": facts.n_params,
        "backends": facts.backend,
        "n_threads": r.threads,
        "n_batch": r.batch,
        "type_k": args.session.kv_type.name(),
        "precision": facts.precision.0,
        "weights": facts.weights,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "avg_ns": avg_ns.round() as u64,
        "stddev_ns": stddev_ns.round() as u64,
        "avg_ts": avg_ts,
        "stddev_ts": stddev_ts,
        "samples_ns": ns,
        "samples_ts": r.samples_ts(),
        "bytes_per_token": r.bytes_per_token.map(|b| b.round() as u64),
        "gbps": r.gbps(),
        "kernels": facts.kernels,
    })
}

/// The results as CSV: the scalar fields of [`row_json`], a header line first.
fn print_csv(
    out: &mut impl Write,
    facts: &ModelFacts,
    rows: &[Row],
    args: &BenchArgs,
) -> std::io::Result<()> {
    const FIELDS: [&str; 18] = [
        "model_filename",
        "model_type",
        "model_size",
        "model_n_params",
        "backends",
        "n_threads",
        "n_batch",
        "type_k",
        "precision",
        "weights",
        "n_prompt",
        "n_gen",
        "avg_ns",
        "stddev_ns",
        "avg_ts",
        "stddev_ts",
        "bytes_per_token",
        "gbps",
    ];
    writeln!(out, "{}", FIELDS.join(","))?;
    for r in rows {
        let v = row_json(facts, r, args);
        let cells: Vec<String> = FIELDS
            .iter()
            .map(|f| match &v[*f] {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => other.to_string(),
            })
            .collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
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

/// Mean and sample standard deviation (0 for one sample; NaN for none, which JSON prints as
/// null).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_statistics_follow_llama_bench() {
        assert_eq!(size_label(100 * 1024 * 1024), "100.00 MiB");
        assert_eq!(size_label(3 * 1024 * 1024 * 1024), "3.00 GiB");
        assert_eq!(params_label(134_515_008), "134.52 M");
        assert_eq!(params_label(6_740_000_000), "6.74 B");
        assert_eq!(mean_sd(&[2.0, 4.0]), (3.0, 2f64.sqrt()));
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(Test::Prompt(512).name(), "pp512");
        assert_eq!(Test::Gen(128).name(), "tg128");
    }
}
