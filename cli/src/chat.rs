//! `tern chat`: a conversation in the terminal, formatted by the model's chat template, with
//! the KV cache kept between turns.
//!
//! Interactive when stdin is a terminal: a `> ` prompt, streamed answers, `/reset`,
//! `/save FILE`, `/load FILE`, `/quit`; Ctrl-C stops the current answer (at the prompt it
//! exits). Otherwise (or with `--stdin`) every line of stdin is one user turn and every reply
//! is printed on stdout followed by a newline (a reply may itself span lines); commands work
//! the same, their messages go to stderr. After each reply a stats line goes to stderr:
//! `[prefill: N new tokens, M reused, D dropped, T ms | G generated: S tok/s | stop: R]`.
//!
//! `--var NAME=VALUE` (repeatable) sets a template variable for every turn, as
//! `apply_chat_template(**kwargs)` does: `enable_thinking=false` for the non-thinking mode of
//! Qwen3 or SmolLM3, `date_string=...` for Llama 3.x. VALUE `true` / `false` is a boolean, an
//! integer a number, anything else text.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tern_runtime::chat::{
    Chat, ChatOptions, ChatTemplate, JsonValue, OverflowPolicy, RenderOptions, Reply, ReplyOptions,
    TemplateError,
};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::stats::GenerationStats;
use tern_runtime::Flow;

use crate::args::{LoadOpts, ModelOpts, SamplingOpts, SessionOpts, ThreadOpts};
use crate::common::{load_model, session};
use crate::error::{Context, Error, Result};
use crate::run::{figure, sampler_options};
use crate::signals::{self, GENERATING, INTERRUPTED};

mod tools;

/// `tern chat`'s options.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// The system prompt. llama.cpp: -sys.
    #[arg(long, visible_alias = "system-prompt", value_name = "TEXT")]
    pub system: Option<String>,
    /// A Jinja chat template to use instead of the model's.
    #[arg(long, visible_alias = "chat-template-file", value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Most tokens per reply.
    #[arg(short, long, value_name = "N", default_value_t = 512)]
    pub n_predict: usize,
    /// End a reply when it generates TEXT (repeatable).
    #[arg(
        short = 'r',
        long,
        visible_alias = "reverse-prompt",
        value_name = "TEXT"
    )]
    pub stop: Vec<String>,
    /// Set a template variable for every turn (repeatable): true/false are booleans, an
    /// integer a number, anything else text.
    #[arg(long, value_name = "NAME=VALUE")]
    pub var: Vec<String>,
    /// Read one user turn per line of stdin even from a terminal.
    #[arg(long)]
    pub stdin: bool,
    /// Print each rendered prompt to stderr.
    #[arg(long)]
    pub print_prompt: bool,
    /// Refuse a turn that overflows the context instead of dropping the oldest turns.
    #[arg(long)]
    pub refuse_overflow: bool,
    /// Process the whole conversation again every turn instead of reusing the KV cache.
    #[arg(long)]
    pub no_reuse: bool,
    /// Tools the model may call (a JSON array); results are read from stdin.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Do not constrain tool-call arguments to their schemas.
    #[arg(long, requires = "tools")]
    pub no_constrain: bool,
    #[command(flatten)]
    sampling: SamplingOpts,
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    load: LoadOpts,
    #[command(flatten)]
    session: SessionOpts,
    #[command(flatten)]
    threads: ThreadOpts,
}

const HELP: &str =
    "commands: /reset (start over, keep the system prompt), /save FILE, /load FILE, \
/quit; Ctrl-C stops an answer";

/// Runs `tern chat`.
pub fn main(args: ChatArgs) -> Result<()> {
    let vars = args
        .var
        .iter()
        .map(|v| template_var(v))
        .collect::<Result<Vec<_>>>()?;
    let sampling = sampler_options(&args.sampling)?;
    let reply_opts = ReplyOptions {
        max_tokens: args.n_predict,
        stop: args.stop.clone(),
    };
    let print_prompt = args.print_prompt;
    let interactive = !args.stdin && std::io::stdin().is_terminal();

    let loaded = load_model(&args.model, &args.load, args.session.precision)?;
    let model = loaded.model.clone();
    let template = match &args.template {
        Some(path) => {
            let src = std::fs::read_to_string(path).context(path.display())?;
            ChatTemplate::new(&src)
                .context(path.display())?
                .with_tokenizer(model.tokenizer())
        }
        None => ChatTemplate::from_model(&model).map_err(|e| match e {
            TemplateError::Missing => {
                Error::from("the model has no chat template; pass one with --template FILE")
            }
            e => Error::from_err(e),
        })?,
    };
    let opts = ChatOptions {
        sampling,
        overflow: if args.refuse_overflow {
            OverflowPolicy::Refuse
        } else {
            OverflowPolicy::DropOldestTurns
        },
        reuse_cache: !args.no_reuse,
    };
    let session = session(
        loaded,
        &args.session,
        &args.load,
        args.threads.threads,
        0,
        DEFAULT_BATCH,
    )?;
    let mut chat = Chat::new(session, template, opts);
    chat.set_system(args.system.as_deref());
    chat.set_render_options(RenderOptions {
        vars,
        ..RenderOptions::default()
    });

    if let Some(path) = &args.tools {
        return tools::run(chat, path, reply_opts, !args.no_constrain, interactive);
    }
    signals::install_sigint();
    if interactive {
        eprintln!(
            "tern chat: {} tokens of context. {HELP}",
            chat.session().context_len()
        );
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut line = String::new();
    loop {
        if interactive {
            print!("> ");
            let _ = stdout.flush();
        }
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e).context("reading stdin"),
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        match command(&mut chat, text) {
            Some(Command::Quit) => break,
            Some(Command::Done) => continue,
            None => {}
        }
        INTERRUPTED.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let result = chat.send(text, &reply_opts, &mut |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
            if INTERRUPTED.load(Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        GENERATING.store(false, Ordering::SeqCst);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
        match result {
            Ok(reply) => report(&reply, print_prompt),
            // The conversation is unchanged: say why and read the next turn.
            Err(e) => eprintln!("error: {}", Error::from_err(e)),
        }
    }
    Ok(())
}

/// A `--var NAME=VALUE` argument: `true` and `false` are booleans, an integer is a number,
/// anything else is text.
fn template_var(arg: &str) -> Result<(String, JsonValue)> {
    let (name, value) = arg
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| Error::usage(format!("--var {arg}: expected NAME=VALUE")))?;
    let value = match value {
        "true" => JsonValue::Bool(true),
        "false" => JsonValue::Bool(false),
        v => match v.parse::<i64>() {
            Ok(i) => JsonValue::Int(i),
            Err(_) => JsonValue::from(v),
        },
    };
    Ok((name.to_string(), value))
}

/// What a `/command` line did.
enum Command {
    /// Handled; read the next line.
    Done,
    /// Leave.
    Quit,
}

/// Runs `text` if it is a command (`None`: it is a message for the model).
fn command(chat: &mut Chat, text: &str) -> Option<Command> {
    let (name, arg) = match text.split_once(' ') {
        Some((n, a)) => (n, a.trim()),
        None => (text, ""),
    };
    match name {
        "/quit" | "/exit" => Some(Command::Quit),
        "/help" => {
            eprintln!("{HELP}");
            Some(Command::Done)
        }
        "/reset" => {
            chat.reset();
            eprintln!("[conversation reset]");
            Some(Command::Done)
        }
        "/save" if !arg.is_empty() => {
            let bytes = chat.save();
            match std::fs::write(Path::new(arg), &bytes) {
                Ok(()) => eprintln!(
                    "[saved {} messages, {} tokens, {} bytes to {arg}]",
                    chat.messages().len(),
                    chat.session().tokens().len(),
                    bytes.len()
                ),
                Err(e) => eprintln!("error: {arg}: {e}"),
            }
            Some(Command::Done)
        }
        "/load" if !arg.is_empty() => {
            match std::fs::read(Path::new(arg))
                .map_err(|e| e.to_string())
                .and_then(|b| chat.restore(&b).map_err(|e| e.to_string()))
            {
                Ok(()) => eprintln!(
                    "[loaded {} messages, {} tokens from {arg}]",
                    chat.messages().len(),
                    chat.session().tokens().len()
                ),
                Err(e) => eprintln!("error: {arg}: {e}"),
            }
            Some(Command::Done)
        }
        "/save" | "/load" => {
            eprintln!("error: {name} needs a file name");
            Some(Command::Done)
        }
        _ => None,
    }
}

/// The stats line (and the prompt, with `--print-prompt`) on stderr.
fn report(reply: &Reply, print_prompt: bool) {
    if print_prompt {
        eprintln!(
            "[prompt] {}",
            serde_json::Value::from(reply.prompt.as_str())
        );
    }
    let p = &reply.prefill;
    let stats = GenerationStats::from_offsets(
        p.new,
        reply.n_tokens,
        p.time,
        None,
        p.time + reply.decode_time,
        reply.stop,
    );
    eprintln!(
        "[prefill: {} new tokens, {} reused, {} dropped, {:.1} ms | {} generated: {} tok/s | stop: {:?}]",
        p.new,
        p.reused,
        p.dropped_messages,
        p.time.as_secs_f64() * 1e3,
        stats.generated,
        figure(stats.decode_tok_s(), 1),
        stats.stop
    );
}
