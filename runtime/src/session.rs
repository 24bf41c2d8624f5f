//! A session: one conversation's tokens, KV cache and activation buffers over a shared model.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::{GenerateError, SessionError};
use crate::feed::{SliceFeed, WeightFeed};
use crate::forward::{LogitsFor, Scratch};
use crate::kv_cache::{KvCache, KvType};
use crate::matmul::ActivationPrecision;
use crate::matrix::Exec;
use crate::model::Model;
use crate::parallel::{Parallel, Serial};
use crate::sampler::Sampler;
use crate::tokenizer::StreamDecoder;

/// Context length used when the options leave it at 0: the model's own, capped so the KV cache
/// of a small phone-sized model stays in the tens of megabytes.
pub const DEFAULT_CONTEXT: usize = 4096;

/// The context length a session of a model with config `c` gets when asked for `requested`
/// positions (0: the model's trained context, at most [`DEFAULT_CONTEXT`]); never more than
/// the trained context, so no request can size the KV cache beyond what the model supports.
pub(crate) fn context_for(c: &crate::config::ModelConfig, requested: usize) -> usize {
    if requested == 0 {
        c.train_context.min(DEFAULT_CONTEXT)
    } else {
        requested.min(c.train_context)
    }
}

/// Tokens per forward batch for `requested` (at least 1, at most the context `ctx`).
pub(crate) fn batch_for(requested: usize, ctx: usize) -> usize {
    requested.clamp(1, ctx.max(1))
}
/// Tokens per forward batch when processing a prompt.
pub const DEFAULT_BATCH: usize = 64;

/// How a session is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Context length in tokens; 0 means the model's, at most [`DEFAULT_CONTEXT`]. Larger
    /// requests than the model's trained context get the trained context.
    pub context: usize,
    /// Tokens per forward batch for prompts (at least 1, at most the context).
    pub batch: usize,
    /// How activations meet quantized weights ([`ActivationPrecision::Auto`] by default:
    /// int8 where the CPU has fast int8 dot products, f32 elsewhere; ask for
    /// [`ActivationPrecision::F32`] for the most accurate logits).
    pub precision: ActivationPrecision,
    /// Resident-memory cap for weights in bytes (0: none). When the model's tensors exceed it,
    /// each layer's weights are released after use and re-read from the file on the next
    /// token: slower, but a model larger than the cap still runs. Only a memory-mapped model's
    /// pages can be released: open the model with [`crate::fs::WeightMemory::Map`] (a copy in
    /// memory, which [`crate::fs::WeightMemory::Auto`] makes on desktop Linux, stays resident).
    pub max_resident: usize,
    /// How the KV cache stores keys and values (f16 by default).
    pub kv_type: KvType,
    /// Most bytes the session may allocate for its KV cache and buffers (the weights are the
    /// model's, shared by its sessions); 0 uses [`crate::budget::default_memory_budget`], half
    /// of the device's memory. A larger context fails with
    /// [`SessionError::OverMemoryBudget`] instead of aborting the process.
    pub memory_budget: u64,
}

/// The smallest [`SessionOptions::max_resident`] cap (other than 0, none) a session accepts:
/// 1 MB, or four of the model's largest rows if more. The cap is honoured by releasing
/// weights in slices of a quarter of it, and a slice holds at least one row; below about a
/// megabyte every matrix is cut into thousands of reads per token and the cap neither holds
/// nor runs (a bytes-for-megabytes slip at the FFI lands there).
pub fn min_resident_cap(model: &Model) -> usize {
    MIN_RESIDENT_BYTES.max(model.min_stream_arena().saturating_mul(4))
}

/// See [`min_resident_cap`].
pub const MIN_RESIDENT_BYTES: usize = 1_000_000;

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context: 0,
            batch: DEFAULT_BATCH,
            precision: ActivationPrecision::Auto,
            max_resident: 0,
            kv_type: KvType::default(),
            memory_budget: 0,
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
    precision: ActivationPrecision,
    /// Bytes of weights handed out at once and released after use under a resident cap (see
    /// [`SessionOptions::max_resident`]).
    release: Option<usize>,
    /// Where weights come from when the model's bytes are not all in memory.
    stream: Option<Box<dyn WeightFeed + Send>>,
    /// Every token in the KV cache, in order.
    tokens: Vec<u32>,
    /// Logits after the last token, when one has been processed.
    logits: Vec<f32>,
    /// A token [`Session::generate`] reported but did not run through the model (generation
    /// stopped right after it); the next [`Session::feed`] runs it first, so a continuation
    /// sees the whole text.
    pending: Option<u32>,
    /// Whether a forward pass has touched every weight of a memory-mapped model once.
    paged_in: bool,
}

impl Session {
    /// A session computing on the calling thread only. Fails, without allocating, when the
    /// KV cache and buffers of the context exceed the memory budget or the resident cap is
    /// too small, and when the allocator refuses them.
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Result<Self, SessionError> {
        Self::with_parallel(model, opts, Box::new(Serial))
    }

    /// A session whose matrix products run on `par` (e.g. a [`crate::pool::ThreadPool`]).
    /// Fails as [`Session::new`] does.
    pub fn with_parallel(
        model: Arc<Model>,
        opts: &SessionOptions,
        par: Box<dyn Parallel + Send>,
    ) -> Result<Self, SessionError> {
        let c = model.config();
        let ctx = context_for(c, opts.context);
        let batch = batch_for(opts.batch, ctx);
        let windows = model.tensors().windows();
        if opts.max_resident != 0 && opts.max_resident < min_resident_cap(&model) {
            return Err(SessionError::ResidentCapTooSmall {
                given: opts.max_resident,
                min: min_resident_cap(&model),
            });
        }
        let vocab = c.vocab;
        // Checked before anything is allocated: a context the file allows (up to 2^24) can
        // need hundreds of gigabytes.
        let kv_bytes = KvCache::bytes_for(ctx, &windows, batch, c.kv_dim(), opts.kv_type);
        let needed = kv_bytes
            .saturating_add(Scratch::bytes_for(&model, ctx, batch))
            .saturating_add(4 * (ctx as u64 + vocab as u64));
        let budget = match opts.memory_budget {
            0 => crate::budget::default_memory_budget(),
            b => b,
        };
        if needed > budget {
            return Err(SessionError::OverMemoryBudget {
                needed,
                budget,
                context: ctx,
            });
        }
        let oom = |bytes: u64| move |_| SessionError::OutOfMemory { bytes };
        let kv = KvCache::new(ctx, &windows, batch, c.n_kv_heads, c.head_dim, opts.kv_type)
            .map_err(oom(kv_bytes))?;
        // Under a cap smaller than the model, weights pass through in slices of a quarter of it.
        let release = (opts.max_resident != 0
            && model.meta().tensor_bytes > opts.max_resident as u64)
            .then_some((opts.max_resident / 4).max(1));
        let scratch = Scratch::new(&model, ctx, batch).map_err(oom(needed - kv_bytes))?;
        let precision = opts.precision.resolve(model.kernels());
        // Full capacity up front: decoding never grows the heap (see tests/no_heap_growth).
        let mut tokens = Vec::new();
        tokens.try_reserve_exact(ctx).map_err(oom(4 * ctx as u64))?;
        let mut logits = Vec::new();
        logits
            .try_reserve_exact(vocab)
            .map_err(oom(4 * vocab as u64))?;
        Ok(Session {
            model,
            kv,
            scratch,
            par,
            precision,
            release,
            stream: None,
            tokens,
            logits,
            pending: None,
            paged_in: false,
        })
    }

    /// A session whose weights come from `feed`, e.g. a [`crate::feed::StreamFeed`] reading a
    /// model loaded with [`Model::from_source`] through a fixed arena (see
    /// [`crate::feed::stream_arena`]). Fails as [`Session::new`] does.
    pub fn with_feed(
        model: Arc<Model>,
        opts: &SessionOptions,
        par: Box<dyn Parallel + Send>,
        feed: Box<dyn WeightFeed + Send>,
    ) -> Result<Self, SessionError> {
        let mut s = Self::with_parallel(model, opts, par)?;
        s.stream = Some(feed);
        Ok(s)
    }

    /// Bytes the feed has read from its source so far (0 for a memory-mapped model).
    pub fn bytes_streamed(&self) -> u64 {
        self.stream.as_ref().map_or(0, |f| f.bytes_read())
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

    /// How activations meet quantized weights: never [`ActivationPrecision::Auto`], which
    /// the session resolved for its model's kernels when it was made.
    pub fn precision(&self) -> ActivationPrecision {
        self.precision
    }

    /// How the KV cache stores keys and values.
    pub fn kv_type(&self) -> KvType {
        self.kv.kv_type()
    }

    /// Most prompt tokens one forward pass takes ([`SessionOptions::batch`]).
    pub fn batch(&self) -> usize {
        self.scratch.max_batch()
    }

    /// Threads the session computes on.
    pub fn threads(&self) -> usize {
        self.par.threads()
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.logits.clear();
        self.pending = None;
    }

    /// The token generation stopped after, not yet in the KV cache (see [`Session::feed`]).
    pub fn pending_token(&self) -> Option<u32> {
        self.pending
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

    /// Runs one batch through the model at the end of the context.
    fn forward(&mut self, chunk: &[u32], want: LogitsFor) -> Result<(), GenerateError> {
        let pos = self.tokens.len();
        let ex = Exec {
            k: self.model.kernels(),
            par: &*self.par,
            precision: self.precision,
        };
        let mut mapped;
        let feed: &mut dyn WeightFeed =
            match (self.stream.as_deref_mut(), self.model.weight_bytes()) {
                (Some(stream), _) => stream,
                (None, Some(bytes)) => {
                    // Announce layers ahead until every page has been touched once (and
                    // always under a resident cap, where pages leave again).
                    let ahead = self.release.is_some() || !self.paged_in;
                    mapped = SliceFeed::new(bytes, self.release).layer_ahead(ahead);
                    &mut mapped
                }
                (None, None) => {
                    return Err(GenerateError::WeightRead {
                        offset: 0,
                        message: "the model is streamed: make its sessions with Session::with_feed"
                            .into(),
                    })
                }
            };
        self.model
            .forward(&mut self.scratch, &mut self.kv, feed, ex, chunk, pos, want)?;
        self.paged_in = true;
        self.tokens.extend_from_slice(chunk);
        Ok(())
    }

    /// Appends `tokens` to the context and returns the logits after the last one. A token
    /// left pending by [`Session::generate`] goes first.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32], GenerateError> {
        let (with_pending, only_pending);
        let tokens = match self.pending {
            // The decoding step of `generate`: no allocation.
            Some(p) if tokens.is_empty() => {
                only_pending = [p];
                &only_pending[..]
            }
            Some(p) => {
                with_pending = [&[p][..], tokens].concat();
                &with_pending[..]
            }
            None => tokens,
        };
        if tokens.is_empty() {
            return self.logits().ok_or(GenerateError::EmptyPrompt);
        }
        self.check(tokens)?;
        self.pending = None;
        let vocab = self.model.config().vocab;
        self.logits.clear();
        for chunk in tokens.chunks(self.scratch.max_batch()) {
            self.forward(chunk, LogitsFor::Last)?;
        }
        let logits = self.scratch.logits(1, vocab);
        // NaN or infinite weights give NaN logits, which every sampler turns into some token
        // (or into silence): say so instead. One pass over the vocabulary, next to a forward
        // pass over every weight.
        if !logits.iter().all(|l| l.is_finite()) {
            return Err(GenerateError::NonFiniteLogits {
                position: self.tokens.len() - 1,
            });
        }
        self.logits.extend_from_slice(logits);
        Ok(&self.logits)
    }

    /// Appends `tokens` and calls `f(i, logits)` with the logits after each token `i`.
    pub fn feed_scoring(
        &mut self,
        tokens: &[u32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<(), GenerateError> {
        if let Some(p) = self.pending.take() {
            if let Err(e) = self.feed(&[p]) {
                self.pending = Some(p);
                return Err(e);
            }
        }
        self.check(tokens)?;
        let vocab = self.model.config().vocab;
        let batch = self.scratch.max_batch();
        self.logits.clear();
        for (c, chunk) in tokens.chunks(batch).enumerate() {
            self.forward(chunk, LogitsFor::All)?;
            let rows = self.scratch.logits(chunk.len(), vocab);
            for (i, row) in rows.chunks_exact(vocab).enumerate() {
                f(c * batch + i, row);
            }
            if c * batch + chunk.len() == tokens.len() {
                self.logits
                    .extend_from_slice(&rows[(chunk.len() - 1) * vocab..]);
            }
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
        if prompt.is_empty() && self.logits.is_empty() && self.pending.is_none() {
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
            // From here on the caller has the token: keep it pending until it is run.
            self.pending = Some(id);
            if on_event(Event::Token { id, text: &text }) == Flow::Stop {
                return Ok(StopReason::Stopped);
            }
            if n + 1 == max_tokens {
                break;
            }
            if self.tokens.len() >= self.context_len() {
                return Ok(StopReason::ContextFull);
            }
            self.feed(&[])?;
        }
        Ok(StopReason::MaxTokens)
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation and snapshots: rewinding a conversation, and saving it to bytes so an app can
// resume after being killed.

/// Version of the bytes [`Session::save`] writes; [`Session::restore`] accepts only this one.
pub const SNAPSHOT_VERSION: u32 = 1;
/// First bytes of a session snapshot.
const SNAPSHOT_MAGIC: [u8; 8] = *b"TERNSESS";

/// Why [`Session::restore`] rejected a snapshot. The session is left untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// The bytes do not start like a snapshot of this kind.
    NotASnapshot,
    /// The snapshot was written by another format version.
    UnsupportedVersion {
        /// Its version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The bytes were damaged: the stored checksum does not match the contents.
    ChecksumMismatch {
        /// Checksum stored in the snapshot.
        stored: u32,
        /// Checksum of the bytes as read.
        computed: u32,
    },
    /// The snapshot was made with a different model (hyperparameters, vocabulary or tensor
    /// layout differ), whose KV cache means nothing to this one.
    ModelMismatch {
        /// Fingerprint of this session's model ([`Model::fingerprint`]).
        expected: u64,
        /// Fingerprint stored in the snapshot.
        found: u64,
    },
    /// The snapshot holds more tokens than this session's context.
    ContextTooSmall {
        /// Tokens in the snapshot.
        needed: usize,
        /// This session's context length.
        limit: usize,
    },
    /// A field is inconsistent (a length, a dimension, a token id) despite a valid checksum.
    Malformed {
        /// The field.
        what: &'static str,
    },
}

impl core::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RestoreError::NotASnapshot => write!(f, "not a Tern session snapshot"),
            RestoreError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot format version {found} is not supported (this build reads {supported})"
            ),
            RestoreError::ChecksumMismatch { stored, computed } => write!(
                f,
                "snapshot is damaged: checksum {computed:08x}, expected {stored:08x}"
            ),
            RestoreError::ModelMismatch { expected, found } => write!(
                f,
                "snapshot was made with another model (fingerprint {found:016x}, this model \
                 is {expected:016x})"
            ),
            RestoreError::ContextTooSmall { needed, limit } => write!(
                f,
                "snapshot holds {needed} tokens, the session's context is {limit}"
            ),
            RestoreError::Malformed { what } => write!(f, "snapshot is malformed: bad {what}"),
        }
    }
}

impl core::error::Error for RestoreError {}

impl Session {
    /// Forgets every token after the first `n` (nothing happens if there are `n` or fewer),
    /// so the next [`feed`](Self::feed) continues from position `n`, and returns the tokens
    /// kept. Their keys and values are simply overwritten later. The logits are dropped unless
    /// nothing was removed.
    ///
    /// A model with sliding-window layers (Gemma 3) keeps only a window of keys and values in
    /// those layers: when the rewind goes back further than they still hold, every token is
    /// forgotten and the return value is 0. Feed the tokens from the returned length on.
    pub fn truncate(&mut self, n: usize) -> usize {
        // A pending token sits at position `tokens.len()`: any truncation at or before it
        // drops it.
        if n <= self.tokens.len() {
            self.pending = None;
        }
        if n < self.tokens.len() {
            let keep = if self.kv.can_rewind(self.tokens.len(), n) {
                n
            } else {
                0
            };
            self.tokens.truncate(keep);
            self.logits.clear();
        }
        self.tokens.len()
    }

    /// Saves the session to bytes: a header (magic, [`SNAPSHOT_VERSION`], the model's
    /// [`fingerprint`](Model::fingerprint), shapes), the tokens, the logits after the last one
    /// (if any: none after a [`truncate`](Self::truncate)), the keys and values of the used
    /// positions, and a CRC-32 of everything before it. All numbers are little-endian. About
    /// `2 · n_layers · kv_dim · 4` bytes per token (46 KB for SmolLM2-135M).
    pub fn save(&self) -> Vec<u8> {
        let c = self.model.config();
        let (n_layers, kv_dim, n) = (c.n_layers, c.kv_dim(), self.tokens.len());
        let mut out =
            Vec::with_capacity(64 + 4 * (n + self.logits.len() + 2 * n_layers * n * kv_dim));
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.model.fingerprint().to_le_bytes());
        for v in [n_layers, kv_dim, c.vocab, n, self.logits.len()] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        for t in &self.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        put_f32s(&mut out, &self.logits);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for layer in 0..n_layers {
            k.clear();
            v.clear();
            self.kv.read_layer(layer, n, &mut k, &mut v);
            put_f32s(&mut out, &k);
            put_f32s(&mut out, &v);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Replaces this session's tokens, logits and KV cache with those saved by
    /// [`save`](Self::save), from a session on the same model. Everything is checked before
    /// anything changes: on error the session is as it was.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let body = check_snapshot(bytes, &SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
        let mut r = ByteReader::new(&body[SNAPSHOT_MAGIC.len() + 4..]);
        let found = r.u64("fingerprint")?;
        let expected = self.model.fingerprint();
        if found != expected {
            return Err(RestoreError::ModelMismatch { expected, found });
        }
        let c = self.model.config();
        let (n_layers, kv_dim, vocab) = (c.n_layers, c.kv_dim(), c.vocab);
        if r.usize("n_layers")? != n_layers || r.usize("kv_dim")? != kv_dim {
            return Err(RestoreError::Malformed { what: "KV shape" });
        }
        if r.usize("vocab")? != vocab {
            return Err(RestoreError::Malformed {
                what: "vocabulary size",
            });
        }
        let n = r.usize("token count")?;
        let n_logits = r.usize("logit count")?;
        if n_logits != 0 && n_logits != vocab {
            return Err(RestoreError::Malformed {
                what: "logit count",
            });
        }
        if n > self.context_len() {
            return Err(RestoreError::ContextTooSmall {
                needed: n,
                limit: self.context_len(),
            });
        }
        // Exact size: tokens, logits, then keys and values of n positions per layer.
        let kv_floats = n
            .checked_mul(kv_dim)
            .and_then(|x| x.checked_mul(2 * n_layers))
            .ok_or(RestoreError::Malformed {
                what: "token count",
            })?;
        let need = n
            .checked_add(n_logits)
            .and_then(|x| x.checked_add(kv_floats))
            .and_then(|x| x.checked_mul(4))
            .ok_or(RestoreError::Malformed {
                what: "token count",
            })?;
        if r.remaining() != need {
            return Err(RestoreError::Malformed { what: "length" });
        }
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let t = r.u32("token")?;
            if t as usize >= vocab {
                return Err(RestoreError::Malformed { what: "token id" });
            }
            tokens.push(t);
        }
        let logits = r.f32s(n_logits, "logits")?;
        // Valid: commit.
        let mut k = Vec::new();
        let mut v = Vec::new();
        for layer in 0..n_layers {
            k.clear();
            v.clear();
            k.extend(r.f32s(n * kv_dim, "keys")?);
            v.extend(r.f32s(n * kv_dim, "values")?);
            if n > 0 {
                self.kv.store(self.model.kernels(), layer, 0, &k, &v);
            }
        }
        self.tokens = tokens;
        self.logits = logits;
        Ok(())
    }
}

/// Checks the framing every Tern snapshot shares: `magic`, a little-endian `u32` version,
/// the body, and a trailing CRC-32 of everything before it. Returns the bytes before the
/// checksum (magic and version included).
pub(crate) fn check_snapshot<'a>(
    bytes: &'a [u8],
    magic: &[u8],
    version: u32,
) -> Result<&'a [u8], RestoreError> {
    let head = magic.len() + 4;
    if bytes.len() < head + 4 || &bytes[..magic.len()] != magic {
        return Err(RestoreError::NotASnapshot);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[magic.len()..head]);
    let found = u32::from_le_bytes(v);
    if found != version {
        return Err(RestoreError::UnsupportedVersion {
            found,
            supported: version,
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let mut s = [0u8; 4];
    s.copy_from_slice(tail);
    let stored = u32::from_le_bytes(s);
    let computed = crc32(body);
    if stored != computed {
        return Err(RestoreError::ChecksumMismatch { stored, computed });
    }
    Ok(body)
}

fn put_f32s(out: &mut Vec<u8>, xs: &[f32]) {
    out.reserve(xs.len() * 4);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// Reads little-endian fields, failing with [`RestoreError::Malformed`] naming the field
/// instead of reading past the end.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
}

impl<'a> ByteReader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RestoreError> {
        if n > self.buf.len() {
            return Err(RestoreError::Malformed { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RestoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// A `u32`.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, RestoreError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A `u64`.
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, RestoreError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u64` that must fit in `usize`.
    pub(crate) fn usize(&mut self, what: &'static str) -> Result<usize, RestoreError> {
        usize::try_from(self.u64(what)?).map_err(|_| RestoreError::Malformed { what })
    }

    /// `n` `f32`s.
    pub(crate) fn f32s(&mut self, n: usize, what: &'static str) -> Result<Vec<f32>, RestoreError> {
        let len = n.checked_mul(4).ok_or(RestoreError::Malformed { what })?;
        let bytes = self.bytes(len, what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib computes it: `crc32fast`
/// (no_std) runs it with PCLMULQDQ / the ARMv8 CRC instructions where present.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn framing_rejects_cleanly() {
        let mut snap = Vec::from(&b"MAGIC"[..]);
        snap.extend_from_slice(&7u32.to_le_bytes());
        snap.extend_from_slice(b"body");
        let crc = crc32(&snap);
        snap.extend_from_slice(&crc.to_le_bytes());
        assert!(check_snapshot(&snap, b"MAGIC", 7).is_ok());
        assert_eq!(
            check_snapshot(&snap[..6], b"MAGIC", 7),
            Err(RestoreError::NotASnapshot)
        );
        assert_eq!(
            check_snapshot(&snap, b"MAGIX", 7),
            Err(RestoreError::NotASnapshot)
        );
        assert_eq!(
            check_snapshot(&snap, b"MAGIC", 8),
            Err(RestoreError::UnsupportedVersion {
                found: 7,
                supported: 8
            })
        );
        let mut bad = snap.clone();
        bad[10] ^= 1;
        assert!(matches!(
            check_snapshot(&bad, b"MAGIC", 7),
            Err(RestoreError::ChecksumMismatch { .. })
        ));
        let mut r = ByteReader::new(&[1, 2, 3]);
        assert_eq!(r.u32("x"), Err(RestoreError::Malformed { what: "x" }));
        assert_eq!(
            r.f32s(usize::MAX, "y"),
            Err(RestoreError::Malformed { what: "y" })
        );
    }
}
