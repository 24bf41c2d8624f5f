//! Building a [`Tokenizer`] from a GGUF file's `tokenizer.ggml.*` metadata.

use core::fmt;

use tern_gguf::{Gguf, GgufError};

use super::{Tokenizer, TokenizerError, TokenizerSpec};

/// Why [`Tokenizer::from_gguf`] failed: the metadata could not be read as the tokenizer keys'
/// types, or what it describes is not a tokenizer.
///
/// Exhaustive on purpose: these are the two layers a GGUF tokenizer can fail in, so callers (the
/// runtime's `LoadError`) map each without a catch-all; the inner errors are `#[non_exhaustive]`.
#[derive(Debug, Clone, PartialEq)]
pub enum FromGgufError {
    /// A `tokenizer.ggml.*` key is missing or has the wrong type.
    Gguf(GgufError),
    /// The metadata reads but does not describe a tokenizer this crate builds.
    Tokenizer(TokenizerError),
}

impl From<GgufError> for FromGgufError {
    fn from(e: GgufError) -> Self {
        FromGgufError::Gguf(e)
    }
}

impl From<TokenizerError> for FromGgufError {
    fn from(e: TokenizerError) -> Self {
        FromGgufError::Tokenizer(e)
    }
}

impl fmt::Display for FromGgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromGgufError::Gguf(e) => write!(f, "invalid GGUF file: {e}"),
            FromGgufError::Tokenizer(e) => write!(f, "invalid tokenizer: {e}"),
        }
    }
}

/// The message includes the inner error's, as `tern_runtime::LoadError`'s does; `source()` is
/// left empty so that a chain printer does not repeat it.
impl core::error::Error for FromGgufError {}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.model`, `.pre`, `.tokens`,
    /// `.scores`, `.token_type`, `.merges`, the special token ids and the `add_*` flags), as
    /// llama.cpp does when it loads the vocabulary. Needs only the header: `g` may be parsed
    /// from a prefix of the file.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Tokenizer, FromGgufError> {
        // An id past u32 is past any vocabulary: saturated, it is refused by the range check
        // in `from_spec` naming the token (it used to be dropped and the default used).
        let id = |key: &str| -> Result<Option<u32>, FromGgufError> {
            Ok(g.opt_u64(key)?
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
        };
        let model = g.req_str("tokenizer.ggml.model")?;
        if model == "gpt2" && g.get("tokenizer.ggml.merges").is_none() {
            return Err(FromGgufError::Tokenizer(TokenizerError::MissingMerges));
        }
        let spec = TokenizerSpec {
            model,
            pre: g.opt_str("tokenizer.ggml.pre")?,
            tokens: g
                .opt_str_array("tokenizer.ggml.tokens")?
                .unwrap_or_default(),
            scores: g.opt_f32_array("tokenizer.ggml.scores")?,
            token_types: g.opt_i32_array("tokenizer.ggml.token_type")?,
            merges: g
                .opt_str_array("tokenizer.ggml.merges")?
                .unwrap_or_default(),
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            add_bos: g.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: g.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: g.opt_bool("tokenizer.ggml.add_space_prefix")?,
        };
        Ok(Tokenizer::from_spec(spec)?)
    }
}
