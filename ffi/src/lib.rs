//! Tern for Swift and Kotlin: a thin [uniffi] layer over `tern-runtime`.
//!
//! - [`Model`]: a GGUF file loaded from a path or a file descriptor region ([`load_model`] does
//!   it on a background thread for coroutines and Swift tasks), with [`ModelInfo`].
//! - [`Session`]: one conversation. [`Session::generate`] runs on a background thread, sends
//!   text to a [`TokenListener`] and returns a [`GenerationHandle`] whose `cancel()` (or drop)
//!   stops within one token; [`Session::stream`] returns a [`TokenStream`] to `await` instead.
//! - [`Conversation`]: a chat formatted by the model's template; [`Conversation::send`] adds
//!   a user message and streams the reply, reusing the KV cache of earlier turns.
//! - [`DelegateOptions`]: the NPU delegate as a model option (cargo feature `npu`), and
//!   [`Model::delegate_decisions`], what it took.
//! - [`TernError`]: the one error type, mapped from the runtime's errors in `error.rs`.
//!
//! No panic crosses the boundary: uniffi turns a panic in a call into an exception
//! (`panic = "unwind"`), and the background threads catch theirs and report
//! [`TernError::Internal`].
//!
//! The Kotlin and Swift sources are generated from the built library by this crate's
//! `uniffi-bindgen` binary (feature `cli`), then wrapped by hand in `android/` and `ios/`.
#![deny(missing_docs)]

#[cfg(target_os = "android")]
mod android;
mod channel;
mod chat;
mod delegate;
mod error;
mod event;
mod model;
mod session;
mod slot;
mod tools;

pub use chat::{ChatMessage, Conversation, ConversationOptions, TemplateValue, TemplateVariable};
pub use delegate::{DelegateDecision, DelegateKind, DelegateOptions};
pub use error::TernError;
pub use event::{ReplyEvent, ReplyListener};
pub use model::{
    estimate_memory, load_model, KvCachePrecision, LoadProgress, MemoryEstimate, Model, ModelInfo,
    ModelOptions, ModelSource, Precision,
};
pub use session::{
    GenerateOptions, GenerationHandle, GenerationStats, Session, StopReason, TokenListener,
    TokenStream,
};
pub use tools::{Tool, ToolCallRecord, ToolResult};

uniffi::setup_scaffolding!();

#[cfg(test)]
mod tests;
