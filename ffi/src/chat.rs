//! Conversations: messages in, streamed reply text out, formatted by the model's own chat
//! template, with the KV cache of earlier turns reused (`tern_runtime::chat::Chat`); with
//! tools declared, the assistant may call them (`tern_runtime::constrain::tools::ToolChat`).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tern_runtime::chat::{
    Chat, ChatOptions, ChatTemplate, JsonValue, Message, OverflowPolicy, RenderOptions,
    ReplyOptions, ReplyStop,
};
use tern_runtime::constrain::tools::{
    recorded_call, recorded_calls, to_template_json, ToolChat, ToolEvent, ToolStop,
};
use tern_runtime::Flow;

use crate::channel::Queue;
use crate::error::TernError;
use crate::event::{EventSink, ReplyEvent, ReplyListener};
use crate::model::Model;
use crate::session::{
    spawn_job, stats_record, Control, GenerateOptions, GenerationHandle, GenerationStats,
    ListenerSink, QueueSink, Sink, StopReason, TokenListener, TokenStream,
};
use crate::slot::Slot;
use crate::tools::{runtime_tools, Tool, ToolCallRecord, ToolResult};

/// How a [`Conversation`] is set up.
#[derive(Clone, Debug, Default, PartialEq, uniffi::Record)]
pub struct ConversationOptions {
    /// The system prompt, if any.
    #[uniffi(default = None)]
    pub system: Option<String>,
    /// A Jinja chat template to use instead of the model's own (`tokenizer.chat_template`);
    /// required for a model without one.
    #[uniffi(default = None)]
    pub template: Option<String>,
    /// Strings that end a reply when generated; they are not part of the reply.
    #[uniffi(default = [])]
    pub stop_strings: Vec<String>,
    /// When the conversation outgrows the context: `false` (default) drops the oldest turns
    /// after the system prompt; `true` fails the turn with `ContextFull` and leaves the
    /// conversation as it was.
    #[uniffi(default = false)]
    pub refuse_overflow: bool,
    /// Messages the conversation starts with, after the system prompt: an earlier exchange
    /// to continue (roles `system`, `user`, `assistant`, `tool`), e.g. what
    /// [`Conversation::messages`] returned, tool calls and results included.
    #[uniffi(default = [])]
    pub messages: Vec<ChatMessage>,
    /// More variables every rendering of the template gets, e.g. `enable_thinking = false`
    /// for the non-thinking mode of Qwen3 or SmolLM3.
    #[uniffi(default = [])]
    pub template_variables: Vec<TemplateVariable>,
    /// Functions the assistant may call. They reach the model through the template's `tools`
    /// variable (the template must teach a call syntax: Qwen/Hermes `<tool_call>` or
    /// Llama 3.x JSON, else `NoToolCallFormat`); calls arrive as `ReplyEvent.ToolCall`,
    /// constrained to a declared tool with arguments valid under its schema. Stop strings end
    /// a reply in its free text only (never inside a call's JSON), and a turn that outgrows
    /// the context follows `refuse_overflow`, as without tools.
    #[uniffi(default = [])]
    pub tools: Vec<Tool>,
    /// Every reply to a user message must start with a tool call (OpenAI's `tool_choice:
    /// "required"`): the reply is constrained from its first token, so even a model not
    /// trained on the call syntax makes a well-formed call; replies to tool results stay free.
    /// Default `false`: the model chooses between text and calls.
    #[uniffi(default = false)]
    pub require_tool_call: bool,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool` (or another role the template knows).
    pub role: String,
    /// The text (of an assistant message: its free text, calls excluded).
    pub content: String,
    /// An assistant message's tool calls, in the order made (empty otherwise).
    #[uniffi(default = [])]
    pub tool_calls: Vec<ToolCallRecord>,
    /// A `tool` message's tool: the name of the tool whose result it holds.
    #[uniffi(default = None)]
    pub name: Option<String>,
}

impl ChatMessage {
    /// The message as the app reads it back.
    fn of(m: &Message) -> Self {
        let name = match m.extra.iter().find(|(k, _)| k == "name") {
            Some((_, JsonValue::String(name))) => Some(name.clone()),
            _ => None,
        };
        ChatMessage {
            role: m.role.clone(),
            content: m.content.clone(),
            tool_calls: recorded_calls(m)
                .into_iter()
                .map(|(name, arguments)| ToolCallRecord {
                    name,
                    arguments_json: match arguments {
                        // OpenAI's form writes the arguments as JSON text.
                        serde_json::Value::String(text) => text,
                        arguments => arguments.to_string(),
                    },
                })
                .collect(),
            name,
        }
    }

    /// The message as the template sees it: calls as `tool_calls` in OpenAI's form with their
    /// arguments parsed (templates write them out with `tojson`), the tool's `name` as is.
    fn to_runtime(&self) -> Result<Message, TernError> {
        let mut m = Message::new(&self.role, &self.content);
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments = match c.arguments_json.trim() {
                        "" => serde_json::json!({}),
                        text => {
                            serde_json::from_str(text).map_err(|e| TernError::InvalidArgument {
                                reason: format!(
                                    "arguments of a call to `{}` are not JSON: {e}",
                                    c.name
                                ),
                            })?
                        }
                    };
                    Ok(recorded_call(&c.name, &arguments))
                })
                .collect::<Result<Vec<_>, TernError>>()?;
            m = m.with_field(
                "tool_calls",
                to_template_json(&serde_json::Value::Array(calls)),
            );
        }
        if let Some(name) = &self.name {
            m = m.with_field("name", JsonValue::String(name.clone()));
        }
        Ok(m)
    }
}

/// A variable the chat template reads, with its value.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TemplateVariable {
    /// The name the template uses.
    pub name: String,
    /// The value.
    pub value: TemplateValue,
}

/// The value of a [`TemplateVariable`].
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum TemplateValue {
    /// `true` / `false`.
    Bool {
        /// The value.
        value: bool,
    },
    /// An integer.
    Int {
        /// The value.
        value: i64,
    },
    /// A string.
    Text {
        /// The value.
        value: String,
    },
}

impl From<&TemplateValue> for JsonValue {
    fn from(v: &TemplateValue) -> Self {
        match v {
            TemplateValue::Bool { value } => JsonValue::Bool(*value),
            TemplateValue::Int { value } => JsonValue::Int(*value),
            TemplateValue::Text { value } => JsonValue::String(value.clone()),
        }
    }
}

/// What a turn does: answer a new user message, answer tool results, or answer the
/// conversation as it stands.
enum Turn {
    Send(String),
    ToolResults(Vec<ToolResult>),
    Respond,
}

/// A conversation's runtime state: a plain chat, or one whose assistant may call tools. Both
/// are a [`Chat`] underneath (messages, template, session), which `Deref` reaches.
enum Talk {
    Plain(Box<Chat>),
    Tools(Box<ToolChat>),
}

impl Deref for Talk {
    type Target = Chat;

    fn deref(&self) -> &Chat {
        match self {
            Talk::Plain(c) => c,
            Talk::Tools(t) => t.chat(),
        }
    }
}

impl DerefMut for Talk {
    fn deref_mut(&mut self) -> &mut Chat {
        match self {
            Talk::Plain(c) => c,
            Talk::Tools(t) => t.chat_mut(),
        }
    }
}

/// A chat with a model. Each [`Conversation::send`] adds a user message and streams the
/// assistant's reply; only the tokens a turn adds are processed, earlier turns stay in the KV
/// cache. Replies end at the template's end-of-turn token (`<|im_end|>` for ChatML), EOS, a
/// stop string or `max_tokens`.
#[derive(uniffi::Object)]
pub struct Conversation {
    shared: Arc<ChatShared>,
}

struct ChatShared {
    chat: Mutex<Talk>,
    /// Held while a reply is being generated or a short call runs.
    slot: Slot,
    stats: Mutex<Option<GenerationStats>>,
    stop: Vec<String>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl Conversation {
    /// A new conversation on `model` (its threads, context length, precision and caps).
    /// Fails with [`TernError::NoChatTemplate`] when the model has no template and none is
    /// given, [`TernError::Template`] when the template is not valid Jinja, as
    /// [`crate::Session::new`] does when the session cannot be made, and for tools with
    /// [`TernError::InvalidSchema`] (naming the tool, line and column),
    /// [`TernError::UnsupportedSchema`] or [`TernError::NoToolCallFormat`]. The first
    /// conversation with tools on a model prepares its vocabulary for the constraint engine
    /// (about a second for 150k tokens); later ones reuse it.
    #[uniffi::constructor(default(options))]
    pub fn new(model: Arc<Model>, options: ConversationOptions) -> Result<Arc<Self>, TernError> {
        let tools = runtime_tools(&options.tools)?;
        let session = model.runtime_session()?;
        let template = match &options.template {
            Some(source) => ChatTemplate::new(source)?.with_tokenizer(model.inner.tokenizer()),
            None => ChatTemplate::from_model(&model.inner)?,
        };
        let chat_options = ChatOptions {
            overflow: if options.refuse_overflow {
                OverflowPolicy::Refuse
            } else {
                OverflowPolicy::DropOldestTurns
            },
            ..ChatOptions::default()
        };
        let mut chat = Chat::new(session, template, chat_options);
        chat.set_system(options.system.as_deref());
        for m in &options.messages {
            chat.push(m.to_runtime()?);
        }
        if !options.template_variables.is_empty() {
            chat.set_render_options(RenderOptions {
                vars: options
                    .template_variables
                    .iter()
                    .map(|v| (v.name.clone(), JsonValue::from(&v.value)))
                    .collect(),
                ..RenderOptions::default()
            });
        }
        let talk = if tools.is_empty() {
            Talk::Plain(Box::new(chat))
        } else {
            let vocab = model.constraint_vocab()?;
            let mut tool_chat = ToolChat::new(chat, tools, &vocab)?;
            tool_chat.set_call_required(options.require_tool_call);
            tool_chat.set_stop_strings(options.stop_strings.clone());
            Talk::Tools(Box::new(tool_chat))
        };
        Ok(Arc::new(Conversation {
            shared: Arc::new(ChatShared {
                chat: Mutex::new(talk),
                slot: Slot::default(),
                stats: Mutex::new(None),
                stop: options.stop_strings,
            }),
        }))
    }

    /// Adds the user message `message` and starts generating the reply on a background thread;
    /// text goes to `listener`, the handle cancels. A failed or refused turn leaves the
    /// conversation as it was; a cancelled reply keeps what was generated so far. Waits for a
    /// cancelled reply to wind down (within one token); fails with [`TernError::SessionBusy`]
    /// only while another reply runs that was not cancelled.
    pub fn send(
        &self,
        message: String,
        options: GenerateOptions,
        listener: Box<dyn TokenListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(
            Turn::Send(message),
            &options,
            Box::new(ListenerSink(listener)),
        )?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Like [`Conversation::send`], delivering the reply as events: text deltas, then
    /// [`ReplyEvent::Done`](crate::ReplyEvent::Done) with the stop reason and this reply's
    /// statistics.
    pub fn send_events(
        &self,
        message: String,
        options: GenerateOptions,
        listener: Box<dyn ReplyListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(Turn::Send(message), &options, Box::new(EventSink(listener)))?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Adds the results of the last reply's tool calls (one `tool` message each, in order)
    /// and generates the assistant's answer to them, as events like
    /// [`Conversation::send_events`] (it may call tools again). The KV cache is reused up to
    /// the new messages (`stats.cached_tokens`). A failed turn leaves the conversation as it
    /// was.
    pub fn send_tool_results(
        &self,
        results: Vec<ToolResult>,
        options: GenerateOptions,
        listener: Box<dyn ReplyListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(
            Turn::ToolResults(results),
            &options,
            Box::new(EventSink(listener)),
        )?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Like [`Conversation::send`], delivering the reply through the returned stream's async
    /// `next_chunk`.
    #[uniffi::method(default(options))]
    pub fn send_stream(
        &self,
        message: String,
        options: GenerateOptions,
    ) -> Result<Arc<TokenStream>, TernError> {
        let chunks = Arc::new(Queue::new());
        let sink = Box::new(QueueSink(Arc::clone(&chunks)));
        let control = self.start(Turn::Send(message), &options, sink)?;
        Ok(Arc::new(TokenStream { control, chunks }))
    }

    /// The conversation so far, rendered by its template as the model sees it (with the
    /// header of the next assistant turn).
    pub fn prompt(&self) -> Result<String, TernError> {
        let rendered = self
            .shared
            .slot
            .call(|| self.shared.lock_chat().render(true))?;
        Ok(rendered?)
    }

    /// Messages in the conversation (the system prompt included).
    pub fn message_count(&self) -> u32 {
        self.shared.lock_chat().messages().len() as u32
    }

    /// The last reply's counts and speeds: `prompt_tokens` counts only the tokens that turn
    /// processed (earlier turns come from the cache).
    pub fn stats(&self) -> Option<GenerationStats> {
        self.shared.lock_stats().clone()
    }

    /// Forgets every message but the system prompt. Fails while a reply is being generated
    /// (waits for a cancelled one to end).
    pub fn reset(&self) -> Result<(), TernError> {
        self.shared.slot.call(|| {
            self.shared.lock_chat().reset();
            *self.shared.lock_stats() = None;
        })
    }

    /// The conversation (messages and KV cache) as bytes, to resume it after the app is
    /// killed: versioned, checksummed and tied to the model.
    pub fn save(&self) -> Result<Vec<u8>, TernError> {
        self.shared.slot.call(|| self.shared.lock_chat().save())
    }

    /// Restores a conversation saved by [`Conversation::save`] with the same model; on
    /// [`TernError::BadSnapshot`] nothing changes.
    pub fn restore(&self, bytes: Vec<u8>) -> Result<(), TernError> {
        let result = self
            .shared
            .slot
            .call(|| self.shared.lock_chat().restore(&bytes))?;
        result.map_err(|e| TernError::BadSnapshot {
            reason: e.to_string(),
        })
    }

    /// Whether a reply is being generated.
    pub fn is_generating(&self) -> bool {
        self.shared.slot.is_busy()
    }
}

#[uniffi::export]
impl Conversation {
    /// The messages so far, the system prompt first (when there is one), each reply as the
    /// assistant's message with the tool calls it made, each tool result as a `tool` message
    /// naming its tool: what a chat UI renders, and what [`ConversationOptions::messages`]
    /// takes to render the same prompt again.
    pub fn messages(&self) -> Result<Vec<ChatMessage>, TernError> {
        self.shared.slot.call(|| {
            let chat = self.shared.lock_chat();
            chat.messages().iter().map(ChatMessage::of).collect()
        })
    }

    /// Removes the last turn: the last user message and everything after it (the reply, tool
    /// results). Returns the messages removed; none when there is no user message. The KV
    /// cache keeps what comes before: the next turn processes only what it adds.
    pub fn remove_last_turn(&self) -> Result<Vec<ChatMessage>, TernError> {
        self.shared.slot.call(|| {
            let mut chat = self.shared.lock_chat();
            let Some(last_user) = chat.messages().iter().rposition(|m| m.role == "user") else {
                return Vec::new();
            };
            let removed = chat.messages()[last_user..]
                .iter()
                .map(ChatMessage::of)
                .collect();
            chat.truncate_messages(last_user);
            removed
        })
    }

    /// Generates the last reply again (with `options`, e.g. another seed): the last assistant
    /// message, if the conversation ends with one, is replaced by a new reply, delivered as
    /// events like [`Conversation::send_events`]. The KV cache is reused up to where the old
    /// reply began (`stats.cached_tokens`), so only the reply is computed again.
    pub fn regenerate_events(
        &self,
        options: GenerateOptions,
        listener: Box<dyn ReplyListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        self.shared.slot.call(|| {
            let mut chat = self.shared.lock_chat();
            let n = chat.messages().len();
            if chat
                .messages()
                .last()
                .is_some_and(|m| m.role == "assistant")
            {
                chat.truncate_messages(n - 1);
            }
        })?;
        let control = self.start(Turn::Respond, &options, Box::new(EventSink(listener)))?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Positions left in the context: how many more tokens the next turn (its message, the
    /// template's markers and the reply) may take before older turns are dropped.
    pub fn tokens_left(&self) -> Result<u32, TernError> {
        self.shared.slot.call(|| {
            let chat = self.shared.lock_chat();
            let session = chat.session();
            session.context_len().saturating_sub(session.tokens().len()) as u32
        })
    }
}

impl Conversation {
    /// Validates, claims the conversation and starts the reply's thread.
    fn start(
        &self,
        turn: Turn,
        options: &GenerateOptions,
        sink: Box<dyn Sink>,
    ) -> Result<Arc<Control>, TernError> {
        let sampling = options.sampler_options()?;
        if options.json_schema.is_some() {
            return Err(TernError::InvalidArgument {
                reason: "json_schema applies to Session generations, not conversations".into(),
            });
        }
        let reply = ReplyOptions {
            max_tokens: options.max_tokens as usize,
            stop: self.shared.stop.clone(),
        };
        spawn_job(
            Arc::clone(&self.shared),
            |s| &s.slot,
            sink,
            move |shared, control, sink| {
                let mut talk = shared.lock_chat();
                let started = Instant::now();
                let mut cancelled = false;
                let outcome = match &mut *talk {
                    Talk::Plain(chat) => {
                        chat.set_sampling(sampling);
                        // Called between prompt batches (empty text) and per token: after a
                        // cancel nothing more reaches the app.
                        let mut on_text = |text: &str| {
                            if control.is_cancelled() {
                                cancelled = true;
                                return Flow::Stop;
                            }
                            if !text.is_empty() {
                                sink.token(text);
                            }
                            Flow::Continue
                        };
                        let reply = match turn {
                            Turn::Send(message) => chat.send(&message, &reply, &mut on_text),
                            Turn::Respond => chat.respond(&reply, &mut on_text),
                            Turn::ToolResults(results) => {
                                let n = chat.messages().len();
                                push_results(chat, &results);
                                let r = chat.respond(&reply, &mut on_text);
                                if r.is_err() {
                                    chat.truncate_messages(n);
                                }
                                r
                            }
                        }?;
                        Outcome {
                            prompt_new: reply.prefill.new,
                            prompt_reused: reply.prefill.reused,
                            prompt: reply.prefill.time,
                            n_tokens: reply.n_tokens,
                            decode: reply.decode_time,
                            stop: match reply.stop {
                                ReplyStop::EndOfTurn | ReplyStop::StopString(_) => {
                                    StopReason::EndOfGeneration
                                }
                                ReplyStop::MaxTokens => StopReason::MaxTokens,
                                ReplyStop::ContextFull => StopReason::ContextFull,
                                ReplyStop::Cancelled => StopReason::Cancelled,
                            },
                        }
                    }
                    Talk::Tools(tools) => {
                        tools.set_sampling(sampling);
                        let mut on_event = |event: ToolEvent<'_>| {
                            if control.is_cancelled() {
                                cancelled = true;
                                return Flow::Stop;
                            }
                            match event {
                                ToolEvent::Text(text) => {
                                    if !text.is_empty() {
                                        sink.token(text);
                                    }
                                }
                                ToolEvent::ToolCall(call) => sink.event(ReplyEvent::ToolCall {
                                    name: call.name.clone(),
                                    arguments_json: call.arguments.to_string(),
                                }),
                                // Only unconstrained calls can be invalid, and the FFI always
                                // constrains: should one occur, its text is not lost.
                                ToolEvent::InvalidToolCall { raw, .. } => sink.token(raw),
                                ToolEvent::IncompleteToolCall { raw } => {
                                    sink.event(ReplyEvent::IncompleteToolCall {
                                        raw: raw.to_string(),
                                    })
                                }
                            }
                            Flow::Continue
                        };
                        let max = reply.max_tokens;
                        let reply = match turn {
                            Turn::Send(message) => tools.send(&message, max, &mut on_event),
                            Turn::Respond => tools.respond(max, &mut on_event),
                            Turn::ToolResults(results) => {
                                let n = tools.chat().messages().len();
                                push_results(tools.chat_mut(), &results);
                                let r = tools.respond(max, &mut on_event);
                                if r.is_err() {
                                    tools.chat_mut().truncate_messages(n);
                                }
                                r
                            }
                        }?;
                        Outcome {
                            prompt_new: reply.prefilled,
                            prompt_reused: reply.reused,
                            // The runtime times decoding only; the rest of the turn is the
                            // prompt (rendering, encoding, prefill).
                            prompt: started.elapsed().saturating_sub(reply.decode_time),
                            n_tokens: reply.n_tokens,
                            decode: reply.decode_time,
                            stop: match reply.stop {
                                ToolStop::EndOfTurn | ToolStop::StopString(_) => {
                                    StopReason::EndOfGeneration
                                }
                                ToolStop::MaxTokens => StopReason::MaxTokens,
                                ToolStop::ContextFull => StopReason::ContextFull,
                                ToolStop::Cancelled => StopReason::Cancelled,
                            },
                        }
                    }
                };
                let session = talk.session();
                let bytes_per_token = session.bytes_per_token();
                let timed = tern_runtime::stats::GenerationStats::from_offsets(
                    outcome.prompt_new,
                    outcome.n_tokens,
                    outcome.prompt,
                    None,
                    outcome.prompt + outcome.decode,
                    outcome.stop,
                );
                let stats = stats_record(
                    &timed,
                    outcome.prompt_reused,
                    session.tokens().len(),
                    bytes_per_token,
                    None,
                );
                *shared.lock_stats() = Some(stats.clone());
                if cancelled || outcome.stop == StopReason::Cancelled {
                    return Err(TernError::Cancelled);
                }
                Ok(stats)
            },
        )
    }
}

/// What a finished turn reports, from either kind of conversation.
struct Outcome {
    prompt_new: usize,
    prompt_reused: usize,
    prompt: Duration,
    n_tokens: usize,
    decode: Duration,
    stop: StopReason,
}

/// Appends one `tool` message per result, named after its tool.
fn push_results(chat: &mut Chat, results: &[ToolResult]) {
    for r in results {
        chat.push(
            Message::new("tool", &r.content).with_field("name", JsonValue::String(r.name.clone())),
        );
    }
}

impl ChatShared {
    /// The conversation. After a panic mid-reply the KV cache may be half-written: it is
    /// dropped (the messages stay, and the next turn processes them again).
    fn lock_chat(&self) -> MutexGuard<'_, Talk> {
        self.chat.lock().unwrap_or_else(|e| {
            self.chat.clear_poison();
            let mut chat = e.into_inner();
            chat.session_mut().reset();
            chat
        })
    }

    fn lock_stats(&self) -> MutexGuard<'_, Option<GenerationStats>> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}
