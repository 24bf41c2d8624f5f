//! SIMD bodies, one directory per architecture, and nothing else.
//!
//! Each architecture module exposes `install(backend, &mut Kernels) -> bool`: it detects the
//! backend's CPU features (at run time with `std`, from target features without) and, only if
//! they are present, overwrites the table's slots with safe wrappers around its
//! `#[target_feature]` bodies. Those wrappers are private to the module, so detection is the
//! only way to reach them.
//!
//! Bodies see whole blocks (or whole vector lanes for the plain f32 kernels); the wrappers
//! hand any tail to the scalar reference.

use crate::dispatch::{Backend, Kernels};

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[macro_use]
mod wrappers;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod int8_blocks;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod repacked;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// The 32-weight block formats, in the order the architectures' `install` lists their int8
/// kernels.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const BLOCK32_FORMATS: [crate::format::Format; 6] = {
    use crate::format::Format;
    [
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
        Format::Q5_0,
        Format::Q5_1,
        Format::IQ4_NL,
    ]
};

/// Installs `backend`'s kernels into `k` if this CPU supports it; returns whether it did.
/// Backends of other architectures are never supported.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(
        unused_variables,
        reason = "without a SIMD backend the arguments may go unread, depending on features"
    )
)]
pub(crate) fn install(backend: Backend, k: &mut Kernels) -> bool {
    // The f16-activation references emulate f16 arithmetic in software: a SIMD backend runs
    // that precision only where the CPU has it (its `install` refills the slots), and falls
    // back to its f32 kernels elsewhere.
    if backend != Backend::Scalar {
        for f in crate::format::Format::ALL {
            k.format_mut(f).dot_f16 = None;
        }
        // Likewise the batched int8 GEMM: its reference is far slower than the formats'
        // `gemm_q8`, so a backend has the slot only where its `install` puts a SIMD one.
        k.gemm_i8 = None;
        k.gemm_repacked = None;
    }
    match backend {
        Backend::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::AvxVnni | Backend::Avx512Vnni => x86_64::install(backend, k),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::NeonDotprod | Backend::NeonI8mm => aarch64::install(backend, k),
        _ => false,
    }
}
