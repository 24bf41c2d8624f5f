//! Errors of the runtime's layers, each naming the problem an app or user can act on.

use alloc::string::String;
use core::fmt;

use crate::delegate::DelegateError;
use crate::gguf::GgufError;
use crate::tokenizer::{FromGgufError, TokenizerError};

/// Why a model could not be loaded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not a valid GGUF file.
    Gguf(GgufError),
    /// `general.architecture` names an architecture Tern does not run.
    UnsupportedArchitecture {
        /// The architecture named by the file.
        name: String,
    },
    /// A tensor the architecture needs is absent.
    MissingTensor {
        /// The tensor's GGUF name.
        name: String,
    },
    /// The file has tensors the architecture does not use: it is another variant of the
    /// architecture (or of another one), and running it without them would give wrong output.
    UnusedTensors {
        /// Their GGUF names.
        names: alloc::vec::Vec<String>,
    },
    /// `{arch}.block_count` disagrees with the layers whose tensors the file holds (`blk.N.*`
    /// for N below `layers`): a layer would be silently unused or missing. llama.cpp refuses
    /// such files too.
    LayerCountMismatch {
        /// The `block_count` the metadata declares.
        block_count: usize,
        /// One more than the highest layer number among the tensor names.
        layers: usize,
    },
    /// A tensor's storage type has no kernel in Tern.
    UnsupportedType {
        /// The tensor's GGUF name.
        tensor: String,
        /// The type's GGUF name, or its number when unknown.
        ty: String,
    },
    /// A tensor's dimensions disagree with the hyperparameters.
    ShapeMismatch {
        /// The tensor's GGUF name.
        tensor: String,
        /// The `[row_len, rows]` the hyperparameters imply.
        expected: [u64; 2],
        /// The tensor's `[row_len, rows]`.
        found: [u64; 2],
    },
    /// A hyperparameter is missing, zero, inconsistent or too large.
    BadHyperparameter {
        /// The GGUF key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The tokenizer metadata is invalid.
    Tokenizer(TokenizerError),
    /// The path names a FIFO, socket, device or directory: refused before `open`, which
    /// would block on a FIFO with no writer (or read an endless device).
    NotARegularFile {
        /// The path.
        path: String,
        /// What it is: `"FIFO"`, `"directory"`, `"socket"`, `"device"` or `"other"`.
        kind: &'static str,
    },
    /// The file's size or modification time changed while it was being loaded: something is
    /// writing it in place. Replace model files by writing a temporary file and renaming it
    /// over the old one (see [`crate::fs`]).
    FileChanged {
        /// The path.
        path: String,
    },
    /// Another process has the file open for writing (a download or an in-place update still
    /// running): refused at load, before it could change under the running model (see
    /// [`crate::fs`]).
    FileBeingWritten {
        /// The path.
        path: String,
    },
    /// Reading the file failed.
    Io {
        /// The path or source.
        path: String,
        /// The operating system's message.
        message: String,
    },
}

impl From<GgufError> for LoadError {
    fn from(e: GgufError) -> Self {
        LoadError::Gguf(e)
    }
}

impl From<TokenizerError> for LoadError {
    fn from(e: TokenizerError) -> Self {
        LoadError::Tokenizer(e)
    }
}

/// [`Tokenizer::from_gguf`](crate::tokenizer::Tokenizer::from_gguf)'s error, as the loader
/// reported it before the tokenizer was a crate of its own: a metadata problem is
/// [`LoadError::Gguf`], a vocabulary problem [`LoadError::Tokenizer`].
impl From<FromGgufError> for LoadError {
    fn from(e: FromGgufError) -> Self {
        match e {
            FromGgufError::Gguf(e) => LoadError::Gguf(e),
            FromGgufError::Tokenizer(e) => LoadError::Tokenizer(e),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Gguf(e) => write!(f, "invalid GGUF file: {e}"),
            LoadError::UnsupportedArchitecture { name } => {
                write!(
                    f,
                    "unsupported architecture '{name}' (Tern runs: {})",
                    crate::config::Architecture::ALL
                        .map(|a| a.name())
                        .join(", ")
                )
            }
            LoadError::MissingTensor { name } => write!(f, "model has no tensor '{name}'"),
            LoadError::UnusedTensors { names } => {
                let shown = names.iter().take(8).map(String::as_str);
                write!(
                    f,
                    "model has {} tensor(s) its architecture does not use: {}{}",
                    names.len(),
                    shown.collect::<alloc::vec::Vec<_>>().join(", "),
                    if names.len() > 8 { ", ..." } else { "" }
                )
            }
            LoadError::LayerCountMismatch {
                block_count,
                layers,
            } => write!(
                f,
                "block_count is {block_count} but the file has tensors for {layers} layer(s)"
            ),
            LoadError::UnsupportedType { tensor, ty } => {
                write!(
                    f,
                    "tensor '{tensor}' has type {ty}, which Tern cannot compute with yet"
                )
            }
            LoadError::ShapeMismatch {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor '{tensor}' has shape {found:?}, but the hyperparameters imply {expected:?}"
            ),
            LoadError::BadHyperparameter { key, reason } => {
                write!(f, "hyperparameter '{key}' {reason}")
            }
            LoadError::Tokenizer(e) => write!(f, "invalid tokenizer: {e}"),
            LoadError::NotARegularFile { path, kind } => {
                write!(f, "'{path}' is a {kind}, not a regular file")
            }
            LoadError::FileChanged { path } => write!(
                f,
                "'{path}' changed while it was being loaded (write model files to a temporary \
                 name and rename them into place)"
            ),
            LoadError::FileBeingWritten { path } => write!(
                f,
                "'{path}' is open for writing by another process (wait until it is complete, \
                 or write it to a temporary name and rename it into place)"
            ),
            LoadError::Io { path, message } => write!(f, "cannot read '{path}': {message}"),
        }
    }
}

impl core::error::Error for LoadError {}

/// Why generation stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerateError {
    /// The tokens would not fit in the context window.
    ContextFull {
        /// Positions the request needs.
        needed: usize,
        /// The session's context length.
        limit: usize,
    },
    /// A token id is not in the vocabulary.
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The prompt encodes to no tokens, so there is nothing to condition on.
    EmptyPrompt,
    /// The caller cancelled generation.
    Cancelled,
    /// The forward pass produced NaN or infinite logits: the weights hold NaN or infinity
    /// (a damaged or badly converted file), or the activations overflowed.
    NonFiniteLogits {
        /// Position of the token whose logits are not finite.
        position: usize,
    },
    /// Reading weights from a streaming source failed.
    WeightRead {
        /// Offset of the failed read in the file.
        offset: u64,
        /// What the source reported.
        message: String,
    },
    /// A matrix delegated to an accelerator failed its product (`crate::delegate`).
    Delegate(DelegateError),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::ContextFull { needed, limit } => {
                write!(
                    f,
                    "context full: {needed} positions needed, context length is {limit}"
                )
            }
            GenerateError::TokenOutOfRange { id, vocab } => {
                write!(f, "token id {id} is outside the vocabulary of {vocab}")
            }
            GenerateError::EmptyPrompt => write!(f, "the prompt is empty"),
            GenerateError::Cancelled => write!(f, "generation was cancelled"),
            GenerateError::NonFiniteLogits { position } => write!(
                f,
                "the model produced NaN or infinite logits at position {position} (damaged \
                 weights?)"
            ),
            GenerateError::WeightRead { offset, message } => {
                write!(f, "reading weights at offset {offset} failed: {message}")
            }
            GenerateError::Delegate(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for GenerateError {}

/// Why a session could not be created. Nothing is allocated when one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The KV cache and buffers of the requested context exceed the memory budget
    /// ([`crate::SessionOptions::memory_budget`], or the default derived from the device's
    /// memory, [`crate::budget::default_memory_budget`]): ask for a shorter context.
    OverMemoryBudget {
        /// Bytes the session would allocate.
        needed: u64,
        /// The budget in force.
        budget: u64,
        /// The context length asked for.
        context: usize,
    },
    /// The allocator refused the KV cache or the buffers.
    OutOfMemory {
        /// Bytes of the allocation that failed.
        bytes: u64,
    },
    /// [`crate::SessionOptions::max_resident`] is below the smallest cap Tern can honour.
    ResidentCapTooSmall {
        /// The cap given, in bytes.
        given: usize,
        /// The smallest cap for this model, in bytes.
        min: usize,
    },
    /// A streaming arena size is outside what the model can use.
    BadStreamArena {
        /// The size asked for, in bytes (`None`: not a finite, non-negative number).
        given: Option<usize>,
        /// The smallest arena the model streams through (its largest row).
        min: usize,
    },
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::OverMemoryBudget {
                needed,
                budget,
                context,
            } => write!(
                f,
                "a context of {context} tokens needs {needed} bytes of KV cache and buffers, \
                 over the memory budget of {budget} bytes: use a shorter context"
            ),
            SessionError::OutOfMemory { bytes } => {
                write!(f, "out of memory allocating {bytes} bytes for the session")
            }
            SessionError::ResidentCapTooSmall { given, min } => write!(
                f,
                "resident cap of {given} bytes is below the smallest this model can honour \
                 ({min} bytes)"
            ),
            SessionError::BadStreamArena {
                given: Some(given),
                min,
            } => write!(
                f,
                "stream arena of {given} bytes is below the smallest this model can stream \
                 through ({min} bytes)"
            ),
            SessionError::BadStreamArena { given: None, min } => write!(
                f,
                "stream arena size is not a finite, non-negative number (at least {min} bytes)"
            ),
        }
    }
}

impl core::error::Error for SessionError {}
