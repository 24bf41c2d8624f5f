//! The command line, declared once with clap's derive: the subcommands and the option groups
//! they share.
//!
//! Options that several commands take live in one group each and are flattened into the
//! commands (`#[command(flatten)]`): an option every model-running command should have is one
//! field in [`ModelOpts`] (`run`, `chat`, `perplexity`, `bench`, `inspect`), [`LoadOpts`] or
//! [`SessionOpts`].
//!
//! llama.cpp spells a few options as one dash and several letters (`-sys`, `-ctk`), which no
//! parser that bundles short flags (`-ct` = `-c t`) reads as one name; [`llama_aliases`]
//! rewrites those before clap sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tern_runtime::{ActivationPrecision, KvType};

/// `tern`: run small language models offline.
#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    propagate_version = true,
    max_term_width = 100,
    // A repeated option takes its last value, as the hand parser did and llama.cpp does.
    args_override_self = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text from a prompt, streaming it as it comes.
    Run(crate::run::RunArgs),
    /// A conversation formatted by the model's chat template.
    Chat(crate::chat::ChatArgs),
    /// Perplexity over a text file, computed as llama.cpp's perplexity tool does.
    Perplexity(crate::perplexity::PerplexityArgs),
    /// What a GGUF file holds and what one decoded token costs.
    Inspect(crate::inspect::InspectArgs),
    /// Prompt-processing and decode speed, as llama-bench measures them.
    Bench(crate::bench::BenchArgs),
    /// Which quantization of a model fits a bandwidth budget, a speed target and a RAM cap.
    Plan(crate::plan::PlanArgs),
    /// Rewrite a GGUF model's weight matrices in another type.
    Quantize(crate::quantize::QuantizeArgs),
    /// Print a shell completion script, e.g. `tern completions bash >
    /// ~/.local/share/bash-completion/completions/tern`.
    Completions(CompletionsArgs),
}

/// `tern completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Which model, and which kernels run it.
#[derive(Args, Debug)]
#[command(next_help_heading = "Model")]
pub struct ModelOpts {
    /// The GGUF file.
    #[arg(short, long, value_name = "FILE")]
    pub model: PathBuf,
    /// Kernel backend: auto (the best this CPU runs), scalar, avx2, avxvnni, avx512vnni, neon,
    /// neon-dotprod or neon-i8mm.
    #[arg(long, value_name = "NAME", default_value = "auto")]
    pub kernels: String,
    /// Ternary matrices: choose per shape at load (auto), integer multiply-add (mad), lookup
    /// tables (lut) or the f32 reference path.
    #[arg(long, value_name = "KIND", value_parser = ["auto", "mad", "lut", "f32"])]
    pub ternary: Option<String>,
    /// expf instead of the table exp in softmax and SwiGLU.
    #[arg(long)]
    pub exact_exp: bool,
    #[command(flatten)]
    pub delegate: crate::delegate::DelegateOpts,
}

/// How the weights reach memory.
#[derive(Args, Debug)]
#[command(next_help_heading = "Loading")]
pub struct LoadOpts {
    /// Hold the file memory-mapped, or copied into huge pages (faster decoding); auto copies
    /// on desktop Linux when the model is at most a quarter of the available memory.
    #[arg(long, value_enum, default_value_t = LoadMode::Auto)]
    pub load: LoadMode,
    /// Cap on resident weights in MB; larger models pass through in slices (implies --load map).
    #[arg(long, value_name = "MB")]
    pub max_resident: Option<f64>,
    /// Read weights through a fixed arena of MB instead of mapping the file.
    #[arg(long, value_name = "MB")]
    pub stream_arena: Option<f64>,
}

/// `--load`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Copy when the model is small next to the available memory, else map.
    Auto,
    /// Memory-map the file.
    Map,
    /// Copy the file into (huge-page) memory.
    Copy,
}

/// How a session computes and what it holds.
#[derive(Args, Debug)]
#[command(next_help_heading = "Session")]
pub struct SessionOpts {
    /// Context length [default: the model's, at most 4096; perplexity: 512].
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Prompt tokens per forward pass [default: 64; bench: the prompt, at most 512].
    #[arg(short = 'b', long, visible_alias = "batch-size", value_name = "N")]
    pub batch: Option<usize>,
    /// Activations: auto (int8 where the CPU's int8 dots are fast: aarch64 dotprod, x86 AVX2
    /// and up; else f32), f32 (most accurate), int8 (integer dots) or f16
    /// (f16 dots on aarch64 with fp16, f32 elsewhere).
    #[arg(long, value_name = "P", default_value = "auto", value_parser = precision)]
    pub precision: ActivationPrecision,
    /// KV cache storage: f16 (half the memory) or f32 (exact). llama.cpp: -ctk.
    #[arg(long, visible_alias = "cache-type-k", value_name = "T", default_value = "f16", value_parser = kv_type)]
    pub kv_type: KvType,
}

/// `--threads` of the commands that run one configuration.
#[derive(Args, Debug)]
#[command(next_help_heading = "Session")]
pub struct ThreadOpts {
    /// Worker threads [default: all cores].
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Sampling options of `run` and `chat`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Sampling")]
pub struct SamplingOpts {
    /// Temperature (0: greedy).
    #[arg(long, value_name = "T")]
    pub temp: Option<f32>,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Keep the most likely tokens whose probabilities sum to P.
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, value_name = "P")]
    pub min_p: Option<f32>,
    /// Penalty on tokens already in the context (1: none).
    #[arg(long, value_name = "R")]
    pub repeat_penalty: Option<f32>,
    /// Random seed.
    #[arg(short = 's', long, value_name = "S")]
    pub seed: Option<u64>,
}

/// Options that constrain the output (`run`) or measure what constraining costs (`bench`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Constraint")]
pub struct GrammarOpts {
    /// Constrain the output to one JSON document valid under the schema in FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to a llama.cpp GBNF grammar (a .lark file: Lark).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

/// `--precision`'s values.
fn precision(s: &str) -> Result<ActivationPrecision, String> {
    ActivationPrecision::from_name(s).ok_or_else(|| "expected auto, f32, int8 or f16".into())
}

/// `--kv-type`'s values.
fn kv_type(s: &str) -> Result<KvType, String> {
    KvType::from_name(s).ok_or_else(|| "expected f16 or f32".into())
}

/// llama.cpp's one-dash multi-letter options and the names they stand for here.
const LLAMA_ALIASES: [(&str, &str); 2] = [("-sys", "--system"), ("-ctk", "--kv-type")];

/// Rewrites llama.cpp's `-sys TEXT` / `-ctk T` (and `-sys=TEXT`) to their long names, up to a
/// `--`. A value that is itself one of these words (`-p -sys`) is rewritten too: write it
/// `-p=-sys`.
pub fn llama_aliases(argv: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter();
    for a in it.by_ref() {
        if a == "--" {
            out.push(a);
            break;
        }
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        match LLAMA_ALIASES.iter().find(|(short, _)| *short == name) {
            Some((_, long)) => out.push(match value {
                Some(v) => format!("{long}={v}"),
                None => (*long).to_string(),
            }),
            None => out.push(a),
        }
    }
    out.extend(it);
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn llama_aliases_become_long_names() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            llama_aliases(v(&["chat", "-sys", "be brief", "-ctk=f32", "--", "-sys"])),
            v(&[
                "chat",
                "--system",
                "be brief",
                "--kv-type=f32",
                "--",
                "-sys"
            ])
        );
    }
}
