//! Building a [`Tokenizer`] from a GGUF file's `tokenizer.ggml.*` metadata.

use crate::error::LoadError;
use crate::gguf::Gguf;

use super::{Tokenizer, TokenizerError, TokenizerSpec};

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.model`, `.pre`, `.tokens`,
    /// `.scores`, `.token_type`, `.merges`, the special token ids and the `add_*` flags), as
    /// llama.cpp does when it loads the vocabulary. Needs only the header: `g` may be parsed
    /// from a prefix of the file.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Tokenizer, LoadError> {
        // An id past u32 is past any vocabulary: saturated, it is refused by the range check
        // in `from_spec` naming the token (it used to be dropped and the default used).
        let id = |key: &str| -> Result<Option<u32>, LoadError> {
            Ok(g.opt_u64(key)?
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
        };
        let model = g.req_str("tokenizer.ggml.model")?;
        if model == "gpt2" && g.get("tokenizer.ggml.merges").is_none() {
            return Err(LoadError::Tokenizer(TokenizerError::MissingMerges));
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
