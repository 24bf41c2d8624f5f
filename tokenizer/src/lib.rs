//! Text ⇄ token ids for GGUF models, matching llama.cpp's `llama_tokenize` /
//! `llama_token_to_piece` / `llama_detokenize`.
//!
//! Two tokenizer families (GGUF `tokenizer.ggml.model`):
//!
//! * `"gpt2"`: byte-level BPE. Text is cut around special tokens (`special.rs`), split
//!   into words by the pre-tokenizer named by `tokenizer.ggml.pre` (`pretokenize.rs`),
//!   and each word's bytes are merged by rank (`bpe.rs`).
//! * `"llama"`: SentencePiece-style BPE with scores (`spm.rs`): spaces become `▁`, a `▁`
//!   is prepended to text that starts the input or follows a special token (when
//!   `add_space_prefix`), and characters merge by score with `<0xXX>` byte fallback.
//!
//! Build a [`Tokenizer`] from a GGUF file ([`Tokenizer::from_gguf`]) or a
//! [`TokenizerSpec`] (the GGUF metadata), then
//! [`Tokenizer::encode`] / [`Tokenizer::decode`], or stream generated tokens through a
//! [`StreamDecoder`].
//!
//! Differences from llama.cpp, all in corner cases:
//! * special tokens get no lstrip/rstrip (llama.cpp sets those only for a few models
//!   chosen by `general.name`);
//! * a duplicated token string maps to its first id (recent llama.cpp refuses the model);
//! * a byte-level token character outside the GPT-2 alphabet decodes to its own UTF-8
//!   (llama.cpp writes an `[UNK_BYTE_…]` marker);
//! * SentencePiece byte fallback uses the unknown token, then drops the byte, when the
//!   vocabulary lacks `<0xXX>` (llama.cpp throws);
//! * for `"llama"` models without token types, `<0xXX>` tokens are taken as byte tokens.
//! * an empty token string never matches (llama.cpp renames it `[EMPTY_<id>]`).
//!
//! `\p{L}` / `\p{N}` / `\p{P}` come from Unicode 15.1 tables, as llama.cpp's do
//! (`gen_unicode_tables.py` regenerates them).
//!
//! `no_std` + `alloc`; needs only [`tern_gguf`] (for [`Tokenizer::from_gguf`]). Tern's runtime
//! re-exports this crate as `tern_runtime::tokenizer`.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod bpe;
mod bytelevel;
mod decode;
mod error;
mod from_gguf;
mod hash;
mod names;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_tables;
mod vocab;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use error::TokenizerError;
pub use from_gguf::FromGgufError;
pub use stream::StreamDecoder;

use bpe::{Bpe, BpeScratch};
use decode::Pieces;
use pretokenize::{PreKind, PreScratch};
use special::{Fragment, SpecialMatcher};
use spm::{Spm, SpmScratch};
use vocab::{attr, Vocab};

/// Tokenizer metadata of a model, as found in its GGUF file (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec<'a> {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece-style
    /// BPE with scores).
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a `"gpt2"` model (`"smollm"`,
    /// `"llama-bpe"`/`"llama3"`, `"qwen2"`, `"gpt2"`/`"gpt-2"`, `"default"`, and the
    /// llama.cpp names that share their rules, e.g. `"starcoder"`, `"stablelm2"`);
    /// `None` means `"default"`. Ignored for `"llama"` models.
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`: token strings, indexed by id.
    pub tokens: Vec<&'a str>,
    /// `tokenizer.ggml.scores`: merge priority of each token (used by `"llama"`).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte. `None`: all normal.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` in the byte-level alphabet, lowest rank
    /// first (`"gpt2"` only).
    pub merges: Vec<&'a str>,
    /// `tokenizer.ggml.bos_token_id` (default: 1 for `"llama"`, 11 for `"gpt2"`, as in
    /// llama.cpp, when that id exists).
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id` (default: 2 for `"llama"`, 11 for `"gpt2"`).
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (default: found by name, e.g. `<|im_end|>`).
    pub eot: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id` (default: 0 for `"llama"`).
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (default: true for `"llama"` and the Llama 3
    /// pre-tokenizers, false otherwise).
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (default: true for `"llama"`, false for
    /// `"gpt2"`). Also makes [`Tokenizer::decode`] drop the leading space of the first
    /// token, as llama.cpp does.
    pub add_space_prefix: Option<bool>,
}

/// The tokenization algorithm.
#[derive(Clone, Debug)]
enum Model {
    Bpe(Bpe),
    Spm(Spm),
}

/// Per pre-tokenizer name: rules and llama.cpp's defaults that go with it.
struct PreInfo {
    name: &'static str,
    kind: PreKind,
    /// Look whole words up before merging.
    ignore_merges: bool,
    /// Default of `add_bos`.
    add_bos: bool,
    /// Apply `clean_up_tokenization_spaces` when detokenizing.
    clean_spaces: bool,
}

const fn pre(
    name: &'static str,
    kind: PreKind,
    ignore_merges: bool,
    add_bos: bool,
    clean_spaces: bool,
) -> PreInfo {
    PreInfo {
        name,
        kind,
        ignore_merges,
        add_bos,
        clean_spaces,
    }
}

/// The pre-tokenizer names accepted for `"gpt2"` models (llama.cpp's names mapped to
/// the rule families implemented here, with llama.cpp's per-name flags).
const PRE_TOKENIZERS: &[PreInfo] = &[
    pre("default", PreKind::Default, false, false, true),
    pre("gpt2", PreKind::Gpt2, false, false, true),
    pre("gpt-2", PreKind::Gpt2, false, false, true),
    pre("phi-2", PreKind::Gpt2, false, false, true),
    pre("mpt", PreKind::Gpt2, false, false, true),
    pre("olmo", PreKind::Gpt2, false, false, true),
    pre("jais", PreKind::Gpt2, false, false, true),
    pre("exaone4", PreKind::Gpt2, false, false, true),
    pre("gigachat", PreKind::Gpt2, false, false, true),
    pre("trillion", PreKind::Gpt2, false, false, false),
    pre("granite-docling", PreKind::Gpt2, false, false, false),
    pre("smollm", PreKind::Smollm, false, false, false),
    pre("starcoder", PreKind::Smollm, false, false, true),
    pre("refact", PreKind::Smollm, false, false, true),
    pre("command-r", PreKind::Smollm, false, false, false),
    pre("codeshell", PreKind::Smollm, false, false, true),
    pre("exaone", PreKind::Smollm, false, false, true),
    pre("minerva-7b", PreKind::Smollm, false, false, true),
    pre("mellum2", PreKind::Smollm, false, false, true),
    pre("llama3", PreKind::Llama3, true, true, true),
    pre("llama-v3", PreKind::Llama3, true, true, true),
    pre("llama-bpe", PreKind::Llama3, true, true, true),
    pre("falcon3", PreKind::Llama3, true, true, true),
    pre("falcon-h1", PreKind::Llama3, true, true, true),
    pre("pixtral", PreKind::Llama3, true, true, true),
    pre("midm-2.0", PreKind::Llama3, true, true, true),
    pre("lfm2", PreKind::Llama3, true, true, true),
    pre("dbrx", PreKind::Llama3, false, false, true),
    pre("smaug-bpe", PreKind::Llama3, false, false, true),
    pre("qwen2", PreKind::Qwen2, false, false, false),
    pre("deepseek-r1-qwen", PreKind::Qwen2, false, false, false),
    pre("stablelm2", PreKind::Qwen2, false, false, true),
    pre("megrez", PreKind::Qwen2, false, false, true),
    pre("hunyuan", PreKind::Qwen2, false, false, false),
    pre("solar-open", PreKind::Qwen2, false, false, false),
    pre("grok-2", PreKind::Qwen2, false, false, false),
];

/// A tokenizer built from GGUF metadata. Immutable; share it freely between threads.
#[derive(Clone)]
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    pre: &'static PreInfo,
    special: SpecialMatcher,
    pieces: Pieces,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    /// Sorted ids of the end-of-generation tokens.
    eog: Vec<u32>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("pre", &self.pre())
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

/// Whether `s` is a SentencePiece byte token name `<0xXX>`.
fn looks_like_byte_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3..5].iter().all(|c| c.is_ascii_hexdigit())
}

impl Tokenizer {
    /// Builds a tokenizer from a model's tokenizer metadata.
    pub fn from_spec(spec: TokenizerSpec<'_>) -> Result<Tokenizer, TokenizerError> {
        let spm = match spec.model {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(TokenizerError::UnknownModel {
                    name: String::from(other),
                })
            }
        };
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n >= u32::MAX as usize / 2 {
            return Err(TokenizerError::VocabTooLarge { size: n });
        }
        if let Some(s) = &spec.scores {
            if s.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    field: "scores",
                    expected: n,
                    found: s.len(),
                });
            }
        }
        if let Some(t) = &spec.token_types {
            if t.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    field: "token_types",
                    expected: n,
                    found: t.len(),
                });
            }
        }
        let pre: &'static PreInfo = if spm {
            &PRE_TOKENIZERS[0]
        } else {
            let name = spec.pre.unwrap_or("default");
            PRE_TOKENIZERS
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| TokenizerError::UnknownPreTokenizer {
                    name: String::from(name),
                })?
        };

        // Special token ids: given ones must exist; llama.cpp's defaults apply otherwise.
        let in_range = |id: &u32| (*id as usize) < n;
        let pick = |field: &'static str, given: Option<u32>, default: Option<u32>| match given {
            Some(id) if in_range(&id) => Ok(Some(id)),
            Some(id) => Err(TokenizerError::TokenOutOfRange {
                field,
                id,
                vocab: n,
            }),
            None => Ok(default.filter(in_range)),
        };
        let (def_bos, def_eos, def_unk) = if spm {
            (Some(1), Some(2), Some(0))
        } else {
            (Some(11), Some(11), None)
        };
        let bos = pick("bos", spec.bos, def_bos)?;
        let eos = pick("eos", spec.eos, def_eos)?;
        let eot = pick("eot", spec.eot, None)?;
        let unk = pick("unk", spec.unk, def_unk)?;
        let pad = pick("pad", spec.pad, None)?;
        let add_bos = spec.add_bos.unwrap_or(spm || pre.add_bos);
        let add_eos = spec.add_eos.unwrap_or(false);
        let add_space_prefix = spec.add_space_prefix.unwrap_or(spm);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_bos",
                token: "bos",
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_eos",
                token: "eos",
            });
        }

        let mut vocab = Vocab::new(
            &spec.tokens,
            spec.scores.as_deref(),
            spec.token_types.as_deref(),
        );
        if spm && spec.token_types.is_none() {
            for (id, tok) in spec.tokens.iter().enumerate() {
                if looks_like_byte_token(tok) {
                    vocab.attrs[id] = attr::BYTE;
                }
            }
        }
        let model = if spm {
            Model::Spm(Spm::new(&vocab, unk))
        } else {
            Model::Bpe(Bpe::new(&mut vocab, &spec.merges, pre.ignore_merges)?)
        };
        let detected = names::detect(&mut vocab, eos, eot);
        let special = SpecialMatcher::new(&vocab);
        let pieces = Pieces::new(&vocab, !spm);
        Ok(Tokenizer {
            vocab,
            model,
            pre,
            special,
            pieces,
            bos,
            eos,
            eot: detected.eot,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces: !spm && pre.clean_spaces,
            eog: detected.eog,
        })
    }

    /// Tokenizes `text` (llama.cpp's `llama_tokenize(text, add_special, parse_special)`).
    ///
    /// `add_special`: prepend BOS / append EOS as the model's `add_bos` / `add_eos` say.
    /// `parse_special`: text spelling a control token (e.g. `<|im_start|>`) becomes that
    /// token; otherwise it is tokenized as plain text. User-defined tokens are always
    /// matched. Never panics; empty text gives no tokens (or just BOS).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, add_special, parse_special, &mut out);
        out
    }

    /// Like [`encode`](Self::encode), appending the ids to `out`.
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) {
        let mut frags = Vec::new();
        self.special.partition(text, parse_special, &mut frags);
        self.encode_fragments(text, frags, add_special, out);
    }

    /// Tokenizes `text` with control-token strings parsed as tokens (as
    /// [`encode`](Self::encode) with `parse_special`), except inside the byte ranges `plain`
    /// (sorted, disjoint, on character boundaries), which are tokenized as plain text: a chat
    /// rendering whose template markers are tokens and whose message content is only text.
    pub fn encode_with_plain_spans(
        &self,
        text: &str,
        plain: &[core::ops::Range<usize>],
        out: &mut Vec<u32>,
    ) {
        let mut frags = Vec::new();
        let part = |a: usize, b: usize, parse_special: bool, frags: &mut Vec<Fragment>| {
            let mut sub = Vec::new();
            self.special
                .partition(text.get(a..b).unwrap_or(""), parse_special, &mut sub);
            for f in sub {
                let f = match f {
                    Fragment::Text(x, y) => Fragment::Text(a + x, a + y),
                    t => t,
                };
                // Adjacent text stays one fragment, as it would in one partition.
                match (frags.last_mut(), f) {
                    (Some(Fragment::Text(_, end)), Fragment::Text(x, y)) if *end == x => *end = y,
                    _ => frags.push(f),
                }
            }
        };
        let mut at = 0;
        for r in plain {
            let (start, end) = (r.start.clamp(at, text.len()), r.end.clamp(at, text.len()));
            part(at, start, true, &mut frags);
            part(start, end, false, &mut frags);
            at = end;
        }
        part(at, text.len(), true, &mut frags);
        self.encode_fragments(text, frags, false, out);
    }

    /// Byte ranges of `text` that [`encode`](Self::encode) with `parse_special` would turn
    /// into control (or unknown) tokens: where untrusted text spells a special token.
    pub fn control_token_spans(&self, text: &str) -> Vec<core::ops::Range<usize>> {
        let mut frags = Vec::new();
        self.special.partition(text, true, &mut frags);
        let mut spans = Vec::new();
        let mut at = 0;
        for f in frags {
            match f {
                Fragment::Text(_, b) => at = b,
                Fragment::Token(id) => {
                    let len = self.vocab.text(id).map_or(0, str::len);
                    if self.vocab.has(id, attr::CONTROL | attr::UNKNOWN) {
                        spans.push(at..at + len);
                    }
                    at += len;
                }
            }
        }
        spans
    }

    /// Turns partitioned `text` into ids, with BOS/EOS when `add_special`.
    fn encode_fragments(
        &self,
        text: &str,
        frags: Vec<Fragment>,
        add_special: bool,
        out: &mut Vec<u32>,
    ) {
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Bpe(bpe) => {
                let mut pre_scratch = PreScratch::default();
                let mut bpe_scratch = BpeScratch::default();
                let mut words = Vec::new();
                for frag in frags {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(a, b) => {
                            let piece = text.get(a..b).unwrap_or("");
                            words.clear();
                            pretokenize::split(self.pre.kind, piece, &mut pre_scratch, &mut words);
                            for &(wa, wb) in &words {
                                let word = &piece.as_bytes()[wa..wb];
                                bpe.encode_word(&self.vocab, word, out, &mut bpe_scratch);
                            }
                        }
                    }
                }
            }
            Model::Spm(spm) => {
                let mut scratch = SpmScratch::default();
                let mut escaped = String::new();
                // A space is prepended to text at the start or right after a special
                // token (llama.cpp's `is_prev_special`).
                let mut prev_special = true;
                for frag in frags {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(a, b) => {
                            let piece = text.get(a..b).unwrap_or("");
                            escaped.clear();
                            if self.add_space_prefix && prev_special {
                                escaped.push('\u{2581}');
                            }
                            for c in piece.chars() {
                                escaped.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm.encode(&self.vocab, &escaped, out, &mut scratch);
                            prev_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
    }

    /// The bytes token `id` stands for, borrowed from a table built at load: byte-level
    /// decoding for `"gpt2"`, `▁` → space and `<0xXX>` → that byte for `"llama"`; user
    /// defined tokens as their text. Control and unknown tokens give their text when
    /// `special` is true and nothing otherwise; unused tokens and out-of-range ids give
    /// nothing. Same as llama.cpp's `llama_token_to_piece(id, lstrip = 0, special)`.
    /// A token may be part of a multi-byte character: the bytes need not be UTF-8.
    pub fn token_bytes(&self, id: u32, special: bool) -> &[u8] {
        if (id as usize) >= self.vocab.len() {
            return &[];
        }
        if !special && self.vocab.has(id, attr::CONTROL | attr::UNKNOWN) {
            return &[];
        }
        self.pieces.get(id)
    }

    /// Detokenizes `ids` to bytes (llama.cpp's `llama_detokenize` with
    /// `remove_special = false`, `unparse_special = special`): the tokens' bytes
    /// concatenated, without the leading space of the first token when the model has
    /// `add_space_prefix`, and with llama.cpp's `clean_up_tokenization_spaces` applied
    /// for the pre-tokenizers where llama.cpp enables it (e.g. `"gpt2"`, `"llama-bpe"`;
    /// not `"smollm"`, `"qwen2"` or `"llama"` models).
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut strip_space = self.add_space_prefix;
        for &id in ids {
            let mut piece = self.token_bytes(id, special);
            if strip_space && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            strip_space = false;
            out.extend_from_slice(piece);
        }
        if self.clean_spaces {
            decode::clean_spaces(&mut out);
        }
        out
    }

    /// Detokenizes `ids` to text (see [`decode_bytes`](Self::decode_bytes)); invalid UTF-8
    /// becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, special)).into_owned()
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The vocabulary string of token `id` as stored (byte-level alphabet for `"gpt2"`,
    /// `▁` for spaces for `"llama"`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id of the token whose stored string is exactly `text` (the first one if the
    /// vocabulary repeats a string).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.token(text.as_bytes())
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token: the GGUF's, else the first found by name (`<|im_end|>`,
    /// `<|eot_id|>`, `<|endoftext|>`, …).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether [`encode`](Self::encode) with `add_special` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether [`encode`](Self::encode) with `add_special` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generation should stop at `id`: EOS, EOT, and the tokens llama.cpp treats
    /// as end-of-generation by name (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`,
    /// `<end_of_turn>`, `<|end|>`, `</s>`, FIM pad / repo / file-separator tokens, …).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, sorted.
    pub fn end_of_generation_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` is a control token (type 3, or made one by name like llama.cpp does
    /// for end-of-generation tokens).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.has(id, attr::CONTROL)
    }

    /// The tokenizer family: `"gpt2"` or `"llama"`.
    pub fn kind(&self) -> &'static str {
        match self.model {
            Model::Bpe(_) => "gpt2",
            Model::Spm(_) => "llama",
        }
    }

    /// The pre-tokenizer name in use (`"default"` for `"llama"` models and when the
    /// GGUF names none).
    pub fn pre(&self) -> &'static str {
        self.pre.name
    }
}

#[cfg(test)]
mod tests;
