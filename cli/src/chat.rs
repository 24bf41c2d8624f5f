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
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use tern_runtime::chat::{
    Chat, ChatOptions, ChatTemplate, JsonValue, OverflowPolicy, RenderOptions, Reply, ReplyOptions,
    TemplateError,
};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::{Flow, SamplerOptions};

use crate::args::{opt, switch, Args};
use crate::common::{load_model, session, MODEL_OPTS};
use crate::json;

mod tools;

pub const USAGE: &str =
    "tern chat -m FILE [--system TEXT] [--template FILE] [-n N] [--temp T] [--top-k K]
         [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--stop TEXT]...
         [--var NAME=VALUE]... [--threads T] [-c CTX] [--stdin] [--print-prompt]
         [--refuse-overflow] [--no-reuse] [--tools FILE [--no-constrain]]
  --tools FILE        tools the model may call (JSON array); results are read from stdin
  --no-constrain      do not constrain tool-call arguments to their schemas";

const HELP: &str =
    "commands: /reset (start over, keep the system prompt), /save FILE, /load FILE, \
/quit; Ctrl-C stops an answer";

/// Set while an answer is being generated: Ctrl-C then stops the answer instead of exiting.
static GENERATING: AtomicBool = AtomicBool::new(false);
/// Set by Ctrl-C during an answer.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn main(argv: &[String]) -> Result<(), String> {
    // `--stop` and `--var` may be repeated; the common parser keeps one value per option.
    let mut stop = Vec::new();
    let mut vars = Vec::new();
    let mut rest = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--stop" {
            stop.push(it.next().ok_or("option --stop needs a value")?.clone());
        } else if a == "--var" {
            vars.push(template_var(
                it.next().ok_or("option --var needs NAME=VALUE")?,
            )?);
        } else {
            rest.push(a.clone());
        }
    }
    let mut specs = Vec::from(MODEL_OPTS);
    specs.extend([
        opt("system", None),
        opt("template", None),
        opt("n-predict", Some("n")),
        opt("temp", None),
        opt("top-k", None),
        opt("top-p", None),
        opt("min-p", None),
        opt("repeat-penalty", None),
        opt("seed", None),
        switch("stdin"),
        switch("print-prompt"),
        switch("refuse-overflow"),
        switch("no-reuse"),
        opt("tools", None),
        switch("no-constrain"),
    ]);
    let args = Args::parse(&rest, &specs)?;
    let d = SamplerOptions::default();
    let sampling = SamplerOptions {
        temperature: args.get("temp", d.temperature)?,
        top_k: args.get("top-k", d.top_k)?,
        top_p: args.get("top-p", d.top_p)?,
        min_p: args.get("min-p", d.min_p)?,
        repeat_penalty: args.get("repeat-penalty", d.repeat_penalty)?,
        seed: args.get("seed", d.seed)?,
        ..d
    }
    .validated()
    .map_err(|e| format!("invalid sampling option: {e}"))?;
    let reply_opts = ReplyOptions {
        max_tokens: args.get("n-predict", 512)?,
        stop,
    };
    let print_prompt = args.flag("print-prompt");
    let interactive = !args.flag("stdin") && std::io::stdin().is_terminal();

    let loaded = load_model(&args)?;
    let model = loaded.model.clone();
    let template = match args.str("template") {
        Some(path) => {
            let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            ChatTemplate::new(&src)
                .map_err(|e| format!("{path}: {e}"))?
                .with_tokenizer(model.tokenizer())
        }
        None => ChatTemplate::from_model(&model).map_err(|e| match e {
            TemplateError::Missing => {
                "the model has no chat template; pass one with --template FILE".to_string()
            }
            e => e.to_string(),
        })?,
    };
    let opts = ChatOptions {
        sampling,
        overflow: if args.flag("refuse-overflow") {
            OverflowPolicy::Refuse
        } else {
            OverflowPolicy::DropOldestTurns
        },
        reuse_cache: !args.flag("no-reuse"),
    };
    let mut chat = Chat::new(session(loaded, &args, 0, DEFAULT_BATCH)?, template, opts);
    chat.set_system(args.str("system"));
    chat.set_render_options(RenderOptions {
        vars,
        ..RenderOptions::default()
    });

    if let Some(path) = args.str("tools") {
        return tools::run(
            chat,
            path,
            reply_opts.max_tokens,
            !args.flag("no-constrain"),
            interactive,
        );
    }
    sigint::install();
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
            Err(e) => return Err(format!("reading stdin: {e}")),
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
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}

/// A `--var NAME=VALUE` argument: `true` and `false` are booleans, an integer is a number,
/// anything else is text.
fn template_var(arg: &str) -> Result<(String, JsonValue), String> {
    let (name, value) = arg
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("--var {arg}: expected NAME=VALUE"))?;
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
        eprintln!("[prompt] {}", json::string(&reply.prompt));
    }
    let p = &reply.prefill;
    let decode_s = reply.decode_time.as_secs_f64();
    let tok_s = if reply.n_tokens > 1 && decode_s > 0.0 {
        (reply.n_tokens - 1) as f64 / decode_s
    } else {
        f64::NAN
    };
    eprintln!(
        "[prefill: {} new tokens, {} reused, {} dropped, {:.1} ms | {} generated: {:.1} tok/s | stop: {:?}]",
        p.new,
        p.reused,
        p.dropped_messages,
        p.time.as_secs_f64() * 1e3,
        reply.n_tokens,
        tok_s,
        reply.stop
    );
}

/// Ctrl-C: stops the answer being generated, or exits at the prompt.
#[cfg(unix)]
mod sigint {
    use std::ffi::c_int;
    use std::sync::atomic::Ordering;

    use super::{GENERATING, INTERRUPTED};

    const SIGINT: c_int = 2;

    extern "C" {
        /// C's `signal(2)`; returns the previous handler (`SIG_ERR` on failure).
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
        /// `_exit(2)`: ends the process without running atexit handlers.
        fn _exit(status: c_int) -> !;
    }

    extern "C" fn on_sigint(_: c_int) {
        // Only async-signal-safe work here: lock-free atomics and `_exit`.
        if GENERATING.load(Ordering::SeqCst) {
            INTERRUPTED.store(true, Ordering::SeqCst);
        } else {
            // SAFETY: `_exit` is async-signal-safe and takes any status.
            unsafe { _exit(130) }
        }
    }

    /// Installs the handler (best effort: on failure Ctrl-C keeps its default, exiting).
    pub fn install() {
        // SAFETY: `signal` is the C library's, with its C signature; `on_sigint` is an
        // `extern "C" fn(c_int)` that lives for the whole program and only touches atomics or
        // calls `_exit`, both allowed in a signal handler. SIGINT (2) is the same number on
        // every unix Rust supports.
        unsafe {
            signal(SIGINT, on_sigint);
        }
    }
}

/// No handler elsewhere: Ctrl-C ends the program.
#[cfg(not(unix))]
mod sigint {
    pub fn install() {}
}
