//! `tern`: run, measure and inspect GGUF models from a terminal.

mod args;
mod bench;
mod chat;
mod common;
mod inspect;
mod json;
mod perplexity;
mod plan;
mod quantize;
mod run;
mod sigpipe;
mod stream;

use std::process::ExitCode;

fn usage() -> String {
    let commands = [
        run::USAGE,
        chat::USAGE,
        perplexity::USAGE,
        inspect::USAGE,
        bench::USAGE,
        plan::USAGE,
        quantize::USAGE,
    ];
    format!(
        "tern: run small language models offline\n\nusage:\n  {}\n",
        commands.join("\n  ")
    )
}

/// The usage line of subcommand `cmd`, for `tern CMD --help`.
fn command_usage(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "run" => run::USAGE,
        "chat" => chat::USAGE,
        "perplexity" => perplexity::USAGE,
        "inspect" => inspect::USAGE,
        "bench" => bench::USAGE,
        "plan" => plan::USAGE,
        "quantize" => quantize::USAGE,
        _ => return None,
    })
}

/// The options every model-running subcommand also takes (`common::MODEL_OPTS`).
const MODEL_OPTIONS_HELP: &str = "
options of every command that runs a model:
  -m, --model FILE         the GGUF file
  -t, --threads N          worker threads (default: all cores)
  -c, --ctx-size N         context length (default: the model's, at most 4096)
  -b, --batch N            prompt tokens per forward pass (default 64; bench: the prompt, ≤ 512)
  --precision f32|int8|f16 f32 activations (default), int8 activations and integer dots, or
                           f16 activations and f16 dots (aarch64 with fp16; f32 on other SIMD)
  --kv-type f16|f32        KV cache storage: f16 (default, half the memory) or f32 (exact)
  --kernels NAME           auto (default), scalar, avx2, avxvnni, avx512vnni, neon, neon-dotprod,
                           neon-i8mm
  --ternary auto|mad|lut|f32  ternary matrices: choose per shape at load (default), integer
                           multiply-add, lookup tables, or the f32 reference path
  --load auto|map|copy     hold the file memory-mapped, or copied into huge pages (faster
                           decoding; auto copies on desktop Linux when the model is at most a
                           quarter of the available memory)
  --max-resident MB        cap on resident weights; larger models pass through in slices
                           (implies --load map)
  --stream-arena MB        read weights through a fixed arena instead of mapping the file
  --exact-exp              expf instead of the table exp in softmax and SwiGLU
";

fn main() -> ExitCode {
    sigpipe::restore_default();
    // Arguments that are not valid UTF-8 (a prompt from a script with a broken encoding) are
    // an error naming the argument, not a panic.
    let mut argv = Vec::new();
    for (i, arg) in std::env::args_os().skip(1).enumerate() {
        match arg.into_string() {
            Ok(a) => argv.push(a),
            Err(raw) => {
                eprintln!(
                    "error: argument {} is not valid UTF-8: {}",
                    i + 1,
                    raw.to_string_lossy()
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(cmd) = argv.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &argv[1..];
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        if let Some(text) = command_usage(cmd) {
            let runs_model = ["run", "chat", "perplexity", "bench"].contains(&cmd.as_str());
            let common = if runs_model { MODEL_OPTIONS_HELP } else { "" };
            print!("usage:\n  {text}\n{common}");
            return ExitCode::SUCCESS;
        }
    }
    let result = match cmd.as_str() {
        "run" => run::main(rest),
        "chat" => chat::main(rest),
        "perplexity" => perplexity::main(rest),
        "inspect" => inspect::main(rest),
        "bench" => bench::main(rest),
        "quantize" => quantize::main(rest),
        "plan" => plan::main(rest),
        "help" | "--help" | "-h" => {
            print!("{}", usage());
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
