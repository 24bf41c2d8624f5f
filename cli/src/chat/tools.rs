//! `tern chat --tools FILE`: a conversation in which the model may call the tools the file
//! declares (a JSON array of `{"type": "function", "function": {name, description,
//! parameters}}` or bare `{name, description, parameters}`).
//!
//! A reply's text streams to stdout; each call is printed on its own line as
//! `<tool_call> {"name":…,"arguments":{…}}` (one JSON object, written by serde_json), an
//! incomplete one as `<incomplete_call> RAW`.
//! After a reply with calls, one line per call is read from stdin as that call's result (an
//! interactive terminal prompts `result of NAME> `), and the model answers with the results;
//! the KV cache is reused across all of it.

use std::io::{BufRead, Write};
use std::path::Path;

use tern_runtime::chat::{Chat, ReplyOptions};
use tern_runtime::constrain::tools::{parse_tools, ToolChat, ToolEvent, ToolReply};
use tern_runtime::constrain::ConstraintVocab;
use tern_runtime::Flow;

use crate::error::{Context, Error, Result};

/// Most call → result → reply rounds after one user message.
const MAX_ROUNDS: usize = 4;

/// Runs the tool-calling conversation until stdin ends or `/quit`.
pub fn run(
    chat: Chat,
    tools_path: &Path,
    reply: ReplyOptions,
    constrained: bool,
    interactive: bool,
) -> Result<()> {
    let name = tools_path.display();
    let text = std::fs::read_to_string(tools_path).context(&name)?;
    let tools = parse_tools(&text).context(&name)?;
    let model = std::sync::Arc::clone(chat.session().model());
    let vocab =
        ConstraintVocab::new(model.tokenizer(), model.config().vocab).map_err(Error::from_err)?;
    let mut tc = ToolChat::new(chat, tools, &vocab).context(&name)?;
    tc.set_constrained(constrained);
    // `--stop`: ends free text as in a plain chat; a call's JSON is never cut (its grammar
    // decides where it ends).
    tc.set_stop_strings(reply.stop);
    let max_tokens = reply.max_tokens;
    if interactive {
        eprintln!(
            "tern chat: {} tools, {:?} call syntax, arguments {}. /quit leaves.",
            tc.tools().len(),
            tc.format(),
            if constrained { "constrained" } else { "free" }
        );
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut line = String::new();
    let read_line = |prompt: &str, line: &mut String| -> Result<bool> {
        if interactive {
            print!("{prompt}");
            let _ = std::io::stdout().flush();
        }
        line.clear();
        let n = stdin.lock().read_line(line).context("reading stdin")?;
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        Ok(n > 0)
    };
    let mut on_event = |ev: ToolEvent<'_>| {
        match ev {
            ToolEvent::Text(t) => {
                let _ = stdout.write_all(t.as_bytes());
            }
            ToolEvent::ToolCall(c) => {
                let call = serde_json::json!({ "name": c.name, "arguments": c.arguments });
                let _ = writeln!(stdout, "\n<tool_call> {call}");
            }
            ToolEvent::InvalidToolCall { raw, reason } => {
                let _ = writeln!(stdout, "\n<invalid_call> {reason}: {raw}");
            }
            ToolEvent::IncompleteToolCall { raw } => {
                let _ = writeln!(stdout, "\n<incomplete_call> {raw}");
            }
        }
        let _ = stdout.flush();
        Flow::Continue
    };
    loop {
        if !read_line("> ", &mut line)? {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        if line.trim() == "/quit" {
            return Ok(());
        }
        let mut reply = tc
            .send(&line, max_tokens, &mut on_event)
            .map_err(Error::from_err)?;
        report(&reply);
        // Answer the calls, then let the model go on, until a reply makes no call (at most
        // `MAX_ROUNDS` rounds: a small model may call the same tool again and again).
        let mut rounds = 0;
        while !reply.calls.is_empty() && rounds < MAX_ROUNDS {
            rounds += 1;
            for call in &reply.calls {
                if !read_line(&format!("result of {}> ", call.name), &mut line)? {
                    return Ok(());
                }
                tc.push_tool_result(call, &line);
            }
            reply = tc
                .respond(max_tokens, &mut on_event)
                .map_err(Error::from_err)?;
            report(&reply);
        }
    }
}

/// The stats line on stderr.
fn report(r: &ToolReply) {
    println!();
    eprintln!(
        "[prefill: {} new tokens, {} reused | {} generated in {:.0} ms, constraint {:.1} ms | {} calls | stop: {:?}]",
        r.prefilled,
        r.reused,
        r.n_tokens,
        r.decode_time.as_secs_f64() * 1e3,
        r.constraint_time.as_secs_f64() * 1e3,
        r.calls.len(),
        r.stop
    );
}
