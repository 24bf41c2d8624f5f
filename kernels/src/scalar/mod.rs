//! Scalar reference kernels: the specification every SIMD path is tested against.
//!
//! Each function is plain, safe, portable and `no_std`. A row of weights is passed as the GGUF
//! bytes of whole blocks; the caller (the runtime) validated its length at load time, so a
//! length mismatch here is a bug and panics.

mod act;
mod act_f16;
mod float;
mod gemm;
mod gemm_i8;
mod ggml_search;
mod iq4_nl;
mod iq4_xs;
mod kquants;
mod kquants5;
mod kquants_low;
mod lut;
mod lut_ternary;
mod math;
mod q4;
mod q5;
mod q8;
mod repack;
mod ternary;
mod ternary_int8;

pub use act::*;
pub use act_f16::*;
pub use float::*;
pub use gemm::*;
pub use gemm_i8::*;
pub use iq4_nl::*;
pub use iq4_xs::*;
pub use kquants::*;
pub use kquants5::*;
pub use kquants_low::*;
pub use lut::*;
pub use lut_ternary::*;
pub use math::*;
pub use q4::*;
pub use q5::*;
pub use q8::*;
pub use repack::*;
pub use ternary::*;
pub use ternary_int8::*;

#[cfg(test)]
mod tests;
