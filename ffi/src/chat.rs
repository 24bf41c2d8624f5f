//! Conversations: messages in, streamed reply text out, formatted by the model's own chat
//! template, with the KV cache of earlier turns reused (`tern_runtime::chat::Chat`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use tern_runtime::chat::{
    Chat, ChatOptions, ChatTemplate, OverflowPolicy, ReplyOptions, ReplyStop,
};
use tern_runtime::Flow;

use crate::channel::Queue;
use crate::error::TernError;
use crate::model::Model;
use crate::session::{
    claim, rate, spawn_job, Control, GenerateOptions, GenerationHandle, GenerationStats,
    ListenerSink, QueueSink, Sink, StopReason, TokenListener, TokenStream,
};

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
    chat: Mutex<Chat>,
    /// Set while a reply is being generated.
    busy: AtomicBool,
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
    /// given, [`TernError::Template`] when the template is not valid Jinja, and as
    /// [`crate::Session::new`] does when the session cannot be made.
    #[uniffi::constructor(default(options))]
    pub fn new(model: Arc<Model>, options: ConversationOptions) -> Result<Arc<Self>, TernError> {
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
        Ok(Arc::new(Conversation {
            shared: Arc::new(ChatShared {
                chat: Mutex::new(chat),
                busy: AtomicBool::new(false),
                stats: Mutex::new(None),
                stop: options.stop_strings,
            }),
        }))
    }

    /// Adds the user message `message` and starts generating the reply on a background thread;
    /// text goes to `listener`, the handle cancels. A failed or refused turn leaves the
    /// conversation as it was; a cancelled reply keeps what was generated so far. Fails with
    /// [`TernError::SessionBusy`] while another reply is being generated.
    pub fn send(
        &self,
        message: String,
        options: GenerateOptions,
        listener: Box<dyn TokenListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(message, &options, Box::new(ListenerSink(listener)))?;
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
        let control = self.start(message, &options, Box::new(QueueSink(Arc::clone(&chunks))))?;
        Ok(Arc::new(TokenStream { control, chunks }))
    }

    /// The conversation so far, rendered by its template as the model sees it (with the
    /// header of the next assistant turn).
    pub fn prompt(&self) -> Result<String, TernError> {
        claim(&self.shared.busy)?;
        let rendered = self.shared.lock_chat().render(true);
        self.shared.release();
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

    /// Forgets every message but the system prompt. Fails while a reply is being generated.
    pub fn reset(&self) -> Result<(), TernError> {
        claim(&self.shared.busy)?;
        self.shared.lock_chat().reset();
        *self.shared.lock_stats() = None;
        self.shared.release();
        Ok(())
    }

    /// The conversation (messages and KV cache) as bytes, to resume it after the app is
    /// killed: versioned, checksummed and tied to the model.
    pub fn save(&self) -> Result<Vec<u8>, TernError> {
        claim(&self.shared.busy)?;
        let bytes = self.shared.lock_chat().save();
        self.shared.release();
        Ok(bytes)
    }

    /// Restores a conversation saved by [`Conversation::save`] with the same model; on
    /// [`TernError::BadSnapshot`] nothing changes.
    pub fn restore(&self, bytes: Vec<u8>) -> Result<(), TernError> {
        claim(&self.shared.busy)?;
        let result = self.shared.lock_chat().restore(&bytes);
        self.shared.release();
        result.map_err(|e| TernError::BadSnapshot {
            reason: e.to_string(),
        })
    }

    /// Whether a reply is being generated.
    pub fn is_generating(&self) -> bool {
        self.shared.busy.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Conversation {
    /// Validates, claims the conversation and starts the reply's thread.
    fn start(
        &self,
        message: String,
        options: &GenerateOptions,
        sink: Box<dyn Sink>,
    ) -> Result<Arc<Control>, TernError> {
        let sampling = options.sampler_options()?;
        let reply = ReplyOptions {
            max_tokens: options.max_tokens as usize,
            stop: self.shared.stop.clone(),
        };
        claim(&self.shared.busy)?;
        spawn_job(
            Arc::clone(&self.shared),
            |s| &s.busy,
            sink,
            move |shared, control, sink| {
                let mut chat = shared.lock_chat();
                chat.set_sampling(sampling);
                let mut cancelled = false;
                // Called between prompt batches (empty text) and per token: after a cancel
                // nothing more reaches the app.
                let result = chat.send(&message, &reply, &mut |text| {
                    if control.is_cancelled() {
                        cancelled = true;
                        return Flow::Stop;
                    }
                    if !text.is_empty() {
                        sink.token(text);
                    }
                    Flow::Continue
                });
                let reply = result?;
                let prefill_s = reply.prefill.time.as_secs_f64();
                let decode_s = reply.decode_time.as_secs_f64();
                let session = chat.session();
                let bytes_per_token = session.bytes_per_token();
                let tok_s = if reply.n_tokens > 1 {
                    rate(reply.n_tokens - 1, decode_s)
                } else {
                    0.0
                };
                let stats = GenerationStats {
                    prompt_tokens: reply.prefill.new as u32,
                    generated_tokens: reply.n_tokens as u32,
                    prompt_ms: prefill_s * 1e3,
                    generation_ms: decode_s * 1e3,
                    prompt_tokens_per_second: rate(reply.prefill.new, prefill_s),
                    generation_tokens_per_second: tok_s,
                    context_tokens: session.tokens().len() as u32,
                    bytes_per_token,
                    achieved_gbps: tok_s * bytes_per_token as f64 / 1e9,
                    budget_ceiling_tokens_per_second: None,
                    budget_fraction: None,
                    stop_reason: match reply.stop {
                        ReplyStop::EndOfTurn | ReplyStop::StopString(_) => {
                            StopReason::EndOfGeneration
                        }
                        ReplyStop::MaxTokens => StopReason::MaxTokens,
                        ReplyStop::ContextFull => StopReason::ContextFull,
                        ReplyStop::Cancelled => StopReason::Cancelled,
                    },
                };
                *shared.lock_stats() = Some(stats.clone());
                if cancelled || reply.stop == ReplyStop::Cancelled {
                    return Err(TernError::Cancelled);
                }
                Ok(stats)
            },
        )
    }
}

impl ChatShared {
    /// The conversation. After a panic mid-reply the KV cache may be half-written: it is
    /// dropped (the messages stay, and the next turn processes them again).
    fn lock_chat(&self) -> MutexGuard<'_, Chat> {
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

    /// Frees a conversation claimed for a short call.
    fn release(&self) {
        self.busy.store(false, std::sync::atomic::Ordering::Release);
    }
}
