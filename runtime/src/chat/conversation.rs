//! A conversation on a session: render the whole conversation every turn, feed only what the
//! KV cache does not already hold, generate until the turn ends.

use std::fmt;
use std::string::String;
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::persist::{decode_chat, encode_chat};
use super::stop::{StopMatch, StopStrings};
use super::template::{ChatTemplate, RenderOptions, TemplateError};
use super::Message;
use crate::error::GenerateError;
use crate::sampler::{Sampler, SamplerOptions};
use crate::session::{Flow, RestoreError, Session};
use crate::tokenizer::StreamDecoder;

/// What happens when a conversation no longer fits in the context.
///
/// A turn needs the whole rendered conversation plus room for the reply: `max_tokens`
/// positions, but at most a quarter of the context (so a large budget on a small context does
/// not empty the history).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Drop the oldest turns after the system prompt (a user message and the replies that
    /// follow it, one turn at a time) until the conversation fits, then re-render; the KV
    /// cache keeps the common prefix (at least the system prompt) and the rest is prefilled
    /// again. The latest user message is never dropped: if it alone does not fit in the
    /// context, the turn fails with [`GenerateError::ContextFull`]. If it fits but leaves
    /// less room than wanted for the reply, the reply may end with [`ReplyStop::ContextFull`].
    #[default]
    DropOldestTurns,
    /// Fail the turn with [`GenerateError::ContextFull`] and leave the conversation as it was;
    /// the app decides what to drop.
    Refuse,
}

/// How a [`Chat`] is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatOptions {
    /// How replies are sampled.
    pub sampling: SamplerOptions,
    /// What to do when the conversation outgrows the context.
    pub overflow: OverflowPolicy,
    /// Reuse the KV cache of the common prefix between turns (default). `false` re-processes
    /// the whole conversation every turn: only for measuring what reuse saves.
    pub reuse_cache: bool,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            sampling: SamplerOptions::default(),
            overflow: OverflowPolicy::default(),
            reuse_cache: true,
        }
    }
}

/// Limits of one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end the reply when generated (matched across token boundaries; neither
    /// they nor anything after them reach the caller or the conversation).
    pub stop: Vec<String>,
}

impl Default for ReplyOptions {
    fn default() -> Self {
        ReplyOptions {
            max_tokens: 512,
            stop: Vec::new(),
        }
    }
}

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStop {
    /// The model ended its turn (EOS or an end-of-turn token such as `<|im_end|>`).
    EndOfTurn,
    /// Stop string number `.0` of [`ReplyOptions::stop`] was generated.
    StopString(usize),
    /// [`ReplyOptions::max_tokens`] tokens were generated.
    MaxTokens,
    /// The callback returned [`Flow::Stop`]; the reply holds what was generated so far.
    Cancelled,
    /// The context filled up during the reply.
    ContextFull,
}

/// How the prompt of a turn was processed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefill {
    /// Tokens whose keys and values were already in the cache.
    pub reused: usize,
    /// Tokens processed this turn.
    pub new: usize,
    /// Messages dropped to fit the context ([`OverflowPolicy::DropOldestTurns`]).
    pub dropped_messages: usize,
    /// Time spent processing the new tokens.
    pub time: Duration,
}

/// An assistant reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The text (without the end-of-turn token or a stop string), as streamed to the caller.
    pub text: String,
    /// Why it ended.
    pub stop: ReplyStop,
    /// Tokens generated (the end-of-turn token not counted).
    pub n_tokens: usize,
    /// How the prompt was processed.
    pub prefill: Prefill,
    /// Time from the end of the prefill to the end of the reply.
    pub decode_time: Duration,
    /// The rendered prompt this reply answers (the whole conversation so far, with the
    /// header of the assistant's turn).
    pub prompt: String,
}

/// Why a turn failed. The conversation is left as it was before the turn.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatError {
    /// The template could not render the conversation.
    Template(TemplateError),
    /// The model could not process it: [`GenerateError::ContextFull`] when the conversation
    /// does not fit (see [`OverflowPolicy`]), [`GenerateError::EmptyPrompt`] when the template
    /// renders nothing.
    Generate(GenerateError),
}

impl From<TemplateError> for ChatError {
    fn from(e: TemplateError) -> Self {
        ChatError::Template(e)
    }
}

impl From<GenerateError> for ChatError {
    fn from(e: GenerateError) -> Self {
        ChatError::Generate(e)
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Template(e) => e.fmt(f),
            ChatError::Generate(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChatError {}

/// A conversation with a model: messages, the template that formats them, and the session
/// whose KV cache holds what has been processed.
///
/// The messages are the truth; the session is a cache. Every turn renders all messages,
/// keeps the longest prefix of the session's tokens that the new rendering starts with
/// ([`Session::truncate`] drops the rest), and processes only the remainder. So editing the
/// history, dropping turns, or a reply whose re-tokenized text differs from the sampled
/// tokens all stay correct, and cost only the re-processing of what changed.
pub struct Chat {
    session: Session,
    template: ChatTemplate,
    sampler: Sampler,
    opts: ChatOptions,
    messages: Vec<Message>,
    /// Tokens that end the assistant's turn, sorted.
    end_tokens: Vec<u32>,
    /// Tools, variables and time for every rendering (`add_generation_prompt` is set per
    /// rendering).
    render: RenderOptions,
}

// Apps (and the FFI layer) move a conversation to a worker thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Chat>();
};

impl fmt::Debug for Chat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("messages", &self.messages)
            .field("cached_tokens", &self.session.tokens().len())
            .field("end_tokens", &self.end_tokens)
            .finish()
    }
}

impl Chat {
    /// A conversation on `session` formatted by `template`. The session's current tokens
    /// are kept and reused where the first rendering matches them.
    ///
    /// Turns end at the tokenizer's end-of-generation tokens (EOS, EOT and those llama.cpp
    /// recognises by name) and at the first control token the template writes after an
    /// assistant message (`<|im_end|>` for ChatML).
    pub fn new(session: Session, template: ChatTemplate, opts: ChatOptions) -> Self {
        let tok = session.model().tokenizer();
        let mut end_tokens = tok.end_of_generation_tokens().to_vec();
        end_tokens.extend(tok.eos());
        if let Some(text) = template.end_of_turn_text() {
            let ids = tok.encode(&text, false, true);
            end_tokens.extend(ids.into_iter().find(|&id| tok.is_control(id)));
        }
        end_tokens.sort_unstable();
        end_tokens.dedup();
        Chat {
            sampler: Sampler::new(opts.sampling.clone()),
            session,
            template,
            opts,
            messages: Vec::new(),
            end_tokens,
            render: RenderOptions::default(),
        }
    }

    /// A conversation using the model's own chat template; [`TemplateError::Missing`] when
    /// the GGUF has none (then build a [`ChatTemplate`] and use [`Chat::new`]).
    pub fn with_model_template(session: Session, opts: ChatOptions) -> Result<Self, ChatError> {
        let template = ChatTemplate::from_model(session.model())?;
        Ok(Self::new(session, template, opts))
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The session (its tokens are what the KV cache holds).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, e.g. to [`Session::restore`] it.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Ends the conversation, returning the session.
    pub fn into_session(self) -> Session {
        self.session
    }

    /// The template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The options.
    pub fn options(&self) -> &ChatOptions {
        &self.opts
    }

    /// The tokens that end the assistant's turn, sorted.
    pub fn end_tokens(&self) -> &[u32] {
        &self.end_tokens
    }

    /// Replaces the sampling options (and restarts the random generator from their seed).
    pub fn set_sampling(&mut self, sampling: SamplerOptions) {
        self.sampler = Sampler::new(sampling.clone());
        self.opts.sampling = sampling;
    }

    /// The tools, extra variables and time every rendering gets.
    pub fn render_options(&self) -> &RenderOptions {
        &self.render
    }

    /// Sets the tools, extra variables and time every rendering gets: e.g.
    /// `enable_thinking: false` for the non-thinking mode of Qwen3 or SmolLM3, `date_string`
    /// for Llama 3.x, tool definitions, or a fixed [`now`](RenderOptions::now).
    /// `add_generation_prompt` is ignored (each rendering sets it). Takes effect at the next
    /// turn; not part of [`save`](Self::save).
    pub fn set_render_options(&mut self, opts: RenderOptions) {
        self.render = opts;
    }

    /// Sets the system prompt (the first message, role `system`), or removes it with `None`
    /// (the template may then insert its default one).
    pub fn set_system(&mut self, text: Option<&str>) {
        let has = self.messages.first().is_some_and(|m| m.role == "system");
        match (text, has) {
            (Some(t), true) => self.messages[0] = Message::system(t),
            (Some(t), false) => self.messages.insert(0, Message::system(t)),
            (None, true) => {
                self.messages.remove(0);
            }
            (None, false) => {}
        }
    }

    /// Appends a message without answering it (a tool result, an earlier exchange, …).
    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// Keeps the first `n` messages and drops the rest (the last turn, to remove or
    /// regenerate it). The KV cache is kept: the next turn reuses the part of it the
    /// shortened conversation starts with.
    pub fn truncate_messages(&mut self, n: usize) {
        self.messages.truncate(n);
    }

    /// Starts over, keeping the system prompt. The KV cache is kept: the next turn reuses
    /// the part of it the new conversation starts with (the system prompt).
    pub fn reset(&mut self) {
        let keep = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        self.messages.truncate(keep);
    }

    /// Renders the conversation as the model will see it.
    pub fn render(&self, add_generation_prompt: bool) -> Result<String, ChatError> {
        let opts = RenderOptions {
            add_generation_prompt,
            ..self.render.clone()
        };
        Ok(self.template.render(&self.messages, &opts)?)
    }

    /// Adds the user message `text` and generates the assistant's reply, which is appended to
    /// the conversation and returned.
    ///
    /// `on_text` is called with empty text before each batch of the prompt (returning
    /// [`Flow::Stop`] there fails the turn with [`GenerateError::Cancelled`] within one batch),
    /// then once per generated token with the text that token released (possibly empty: part
    /// of a multi-byte character, or a possible start of a stop string); returning
    /// [`Flow::Stop`] ends the reply ([`ReplyStop::Cancelled`]) and nothing more is passed to
    /// `on_text`. On error the conversation is unchanged.
    pub fn send(
        &mut self,
        text: &str,
        opts: &ReplyOptions,
        on_text: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Reply, ChatError> {
        self.messages.push(Message::user(text));
        let reply = self.respond(opts, on_text);
        if reply.is_err() {
            self.messages.pop();
        }
        reply
    }

    /// Generates the assistant's reply to the conversation as it stands (see
    /// [`send`](Self::send)).
    pub fn respond(
        &mut self,
        opts: &ReplyOptions,
        on_text: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Reply, ChatError> {
        let (prompt, prefill) = self.prefill(opts.max_tokens, &mut || on_text(""))?;
        let start = Instant::now();
        let (text, stop, n_tokens) = self.generate(opts, on_text)?;
        self.messages.push(Message::assistant(&text));
        Ok(Reply {
            text,
            stop,
            n_tokens,
            prefill,
            decode_time: start.elapsed(),
            prompt,
        })
    }

    /// Renders the conversation with the header of the assistant's turn, making room for a
    /// reply of up to `max_tokens` (at most a quarter of the context) as the
    /// [`OverflowPolicy`] says, and feeds the session what its KV cache does not already
    /// hold; the session's logits then predict the reply's first token. `on_batch` is asked
    /// before each batch whether to go on ([`Flow::Stop`] fails with
    /// [`GenerateError::Cancelled`]). Returns the prompt and how it was processed. Turns
    /// dropped to fit leave the messages only on success; on error they are unchanged.
    pub(crate) fn prefill(
        &mut self,
        max_tokens: usize,
        on_batch: &mut dyn FnMut() -> Flow,
    ) -> Result<(String, Prefill), ChatError> {
        let ctx = self.session.context_len();
        let reserve = max_tokens.min(ctx / 4);
        let mut messages = self.messages.clone();
        let (prompt, tokens, dropped) = self.fit(&mut messages, reserve)?;

        // Reuse the cached prefix; at least one token must be fed to get fresh logits.
        let keep = if self.opts.reuse_cache {
            common_prefix(self.session.tokens(), &tokens)
        } else {
            0
        };
        let keep = self.session.truncate(keep.min(tokens.len() - 1));
        let start = Instant::now();
        // Batch by batch, asking `on_text` (with no text) before each whether to go on, so a
        // cancel lands within one batch: a 3,000-token message fed whole took 21 s to cancel.
        for chunk in tokens[keep..].chunks(self.session.batch()) {
            if on_batch() == Flow::Stop {
                return Err(GenerateError::Cancelled.into());
            }
            self.session.feed(chunk)?;
        }
        let prefill = Prefill {
            reused: keep,
            new: tokens.len() - keep,
            dropped_messages: dropped,
            time: start.elapsed(),
        };
        self.messages = messages;
        Ok((prompt, prefill))
    }

    /// Renders `messages` (dropping old turns if the policy says so) until the prompt plus
    /// `reserve` fits the context. Returns the prompt, its tokens and the messages dropped.
    fn fit(
        &self,
        messages: &mut Vec<Message>,
        reserve: usize,
    ) -> Result<(String, Vec<u32>, usize), ChatError> {
        let ctx = self.session.context_len();
        let tok = self.session.model().tokenizer();
        let render = RenderOptions {
            add_generation_prompt: true,
            ..self.render.clone()
        };
        let mut dropped = 0;
        loop {
            let guarded: Vec<Message> = messages.iter().map(|m| guard(tok, m)).collect();
            // As transformers' `apply_chat_template(tokenize=True)`, the template writes the
            // special tokens itself; unlike it, message content stays text (see `guard`).
            let (prompt, tokens) = encode_rendering(tok, &self.template.render(&guarded, &render)?);
            if tokens.is_empty() {
                return Err(GenerateError::EmptyPrompt.into());
            }
            let needed = tokens.len() + reserve;
            if needed <= ctx {
                return Ok((prompt, tokens, dropped));
            }
            let full = GenerateError::ContextFull { needed, limit: ctx };
            match self.opts.overflow {
                OverflowPolicy::Refuse => return Err(full.into()),
                OverflowPolicy::DropOldestTurns => match oldest_turn(messages) {
                    Some(turn) => {
                        dropped += turn.len();
                        messages.drain(turn);
                    }
                    // Only the latest turn is left: go ahead if it fits at all.
                    None if tokens.len() <= ctx => return Ok((prompt, tokens, dropped)),
                    None => {
                        return Err(GenerateError::ContextFull {
                            needed: tokens.len(),
                            limit: ctx,
                        }
                        .into())
                    }
                },
            }
        }
    }

    /// Samples the reply from the session's current logits.
    fn generate(
        &mut self,
        opts: &ReplyOptions,
        on_text: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<(String, ReplyStop, usize), ChatError> {
        let model = std::sync::Arc::clone(self.session.model());
        let tok = model.tokenizer();
        let mut decoder = StreamDecoder::new();
        let mut stops = StopStrings::new(&opts.stop);
        let (mut text, mut piece, mut released) = (String::new(), String::new(), String::new());
        let mut n_tokens = 0;
        let mut stop = ReplyStop::MaxTokens;
        while n_tokens < opts.max_tokens {
            let logits = self.session.logits().ok_or(GenerateError::EmptyPrompt)?;
            let id = self.sampler.sample(logits, self.session.tokens());
            if self.end_tokens.binary_search(&id).is_ok() {
                stop = ReplyStop::EndOfTurn;
                break;
            }
            n_tokens += 1;
            piece.clear();
            decoder.push_to(tok, id, &mut piece);
            released.clear();
            let found = stops.push(&piece, &mut released);
            text.push_str(&released);
            let flow = on_text(&released);
            if let StopMatch::Found(i) = found {
                return Ok((text, ReplyStop::StopString(i), n_tokens));
            }
            if flow == Flow::Stop {
                stop = ReplyStop::Cancelled;
                break;
            }
            if n_tokens == opts.max_tokens {
                break;
            }
            if self.session.tokens().len() >= self.session.context_len() {
                stop = ReplyStop::ContextFull;
                break;
            }
            self.session.feed(&[id])?;
        }
        if stop == ReplyStop::Cancelled {
            // Nothing reaches the caller after a cancel; the reply is what it was given.
            return Ok((text, stop, n_tokens));
        }
        // The text held back for a possible stop string or an unfinished character.
        piece = decoder.finish();
        released.clear();
        if let StopMatch::Found(i) = stops.push(&piece, &mut released) {
            stop = ReplyStop::StopString(i);
        } else {
            stops.finish(&mut released);
        }
        if !released.is_empty() {
            text.push_str(&released);
            on_text(&released);
        }
        Ok((text, stop, n_tokens))
    }

    /// Saves the conversation: its messages and the session ([`Session::save`]), framed with
    /// a version and a CRC-32.
    pub fn save(&self) -> Vec<u8> {
        encode_chat(&self.messages, &self.session.save())
    }

    /// Restores a conversation saved by [`save`](Self::save) with the same model. Everything is
    /// checked first: on error nothing changes.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        let (messages, session) = decode_chat(bytes)?;
        self.session.restore(session)?;
        self.messages = messages;
        Ok(())
    }
}

/// Brackets text that opens a span of message content tokenized as plain text (see [`guard`]):
/// private-use characters of plane 15, which no template writes and which are removed from
/// message content first, so no message can forge them.
const PLAIN_OPEN: char = '\u{F0000}';
/// Closes a span opened by [`PLAIN_OPEN`].
const PLAIN_CLOSE: char = '\u{F0001}';

/// `m` ready to render: every piece of its content that spells a control token
/// (`<|im_end|>`, `<|im_start|>`) is bracketed by [`PLAIN_OPEN`] / [`PLAIN_CLOSE`], which
/// [`encode_rendering`] turns into a span tokenized as text. Marks are placed around those
/// pieces only, not around the whole content, so templates that trim or split content see it
/// as it is; content without such pieces is unchanged. A message that opts in
/// ([`Message::parse_special`]) is left alone.
fn guard(tok: &crate::tokenizer::Tokenizer, m: &Message) -> Message {
    let forged = |c: char| c == PLAIN_OPEN || c == PLAIN_CLOSE;
    if m.parse_special {
        return m.clone();
    }
    let clean: String = m.content.chars().filter(|&c| !forged(c)).collect();
    let spans = tok.control_token_spans(&clean);
    if spans.is_empty() && clean.len() == m.content.len() {
        return m.clone();
    }
    let mut content = String::with_capacity(clean.len() + 8 * spans.len());
    let mut at = 0;
    for r in spans {
        content.push_str(&clean[at..r.start]);
        content.push(PLAIN_OPEN);
        content.push_str(&clean[r.clone()]);
        content.push(PLAIN_CLOSE);
        at = r.end;
    }
    content.push_str(&clean[at..]);
    Message {
        content,
        ..m.clone()
    }
}

/// A rendering of guarded messages ([`guard`]) as the prompt text (marks removed) and its
/// tokens: control-token text is a token where the template wrote it, plain text inside
/// marked spans. A span the template cut open (a mark without its pair) runs to the end of
/// the text: safe, if not what the template meant.
fn encode_rendering(tok: &crate::tokenizer::Tokenizer, rendered: &str) -> (String, Vec<u32>) {
    let mut text = String::with_capacity(rendered.len());
    let mut plain = Vec::new();
    let mut open = None;
    for c in rendered.chars() {
        match c {
            PLAIN_OPEN => open = open.or(Some(text.len())),
            PLAIN_CLOSE => {
                if let Some(start) = open.take() {
                    plain.push(start..text.len());
                }
            }
            c => text.push(c),
        }
    }
    if let Some(start) = open {
        plain.push(start..text.len());
    }
    let mut tokens = Vec::new();
    tok.encode_with_plain_spans(&text, &plain, &mut tokens);
    (text, tokens)
}

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The oldest turn that may be dropped: from the first message after the system prompt up to
/// (not including) the next user message. `None` when that would reach the last user message.
fn oldest_turn(messages: &[Message]) -> Option<core::ops::Range<usize>> {
    let start = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let end = (start + 1..messages.len()).find(|&i| messages[i].role == "user")?;
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_turn_keeps_system_and_latest_user() {
        let m = |roles: &[&str]| -> Vec<Message> {
            roles.iter().map(|r| Message::new(r, "x")).collect()
        };
        assert_eq!(oldest_turn(&m(&["system", "user"])), None);
        assert_eq!(oldest_turn(&m(&["user"])), None);
        assert_eq!(oldest_turn(&m(&[])), None);
        assert_eq!(
            oldest_turn(&m(&["system", "user", "assistant", "user"])),
            Some(1..3)
        );
        assert_eq!(
            oldest_turn(&m(&["user", "assistant", "tool", "assistant", "user"])),
            Some(0..4)
        );
        assert_eq!(oldest_turn(&m(&["system", "user", "user"])), Some(1..2));
    }

    #[test]
    fn common_prefix_lengths() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
