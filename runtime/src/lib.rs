//! Tern's runtime: reads a GGUF model, runs the Llama-family forward pass, tokenizes and
//! samples.
//!
//! `no_std` + `alloc` at the core; the `std` feature adds files, memory maps and threads.
//! Data flows one way: bytes → [`gguf`] reader → typed tensors ([`weights`]) → forward pass →
//! kernels ([`tern_kernels`]).
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "wip")]
pub mod config;
#[cfg(feature = "wip")]
pub mod error;
#[cfg(feature = "wip")]
pub mod forward;
#[cfg(feature = "std")]
#[cfg(feature = "wip")]
pub mod fs;
pub mod gguf;
#[cfg(feature = "wip")]
pub mod kv_cache;
#[cfg(feature = "wip")]
mod matmul;
#[cfg(feature = "wip")]
pub mod model;
pub mod parallel;
#[cfg(feature = "std")]
#[cfg(feature = "wip")]
pub mod pool;
#[cfg(feature = "wip")]
pub mod sampler;
#[cfg(feature = "wip")]
pub mod session;
pub mod source;
pub mod tokenizer;
#[cfg(feature = "wip")]
pub mod weights;

#[cfg(feature = "wip")]
pub use config::ModelConfig;
#[cfg(feature = "wip")]
pub use error::{GenerateError, LoadError};
#[cfg(feature = "wip")]
pub use model::Model;
#[cfg(feature = "wip")]
pub use sampler::{Sampler, SamplerOptions};
#[cfg(feature = "wip")]
pub use session::{Event, Flow, Session, SessionOptions, StopReason};
