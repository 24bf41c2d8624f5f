//! aarch64: NEON bodies ([`neon`], the k-quants in [`kquants`] and [`kquants_low`], F16 rows in
//! [`f16`], the f16 KV cache's in [`attention`]), int8 dot products for NEON and the dot
//! product extension ([`int8`], the k-quants' in [`kquants_int8`] and [`kquants_low_int8`]),
//! the f16-activation kernels of FEAT_FP16
//! ([`fp16`]), and the safe wrappers the dispatch table gets after detection.
//!
//! NEON is part of every ARMv8-A application core (phones included); `dotprod` (`sdot`) came
//! with ARMv8.2 (Cortex-A55/A75 and later) and replaces only the int8 dot products; `i8mm`
//! (`smmla`, optional from ARMv8.2, mandatory in ARMv8.6: Cortex-A510/A710/X2 and later)
//! replaces only the batched int8 GEMMs of prompt processing. FEAT_FP16 (`fp16`, half-precision
//! arithmetic, ARMv8.2: Cortex-A55/A75 and later) is not a backend of its own: any NEON backend
//! adds the f16-activation kernels when [`fp16_detected`] (so `--kernels` keeps one name per
//! int8 tier, and the f16 precision works on every tier of a CPU that has it).

mod attention;
mod f16;
mod fp16;
mod gemm;
mod int8;
mod kquants;
mod kquants_int8;
mod kquants_low;
mod kquants_low_int8;
mod lut;
mod neon;
mod repacked;
mod repacked_gemv;
mod ternary;

use crate::blocks::{
    BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};
use crate::dispatch::{Backend, DotQ8Fn, Kernels, Named};
use crate::format::Format;
use crate::scalar::{BlockF16Act, RepackedLayout};

/// Whether this CPU has every feature `backend`'s bodies enable: detected at run time with
/// `std` (`std` caches the answer), from the compile-time target features without it.
#[cfg(feature = "std")]
fn detected(backend: Backend) -> bool {
    use std::arch::is_aarch64_feature_detected as has;
    match backend {
        Backend::Neon => has!("neon"),
        Backend::NeonDotprod => has!("neon") && has!("dotprod"),
        Backend::NeonI8mm => has!("neon") && has!("dotprod") && has!("i8mm"),
        _ => false,
    }
}

/// Whether this build's target features include every feature `backend`'s bodies enable.
#[cfg(not(feature = "std"))]
fn detected(backend: Backend) -> bool {
    match backend {
        Backend::Neon => cfg!(target_feature = "neon"),
        Backend::NeonDotprod => cfg!(all(target_feature = "neon", target_feature = "dotprod")),
        Backend::NeonI8mm => cfg!(all(
            target_feature = "neon",
            target_feature = "dotprod",
            target_feature = "i8mm"
        )),
        _ => false,
    }
}

/// One token through the one-token path (`repacked_gemv`), for the layouts it has: Q4_0, Q4_1
/// and the signed Q8_0 NEON repacks into; returns false for the rest, which take the tiles.
/// Installed only on NeonDotprod and NeonI8mm, both with dotprod.
fn one_token(
    layout: RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    y: &mut [f32],
) -> bool {
    use repacked_gemv::{check, dotprod::gemv, Q4_0, Q4_1, Q8_0S};
    let run = match layout.format() {
        Format::Q4_0 => gemv::<Q4_0>,
        Format::Q4_1 => gemv::<Q4_1>,
        Format::Q8_0 if layout.signed() => gemv::<Q8_0S>,
        _ => return false,
    };
    check(layout, w, m, cols, xq, y);
    // SAFETY: called only from the repacked GEMMs of NeonDotprod and NeonI8mm, installed after
    // `detected` confirmed NEON and dotprod; the shapes are checked above.
    unsafe { run(w, m, cols, xq, y) };
    true
}

/// The int8 GEMM over the repacked formats with `sdot` (installed only for the dotprod
/// backends).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
fn gemm_repacked_dotprod(
    layout: RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    if n == 1 && m > 0 && one_token(layout, w, m, cols, xq, y) {
        return;
    }
    // SAFETY: installed only for NeonDotprod and NeonI8mm after `detected` confirmed NEON and
    // dotprod; the driver checks every shape.
    unsafe {
        crate::arch::repacked::gemm_repacked::<repacked::Dotprod>(layout, w, m, cols, xq, n, y, ldy)
    }
}

/// The int8 GEMM over the repacked formats with `smmla` for two or more tokens (installed
/// only for the i8mm backend).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
fn gemm_repacked_i8mm(
    layout: RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    if n == 1 && m > 0 && one_token(layout, w, m, cols, xq, y) {
        return;
    }
    // SAFETY: installed only for NeonI8mm after `detected` confirmed NEON, dotprod and i8mm;
    // the driver checks every shape.
    unsafe {
        crate::arch::repacked::gemm_repacked::<repacked::I8mm>(layout, w, m, cols, xq, n, y, ldy)
    }
}

/// Whether this CPU has FEAT_FP16 (half-precision arithmetic, `fp16`): at run time with `std`,
/// from the compile-time target features without it.
fn fp16_detected() -> bool {
    #[cfg(feature = "std")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(target_feature = "neon", target_feature = "fp16"))
    }
}

/// Installs `backend` into `k` if [`detected`]; returns whether it did.
///
/// This is the only place the wrappers below become reachable, which is what their `SAFETY`
/// comments rely on.
pub(super) fn install(backend: Backend, k: &mut Kernels) -> bool {
    if !detected(backend) {
        return false;
    }
    k.dot_f32 = named!(dot_f32, "dot_f32/neon");
    k.axpy = named!(axpy, "axpy/neon");
    k.axpy_rows_f16 = named!(axpy_rows_f16, "axpy_rows_f16/neon");
    k.quantize_f16 = named!(quantize_f16, "quantize_f16/neon");
    k.quantize_act_q8 = named!(quantize_act_q8, "quantize_act_q8/neon");
    let f = k.format_mut(Format::Q4_0);
    f.dot = named!(dot_q4_0_f32, "dot_q4_0_f32/neon");
    f.dequant = named!(dequant_q4_0, "dequant_q4_0/neon");
    let f = k.format_mut(Format::Q4_1);
    f.dot = named!(dot_q4_1_f32, "dot_q4_1_f32/neon");
    f.dequant = named!(dequant_q4_1, "dequant_q4_1/neon");
    let f = k.format_mut(Format::Q8_0);
    f.dot = named!(dot_q8_0_f32, "dot_q8_0_f32/neon");
    f.dequant = named!(dequant_q8_0, "dequant_q8_0/neon");
    let f = k.format_mut(Format::Q5_0);
    f.dot = named!(dot_q5_0_f32, "dot_q5_0_f32/neon");
    f.dequant = named!(dequant_q5_0, "dequant_q5_0/neon");
    let f = k.format_mut(Format::Q5_1);
    f.dot = named!(dot_q5_1_f32, "dot_q5_1_f32/neon");
    f.dequant = named!(dequant_q5_1, "dequant_q5_1/neon");
    let f = k.format_mut(Format::IQ4_NL);
    f.dot = named!(dot_iq4_nl_f32, "dot_iq4_nl_f32/neon");
    f.dequant = named!(dequant_iq4_nl, "dequant_iq4_nl/neon");
    let f = k.format_mut(Format::F16);
    f.dot = named!(dot_f16_f32, "dot_f16_f32/neon");
    f.dequant = named!(dequant_f16, "dequant_f16/neon");
    f.dot_rows = Some(named!(dot_rows_f16_f32, "dot_rows_f16_f32/neon"));
    let f = k.format_mut(Format::Q4_K);
    f.dot = named!(dot_q4_k_f32, "dot_q4_k_f32/neon");
    f.dequant = named!(dequant_q4_k, "dequant_q4_k/neon");
    f.dot_rows = Some(named!(dot_rows_q4_k_f32, "dot_rows_q4_k_f32/neon"));
    let f = k.format_mut(Format::Q6_K);
    f.dot = named!(dot_q6_k_f32, "dot_q6_k_f32/neon");
    f.dequant = named!(dequant_q6_k, "dequant_q6_k/neon");
    f.dot_rows = Some(named!(dot_rows_q6_k_f32, "dot_rows_q6_k_f32/neon"));
    let f = k.format_mut(Format::Q5_K);
    f.dot = named!(dot_q5_k_f32, "dot_q5_k_f32/neon");
    f.dequant = named!(dequant_q5_k, "dequant_q5_k/neon");
    f.dot_rows = Some(named!(dot_rows_q5_k_f32, "dot_rows_q5_k_f32/neon"));
    let f = k.format_mut(Format::IQ4_XS);
    f.dot = named!(dot_iq4_xs_f32, "dot_iq4_xs_f32/neon");
    f.dequant = named!(dequant_iq4_xs, "dequant_iq4_xs/neon");
    f.dot_rows = Some(named!(dot_rows_iq4_xs_f32, "dot_rows_iq4_xs_f32/neon"));

    // One row at a time `smmla` would waste half its products: i8mm keeps the `sdot` dots.
    let dots: [Named<DotQ8Fn>; 6] = match backend {
        Backend::NeonDotprod | Backend::NeonI8mm => [
            named!(dotprod::dot_q4_0_q8, "dot_q4_0_q8/dotprod"),
            named!(dotprod::dot_q4_1_q8, "dot_q4_1_q8/dotprod"),
            named!(dotprod::dot_q8_0_q8, "dot_q8_0_q8/dotprod"),
            named!(dotprod::dot_q5_0_q8, "dot_q5_0_q8/dotprod"),
            named!(dotprod::dot_q5_1_q8, "dot_q5_1_q8/dotprod"),
            named!(dotprod::dot_iq4_nl_q8, "dot_iq4_nl_q8/dotprod"),
        ],
        _ => [
            named!(neon_int8::dot_q4_0_q8, "dot_q4_0_q8/neon"),
            named!(neon_int8::dot_q4_1_q8, "dot_q4_1_q8/neon"),
            named!(neon_int8::dot_q8_0_q8, "dot_q8_0_q8/neon"),
            named!(neon_int8::dot_q5_0_q8, "dot_q5_0_q8/neon"),
            named!(neon_int8::dot_q5_1_q8, "dot_q5_1_q8/neon"),
            named!(neon_int8::dot_iq4_nl_q8, "dot_iq4_nl_q8/neon"),
        ],
    };
    for (format, dot) in crate::arch::BLOCK32_FORMATS.into_iter().zip(dots) {
        k.format_mut(format).dot_q8 = Some(dot);
    }
    install_kquant_int8!(k, backend, {
        Backend::NeonDotprod | Backend::NeonI8mm => kq_dotprod "dotprod",
        _ => kq_neon "neon",
    }, [
        Q4_K: dot_q4_k_q8, gemm_q4_k_q8;
        Q5_K: dot_q5_k_q8, gemm_q5_k_q8;
        Q6_K: dot_q6_k_q8, gemm_q6_k_q8;
        IQ4_XS: dot_iq4_xs_q8, gemm_iq4_xs_q8;
    ]);
    install_low_kquants(backend, k);
    if fp16_detected() {
        k.quantize_act_f16 = named!(quantize_act_f16, "quantize_act_f16/neon");
        k.format_mut(Format::Q4_0).dot_f16 = Some(named!(dot_q4_0_f16, "dot_q4_0_f16/fp16"));
        k.format_mut(Format::Q4_1).dot_f16 = Some(named!(dot_q4_1_f16, "dot_q4_1_f16/fp16"));
        k.format_mut(Format::Q8_0).dot_f16 = Some(named!(dot_q8_0_f16, "dot_q8_0_f16/fp16"));
        k.format_mut(Format::Q5_0).dot_f16 = Some(named!(dot_q5_0_f16, "dot_q5_0_f16/fp16"));
        k.format_mut(Format::Q5_1).dot_f16 = Some(named!(dot_q5_1_f16, "dot_q5_1_f16/fp16"));
        k.format_mut(Format::IQ4_NL).dot_f16 = Some(named!(dot_iq4_nl_f16, "dot_iq4_nl_f16/fp16"));
    }
    k.gemm_repacked = match backend {
        Backend::NeonI8mm => Some(named!(gemm_repacked_i8mm, "gemm_repacked/i8mm")),
        Backend::NeonDotprod => Some(named!(gemm_repacked_dotprod, "gemm_repacked/dotprod")),
        _ => k.gemm_repacked,
    };
    // Q8_0 keeps its signed codes where `sdot` meets them as stored (issue 16: the unsigned
    // layout cost an `eor` per `sdot`); plain NEON runs the reference on the default layout.
    if matches!(backend, Backend::NeonDotprod | Backend::NeonI8mm) {
        k.repacked_q8_0 = crate::scalar::RepackedLayout::Q8_0_SIGNED;
    }
    ternary::install(backend, k);
    gemm::install(backend, k);
    lut::install(k);
    true
}

/// Q3_K and Q2_K: the NEON f32 kernels on every backend, the int8 dots of `backend`'s ISA.
fn install_low_kquants(backend: Backend, k: &mut Kernels) {
    let f = k.format_mut(Format::Q3_K);
    f.dot = named!(dot_q3_k_f32, "dot_q3_k_f32/neon");
    f.dequant = named!(dequant_q3_k, "dequant_q3_k/neon");
    f.dot_rows = Some(named!(dot_rows_q3_k_f32, "dot_rows_q3_k_f32/neon"));
    let f = k.format_mut(Format::Q2_K);
    f.dot = named!(dot_q2_k_f32, "dot_q2_k_f32/neon");
    f.dequant = named!(dequant_q2_k, "dequant_q2_k/neon");
    f.dot_rows = Some(named!(dot_rows_q2_k_f32, "dot_rows_q2_k_f32/neon"));
    install_kquant_int8!(k, backend, {
        Backend::NeonDotprod | Backend::NeonI8mm => kql_dotprod "dotprod",
        _ => kql_neon "neon",
    }, [
        Q3_K: dot_q3_k_q8, gemm_q3_k_q8;
        Q2_K: dot_q2_k_q8, gemm_q2_k_q8;
    ]);
}

// ---- safe wrappers -----------------------------------------------------------------------
// Wrapper notes: `install` is the only code that names these private wrappers, and it runs
// only after `detected(backend)` returned true. Every body enables `neon`, which every aarch64
// backend requires; the `dotprod` int8 bodies additionally enable `dotprod`, and `install` puts
// them in the table only for `Backend::NeonDotprod` and `Backend::NeonI8mm`, whose detection
// checked it; the `fp16` bodies enable `fp16`, and `install` puts them in the table only after
// `fp16_detected()` returned true.

vec_wrappers!(neon);
kv_f16_wrappers!(attention);
f32_wrappers!(neon, BlockQ4_0, "Q4_0", dot_q4_0_f32, dequant_q4_0);
f32_wrappers!(neon, BlockQ4_1, "Q4_1", dot_q4_1_f32, dequant_q4_1);
f32_wrappers!(neon, BlockQ8_0, "Q8_0", dot_q8_0_f32, dequant_q8_0);
f32_wrappers!(neon, BlockQ5_0, "Q5_0", dot_q5_0_f32, dequant_q5_0);
f32_wrappers!(neon, BlockQ5_1, "Q5_1", dot_q5_1_f32, dequant_q5_1);
f32_wrappers!(neon, BlockIQ4_NL, "IQ4_NL", dot_iq4_nl_f32, dequant_iq4_nl);
f32_wrappers!(kquants, BlockQ4_K, "Q4_K", 256, dot_q4_k_f32, dequant_q4_k);
f32_wrappers!(kquants, BlockQ6_K, "Q6_K", 256, dot_q6_k_f32, dequant_q6_k);
f32_wrappers!(kquants, BlockQ5_K, "Q5_K", 256, dot_q5_k_f32, dequant_q5_k);
f32_wrappers!(
    kquants,
    BlockIQ4_XS,
    "IQ4_XS",
    256,
    dot_iq4_xs_f32,
    dequant_iq4_xs
);
dot_rows_wrapper!(
    dot_rows_q4_k_f32,
    BlockQ4_K,
    "Q4_K",
    256,
    kquants::dot_rows_q4_k_f32
);
dot_rows_wrapper!(
    dot_rows_q6_k_f32,
    BlockQ6_K,
    "Q6_K",
    256,
    kquants::dot_rows_q6_k_f32
);
dot_rows_wrapper!(
    dot_rows_q5_k_f32,
    BlockQ5_K,
    "Q5_K",
    256,
    kquants::dot_rows_q5_k_f32
);
dot_rows_wrapper!(
    dot_rows_iq4_xs_f32,
    BlockIQ4_XS,
    "IQ4_XS",
    256,
    kquants::dot_rows_iq4_xs_f32
);
int8_wrappers!(neon_int8 => int8::neon);
int8_wrappers!(dotprod => int8::dotprod);
f32_wrappers!(
    kquants_low,
    BlockQ3_K,
    "Q3_K",
    256,
    dot_q3_k_f32,
    dequant_q3_k
);
f32_wrappers!(
    kquants_low,
    BlockQ2_K,
    "Q2_K",
    256,
    dot_q2_k_f32,
    dequant_q2_k
);
dot_rows_wrapper!(
    dot_rows_q3_k_f32,
    BlockQ3_K,
    "Q3_K",
    256,
    kquants_low::dot_rows_q3_k_f32
);
dot_rows_wrapper!(
    dot_rows_q2_k_f32,
    BlockQ2_K,
    "Q2_K",
    256,
    kquants_low::dot_rows_q2_k_f32
);
kquant_int8_wrappers!(kq_neon => kquants_int8::neon {
    dot_q4_k_q8, gemm_q4_k_q8: BlockQ4_K "Q4_K";
    dot_q5_k_q8, gemm_q5_k_q8: BlockQ5_K "Q5_K";
    dot_q6_k_q8, gemm_q6_k_q8: BlockQ6_K "Q6_K";
    dot_iq4_xs_q8, gemm_iq4_xs_q8: BlockIQ4_XS "IQ4_XS";
});
kquant_int8_wrappers!(kq_dotprod => kquants_int8::dotprod {
    dot_q4_k_q8, gemm_q4_k_q8: BlockQ4_K "Q4_K";
    dot_q5_k_q8, gemm_q5_k_q8: BlockQ5_K "Q5_K";
    dot_q6_k_q8, gemm_q6_k_q8: BlockQ6_K "Q6_K";
    dot_iq4_xs_q8, gemm_iq4_xs_q8: BlockIQ4_XS "IQ4_XS";
});
kquant_int8_wrappers!(kql_neon => kquants_low_int8::neon {
    dot_q3_k_q8, gemm_q3_k_q8: BlockQ3_K "Q3_K";
    dot_q2_k_q8, gemm_q2_k_q8: BlockQ2_K "Q2_K";
});
kquant_int8_wrappers!(kql_dotprod => kquants_low_int8::dotprod {
    dot_q3_k_q8, gemm_q3_k_q8: BlockQ3_K "Q3_K";
    dot_q2_k_q8, gemm_q2_k_q8: BlockQ2_K "Q2_K";
});

/// F16 row · f32: whole [`f16::LANES`] groups in NEON, the tail in the scalar reference.
fn dot_f16_f32(row: &[u8], x: &[f32]) -> f32 {
    assert_eq!(row.len(), 2 * x.len());
    let n = x.len() - x.len() % f16::LANES;
    // SAFETY: installed only by `install` after `detected` confirmed NEON; the row holds 2n
    // bytes for the n floats passed.
    let head = unsafe { f16::dot_f16_f32(&row[..2 * n], &x[..n]) };
    head + crate::scalar::dot_f16_f32(&row[2 * n..], &x[n..])
}

/// F16 row → f32: whole groups in NEON, the tail in the scalar reference.
fn dequant_f16(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len(), 2 * out.len());
    let n = out.len() - out.len() % f16::LANES;
    let (head, tail) = out.split_at_mut(n);
    // SAFETY: as in `dot_f16_f32` (NEON detected; lengths match, whole groups).
    unsafe { f16::dequant_f16(&row[..2 * n], head) };
    crate::scalar::dequant_f16(&row[2 * n..], tail);
}

/// F16 rows · f32 (decoding's output head): the whole-group head of every row by the NEON row
/// kernel, each row's tail by the scalar reference.
fn dot_rows_f16_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    if y.is_empty() {
        return;
    }
    let stride = 2 * x.len();
    assert_eq!(
        w.len(),
        y.len() * stride,
        "weights are one F16 row per output"
    );
    let n = x.len() - x.len() % f16::ROWS_LANES;
    // SAFETY: installed only by `install` after `detected` confirmed NEON; w.len() =
    // y.len()·stride and stride = 2·x.len() ≥ 2·n.
    unsafe { f16::dot_rows_f16_f32(w, stride, &x[..n], y) };
    if n < x.len() {
        for (yr, row) in y.iter_mut().zip(w.chunks_exact(stride)) {
            *yr += crate::scalar::dot_f16_f32(&row[2 * n..], &x[n..]);
        }
    }
}

/// f32 → f16 activation blocks (whole blocks only, like the reference).
fn quantize_act_f16(x: &[f32], out: &mut [u8]) {
    let blocks: &mut [BlockF16Act] =
        crate::blocks::as_blocks_mut(out).expect("output is whole act blocks");
    assert_eq!(blocks.len() * 32, x.len());
    // SAFETY: installed only by `install` after `detected` confirmed NEON.
    unsafe { fp16::quantize_act_f16(x, blocks) }
}

/// Row · f16 activation wrappers around `fp16::$body` for one block type.
macro_rules! fp16_wrapper {
    ($name:ident, $block:ty, $what:literal) => {
        fn $name(row: &[u8], xh: &[u8]) -> f32 {
            let blocks: &[$block] =
                crate::blocks::as_blocks(row).expect(concat!($what, " row is whole blocks"));
            let acts: &[BlockF16Act] =
                crate::blocks::as_blocks(xh).expect("activations are whole act blocks");
            assert_eq!(acts.len(), blocks.len(), "activation blocks match the row");
            // SAFETY: installed only by `install` after `fp16_detected()` confirmed NEON and
            // FEAT_FP16 (see the wrapper notes).
            unsafe { fp16::$name(blocks, acts) }
        }
    };
}

fp16_wrapper!(dot_q4_0_f16, BlockQ4_0, "Q4_0");
fp16_wrapper!(dot_q4_1_f16, BlockQ4_1, "Q4_1");
fp16_wrapper!(dot_q8_0_f16, BlockQ8_0, "Q8_0");
fp16_wrapper!(dot_q5_0_f16, BlockQ5_0, "Q5_0");
fp16_wrapper!(dot_q5_1_f16, BlockQ5_1, "Q5_1");
fp16_wrapper!(dot_iq4_nl_f16, BlockIQ4_NL, "IQ4_NL");
