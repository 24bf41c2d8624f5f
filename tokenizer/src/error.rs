//! Errors from building a [`super::Tokenizer`].

use alloc::string::String;
use core::fmt;

/// Why a tokenizer could not be built from a [`super::TokenizerSpec`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` is not `"gpt2"` or `"llama"`.
    UnknownModel {
        /// The model name given.
        name: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    UnknownPreTokenizer {
        /// The pre-tokenizer name given.
        name: String,
    },
    /// The token list is empty.
    EmptyVocab,
    /// A per-token array is shorter than the token list.
    LengthMismatch {
        /// Which array (`"scores"`, `"token_types"`).
        field: &'static str,
        /// Minimum length: the number of tokens.
        expected: usize,
        /// Its actual length.
        found: usize,
    },
    /// A merge has no space separating its two parts.
    BadMerge {
        /// Position of the merge in the list.
        index: usize,
    },
    /// A special token id is not below the vocabulary size.
    TokenOutOfRange {
        /// Which id (`"bos"`, `"eos"`, `"eot"`, `"unk"`, `"pad"`).
        field: &'static str,
        /// The id given.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A flag asks to add a special token the model does not define (llama.cpp refuses
    /// such models too).
    MissingSpecialToken {
        /// The flag (`"add_bos"`, `"add_eos"`).
        flag: &'static str,
        /// The missing token (`"bos"`, `"eos"`).
        token: &'static str,
    },
    /// A BPE (`"gpt2"`) vocabulary without `tokenizer.ggml.merges`: without them every word
    /// falls apart into bytes (llama.cpp refuses such files too).
    MissingMerges,
    /// The vocabulary has more tokens than token ids can address.
    VocabTooLarge {
        /// Number of tokens.
        size: usize,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::UnknownModel { name } => {
                write!(
                    f,
                    "unknown tokenizer model {name:?} (expected \"gpt2\" or \"llama\")"
                )
            }
            TokenizerError::UnknownPreTokenizer { name } => {
                write!(f, "unknown pre-tokenizer {name:?}")
            }
            TokenizerError::EmptyVocab => write!(f, "the vocabulary has no tokens"),
            TokenizerError::LengthMismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "tokenizer {field} has {found} entries, fewer than the {expected} tokens"
            ),
            TokenizerError::MissingMerges => write!(
                f,
                "the BPE vocabulary has no tokenizer.ggml.merges (llama.cpp refuses it too)"
            ),
            TokenizerError::BadMerge { index } => {
                write!(f, "BPE merge #{index} has no space between its two parts")
            }
            TokenizerError::TokenOutOfRange { field, id, vocab } => write!(
                f,
                "{field} token id {id} is out of range for a vocabulary of {vocab} tokens"
            ),
            TokenizerError::MissingSpecialToken { flag, token } => {
                write!(f, "{flag} is set but the model has no {token} token")
            }
            TokenizerError::VocabTooLarge { size } => {
                write!(f, "vocabulary of {size} tokens is too large")
            }
        }
    }
}

impl core::error::Error for TokenizerError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display() {
        let e = TokenizerError::TokenOutOfRange {
            field: "bos",
            id: 7,
            vocab: 5,
        };
        assert_eq!(
            e.to_string(),
            "bos token id 7 is out of range for a vocabulary of 5 tokens"
        );
        let e = TokenizerError::UnknownModel { name: "t5".into() };
        assert!(e.to_string().contains("\"t5\""));
        let e: &dyn core::error::Error = &TokenizerError::EmptyVocab;
        assert_eq!(e.to_string(), "the vocabulary has no tokens");
    }
}
