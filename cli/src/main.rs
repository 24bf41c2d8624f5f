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

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let rest = &argv[1..];
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
