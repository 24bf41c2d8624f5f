//! Sessions and generation: a listener in and a handle out, or an async token stream.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tern_runtime::budget::BandwidthBudget;
use tern_runtime::constrain::{Constraint, GrammarSource};
use tern_runtime::session::DEFAULT_BATCH;
use tern_runtime::{Event, Flow, Sampler, SamplerOptions};

use crate::channel::Queue;
use crate::error::TernError;
use crate::event::{EventSink, ReplyListener};
use crate::model::Model;
use crate::slot::Slot;

/// How to sample one generation. The defaults are the runtime's (and llama.cpp's).
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct GenerateOptions {
    /// Most tokens to generate; generation also stops at an end-of-generation token.
    #[uniffi(default = 128)]
    pub max_tokens: u32,
    /// Softmax temperature; 0 always picks the most likely token (greedy).
    #[uniffi(default = 0.8)]
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    #[uniffi(default = 40)]
    pub top_k: u32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; 1 keeps
    /// all.
    #[uniffi(default = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    #[uniffi(default = 0.05)]
    pub min_p: f32,
    /// Penalize tokens seen in the last `repeat_last_n`; 1 is off.
    #[uniffi(default = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    #[uniffi(default = 64)]
    pub repeat_last_n: u32,
    /// Seed of the sampler's random generator: the same seed gives the same text.
    #[uniffi(default = 2119663191)]
    pub seed: u64,
    /// A JSON Schema (as JSON text) the output must satisfy: sampling is limited to tokens
    /// that keep the text a valid prefix of a document under it, and generation ends when the
    /// document is complete. `null`/`nil` (default) is free text. A schema that does not parse
    /// fails with `InvalidSchema` (line and column), one that cannot be enforced with
    /// `UnsupportedSchema`. Sessions only: a conversation refuses it (`InvalidArgument`). The
    /// first constrained generation on a model prepares its vocabulary (about a second for
    /// 150k tokens); later ones reuse it.
    #[uniffi(default = None)]
    pub json_schema: Option<String>,
}

impl Default for GenerateOptions {
    /// The same values as the `#[uniffi(default)]`s above, which the bindings use.
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x7e57_7e57,
            json_schema: None,
        }
    }
}

impl GenerateOptions {
    pub(crate) fn sampler_options(&self) -> Result<SamplerOptions, TernError> {
        // The runtime validates in one place for the CLI and the FFI.
        SamplerOptions {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n as usize,
            seed: self.seed,
        }
        .validated()
        .map_err(|e| TernError::InvalidArgument {
            reason: e.to_string(),
        })
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The session's context is full: reset it to go on.
    ContextFull,
    /// The app cancelled it.
    Cancelled,
    /// It failed; the listener or stream got the error.
    Failed,
}

/// Token counts and speeds of a session's last generation.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct GenerationStats {
    /// Tokens the prompt encoded to: the tokens this generation processed.
    pub prompt_tokens: u32,
    /// Tokens of the context reused from the KV cache instead of being processed again.
    pub cached_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Milliseconds spent processing the prompt.
    pub prompt_ms: f64,
    /// Milliseconds spent generating, after the prompt.
    pub generation_ms: f64,
    /// Prompt tokens processed per second; `None` without prompt tokens or time.
    pub prompt_tokens_per_second: Option<f64>,
    /// Tokens generated per second, counting the forward passes after the first token; `None`
    /// when fewer than two tokens were generated (as `tern run` reports it).
    pub generation_tokens_per_second: Option<f64>,
    /// Tokens in the session's context afterwards.
    pub context_tokens: u32,
    /// Bytes one decoded token reads at the final position: every weight matrix, one
    /// embedding row and the KV cache so far.
    pub bytes_per_token: u64,
    /// Memory bandwidth decoding achieved, in GB/s (`generation_tokens_per_second ·
    /// bytes_per_token`); `None` when the speed is.
    pub achieved_gbps: Option<f64>,
    /// With a bandwidth budget: the fastest decode it allows (budget / `bytes_per_token`).
    pub budget_ceiling_tokens_per_second: Option<f64>,
    /// With a bandwidth budget and a measured speed: the fraction of it decoding used
    /// (`achieved_gbps` / budget).
    pub budget_fraction: Option<f64>,
    /// Why it ended.
    pub stop_reason: StopReason,
}

/// Receives one generation's text from [`Session::generate`], on a background thread.
///
/// Exactly one of `on_complete` and `on_error` is called, last. An exception thrown from a
/// method ends the generation with [`TernError::Internal`] (delivered to `on_error`).
#[uniffi::export(callback_interface)]
pub trait TokenListener: Send + Sync {
    /// More text: one or more tokens' worth of complete UTF-8.
    fn on_token(&self, text: String);
    /// The generation ended normally (end of generation, `max_tokens`, or a full context).
    fn on_complete(&self, stats: GenerationStats);
    /// The generation failed or was cancelled ([`TernError::Cancelled`]).
    fn on_error(&self, error: TernError);
}

/// Controls a running generation. Cancels it when dropped: keep it for as long as the
/// generation should run.
#[derive(Debug, uniffi::Object)]
pub struct GenerationHandle {
    pub(crate) control: Arc<Control>,
}

#[uniffi::export]
impl GenerationHandle {
    /// Asks the generation to stop; it does within one token (or one prompt batch), then
    /// reports [`TernError::Cancelled`]. Callable from any thread, any number of times.
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// Whether the generation has ended and its listener has been called for the last time.
    pub fn is_finished(&self) -> bool {
        self.control.finished.load(Ordering::Acquire)
    }
}

impl Drop for GenerationHandle {
    fn drop(&mut self) {
        self.control.cancel();
    }
}

/// One generation's text as an async sequence, for coroutines and Swift concurrency. Cancels
/// the generation when dropped.
#[derive(Debug, uniffi::Object)]
pub struct TokenStream {
    pub(crate) control: Arc<Control>,
    pub(crate) chunks: Arc<Queue<Result<String, TernError>>>,
}

#[uniffi::export]
impl TokenStream {
    /// The next piece of text, or `null`/`nil` once the generation has ended normally. Throws
    /// the generation's error, [`TernError::Cancelled`] after [`TokenStream::cancel`]. One
    /// consumer at a time.
    pub async fn next_chunk(&self) -> Result<Option<String>, TernError> {
        match self.chunks.pop().await {
            Some(Ok(text)) => Ok(Some(text)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Asks the generation to stop within one token. Callable from any thread.
    pub fn cancel(&self) {
        self.control.cancel();
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        self.control.cancel();
    }
}

/// Shared between a generation's thread and its handle.
#[derive(Debug, Default)]
pub(crate) struct Control {
    cancelled: AtomicBool,
    finished: AtomicBool,
}

impl Control {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// One conversation over a [`Model`]: its tokens, KV cache and thread pool. Generation runs on
/// a background thread, one at a time per session; sessions on one model run in parallel.
#[derive(uniffi::Object)]
pub struct Session {
    shared: Arc<Shared>,
    context_length: u32,
    /// For the constraint vocabulary of `json_schema` generations.
    model: Arc<Model>,
}

struct Shared {
    /// The runtime's session is not `Sync`: the generation thread holds this lock while it
    /// runs.
    session: Mutex<tern_runtime::Session>,
    /// Held from the moment a generation is accepted until just before its last callback.
    slot: Slot,
    stats: Mutex<Option<GenerationStats>>,
    /// The model options' bandwidth budget, for the stats.
    bandwidth_budget: Option<BandwidthBudget>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("context_length", &self.context_length)
            .field("busy", &self.shared.slot.is_busy())
            .finish()
    }
}

#[uniffi::export]
impl Session {
    /// A new, empty conversation on `model`, with the model's options (threads, context
    /// length, precision, resident cap). Allocates the KV cache. Fails with
    /// [`TernError::OutOfMemoryBudget`] when the context does not fit the memory budget (the
    /// model options' or, without one, half the device's memory) or the allocator refuses it,
    /// and [`TernError::InvalidArgument`] for more threads than 4 per core or a resident cap
    /// below the smallest the model can honour.
    #[uniffi::constructor]
    pub fn new(model: Arc<Model>) -> Result<Arc<Self>, TernError> {
        let session = model.runtime_session()?;
        Ok(Arc::new(Session {
            model: Arc::clone(&model),
            context_length: u32::try_from(session.context_len()).unwrap_or(u32::MAX),
            shared: Arc::new(Shared {
                session: Mutex::new(session),
                slot: Slot::default(),
                stats: Mutex::new(None),
                bandwidth_budget: model
                    .options
                    .bandwidth_budget_gbps
                    .map(BandwidthBudget::new),
            }),
        }))
    }

    /// Starts generating a reply to `prompt` on a background thread, continuing the
    /// conversation, and returns at once. Text goes to `listener`; the returned handle cancels.
    ///
    /// While a generation that was cancelled winds down (it stops within one token), this
    /// waits for it to end and then starts, so "stop, then ask again" never fails. Fails with
    /// [`TernError::SessionBusy`] only while another generation runs that nobody cancelled:
    /// genuinely concurrent use.
    pub fn generate(
        &self,
        prompt: String,
        options: GenerateOptions,
        listener: Box<dyn TokenListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(prompt, &options, Box::new(ListenerSink(listener)))?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Starts generating like [`Session::generate`], delivering the reply as events: text
    /// deltas, then [`ReplyEvent::Done`](crate::ReplyEvent::Done) with the stop reason and this reply's statistics.
    pub fn generate_events(
        &self,
        prompt: String,
        options: GenerateOptions,
        listener: Box<dyn ReplyListener>,
    ) -> Result<Arc<GenerationHandle>, TernError> {
        let control = self.start(prompt, &options, Box::new(EventSink(listener)))?;
        Ok(Arc::new(GenerationHandle { control }))
    }

    /// Starts generating like [`Session::generate`], delivering the text through the returned
    /// stream's async `next_chunk`.
    #[uniffi::method(default(options))]
    pub fn stream(
        &self,
        prompt: String,
        options: GenerateOptions,
    ) -> Result<Arc<TokenStream>, TernError> {
        let chunks = Arc::new(Queue::new());
        let sink = QueueSink(Arc::clone(&chunks));
        let control = self.start(prompt, &options, Box::new(sink))?;
        Ok(Arc::new(TokenStream { control, chunks }))
    }

    /// Forgets the conversation. Waits for a cancelled generation to end; fails with
    /// [`TernError::SessionBusy`] while one runs that was not cancelled.
    pub fn reset(&self) -> Result<(), TernError> {
        self.shared.slot.call(|| {
            self.shared.lock_session().reset();
            *self.shared.lock_stats() = None;
        })
    }

    /// The last finished generation's counts and speeds; `null`/`nil` before the first one or
    /// after [`Session::reset`].
    pub fn stats(&self) -> Option<GenerationStats> {
        self.shared.lock_stats().clone()
    }

    /// Whether a generation is running.
    pub fn is_generating(&self) -> bool {
        self.shared.slot.is_busy()
    }

    /// The session's context length in tokens.
    pub fn context_length(&self) -> u32 {
        self.context_length
    }

    /// Positions left in the context: how many more tokens (prompt and reply) fit before it is
    /// full. Waits for a cancelled generation to end; fails while one runs.
    pub fn tokens_left(&self) -> Result<u32, TernError> {
        self.shared.slot.call(|| {
            let s = self.shared.lock_session();
            s.context_len().saturating_sub(s.tokens().len()) as u32
        })
    }
}

impl Session {
    /// Validates, claims the session and starts the generation thread.
    fn start(
        &self,
        prompt: String,
        options: &GenerateOptions,
        sink: Box<dyn Sink>,
    ) -> Result<Arc<Control>, TernError> {
        let sampling = options.sampler_options()?;
        let max_tokens = options.max_tokens as usize;
        let constraint = match &options.json_schema {
            Some(schema) => Some(
                self.model
                    .constraint_vocab()?
                    .compile(&GrammarSource::JsonSchema(schema.clone()))?,
            ),
            None => None,
        };
        spawn_job(
            Arc::clone(&self.shared),
            |s| &s.slot,
            sink,
            move |shared, control, sink| {
                shared.run(&prompt, sampling, constraint, max_tokens, control, sink)
            },
        )
    }
}

/// Claims `slot(&shared)` (see [`Slot`]) and runs `job` on a new thread: a panic becomes
/// [`TernError::Internal`], the slot is freed before the sink's last callback (so that
/// callback can start the next turn), and the returned control reports the end.
pub(crate) fn spawn_job<S: Send + Sync + 'static>(
    shared: Arc<S>,
    slot: fn(&S) -> &Slot,
    sink: Box<dyn Sink>,
    job: impl FnOnce(&S, &Control, &mut dyn Sink) -> Result<GenerationStats, TernError> + Send + 'static,
) -> Result<Arc<Control>, TernError> {
    let control = Arc::new(Control::default());
    slot(&shared).claim_generation(&control)?;
    let ctl = Arc::clone(&control);
    let thread_shared = Arc::clone(&shared);
    let spawned = std::thread::Builder::new()
        .name("tern-generate".into())
        .spawn(move || {
            let shared = thread_shared;
            let mut sink = sink;
            let result = catch_unwind(AssertUnwindSafe(|| job(&shared, &ctl, &mut *sink)))
                .unwrap_or_else(|p| Err(TernError::from_panic(&*p)));
            slot(&shared).release();
            // A listener that throws here has nobody left to tell.
            let _ = catch_unwind(AssertUnwindSafe(move || sink.finish(result)));
            ctl.finished.store(true, Ordering::Release);
        });
    if let Err(e) = spawned {
        slot(&shared).release();
        return Err(TernError::Internal {
            reason: format!("cannot start the generation thread: {e}"),
        });
    }
    Ok(control)
}

impl Shared {
    /// Encodes and processes the prompt, then samples, sending text to `sink`.
    fn run(
        &self,
        prompt: &str,
        sampling: SamplerOptions,
        constraint: Option<Constraint>,
        max_tokens: usize,
        control: &Control,
        sink: &mut dyn Sink,
    ) -> Result<GenerationStats, TernError> {
        let mut session = self.lock_session();
        let model = Arc::clone(session.model());
        // Special tokens (BOS) open a conversation, not each turn of it.
        let add_special = session.tokens().is_empty();
        let prompt_ids = model.tokenizer().encode(prompt, add_special, true);

        let start = Instant::now();
        let cached_tokens = session.tokens().len();
        // The prompt goes in batch by batch, so a cancel lands between two batches; a prompt
        // that is cancelled or fails is taken back out of the conversation.
        let before = session.tokens().len();
        let needed = before + prompt_ids.len();
        let mut outcome = if needed > session.context_len() {
            Err(TernError::ContextFull {
                needed: needed as u64,
                limit: session.context_len() as u64,
            })
        } else {
            Ok(())
        };
        for batch in prompt_ids.chunks(DEFAULT_BATCH) {
            if outcome.is_err() {
                break;
            }
            if control.is_cancelled() {
                outcome = Err(TernError::Cancelled);
            } else if let Err(e) = session.feed(batch) {
                outcome = Err(e.into());
            }
        }
        if outcome.is_err() {
            session.truncate(before);
        }
        let prompt_done = Instant::now();

        let mut sampler = Sampler::new(sampling);
        let mut generated = 0usize;
        let mut cancelled = false;
        let outcome = outcome.and_then(|()| {
            let mut on_event = |event: Event<'_>| {
                if let Event::Token { text, .. } = event {
                    if control.is_cancelled() {
                        cancelled = true;
                        return Flow::Stop;
                    }
                    generated += 1;
                    if !text.is_empty() {
                        sink.token(text);
                    }
                }
                if control.is_cancelled() {
                    cancelled = true;
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            };
            match constraint {
                Some(mut c) => tern_runtime::constrain::generate(
                    &mut session,
                    &[],
                    &mut sampler,
                    &mut c,
                    max_tokens,
                    &mut on_event,
                )
                .map_err(TernError::from),
                None => session
                    .generate(&[], &mut sampler, max_tokens, &mut on_event)
                    .map_err(TernError::from),
            }
        });
        let end = Instant::now();

        let (result, stop) = match outcome {
            Ok(_) if cancelled => (Err(TernError::Cancelled), StopReason::Cancelled),
            Ok(stop) => (
                Ok(()),
                match stop {
                    tern_runtime::StopReason::EndOfGeneration => StopReason::EndOfGeneration,
                    tern_runtime::StopReason::ContextFull => StopReason::ContextFull,
                    tern_runtime::StopReason::MaxTokens => StopReason::MaxTokens,
                    tern_runtime::StopReason::Stopped => StopReason::Cancelled,
                },
            ),
            Err(TernError::Cancelled) => (Err(TernError::Cancelled), StopReason::Cancelled),
            Err(e) => (Err(e), StopReason::Failed),
        };
        let timed = tern_runtime::stats::GenerationStats::from_offsets(
            prompt_ids.len(),
            generated,
            prompt_done - start,
            None,
            end - start,
            stop,
        );
        let stats = stats_record(
            &timed,
            cached_tokens,
            session.tokens().len(),
            session.bytes_per_token(),
            self.bandwidth_budget,
        );
        let result = result.map(|()| stats.clone());
        *self.lock_stats() = Some(stats);
        result
    }

    /// The runtime session. After a panic mid-generation its KV cache may be half-written:
    /// the conversation is reset then.
    fn lock_session(&self) -> MutexGuard<'_, tern_runtime::Session> {
        match self.session.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.session.clear_poison();
                let mut guard = poisoned.into_inner();
                guard.reset();
                guard
            }
        }
    }

    fn lock_stats(&self) -> MutexGuard<'_, Option<GenerationStats>> {
        // Stats are replaced whole: a panic cannot leave them half-written.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The FFI's record of one generation, from the runtime's statistics
/// ([`tern_runtime::stats`], by which `tern run` and `tern chat` report too: a speed that
/// cannot be measured is `None`) and the session's state afterwards.
pub(crate) fn stats_record(
    s: &tern_runtime::stats::GenerationStats<StopReason>,
    cached_tokens: usize,
    context_tokens: usize,
    bytes_per_token: u64,
    budget: Option<BandwidthBudget>,
) -> GenerationStats {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let tok_s = s.decode_tok_s();
    GenerationStats {
        prompt_tokens: s.prompt_tokens as u32,
        cached_tokens: cached_tokens as u32,
        generated_tokens: s.generated as u32,
        prompt_ms: ms(s.prompt_time),
        generation_ms: ms(s.decode_time),
        prompt_tokens_per_second: s.prompt_tok_s(),
        generation_tokens_per_second: tok_s,
        context_tokens: context_tokens as u32,
        bytes_per_token,
        achieved_gbps: tok_s.map(|t| t * bytes_per_token as f64 / 1e9),
        budget_ceiling_tokens_per_second: budget.map(|b| b.ceiling_tok_s(bytes_per_token)),
        budget_fraction: budget
            .zip(tok_s)
            .map(|(b, t)| b.fraction(t, bytes_per_token)),
        stop_reason: s.stop,
    }
}

/// Where a generation's text and outcome go.
pub(crate) trait Sink: Send {
    fn token(&mut self, text: &str);
    /// Any event but `Done`: text-only sinks (the string conveniences) keep the text and
    /// drop the rest.
    fn event(&mut self, event: crate::ReplyEvent) {
        if let crate::ReplyEvent::Text { text } = &event {
            self.token(text);
        }
    }
    fn finish(self: Box<Self>, result: Result<GenerationStats, TernError>);
}

pub(crate) struct ListenerSink(pub(crate) Box<dyn TokenListener>);

impl Sink for ListenerSink {
    fn token(&mut self, text: &str) {
        self.0.on_token(text.to_string());
    }

    fn finish(self: Box<Self>, result: Result<GenerationStats, TernError>) {
        match result {
            Ok(stats) => self.0.on_complete(stats),
            Err(e) => self.0.on_error(e),
        }
    }
}

pub(crate) struct QueueSink(pub(crate) Arc<Queue<Result<String, TernError>>>);

impl Sink for QueueSink {
    fn token(&mut self, text: &str) {
        self.0.push(Ok(text.to_string()));
    }

    fn finish(self: Box<Self>, result: Result<GenerationStats, TernError>) {
        if let Err(e) = result {
            self.0.push(Err(e));
        }
        self.0.close();
    }
}
