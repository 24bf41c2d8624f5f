//! Tern's compute kernels: block formats, quantized dot products, dequantization and the
//! elementwise math of a transformer (RMSNorm, RoPE, softmax, SiLU).
//!
//! Three tiers, one place each:
//! - [`scalar`]: the specification. Plain loops anyone can check; every other path is tested
//!   against it.
//! - `arch`: SIMD bodies (NEON on aarch64, AVX2 on x86_64), nothing else.
//! - [`dispatch`]: one table of kernel functions, chosen once ([`Kernels`]).
//!
//! The crate is `no_std`; the `std` feature only adds run-time CPU feature detection.
#![no_std]
#![deny(missing_docs)]

// Tests always have `std` (the harness needs it), with or without the feature.
#[cfg(any(feature = "std", test))]
extern crate std;

mod arch;
pub mod blocks;
pub mod dispatch;
pub mod format;
pub mod scalar;

pub use dispatch::{Backend, Kernels};
pub use format::Format;
