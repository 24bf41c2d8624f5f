//! Tern's runtime: reads a GGUF model, runs the Llama-family forward pass, tokenizes and
//! samples.
//!
//! `no_std` + `alloc` at the core; the `std` feature adds files, memory maps and threads.
//! Data flows one way: bytes → [`gguf`] reader → typed tensors ([`model`]) → forward pass →
//! kernels ([`tern_kernels`]).
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod gguf;
pub mod tokenizer;
