//! A session: one conversation's tokens, KV cache and activation buffers over a shared model.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::GenerateError;
use crate::forward::{LogitsFor, Scratch};
use crate::kv_cache::KvCache;
use crate::model::Model;
use crate::parallel::{Parallel, Serial};
use crate::sampler::Sampler;
use crate::tokenizer::StreamDecoder;

/// Context length used when the options leave it at 0: the model's own, capped so the KV cache
/// of a small phone-sized model stays in the tens of megabytes.
pub const DEFAULT_CONTEXT: usize = 4096;
/// Tokens per forward batch when processing a prompt.
pub const DEFAULT_BATCH: usize = 64;

/// How a session is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Context length in tokens; 0 means the model's, at most [`DEFAULT_CONTEXT`].
    pub context: usize,
    /// Tokens per forward batch for prompts (≥ 1).
    pub batch: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context: 0,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Why generation ended (without an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The caller's callback asked to stop.
    Stopped,
    /// The context window is full.
    ContextFull,
}

/// What [`Session::generate`] reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The prompt has been processed; the first token is about to be sampled.
    PromptDone {
        /// Prompt tokens processed.
        n_tokens: usize,
    },
    /// A token was generated.
    Token {
        /// Its id.
        id: u32,
        /// The complete UTF-8 text it finished (may be empty while a multi-byte character
        /// is split across tokens).
        text: &'a str,
    },
}

/// Whether generation should go on after an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Stop now.
    Stop,
}

/// One conversation over a shared [`Model`].
pub struct Session {
    model: Arc<Model>,
    kv: KvCache,
    scratch: Scratch,
    par: Box<dyn Parallel + Send>,
    /// Every token in the KV cache, in order.
    tokens: Vec<u32>,
    /// Logits after the last token, when one has been processed.
    logits: Vec<f32>,
}

impl Session {
    /// A session computing on the calling thread only.
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Self {
        Self::with_parallel(model, opts, Box::new(Serial))
    }

    /// A session whose matrix products run on `par` (e.g. a [`crate::pool::ThreadPool`]).
    pub fn with_parallel(
        model: Arc<Model>,
        opts: &SessionOptions,
        par: Box<dyn Parallel + Send>,
    ) -> Self {
        let c = model.config();
        let ctx = if opts.context == 0 {
            c.train_context.min(DEFAULT_CONTEXT)
        } else {
            opts.context
        };
        let kv = KvCache::new(c.n_layers, ctx, c.kv_dim());
        let scratch = Scratch::new(&model, ctx, opts.batch.max(1));
        Session {
            model,
            kv,
            scratch,
            par,
            tokens: Vec::new(),
            logits: Vec::new(),
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Context length in tokens.
    pub fn context_len(&self) -> usize {
        self.kv.capacity()
    }

    /// Tokens in the context so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Threads the session computes on.
    pub fn threads(&self) -> usize {
        self.par.threads()
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.logits.clear();
    }

    /// Logits after the last processed token, if any.
    pub fn logits(&self) -> Option<&[f32]> {
        (!self.logits.is_empty()).then_some(&self.logits[..])
    }

    /// Bytes one decode step at the current position reads: weights plus the KV history.
    pub fn bytes_per_token(&self) -> u64 {
        self.model.tensors().weight_bytes_per_token() + self.kv.bytes_read_at(self.tokens.len())
    }

    fn check(&self, tokens: &[u32]) -> Result<(), GenerateError> {
        let vocab = self.model.config().vocab;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(GenerateError::TokenOutOfRange { id, vocab });
        }
        let needed = self.tokens.len() + tokens.len();
        if needed > self.context_len() {
            return Err(GenerateError::ContextFull {
                needed,
                limit: self.context_len(),
            });
        }
        Ok(())
    }

    /// Appends `tokens` to the context and returns the logits after the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32], GenerateError> {
        if tokens.is_empty() {
            return self.logits().ok_or(GenerateError::EmptyPrompt);
        }
        self.check(tokens)?;
        let vocab = self.model.config().vocab;
        let batch = self.scratch.max_batch();
        for chunk in tokens.chunks(batch) {
            let pos = self.tokens.len();
            self.model.forward(
                &mut self.scratch,
                &mut self.kv,
                &*self.par,
                chunk,
                pos,
                LogitsFor::Last,
            );
            self.tokens.extend_from_slice(chunk);
        }
        self.logits.clear();
        self.logits.extend_from_slice(self.scratch.logits(1, vocab));
        Ok(&self.logits)
    }

    /// Appends `tokens` and calls `f(i, logits)` with the logits after each token `i`.
    pub fn feed_scoring(
        &mut self,
        tokens: &[u32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<(), GenerateError> {
        self.check(tokens)?;
        let vocab = self.model.config().vocab;
        let batch = self.scratch.max_batch();
        for (c, chunk) in tokens.chunks(batch).enumerate() {
            let pos = self.tokens.len();
            self.model.forward(
                &mut self.scratch,
                &mut self.kv,
                &*self.par,
                chunk,
                pos,
                LogitsFor::All,
            );
            self.tokens.extend_from_slice(chunk);
            for (i, row) in self
                .scratch
                .logits(chunk.len(), vocab)
                .chunks_exact(vocab)
                .enumerate()
            {
                f(c * batch + i, row);
            }
        }
        if let Some(last) = self
            .scratch
            .logits(tokens.len().min(batch), vocab)
            .rchunks_exact(vocab)
            .next()
        {
            self.logits.clear();
            self.logits.extend_from_slice(last);
        }
        Ok(())
    }

    /// Processes `prompt`, then samples up to `max_tokens` tokens, reporting each through
    /// `on_event` as complete UTF-8 text. Stops at an end-of-generation token (not reported),
    /// after `max_tokens`, when the context is full, or when `on_event` returns [`Flow::Stop`].
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        max_tokens: usize,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Result<StopReason, GenerateError> {
        if prompt.is_empty() && self.logits.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        self.feed(prompt)?;
        if on_event(Event::PromptDone {
            n_tokens: prompt.len(),
        }) == Flow::Stop
        {
            return Ok(StopReason::Stopped);
        }
        let model = Arc::clone(&self.model);
        let tok = model.tokenizer();
        let mut decoder = StreamDecoder::new();
        let mut text = String::new();
        for n in 0..max_tokens {
            let id = sampler.sample(&self.logits, &self.tokens);
            if tok.is_end_of_generation(id) {
                return Ok(StopReason::EndOfGeneration);
            }
            text.clear();
            text.push_str(&decoder.push(tok, id));
            if on_event(Event::Token { id, text: &text }) == Flow::Stop {
                return Ok(StopReason::Stopped);
            }
            if n + 1 == max_tokens {
                break;
            }
            if self.tokens.len() >= self.context_len() {
                return Ok(StopReason::ContextFull);
            }
            self.feed(&[id])?;
        }
        Ok(StopReason::MaxTokens)
    }
}
