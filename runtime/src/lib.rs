//! Tern's runtime: loads a GGUF model, describes its forward pass layer by layer (one module
//! per architecture), runs it in sessions and samples. The GGUF reader and the tokenizer are
//! crates of their own (`tern-gguf`, `tern-tokenizer`), re-exported here as [`gguf`] and
//! [`tokenizer`].
//!
//! `no_std` + `alloc` at the core; the `std` feature adds files, memory maps and threads.
//! Data flows one way: bytes → [`gguf`] reader → typed tensors ([`weights`]) → forward pass →
//! kernels ([`tern_kernels`]).
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod arch;
pub mod budget;
pub mod chat;
pub mod config;
#[cfg(feature = "constrain")]
pub mod constrain;
pub mod delegate;
pub mod error;
pub mod feed;
pub mod forward;
#[cfg(feature = "std")]
pub mod fs;
pub mod kv_cache;
pub mod matmul;
mod matrix;
pub mod model;
pub mod parallel;
#[cfg(feature = "std")]
pub mod pool;
pub mod repacked;
pub mod rope;
pub mod sampler;
pub mod session;
pub mod source;
pub mod stats;
pub mod ternary;
pub mod weights;

/// The GGUF reader and writer (the `tern-gguf` crate), at the path it had before it was one.
pub use tern_gguf as gguf;
/// Text ⇄ token ids (the `tern-tokenizer` crate), at the path it had before it was one.
pub use tern_tokenizer as tokenizer;

pub use config::ModelConfig;
pub use error::{GenerateError, LoadError, SessionError};
pub use kv_cache::KvType;
pub use matmul::ActivationPrecision;
pub use model::Model;
pub use sampler::{Sampler, SamplerError, SamplerOptions};
pub use session::{Event, Flow, Session, SessionOptions, StopReason};
