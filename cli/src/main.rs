//! `tern`: run, measure and inspect GGUF models from a terminal.

mod args;
mod bench;
mod chat;
mod common;
mod delegate;
mod error;
mod inspect;
mod perplexity;
mod plan;
mod quantize;
mod run;
mod signals;
mod stream;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    signals::restore_sigpipe();
    // Arguments that are not valid UTF-8 (a prompt from a script with a broken encoding) are
    // an error naming the argument, not a panic.
    let mut argv = Vec::new();
    for (i, arg) in std::env::args_os().enumerate() {
        match arg.into_string() {
            Ok(a) => argv.push(a),
            Err(raw) => {
                eprintln!(
                    "error: argument {i} is not valid UTF-8: {}",
                    raw.to_string_lossy()
                );
                return ExitCode::from(2);
            }
        }
    }
    let cli = match Cli::try_parse_from(args::llama_aliases(argv)) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let result = match cli.command {
        Command::Run(a) => run::main(a),
        Command::Chat(a) => chat::main(a),
        Command::Perplexity(a) => perplexity::main(a),
        Command::Inspect(a) => inspect::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Plan(a) => plan::main(a),
        Command::Quantize(a) => quantize::main(a),
        Command::Completions(a) => {
            // The script goes to stdout (a closed pipe ends the process: SIGPIPE is restored).
            clap_complete::generate(a.shell, &mut Cli::command(), "tern", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}
