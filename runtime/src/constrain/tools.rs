//! Tool calling: the app declares tools (name, description, JSON Schema of the parameters),
//! the chat template shows them to the model through its `tools` variable, and the runtime
//! recognises the model family's call syntax in the reply:
//! - [`ToolCallFormat::Hermes`] (Qwen2.5, Qwen3, Hermes): `<tool_call>\n{"name": …,
//!   "arguments": {…}}\n</tool_call>`, anywhere in the reply, several per turn;
//! - [`ToolCallFormat::Llama3Json`] (Llama 3.1/3.2/3.3 templates with JSON tool calling): the
//!   whole reply is `{"name": …, "parameters": {…}}`.
//!
//! Constraints are lazy: the reply is sampled freely until a token opens a call, then the rest
//! of the call is constrained to a grammar whose JSON part is "one of the declared tools,
//! with arguments valid under that tool's schema", and once the call is closed the reply is
//! free again. The caller gets [`ToolEvent`]s: text deltas, each call with its parsed
//! arguments, or an incomplete call when the token budget runs out inside one.
//!
//! A turn fits the context as a plain [`Chat`] turn does (its [`crate::chat::OverflowPolicy`]:
//! drop the oldest turns, or refuse), and stop strings end the reply as they do in a plain
//! chat, but only in free text: inside a call the grammar decides where the call ends, so a
//! stop string there (a `"` or a `}` an app may well use) never cuts the JSON.

use std::format;
use std::string::{String, ToString};
use std::time::{Duration, Instant};
use std::vec::Vec;

use serde_json::{json, Value};

use super::{ConstrainError, Constraint, ConstraintVocab, GrammarSource};
use crate::chat::{Chat, JsonValue, Message, RenderOptions, StopMatch, StopStrings};
use crate::error::GenerateError;
use crate::sampler::{Sampler, SamplerOptions};
use crate::session::Flow;
use crate::tokenizer::StreamDecoder;

/// A function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name, as the model must write it.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: Value,
}

impl Tool {
    /// Reads one tool from OpenAI's form `{"type": "function", "function": {"name", …}}` or
    /// the bare `{"name", "description", "parameters"}`.
    pub fn from_json(v: &Value) -> Result<Tool, ConstrainError> {
        let f = v.get("function").unwrap_or(v);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad_tool("a tool has no \"name\" string"))?;
        let description = f
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let parameters = f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        if !parameters.is_object() {
            return Err(bad_tool(&format!(
                "tool `{name}`: \"parameters\" is not an object"
            )));
        }
        Ok(Tool {
            name: name.to_string(),
            description,
            parameters,
        })
    }

    /// The tool as templates expect it in `tools` (OpenAI's form).
    pub fn to_template_value(&self) -> JsonValue {
        to_template_json(&json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        }))
    }
}

fn bad_tool(message: &str) -> ConstrainError {
    ConstrainError::Syntax {
        what: "tools",
        line: 1,
        column: 1,
        message: message.to_string(),
    }
}

/// Reads a JSON array of tools (see [`Tool::from_json`]).
pub fn parse_tools(text: &str) -> Result<Vec<Tool>, ConstrainError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ConstrainError::Syntax {
        what: "tools",
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let list = v
        .as_array()
        .ok_or_else(|| bad_tool("the tools file must hold a JSON array"))?;
    let tools = list
        .iter()
        .map(Tool::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, t) in tools.iter().enumerate() {
        if tools[..i].iter().any(|u| u.name == t.name) {
            return Err(bad_tool(&format!("tool `{}` is declared twice", t.name)));
        }
    }
    Ok(tools)
}

/// Converts serde_json's value into the template's.
pub fn to_template_json(v: &Value) -> JsonValue {
    match v {
        Value::Null => JsonValue::Null,
        Value::Bool(b) => JsonValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => JsonValue::Int(i),
            None => JsonValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => JsonValue::String(s.clone()),
        Value::Array(a) => JsonValue::Array(a.iter().map(to_template_json).collect()),
        Value::Object(o) => JsonValue::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_template_json(v)))
                .collect(),
        ),
    }
}

/// Converts the template's value into serde_json's (a non-finite float becomes `null`).
pub fn from_template_json(v: &JsonValue) -> Value {
    match v {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Int(i) => Value::from(*i),
        JsonValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        JsonValue::String(s) => Value::String(s.clone()),
        JsonValue::Array(a) => Value::Array(a.iter().map(from_template_json).collect()),
        JsonValue::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), from_template_json(v)))
                .collect(),
        ),
    }
}

/// One call as an assistant message records it in its `tool_calls` field: OpenAI's form,
/// `{"type": "function", "function": {"name": …, "arguments": {…}}}`, with the arguments as
/// an object (Qwen's and Llama's templates write them out with `tojson`).
pub fn recorded_call(name: &str, arguments: &Value) -> Value {
    json!({
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    })
}

/// The calls `message` records in its `tool_calls` field (see [`recorded_call`]), as
/// `(name, arguments)` in order; entries without a name are skipped, missing arguments are
/// `{}`. Empty for a message without calls.
pub fn recorded_calls(message: &Message) -> Vec<(String, Value)> {
    let Some((_, JsonValue::Array(calls))) = message.extra.iter().find(|(k, _)| k == "tool_calls")
    else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let c = from_template_json(c);
            let f = c.get("function").unwrap_or(&c);
            let name = f.get("name")?.as_str()?.to_string();
            let arguments = f.get("arguments").cloned().unwrap_or_else(|| json!({}));
            Some((name, arguments))
        })
        .collect()
}

/// How a model family writes a tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolCallFormat {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (Qwen2.5, Qwen3, Hermes);
    /// several calls per reply.
    Hermes,
    /// The reply is one JSON object `{"name": …, "parameters": {…}}` (Llama 3.x).
    Llama3Json,
}

impl ToolCallFormat {
    /// The format a chat template teaches, if it teaches one.
    pub fn detect(template_source: &str) -> Option<Self> {
        if template_source.contains("<tool_call>") {
            Some(ToolCallFormat::Hermes)
        } else if template_source.contains("<|start_header_id|>")
            && template_source.contains("\"parameters\"")
        {
            Some(ToolCallFormat::Llama3Json)
        } else {
            None
        }
    }

    /// Key of the arguments object in a call.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "arguments",
            ToolCallFormat::Llama3Json => "parameters",
        }
    }

    /// JSON Schema of one call: any declared tool, with its own arguments schema.
    pub fn call_schema(self, tools: &[Tool]) -> Value {
        let key = self.arguments_key();
        let any: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        key: t.parameters,
                    },
                    "required": ["name", key],
                    "additionalProperties": false,
                })
            })
            .collect();
        json!({ "anyOf": any })
    }

    /// The Lark grammar of a whole call, from its opening to its end.
    fn call_grammar(self, tools: &[Tool]) -> String {
        let schema = self.call_schema(tools);
        let schema = super::compact_json(schema);
        match self {
            // The tagged call anywhere; at the start of a reply also the forms small models
            // fall back to (a fenced JSON block or a bare object), which llama.cpp's Hermes
            // parser accepts too.
            ToolCallFormat::Hermes => format!(
                r#"start: "<tool_call>" "\n"? call "\n"? "</tool_call>"
    | /[ \t\n]+/? "```" "json"? "\n" call "\n"? "```"
    | /[ \t\n]+/? call
call: %json {schema}
"#
            ),
            ToolCallFormat::Llama3Json => format!("start: /[ \\t\\n]+/? %json {schema}\n"),
        }
    }

    /// Whether a token whose bytes are `piece` opens a call, given the reply's text so far.
    /// `bare` allows the untagged Hermes forms (a reply that opens with a fenced or bare JSON
    /// object): only in answers to the user, since after a tool result a small model echoes
    /// JSON that is no call.
    fn opens_call(self, piece: &[u8], reply_so_far: &str, bare: bool) -> bool {
        let at_start = reply_so_far.trim().is_empty();
        let first = piece.trim_ascii_start();
        match self {
            ToolCallFormat::Hermes => {
                piece.starts_with(b"<tool_call>")
                    || (bare && at_start && (first.starts_with(b"```") || first.starts_with(b"{")))
            }
            ToolCallFormat::Llama3Json => at_start && first.starts_with(b"{"),
        }
    }
}

/// A tool call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, parsed.
    pub arguments: Value,
    /// The call as the model wrote it.
    pub raw: String,
}

/// What a tool-calling reply reports as it goes. Maps one to one onto the FFI's event stream.
#[derive(Debug)]
pub enum ToolEvent<'a> {
    /// Free text (possibly empty while a character is split across tokens).
    Text(&'a str),
    /// A complete call with parsed arguments (valid under the tool's schema when the reply
    /// is constrained).
    ToolCall(&'a ToolCall),
    /// A call that closed but does not parse or names no declared tool (unconstrained replies
    /// only).
    InvalidToolCall {
        /// The call as written.
        raw: &'a str,
        /// Why it was rejected.
        reason: &'a str,
    },
    /// The token limit (or the context, or the model's end of turn) came inside a call.
    IncompleteToolCall {
        /// What was written of the call.
        raw: &'a str,
    },
}

/// Why a tool-calling reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolStop {
    /// The model ended its turn.
    EndOfTurn,
    /// Stop string number `.0` (see [`ToolChat::set_stop_strings`]) was generated in free
    /// text; neither it nor anything after it is part of the reply.
    StopString(usize),
    /// The token limit.
    MaxTokens,
    /// The callback returned [`Flow::Stop`].
    Cancelled,
    /// The context is full.
    ContextFull,
}

/// One assistant reply of a [`ToolChat`].
#[derive(Clone, Debug, PartialEq)]
pub struct ToolReply {
    /// Free text of the reply (calls excluded).
    pub text: String,
    /// Complete calls, in order.
    pub calls: Vec<ToolCall>,
    /// Calls that closed but were rejected (unconstrained replies only): `(raw, reason)`.
    pub invalid: Vec<(String, String)>,
    /// A call cut off by the end of the reply.
    pub incomplete: Option<String>,
    /// Why the reply ended.
    pub stop: ToolStop,
    /// Tokens generated.
    pub n_tokens: usize,
    /// Prompt tokens reused from the KV cache.
    pub reused: usize,
    /// Prompt tokens processed.
    pub prefilled: usize,
    /// Time spent in the constraint engine.
    pub constraint_time: Duration,
    /// Time spent decoding (prefill excluded).
    pub decode_time: Duration,
}

/// Why a tool-calling turn failed. The conversation is left as it was.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ToolChatError {
    /// The template does not teach a call syntax Tern knows.
    NoToolFormat,
    /// The template failed, or the model failed.
    Chat(crate::chat::ChatError),
    /// The tools' schemas could not be compiled, or the engine failed.
    Constrain(ConstrainError),
}

impl core::fmt::Display for ToolChatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ToolChatError::NoToolFormat => {
                f.write_str("the chat template defines no tool-call syntax Tern recognises")
            }
            ToolChatError::Chat(e) => e.fmt(f),
            ToolChatError::Constrain(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ToolChatError {}

impl From<ConstrainError> for ToolChatError {
    fn from(e: ConstrainError) -> Self {
        ToolChatError::Constrain(e)
    }
}

impl From<GenerateError> for ToolChatError {
    fn from(e: GenerateError) -> Self {
        ToolChatError::Chat(e.into())
    }
}

impl From<crate::chat::TemplateError> for ToolChatError {
    fn from(e: crate::chat::TemplateError) -> Self {
        ToolChatError::Chat(e.into())
    }
}

/// A conversation whose assistant may call tools.
///
/// Wraps a [`Chat`]: messages, template and session are the chat's, and a turn reuses the
/// KV cache of the prefix the new rendering shares with the session, as [`Chat::send`] does,
/// and a turn that does not fit the context follows the chat's
/// [`crate::chat::OverflowPolicy`] as [`Chat::send`] does.
pub struct ToolChat {
    chat: Chat,
    tools: Vec<Tool>,
    format: ToolCallFormat,
    /// The call grammar, compiled once; each call starts from a clone.
    call: Constraint,
    sampler: Sampler,
    constrained: bool,
    /// Whether every reply must open with a call (OpenAI's `tool_choice: "required"`).
    required: bool,
    /// Strings that end a reply when generated in free text.
    stop: Vec<String>,
}

impl core::fmt::Debug for ToolChat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ToolChat")
            .field("chat", &self.chat)
            .field("format", &self.format)
            .field("tools", &self.tools.len())
            .finish()
    }
}

impl ToolChat {
    /// Tool calling on `chat` with `tools`; `vocab` is the model's constraint vocabulary.
    /// Fails if the template teaches no known call syntax, or a tool's schema cannot be
    /// enforced (it is refused, not ignored).
    pub fn new(
        mut chat: Chat,
        tools: Vec<Tool>,
        vocab: &ConstraintVocab,
    ) -> Result<Self, ToolChatError> {
        let format =
            ToolCallFormat::detect(chat.template().source()).ok_or(ToolChatError::NoToolFormat)?;
        // Each schema on its own first, so an error names its tool, not a position in the
        // combined call grammar.
        for t in &tools {
            let source = GrammarSource::JsonSchema(t.parameters.to_string());
            vocab.compile(&source).map_err(|e| match e {
                ConstrainError::Unenforceable { message } => ConstrainError::Unenforceable {
                    message: format!("parameters of tool `{}`: {message}", t.name),
                },
                other => other,
            })?;
        }
        let call = vocab.compile(&GrammarSource::Lark(format.call_grammar(&tools)))?;
        chat.set_render_options(RenderOptions {
            tools: Some(tools.iter().map(Tool::to_template_value).collect()),
            ..chat.render_options().clone()
        });
        let sampler = Sampler::new(chat.options().sampling.clone());
        Ok(ToolChat {
            chat,
            tools,
            format,
            call,
            sampler,
            constrained: true,
            required: false,
            stop: Vec::new(),
        })
    }

    /// Whether every reply to a user message must start with a call (default `false`: the
    /// model chooses). Required, such a reply is constrained from its first token to the call
    /// grammar, so even a model never trained on the call syntax makes one well-formed call;
    /// after the call the reply is free again, and replies to tool results stay free. Only
    /// with constraints on: unconstrained, the model chooses.
    pub fn set_call_required(&mut self, required: bool) {
        self.required = required;
    }

    /// Replaces the sampling options of the following replies (and restarts the random
    /// generator from their seed).
    pub fn set_sampling(&mut self, sampling: SamplerOptions) {
        self.sampler = Sampler::new(sampling.clone());
        self.chat.set_sampling(sampling);
    }

    /// Strings that end a reply when the model writes them in free text, as
    /// [`crate::chat::ReplyOptions::stop`] in a plain chat (matched across tokens; neither
    /// they nor anything after them reach the caller or the conversation; the reply ends with
    /// [`ToolStop::StopString`]). Inside a call they are not matched: the call's grammar
    /// decides where it ends, so a stop string never cuts a call's JSON. Default: none.
    pub fn set_stop_strings(&mut self, stop: Vec<String>) {
        self.stop = stop;
    }

    /// Whether calls are constrained to the tools' schemas (default `true`). Off is only for
    /// measuring what constraints change.
    pub fn set_constrained(&mut self, on: bool) {
        self.constrained = on;
    }

    /// The call syntax in use.
    pub fn format(&self) -> ToolCallFormat {
        self.format
    }

    /// The declared tools.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The conversation.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The conversation, to edit.
    pub fn chat_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }

    /// Appends the result of `call` as a `tool` message; the next [`respond`](Self::respond)
    /// lets the model answer with it.
    pub fn push_tool_result(&mut self, call: &ToolCall, content: &str) {
        self.chat.push(
            Message::new("tool", content).with_field("name", JsonValue::String(call.name.clone())),
        );
    }

    /// Adds the user message `text` and generates the reply (see [`respond`](Self::respond)).
    pub fn send(
        &mut self,
        text: &str,
        max_tokens: usize,
        on_event: &mut dyn FnMut(ToolEvent<'_>) -> Flow,
    ) -> Result<ToolReply, ToolChatError> {
        self.turn(Some(Message::user(text)), max_tokens, on_event)
    }

    /// Generates the assistant's reply to the conversation as it stands (after tool
    /// results), reporting text, calls and incomplete calls through `on_event`. The reply,
    /// with its calls as `tool_calls`, is appended to the conversation.
    pub fn respond(
        &mut self,
        max_tokens: usize,
        on_event: &mut dyn FnMut(ToolEvent<'_>) -> Flow,
    ) -> Result<ToolReply, ToolChatError> {
        self.turn(None, max_tokens, on_event)
    }

    fn turn(
        &mut self,
        user: Option<Message>,
        max_tokens: usize,
        on_event: &mut dyn FnMut(ToolEvent<'_>) -> Flow,
    ) -> Result<ToolReply, ToolChatError> {
        let pushed = user.is_some();
        let n = self.chat.messages().len();
        if let Some(u) = user {
            self.chat.push(u);
        }
        // Asked before each batch of the prompt, so a cancel lands within one batch.
        let prefill = self
            .chat
            .prefill(max_tokens, &mut || on_event(ToolEvent::Text("")));
        let prefill = match prefill {
            Ok((_, prefill)) => prefill,
            Err(e) => {
                self.chat.truncate_messages(n);
                return Err(ToolChatError::Chat(e));
            }
        };
        let bare = self
            .chat
            .messages()
            .last()
            .is_some_and(|m| m.role == "user");
        let mut reply = match self.generate(max_tokens, bare, on_event) {
            Ok(reply) => reply,
            Err(e) => {
                // Turns dropped to fit stay dropped (as in a plain chat); the user message
                // this turn added goes.
                if pushed {
                    let last = self.chat.messages().len() - 1;
                    self.chat.truncate_messages(last);
                }
                return Err(e);
            }
        };
        reply.reused = prefill.reused;
        reply.prefilled = prefill.new;

        let mut msg = Message::assistant(&reply.text);
        if !reply.calls.is_empty() {
            let calls: Vec<Value> = reply
                .calls
                .iter()
                .map(|c| recorded_call(&c.name, &c.arguments))
                .collect();
            msg = msg.with_field("tool_calls", to_template_json(&Value::Array(calls)));
        }
        self.chat.push(msg);
        Ok(reply)
    }

    /// Samples the reply from the session's current logits.
    fn generate(
        &mut self,
        max_tokens: usize,
        bare: bool,
        on_event: &mut dyn FnMut(ToolEvent<'_>) -> Flow,
    ) -> Result<ToolReply, ToolChatError> {
        let start = Instant::now();
        let format = self.format;
        let session = self.chat.session_mut();
        let model = std::sync::Arc::clone(session.model());
        let tok = model.tokenizer();
        let mut decoder = StreamDecoder::new();
        let mut stops = StopStrings::new(&self.stop);
        let mut released = String::new();
        let mut reply = ToolReply {
            text: String::new(),
            calls: Vec::new(),
            invalid: Vec::new(),
            incomplete: None,
            stop: ToolStop::MaxTokens,
            n_tokens: 0,
            reused: 0,
            prefilled: 0,
            constraint_time: Duration::ZERO,
            decode_time: Duration::ZERO,
        };
        // Inside a call: its constraint (if constrained) and its bytes so far. A required call
        // is open before the first token.
        let mut call: Option<(Option<Constraint>, Vec<u8>)> = None;
        if self.required && self.constrained && bare {
            call = Some((Some(self.call.clone()), Vec::new()));
        }
        let mut piece = String::new();
        while reply.n_tokens < max_tokens {
            let logits = session.logits().ok_or(GenerateError::EmptyPrompt)?;
            let id = match &mut call {
                Some((Some(c), _)) => {
                    let mask = c.compute_mask()?;
                    self.sampler
                        .sample_masked(logits, session.tokens(), Some(mask))
                }
                _ => self.sampler.sample(logits, session.tokens()),
            };
            if tok.is_end_of_generation(id) {
                reply.stop = ToolStop::EndOfTurn;
                break;
            }
            reply.n_tokens += 1;
            let bytes = tok.token_bytes(id, false);
            // The free text so far includes what the stop strings hold back.
            let opens = call.is_none() && {
                let so_far = [reply.text.as_str(), stops.held()].concat();
                format.opens_call(bytes, &so_far, bare)
            };
            if opens {
                let mut c = None;
                if self.constrained {
                    let mut fresh = self.call.clone();
                    // The opening token must be the grammar's first: if it is not (a `{` that
                    // starts free text for Llama 3), it is text after all.
                    if fresh.commit(id).is_ok() {
                        c = Some(fresh);
                    }
                }
                if c.is_some() || !self.constrained {
                    // Flush text held back by the decoder and the stop strings before the call
                    // starts: the call is not matched against stop strings, so text before it
                    // cannot complete one.
                    let rest = decoder.finish();
                    released.clear();
                    let found = stops.push(&rest, &mut released);
                    if found == StopMatch::None {
                        stops.finish(&mut released);
                    }
                    if !released.is_empty() {
                        reply.text.push_str(&released);
                        on_event(ToolEvent::Text(&released));
                    }
                    if let StopMatch::Found(i) = found {
                        reply.stop = ToolStop::StopString(i);
                        break;
                    }
                    call = Some((c, bytes.to_vec()));
                }
            } else if let Some((c, raw)) = &mut call {
                if let Some(c) = c {
                    c.commit(id)?;
                }
                raw.extend_from_slice(bytes);
            }
            let mut flow = Flow::Continue;
            match &mut call {
                Some((c, raw)) => {
                    let closed = match c {
                        Some(c) => c.is_accepting(),
                        None => call_closed(raw),
                    };
                    if closed {
                        let raw_text = String::from_utf8_lossy(raw).into_owned();
                        if let Some((Some(c), _)) = &call {
                            reply.constraint_time += c.cost().0;
                        }
                        call = None;
                        match parse_call(format, &raw_text, &self.tools) {
                            Ok(tc) => {
                                flow = on_event(ToolEvent::ToolCall(&tc));
                                reply.calls.push(tc);
                            }
                            Err(reason) => {
                                flow = on_event(ToolEvent::InvalidToolCall {
                                    raw: &raw_text,
                                    reason: &reason,
                                });
                                reply.invalid.push((raw_text, reason));
                            }
                        }
                    }
                }
                None => {
                    piece.clear();
                    decoder.push_to(tok, id, &mut piece);
                    released.clear();
                    let found = stops.push(&piece, &mut released);
                    reply.text.push_str(&released);
                    flow = on_event(ToolEvent::Text(&released));
                    if let StopMatch::Found(i) = found {
                        reply.stop = ToolStop::StopString(i);
                        break;
                    }
                }
            }
            if flow == Flow::Stop {
                reply.stop = ToolStop::Cancelled;
                break;
            }
            if reply.n_tokens == max_tokens {
                break;
            }
            if session.tokens().len() >= session.context_len() {
                reply.stop = ToolStop::ContextFull;
                break;
            }
            session.feed(&[id])?;
        }
        if let Some((c, raw)) = call {
            if let Some(c) = c {
                reply.constraint_time += c.cost().0;
            }
            let raw = String::from_utf8_lossy(&raw).into_owned();
            on_event(ToolEvent::IncompleteToolCall { raw: &raw });
            reply.incomplete = Some(raw);
        } else if !matches!(reply.stop, ToolStop::StopString(_) | ToolStop::Cancelled) {
            // The text held back for a possible stop string or an unfinished character
            // (nothing reaches the caller after a cancel or a stop string, as in a plain chat).
            let rest = decoder.finish();
            released.clear();
            match stops.push(&rest, &mut released) {
                StopMatch::Found(i) => reply.stop = ToolStop::StopString(i),
                StopMatch::None => stops.finish(&mut released),
            }
            if !released.is_empty() {
                reply.text.push_str(&released);
                on_event(ToolEvent::Text(&released));
            }
        }
        reply.decode_time = start.elapsed();
        Ok(reply)
    }
}

/// The byte range of the first balanced JSON object in `raw` (strings and escapes
/// respected), or where an unclosed one starts.
fn first_object(raw: &[u8]) -> Result<core::ops::Range<usize>, Option<usize>> {
    let start = raw.iter().position(|&b| b == b'{').ok_or(None)?;
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for (i, &b) in raw.iter().enumerate().skip(start) {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (false, _, b'"') => in_str = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(start..i + 1);
                }
            }
            _ => {}
        }
    }
    Err(Some(start))
}

/// Whether an unconstrained call's text has closed: the tagged form at `</tool_call>`, the
/// fenced form at the fence after the object, the bare form at the object's end.
fn call_closed(raw: &[u8]) -> bool {
    let text = raw.trim_ascii_start();
    if text.starts_with(b"<tool_call>") {
        return text.windows(12).any(|w| w == b"</tool_call>");
    }
    match first_object(text) {
        Ok(r) if text.starts_with(b"```") => text[r.end..].windows(3).any(|w| w == b"```"),
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Parses a closed call: its JSON object, a declared tool's name, an arguments object.
fn parse_call(format: ToolCallFormat, raw: &str, tools: &[Tool]) -> Result<ToolCall, String> {
    let body = first_object(raw.as_bytes())
        .map(|r| &raw[r])
        .map_err(|_| String::from("no JSON object"))?;
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("no \"name\" string")?;
    if !tools.iter().any(|t| t.name == name) {
        return Err(format!("no tool named `{name}`"));
    }
    let arguments = v
        .get(format.arguments_key())
        .filter(|a| a.is_object())
        .cloned()
        .ok_or_else(|| format!("no \"{}\" object", format.arguments_key()))?;
    Ok(ToolCall {
        name: name.to_string(),
        arguments,
        raw: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn tools() -> Vec<Tool> {
        parse_tools(
            r#"[{"type": "function", "function": {"name": "get_weather", "description": "d",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}},
                {"name": "set_alarm", "parameters": {"type": "object"}}]"#,
        )
        .unwrap()
    }

    #[test]
    fn tools_parse_in_both_forms_and_errors_are_typed() {
        let t = tools();
        assert_eq!(t[0].name, "get_weather");
        assert_eq!(t[1].description, "");
        assert!(matches!(
            parse_tools("[{\"name\": \"a\"}, {\"name\": \"a\"}]"),
            Err(ConstrainError::Syntax { .. })
        ));
        assert!(matches!(
            parse_tools("[\n{\"name\": }"),
            Err(ConstrainError::Syntax { line: 2, .. })
        ));
        assert!(parse_tools("{}").is_err());
        assert!(parse_tools("[{\"description\": \"x\"}]").is_err());
    }

    #[test]
    fn calls_parse_and_unknown_tools_are_rejected() {
        let t = tools();
        let c = parse_call(
            ToolCallFormat::Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
            &t,
        )
        .unwrap();
        assert_eq!(c.name, "get_weather");
        assert_eq!(c.arguments, json!({"city": "Oslo"}));
        assert!(parse_call(
            ToolCallFormat::Hermes,
            "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>",
            &t
        )
        .is_err());
        assert!(parse_call(
            ToolCallFormat::Hermes,
            "<tool_call>{\"name\": </tool_call>",
            &t
        )
        .is_err());
        let l = parse_call(
            ToolCallFormat::Llama3Json,
            " {\"name\": \"set_alarm\", \"parameters\": {}}",
            &t,
        )
        .unwrap();
        assert_eq!(l.name, "set_alarm");
    }

    #[test]
    fn closing_is_detected() {
        assert!(call_closed(b"<tool_call>{}</tool_call>"));
        assert!(!call_closed(b"<tool_call>{}</tool_ca"));
        assert!(call_closed(br#"{"a": "}{", "b": {}}"#));
        assert!(!call_closed(br#"{"a": "}\"}", "b": {"#));
        assert!(!call_closed(b"```json\n{\"a\": 1}\n"));
        assert!(call_closed(b"```json\n{\"a\": 1}\n```"));
        assert_eq!(first_object(b"x {\"a\": {}} y"), Ok(2..11));
        assert_eq!(first_object(b"x {\"a\": {}"), Err(Some(2)));
        assert_eq!(first_object(b"none"), Err(None));
    }

    #[test]
    fn fenced_and_bare_calls_parse() {
        let t = tools();
        let c = parse_call(
            ToolCallFormat::Hermes,
            "```json\n{\"name\": \"set_alarm\", \"arguments\": {}}\n```",
            &t,
        )
        .unwrap();
        assert_eq!(c.name, "set_alarm");
        assert!(ToolCallFormat::Hermes.opens_call(b"```", " \n", true));
        assert!(!ToolCallFormat::Hermes.opens_call(b"```", " \n", false));
        assert!(!ToolCallFormat::Hermes.opens_call(b"{", "Sure: ", true));
        assert!(ToolCallFormat::Hermes.opens_call(b"<tool_call>", "Sure: ", false));
        assert!(ToolCallFormat::Llama3Json.opens_call(b" {\"", "", false));
    }

    #[test]
    fn recorded_calls_round_trip_through_a_message() {
        let calls = Value::Array(vec![
            recorded_call("get_weather", &json!({"city": "Oslo", "days": 2, "x": 0.5})),
            recorded_call("set_alarm", &json!({})),
        ]);
        let m = Message::assistant("").with_field("tool_calls", to_template_json(&calls));
        assert_eq!(
            recorded_calls(&m),
            vec![
                (
                    "get_weather".to_string(),
                    json!({"city": "Oslo", "days": 2, "x": 0.5})
                ),
                ("set_alarm".to_string(), json!({})),
            ]
        );
        assert!(recorded_calls(&Message::assistant("hi")).is_empty());
        let bare = Message::assistant("").with_field(
            "tool_calls",
            to_template_json(&json!([{"function": {"arguments": {}}}, {"name": "ping"}])),
        );
        assert_eq!(recorded_calls(&bare), vec![("ping".to_string(), json!({}))]);
    }

    #[test]
    fn formats_are_detected_from_templates() {
        assert_eq!(
            ToolCallFormat::detect("{{- '<tool_call>\\n' }}"),
            Some(ToolCallFormat::Hermes)
        );
        assert_eq!(
            ToolCallFormat::detect(
                "<|start_header_id|>… {\"name\": function name, \"parameters\": dictionary"
            ),
            Some(ToolCallFormat::Llama3Json)
        );
        assert_eq!(ToolCallFormat::detect("{{ messages }}"), None);
    }
}
