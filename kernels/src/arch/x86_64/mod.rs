//! x86_64: AVX2 + FMA + F16C bodies ([`avx2`]), int8 dot products for AVX2, AVX-VNNI and
//! AVX512-VNNI ([`int8`]), and the safe wrappers the dispatch table gets after detection.
//!
//! Every backend here builds on AVX2 + FMA + F16C (Haswell, Zen 1 and later all have the
//! three); the VNNI backends replace only the int8 dot products.

mod avx2;
mod int8;

use crate::blocks::{as_blocks, as_blocks_mut, BlockQ4_0, BlockQ4_1, BlockQ8_0};
use crate::dispatch::{Backend, Kernels, Named};
use crate::format::Format;
use crate::scalar::{self, BlockQ8Act};

#[cfg(feature = "std")]
macro_rules! has {
    ($f:tt) => {
        std::is_x86_feature_detected!($f)
    };
}
#[cfg(not(feature = "std"))]
macro_rules! has {
    ($f:tt) => {
        cfg!(target_feature = $f)
    };
}

/// Whether this CPU has every feature `backend`'s bodies enable: detected at run time with
/// `std` (cached by `std`), from the compile-time target features without it.
fn detected(backend: Backend) -> bool {
    let avx2 = has!("avx2") && has!("fma") && has!("f16c");
    match backend {
        Backend::Avx2 => avx2,
        Backend::AvxVnni => avx2 && has!("avxvnni"),
        Backend::Avx512Vnni => avx2 && has!("avx512vnni") && has!("avx512vl"),
        _ => false,
    }
}

macro_rules! named {
    ($f:path, $name:literal) => {
        Named { f: $f, name: $name }
    };
}

/// Installs `backend` into `k` if [`detected`]; returns whether it did.
///
/// This is the only place the wrappers below become reachable, which is what their `SAFETY`
/// comments rely on.
pub(super) fn install(backend: Backend, k: &mut Kernels) -> bool {
    if !detected(backend) {
        return false;
    }
    k.dot_f32 = named!(dot_f32, "dot_f32/avx2");
    k.axpy = named!(axpy, "axpy/avx2");
    k.quantize_act_q8 = named!(quantize_act_q8, "quantize_act_q8/avx2");
    let f = k.format_mut(Format::Q4_0);
    f.dot = named!(dot_q4_0_f32, "dot_q4_0_f32/avx2");
    f.dequant = named!(dequant_q4_0, "dequant_q4_0/avx2");
    let f = k.format_mut(Format::Q4_1);
    f.dot = named!(dot_q4_1_f32, "dot_q4_1_f32/avx2");
    f.dequant = named!(dequant_q4_1, "dequant_q4_1/avx2");
    let f = k.format_mut(Format::Q8_0);
    f.dot = named!(dot_q8_0_f32, "dot_q8_0_f32/avx2");
    f.dequant = named!(dequant_q8_0, "dequant_q8_0/avx2");

    let [q4_0, q4_1, q8_0] = match backend {
        Backend::AvxVnni => [
            named!(avxvnni::dot_q4_0_q8, "dot_q4_0_q8/avxvnni"),
            named!(avxvnni::dot_q4_1_q8, "dot_q4_1_q8/avxvnni"),
            named!(avxvnni::dot_q8_0_q8, "dot_q8_0_q8/avxvnni"),
        ],
        Backend::Avx512Vnni => [
            named!(avx512vnni::dot_q4_0_q8, "dot_q4_0_q8/avx512vnni"),
            named!(avx512vnni::dot_q4_1_q8, "dot_q4_1_q8/avx512vnni"),
            named!(avx512vnni::dot_q8_0_q8, "dot_q8_0_q8/avx512vnni"),
        ],
        _ => [
            named!(avx2_int8::dot_q4_0_q8, "dot_q4_0_q8/avx2"),
            named!(avx2_int8::dot_q4_1_q8, "dot_q4_1_q8/avx2"),
            named!(avx2_int8::dot_q8_0_q8, "dot_q8_0_q8/avx2"),
        ],
    };
    k.format_mut(Format::Q4_0).dot_q8 = Some(q4_0);
    k.format_mut(Format::Q4_1).dot_q8 = Some(q4_1);
    k.format_mut(Format::Q8_0).dot_q8 = Some(q8_0);
    true
}

// ---- safe wrappers -----------------------------------------------------------------------
// Each checks lengths exactly as the scalar reference does (same panics), then calls its body.
// SAFETY (all `unsafe` calls below): `install` puts a wrapper in the table only after
// `detected(backend)` returned true for a backend whose features include every feature the
// body enables (`avx2,fma,f16c`, plus `avxvnni` or `avx512vnni,avx512vl` for the VNNI dots,
// installed only for those backends); nothing else can name these private functions.

/// `a · b`: the body takes the whole lanes, the scalar reference the tail.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let n = a.len() - a.len() % avx2::DOT_F32_LANES;
    // SAFETY: see the block comment above (AVX2 + FMA + F16C detected).
    let head = unsafe { avx2::dot_f32(&a[..n], &b[..n]) };
    head + scalar::dot_f32(&a[n..], &b[n..])
}

/// `y += a·x`: the body takes the whole lanes, the scalar reference the tail.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    let n = y.len() - y.len() % avx2::AXPY_LANES;
    let (yh, yt) = y.split_at_mut(n);
    // SAFETY: see the block comment above (AVX2 + FMA + F16C detected).
    unsafe { avx2::axpy(yh, a, &x[..n]) };
    scalar::axpy(yt, a, &x[n..]);
}

fn quantize_act_q8(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockQ8Act] = as_blocks_mut(out).expect("output is whole act blocks");
    assert_eq!(blocks.len() * 32, x.len());
    // SAFETY: see the block comment above (AVX2 + FMA + F16C detected).
    unsafe { avx2::quantize_act_q8(x, blocks) }
}

/// Row · f32 and row → f32 wrappers for one block type.
macro_rules! f32_wrappers {
    ($block:ty, $what:literal, $dot:ident, $dequant:ident) => {
        fn $dot(row: &[u8], x: &[f32]) -> f32 {
            let blocks: &[$block] = as_blocks(row).expect(concat!($what, " row is whole blocks"));
            assert_eq!(blocks.len() * 32, x.len());
            // SAFETY: see the block comment above (AVX2 + FMA + F16C detected).
            unsafe { avx2::$dot(blocks, x) }
        }

        fn $dequant(row: &[u8], out: &mut [f32]) {
            let blocks: &[$block] = as_blocks(row).expect(concat!($what, " row is whole blocks"));
            assert_eq!(blocks.len() * 32, out.len());
            // SAFETY: see the block comment above (AVX2 + FMA + F16C detected).
            unsafe { avx2::$dequant(blocks, out) }
        }
    };
}
f32_wrappers!(BlockQ4_0, "Q4_0", dot_q4_0_f32, dequant_q4_0);
f32_wrappers!(BlockQ4_1, "Q4_1", dot_q4_1_f32, dequant_q4_1);
f32_wrappers!(BlockQ8_0, "Q8_0", dot_q8_0_f32, dequant_q8_0);

/// Row · int8 activations wrappers for one instruction set (`int8::$isa`).
macro_rules! int8_wrappers {
    ($module:ident, $isa:ident) => {
        mod $module {
            use super::*;

            fn acts(xq: &[u8], n_blocks: usize) -> &[BlockQ8Act] {
                let a: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
                assert_eq!(a.len(), n_blocks, "activation blocks match the row");
                a
            }

            pub(super) fn dot_q4_0_q8(row: &[u8], xq: &[u8]) -> f32 {
                let blocks: &[BlockQ4_0] = as_blocks(row).expect("Q4_0 row is whole blocks");
                let acts = acts(xq, blocks.len());
                // SAFETY: see the block comment above (installed only for this ISA's backend).
                unsafe { int8::$isa::dot_q4_0_q8(blocks, acts) }
            }

            pub(super) fn dot_q4_1_q8(row: &[u8], xq: &[u8]) -> f32 {
                let blocks: &[BlockQ4_1] = as_blocks(row).expect("Q4_1 row is whole blocks");
                let acts = acts(xq, blocks.len());
                // SAFETY: see the block comment above (installed only for this ISA's backend).
                unsafe { int8::$isa::dot_q4_1_q8(blocks, acts) }
            }

            pub(super) fn dot_q8_0_q8(row: &[u8], xq: &[u8]) -> f32 {
                let blocks: &[BlockQ8_0] = as_blocks(row).expect("Q8_0 row is whole blocks");
                let acts = acts(xq, blocks.len());
                // SAFETY: see the block comment above (installed only for this ISA's backend).
                unsafe { int8::$isa::dot_q8_0_q8(blocks, acts) }
            }
        }
    };
}
int8_wrappers!(avx2_int8, avx2);
int8_wrappers!(avxvnni, avxvnni);
int8_wrappers!(avx512vnni, avx512vnni);
