//! The one error type apps see, and the one place the runtime's errors map onto it.

use std::fmt;

use tern_runtime::constrain::tools::ToolChatError;
use tern_runtime::constrain::ConstrainError;
use tern_runtime::gguf::GgufError;
use tern_runtime::pool::PoolError;
use tern_runtime::tokenizer::TokenizerError;
use tern_runtime::{GenerateError, LoadError, SessionError};

/// Why a call failed. Each variant is something an app can act on: tell the user the file is
/// missing or damaged, pick another model, start a new session, or report a bug (`Internal`).
///
/// Kotlin sees `TernException` subclasses, Swift a `TernError` enum conforming to `Error`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
pub enum TernError {
    /// No file exists at the path.
    FileNotFound {
        /// The path given.
        path: String,
    },
    /// The file exists but could not be opened or mapped (permissions, an invalid descriptor,
    /// an offset or length outside the file).
    Io {
        /// The path or descriptor.
        source: String,
        /// The operating system's message.
        reason: String,
    },
    /// The bytes are not a GGUF file (wrong magic or an unsupported GGUF version).
    NotGguf {
        /// What was found instead.
        reason: String,
    },
    /// A GGUF file that is truncated, damaged or internally inconsistent.
    Corrupt {
        /// The byte offset of the bad field, when the reader knows it.
        offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The model's architecture is not one Tern runs.
    UnsupportedArchitecture {
        /// The architecture the file names.
        name: String,
    },
    /// A tensor is stored in a type Tern has no kernel for.
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// The type's GGUF name.
        type_name: String,
    },
    /// The model's tokenizer (or its pre-tokenizer) is not one Tern implements.
    UnsupportedTokenizer {
        /// The tokenizer's name.
        name: String,
    },
    /// The prompt does not fit in what is left of the session's context: reset the session or
    /// use a longer context.
    ContextFull {
        /// Positions the request needs.
        needed: u64,
        /// The session's context length.
        limit: u64,
    },
    /// The model has no chat template (`tokenizer.chat_template`): give one in
    /// `ConversationOptions.template`.
    NoChatTemplate,
    /// The chat template is not valid Jinja, or rejected the conversation (it called
    /// `raise_exception`, e.g. for roles that do not alternate).
    Template {
        /// The template engine's or the template's message.
        reason: String,
    },
    /// Saved conversation bytes that cannot be restored: damaged, from another version of
    /// Tern, or made with another model.
    BadSnapshot {
        /// What does not match.
        reason: String,
    },
    /// A session of the model would need more memory than `memory_budget_bytes` allows.
    OutOfMemoryBudget {
        /// Bytes one session needs.
        needed_bytes: u64,
        /// The budget given.
        budget_bytes: u64,
        /// Where the bytes go.
        reason: String,
    },
    /// A JSON Schema (a tool's parameters, a `json_schema` option) or grammar does not parse.
    InvalidSchema {
        /// Which text: e.g. ``parameters of tool `get_weather` ``.
        what: String,
        /// 1-based line of the error in that text.
        line: u32,
        /// 1-based column of the error in that line.
        column: u32,
        /// What is wrong there.
        reason: String,
    },
    /// A JSON Schema or grammar that parses but cannot be enforced (an unsupported keyword,
    /// an unsatisfiable schema): refused rather than silently ignored.
    UnsupportedSchema {
        /// The engine's message, naming the keyword or schema path.
        reason: String,
    },
    /// Tools were declared but the chat template teaches no tool-call syntax Tern recognises
    /// (Hermes/Qwen `<tool_call>`, Llama 3.x JSON): give a template that does in
    /// `ConversationOptions.template`.
    NoToolCallFormat,
    /// Generation was cancelled by the app.
    Cancelled,
    /// Another generation of the session or conversation is running and was not cancelled:
    /// genuinely concurrent use. Cancel it first; a call made after cancelling waits for the
    /// cancelled generation to wind down (within one token) instead of failing.
    SessionBusy,
    /// The object was closed (Kotlin `close()`/`use {}`) and cannot be used, as the receiver of
    /// a call or as an argument to one.
    Closed {
        /// Which object: `TernModel`, `TernSession` or `TernConversation`.
        name: String,
    },
    /// An argument is out of range (an empty prompt in a new session, a zero length).
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The NPU delegate asked for in `ModelOptions.delegate` cannot run: its ONNX Runtime,
    /// QNN provider or HTP backend library is missing or does not load, the device has no
    /// NPU, or this build has no delegate (cargo feature `npu`). Load without the delegate
    /// to run on the CPU.
    DelegateUnavailable {
        /// What is missing or failed, with the path tried.
        reason: String,
    },
    /// The NPU delegate failed: a matrix's graph did not compile for the NPU at load, or a
    /// delegated product failed during generation. Load without the delegate to run on the
    /// CPU.
    DelegateFailed {
        /// Which matrix and the backend's message.
        reason: String,
    },
    /// A bug in Tern or a failure inside an app callback; the reason says which.
    Internal {
        /// What happened.
        reason: String,
    },
}

impl fmt::Display for TernError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TernError::FileNotFound { path } => write!(f, "no model file at '{path}'"),
            TernError::Io { source, reason } => write!(f, "cannot read '{source}': {reason}"),
            TernError::NotGguf { reason } => write!(f, "not a GGUF model: {reason}"),
            TernError::Corrupt {
                offset: Some(offset),
                reason,
            } => write!(f, "corrupt model file at offset {offset}: {reason}"),
            TernError::Corrupt {
                offset: None,
                reason,
            } => write!(f, "corrupt model file: {reason}"),
            TernError::UnsupportedArchitecture { name } => {
                write!(f, "unsupported architecture '{name}'")
            }
            TernError::UnsupportedType { tensor, type_name } => {
                write!(f, "tensor '{tensor}' has unsupported type {type_name}")
            }
            TernError::UnsupportedTokenizer { name } => {
                write!(f, "unsupported tokenizer '{name}'")
            }
            TernError::ContextFull { needed, limit } => write!(
                f,
                "context full: {needed} positions needed, context length is {limit}"
            ),
            TernError::OutOfMemoryBudget {
                needed_bytes,
                budget_bytes,
                reason,
            } => write!(
                f,
                "a session needs {needed_bytes} bytes, over the memory budget of \
                 {budget_bytes} ({reason})"
            ),
            TernError::NoChatTemplate => write!(
                f,
                "the model has no chat template: supply one in the conversation options"
            ),
            TernError::Template { reason } => write!(f, "chat template: {reason}"),
            TernError::BadSnapshot { reason } => {
                write!(f, "cannot restore the conversation: {reason}")
            }
            TernError::InvalidSchema {
                what,
                line,
                column,
                reason,
            } => write!(
                f,
                "invalid {what} at line {line}, column {column}: {reason}"
            ),
            TernError::UnsupportedSchema { reason } => {
                write!(f, "cannot enforce this schema or grammar: {reason}")
            }
            TernError::NoToolCallFormat => write!(
                f,
                "the chat template defines no tool-call syntax Tern recognises"
            ),
            TernError::Cancelled => write!(f, "generation was cancelled"),
            TernError::SessionBusy => write!(f, "the session is already generating"),
            TernError::Closed { name } => write!(f, "the {name} was closed"),
            TernError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            TernError::DelegateUnavailable { reason } => {
                write!(f, "the NPU delegate is unavailable: {reason}")
            }
            TernError::DelegateFailed { reason } => write!(f, "the NPU delegate failed: {reason}"),
            TernError::Internal { reason } => write!(f, "internal error: {reason}"),
        }
    }
}

impl std::error::Error for TernError {}

impl TernError {
    /// An error for a panic payload caught at the boundary.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".to_string());
        TernError::Internal {
            reason: format!("panic: {message}"),
        }
    }

    /// An error opening `source` (a path or a descriptor).
    pub(crate) fn io(source: &str, e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => TernError::FileNotFound {
                path: source.to_string(),
            },
            _ => TernError::Io {
                source: source.to_string(),
                reason: e.to_string(),
            },
        }
    }
}

impl From<LoadError> for TernError {
    fn from(e: LoadError) -> Self {
        let reason = e.to_string();
        match e {
            LoadError::Gguf(g) => g.into(),
            LoadError::UnsupportedArchitecture { name } => {
                TernError::UnsupportedArchitecture { name }
            }
            LoadError::UnsupportedType { tensor, ty } => TernError::UnsupportedType {
                tensor,
                type_name: ty,
            },
            LoadError::Tokenizer(
                TokenizerError::UnknownModel { name }
                | TokenizerError::UnknownPreTokenizer { name },
            ) => TernError::UnsupportedTokenizer { name },
            LoadError::Io { path, message } => TernError::Io {
                source: path,
                reason: message,
            },
            // Not the model's fault: the path names a FIFO or device, or the file is being
            // rewritten; the app's file handling must change, so these are I/O errors.
            LoadError::NotARegularFile { path, .. }
            | LoadError::FileChanged { path }
            | LoadError::FileBeingWritten { path } => TernError::Io {
                source: path,
                reason,
            },
            // Missing tensors, shape and hyperparameter mismatches, a bad tokenizer and any
            // later validation failure: the file is not a model Tern can trust.
            _ => TernError::Corrupt {
                offset: None,
                reason,
            },
        }
    }
}

impl From<GgufError> for TernError {
    fn from(e: GgufError) -> Self {
        let offset = match &e {
            GgufError::BadMagic { .. } | GgufError::UnsupportedVersion { .. } => {
                return TernError::NotGguf {
                    reason: e.to_string(),
                }
            }
            GgufError::Truncated { offset, .. }
            | GgufError::InvalidUtf8 { offset, .. }
            | GgufError::InvalidValueType { offset, .. }
            | GgufError::InvalidBool { offset, .. }
            | GgufError::TooLarge { offset, .. }
            | GgufError::NestingTooDeep { offset }
            | GgufError::TensorOutOfBounds { offset, .. } => Some(*offset),
            _ => None,
        };
        TernError::Corrupt {
            offset,
            reason: e.to_string(),
        }
    }
}

impl From<GenerateError> for TernError {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::ContextFull { needed, limit } => TernError::ContextFull {
                needed: needed as u64,
                limit: limit as u64,
            },
            GenerateError::Cancelled => TernError::Cancelled,
            GenerateError::Delegate(d) => TernError::DelegateFailed {
                reason: d.to_string(),
            },
            GenerateError::EmptyPrompt | GenerateError::TokenOutOfRange { .. } => {
                TernError::InvalidArgument {
                    reason: e.to_string(),
                }
            }
            other => TernError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<SessionError> for TernError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::OverMemoryBudget { needed, budget, .. } => TernError::OutOfMemoryBudget {
                needed_bytes: needed,
                budget_bytes: budget,
                reason: e.to_string(),
            },
            SessionError::OutOfMemory { bytes } => TernError::OutOfMemoryBudget {
                needed_bytes: bytes,
                budget_bytes: 0,
                reason: e.to_string(),
            },
            other => TernError::InvalidArgument {
                reason: other.to_string(),
            },
        }
    }
}

impl From<PoolError> for TernError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::TooManyThreads { .. } => TernError::InvalidArgument {
                reason: e.to_string(),
            },
            other => TernError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<tern_runtime::chat::TemplateError> for TernError {
    fn from(e: tern_runtime::chat::TemplateError) -> Self {
        match e {
            tern_runtime::chat::TemplateError::Missing => TernError::NoChatTemplate,
            other => TernError::Template {
                reason: other.to_string(),
            },
        }
    }
}

impl From<tern_runtime::chat::ChatError> for TernError {
    fn from(e: tern_runtime::chat::ChatError) -> Self {
        match e {
            tern_runtime::chat::ChatError::Template(t) => t.into(),
            tern_runtime::chat::ChatError::Generate(g) => g.into(),
            other => TernError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<ConstrainError> for TernError {
    fn from(e: ConstrainError) -> Self {
        match e {
            ConstrainError::Syntax {
                what,
                line,
                column,
                message,
            } => TernError::InvalidSchema {
                what: what.to_string(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
                reason: message,
            },
            ConstrainError::Unenforceable { message } => {
                TernError::UnsupportedSchema { reason: message }
            }
            ConstrainError::Generate(g) => g.into(),
            other => TernError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<ToolChatError> for TernError {
    fn from(e: ToolChatError) -> Self {
        match e {
            ToolChatError::NoToolFormat => TernError::NoToolCallFormat,
            ToolChatError::Chat(c) => c.into(),
            ToolChatError::Constrain(c) => c.into(),
            other => TernError::Internal {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tern_runtime::delegate::DelegateError;

    use super::*;

    #[test]
    fn files_that_are_not_regular_change_or_are_being_written_are_io_errors() {
        let e: TernError = LoadError::FileChanged {
            path: "m.gguf".into(),
        }
        .into();
        assert!(matches!(e, TernError::Io { ref source, ref reason }
            if source == "m.gguf" && reason.contains("rename")));
        let e: TernError = LoadError::NotARegularFile {
            path: "fifo".into(),
            kind: "FIFO",
        }
        .into();
        assert!(matches!(e, TernError::Io { ref reason, .. } if reason.contains("FIFO")));
        let e: TernError = LoadError::FileBeingWritten {
            path: "dl.gguf".into(),
        }
        .into();
        assert!(matches!(e, TernError::Io { ref source, ref reason }
            if source == "dl.gguf" && reason.contains("open for writing")));
    }

    #[test]
    fn gguf_errors_keep_their_offset() {
        let e: TernError = LoadError::Gguf(GgufError::Truncated {
            field: "tensor info",
            offset: 1234,
        })
        .into();
        assert!(
            matches!(
                e,
                TernError::Corrupt {
                    offset: Some(1234),
                    ..
                }
            ),
            "{e:?}"
        );
        let e: TernError = GgufError::BadMagic {
            found: *b"PK\x03\x04",
        }
        .into();
        assert!(matches!(e, TernError::NotGguf { .. }), "{e:?}");
    }

    #[test]
    fn generate_errors_map_to_actionable_variants() {
        let e: TernError = GenerateError::ContextFull {
            needed: 10,
            limit: 8,
        }
        .into();
        assert_eq!(
            e,
            TernError::ContextFull {
                needed: 10,
                limit: 8
            }
        );
        let e: TernError = GenerateError::EmptyPrompt.into();
        assert!(matches!(e, TernError::InvalidArgument { .. }));
        let e: TernError = GenerateError::Delegate(DelegateError::Backend {
            message: "QNN: device lost".into(),
        })
        .into();
        assert_eq!(
            e,
            TernError::DelegateFailed {
                reason: "delegate failed: QNN: device lost".into()
            }
        );
    }

    #[test]
    fn panics_become_internal_errors() {
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        let e = TernError::from_panic(&*payload);
        assert_eq!(
            e,
            TernError::Internal {
                reason: "panic: boom 1".into()
            }
        );
    }
}
