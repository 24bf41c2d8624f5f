//! Constrained decoding: a JSON Schema, a Lark grammar or a llama.cpp GBNF grammar limits
//! each sampled token to those that keep the output a valid prefix of the language.
//!
//! The engine is `llguidance` (the one llama.cpp, vLLM and SGLang use), not a hand-written
//! one: it computes the allowed-token mask from a token trie and a lazy lexer in tens of
//! microseconds on 150k-token vocabularies, and its JSON Schema compiler refuses keywords it
//! cannot enforce instead of ignoring them. What Tern adds:
//! - [`ConstraintVocab`]: llguidance's view of a Tern vocabulary (each token's bytes, the
//!   control tokens marked as specials, the end-of-generation tokens), built once per model;
//! - [`gbnf`]: a GBNF → Lark translation (llguidance reads Lark, not GBNF), with errors that
//!   name the line and column;
//! - [`Constraint`]: one generation's matcher, and [`generate`] which runs a session under
//!   it, sampling through [`Sampler::sample_masked`] so every sampler setting (greedy,
//!   temperature, top-k/p, min-p, penalties) works within the allowed set;
//! - [`tools`]: tool calling on top (Qwen/Hermes and Llama 3.x call syntax).

pub mod gbnf;
pub mod tools;

use std::fmt;
use std::string::{String, ToString};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Vec;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::error::GenerateError;
use crate::sampler::Sampler;
use crate::session::{Event, Flow, Session, StopReason};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Where a grammar comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrammarSource {
    /// A JSON Schema (draft 2020-12 subset: objects, required, enums, const, arrays, strings
    /// with length/pattern/format, numbers with bounds, `anyOf`/`oneOf`/`allOf`, `$ref`,
    /// `additionalProperties`); the output is one JSON document valid under it.
    JsonSchema(String),
    /// A grammar in llguidance's Lark dialect (`start:` is the start rule).
    Lark(String),
    /// A llama.cpp GBNF grammar (`root ::= …`), translated by [`gbnf::to_lark`].
    Gbnf(String),
}

/// Why a grammar could not be used, or a constrained generation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConstrainError {
    /// The text of the schema or grammar does not parse.
    Syntax {
        /// What kind of text: `"JSON Schema"`, `"GBNF"`, `"Lark"`.
        what: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The schema or grammar parses but cannot be enforced: an unsupported keyword, an
    /// unsatisfiable schema, an undefined rule. It is refused rather than ignored.
    Unenforceable {
        /// The engine's message, naming the keyword, rule or schema path.
        message: String,
    },
    /// The vocabulary could not be prepared for the engine.
    Vocabulary {
        /// What went wrong.
        message: String,
    },
    /// The engine failed during generation (a token it did not allow, an internal error).
    Engine {
        /// The engine's message.
        message: String,
    },
    /// The model failed.
    Generate(GenerateError),
}

impl fmt::Display for ConstrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstrainError::Syntax {
                what,
                line,
                column,
                message,
            } => write!(
                f,
                "invalid {what} at line {line}, column {column}: {message}"
            ),
            ConstrainError::Unenforceable { message } => {
                write!(f, "cannot enforce this schema or grammar: {message}")
            }
            ConstrainError::Vocabulary { message } => {
                write!(
                    f,
                    "cannot prepare the vocabulary for constraints: {message}"
                )
            }
            ConstrainError::Engine { message } => write!(f, "constraint engine: {message}"),
            ConstrainError::Generate(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConstrainError {}

impl From<GenerateError> for ConstrainError {
    fn from(e: GenerateError) -> Self {
        ConstrainError::Generate(e)
    }
}

/// A model's vocabulary as the constraint engine sees it, with the compiled-grammar factory.
/// Building it walks the whole vocabulary (tens of milliseconds for 150k tokens): build it
/// once per model and share it (it is cheap to clone).
#[derive(Clone)]
pub struct ConstraintVocab {
    factory: Arc<ParserFactory>,
    n_vocab: usize,
}

impl fmt::Debug for ConstraintVocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConstraintVocab")
            .field("n_vocab", &self.n_vocab)
            .finish()
    }
}

impl ConstraintVocab {
    /// The vocabulary of `tok`, padded with empty (never allowed) tokens up to `n_vocab`
    /// logits (models often have more embedding rows than tokenizer entries).
    ///
    /// Each token's bytes are its decoded bytes; control tokens (`<|im_end|>`, …) are marked
    /// as specials, so a grammar can only produce them by name (`<|im_end|>` in Lark), never
    /// as text. The end-of-generation tokens are the engine's EOS set: they are allowed
    /// exactly where the grammar can end.
    pub fn new(tok: &Tokenizer, n_vocab: usize) -> Result<Self, ConstrainError> {
        let n_vocab = n_vocab.max(tok.vocab_size());
        let n = u32::try_from(n_vocab).map_err(|_| ConstrainError::Vocabulary {
            message: "more than 2^32 tokens".into(),
        })?;
        let mut words = Vec::with_capacity(n_vocab);
        for id in 0..n {
            let word = if tok.is_control(id) {
                let mut w = Vec::new();
                let name = tok.token_bytes(id, true);
                if !name.is_empty() {
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(name);
                }
                w
            } else {
                tok.token_bytes(id, false).to_vec()
            };
            words.push(word);
        }
        let eog = tok.end_of_generation_tokens();
        let eos = tok
            .eot()
            .or(tok.eos())
            .or(eog.first().copied())
            .ok_or_else(|| ConstrainError::Vocabulary {
                message: "the model has no end-of-generation token".into(),
            })?;
        let mut info = TokRxInfo::new(n, eos);
        info.tok_bos = tok.bos();
        info.tok_end_of_turn = tok.eot();
        let mut eos_set: Vec<u32> = eog.to_vec();
        if !eos_set.contains(&eos) {
            eos_set.insert(0, eos);
        }
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos_set);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| ConstrainError::Vocabulary {
                message: e.to_string(),
            })?;
        // Errors come back as values; nothing goes to stderr.
        factory.quiet();
        Ok(ConstraintVocab {
            factory: Arc::new(factory),
            n_vocab,
        })
    }

    /// Number of tokens (logits) the masks cover.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Compiles `source` into a fresh constraint, or says where and why it is invalid.
    pub fn compile(&self, source: &GrammarSource) -> Result<Constraint, ConstrainError> {
        let grammar = match source {
            GrammarSource::JsonSchema(text) => {
                let schema: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| ConstrainError::Syntax {
                        what: "JSON Schema",
                        line: e.line(),
                        column: e.column(),
                        message: e.to_string(),
                    })?;
                TopLevelGrammar::from_json_schema(compact_json(schema))
            }
            GrammarSource::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            GrammarSource::Gbnf(text) => TopLevelGrammar::from_lark(gbnf::to_lark(text)?),
        };
        self.compile_grammar(grammar, source)
    }

    fn compile_grammar(
        &self,
        grammar: TopLevelGrammar,
        source: &GrammarSource,
    ) -> Result<Constraint, ConstrainError> {
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| engine_error(&e.to_string(), source))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(engine_error(&e, source));
        }
        Ok(Constraint {
            matcher,
            mask: Vec::new(),
            n_vocab: self.n_vocab,
            mask_time: Duration::ZERO,
            n_masks: 0,
        })
    }
}

/// JSON documents in Tern's outputs use `", "` and `": "` and no other whitespace (what the
/// instruction models write unprompted), unless the schema sets `x-guidance` itself: with
/// free whitespace a small model can pad forever.
fn compact_json(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

/// Turns an engine message into a typed error: Lark syntax errors carry `at LINE(COL):` (or
/// `LINE(COL): lexer error`), which becomes a [`ConstrainError::Syntax`] for Lark sources;
/// everything else is [`ConstrainError::Unenforceable`].
fn engine_error(msg: &str, source: &GrammarSource) -> ConstrainError {
    if matches!(source, GrammarSource::Lark(_)) {
        if let Some((line, column, rest)) = lark_position(msg) {
            return ConstrainError::Syntax {
                what: "Lark",
                line,
                column,
                message: rest.lines().next().unwrap_or("").trim().to_string(),
            };
        }
    }
    ConstrainError::Unenforceable {
        message: msg.lines().next().unwrap_or(msg).trim().to_string(),
    }
}

/// Finds the first `LINE(COL)` in `msg`, with the text after it.
fn lark_position(msg: &str) -> Option<(usize, usize, &str)> {
    let bytes = msg.as_bytes();
    for (i, _) in msg.match_indices('(') {
        let digits_before = bytes[..i]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits_before == 0 {
            continue;
        }
        let rest = &msg[i + 1..];
        let close = rest.find(')')?;
        let (Ok(line), Ok(column)) = (
            msg[i - digits_before..i].parse::<usize>(),
            rest[..close].parse::<usize>(),
        ) else {
            continue;
        };
        let tail = rest[close + 1..].trim_start_matches(':').trim_start();
        return Some((line, column, tail));
    }
    None
}

/// One generation's grammar state: which tokens may come next, advanced by each token.
pub struct Constraint {
    matcher: Matcher,
    /// The allowed-token bitset of the last [`compute_mask`](Self::compute_mask): bit
    /// `id % 32` of word `id / 32`.
    mask: Vec<u32>,
    n_vocab: usize,
    mask_time: Duration,
    n_masks: u64,
}

impl Clone for Constraint {
    /// The same grammar state, with its own cost counters (cloning a fresh constraint is how
    /// one compiled grammar serves many generations).
    fn clone(&self) -> Self {
        Constraint {
            matcher: self.matcher.clone(),
            mask: Vec::new(),
            n_vocab: self.n_vocab,
            mask_time: Duration::ZERO,
            n_masks: 0,
        }
    }
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("n_vocab", &self.n_vocab)
            .field("n_masks", &self.n_masks)
            .finish()
    }
}

impl Constraint {
    /// The tokens allowed next, as a bitset over the vocabulary (bit `id % 32` of word
    /// `id / 32`), for [`Sampler::sample_masked`]. Where the grammar can end, the
    /// end-of-generation tokens are allowed; once it must end, only they are.
    pub fn compute_mask(&mut self) -> Result<&[u32], ConstrainError> {
        let start = Instant::now();
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| ConstrainError::Engine {
                message: e.to_string(),
            })?;
        self.mask.clear();
        self.mask.extend_from_slice(vob.as_slice());
        self.mask.resize(self.n_vocab.div_ceil(32), 0);
        self.mask_time += start.elapsed();
        self.n_masks += 1;
        Ok(&self.mask)
    }

    /// Advances the grammar by `id` (which the last mask must have allowed).
    pub fn commit(&mut self, id: u32) -> Result<(), ConstrainError> {
        let start = Instant::now();
        let r = self
            .matcher
            .consume_token(id)
            .map_err(|e| ConstrainError::Engine {
                message: e.to_string(),
            });
        self.mask_time += start.elapsed();
        r
    }

    /// Whether the text so far is a complete sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether the grammar allows nothing more (it has ended or failed).
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Time spent computing masks and committing tokens, and the number of masks computed.
    pub fn cost(&self) -> (Duration, u64) {
        (self.mask_time, self.n_masks)
    }
}

/// Processes `prompt`, then samples up to `max_tokens` tokens under `constraint`, reporting
/// each through `on_event` like [`Session::generate`]. Ends with
/// [`StopReason::EndOfGeneration`] when the grammar is complete and the model (or the
/// grammar) ends the text; the end-of-generation token is fed to neither the caller nor the
/// session.
pub fn generate(
    session: &mut Session,
    prompt: &[u32],
    sampler: &mut Sampler,
    constraint: &mut Constraint,
    max_tokens: usize,
    on_event: &mut dyn FnMut(Event<'_>) -> Flow,
) -> Result<StopReason, ConstrainError> {
    if prompt.is_empty() && session.logits().is_none() {
        return Err(GenerateError::EmptyPrompt.into());
    }
    if !prompt.is_empty() {
        session.feed(prompt)?;
    }
    if on_event(Event::PromptDone {
        n_tokens: prompt.len(),
    }) == Flow::Stop
    {
        return Ok(StopReason::Stopped);
    }
    let model = Arc::clone(session.model());
    let tok = model.tokenizer();
    let mut decoder = StreamDecoder::new();
    let mut text = String::new();
    for n in 0..max_tokens {
        let logits = session.logits().ok_or(GenerateError::EmptyPrompt)?;
        let mask = constraint.compute_mask()?;
        let id = sampler.sample_masked(logits, session.tokens(), Some(mask));
        if tok.is_end_of_generation(id) {
            return Ok(StopReason::EndOfGeneration);
        }
        constraint.commit(id)?;
        text.clear();
        decoder.push_to(tok, id, &mut text);
        if on_event(Event::Token { id, text: &text }) == Flow::Stop {
            return Ok(StopReason::Stopped);
        }
        if n + 1 == max_tokens {
            break;
        }
        if session.tokens().len() >= session.context_len() {
            return Ok(StopReason::ContextFull);
        }
        session.feed(&[id])?;
    }
    Ok(StopReason::MaxTokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lark_positions_are_found() {
        assert_eq!(
            lark_position("at 3(7): unknown name: foo\n..."),
            Some((3, 7, "unknown name: foo\n..."))
        );
        assert_eq!(
            lark_position("12(1): lexer error"),
            Some((12, 1, "lexer error"))
        );
        assert_eq!(lark_position("no position (here)"), None);
    }
}
