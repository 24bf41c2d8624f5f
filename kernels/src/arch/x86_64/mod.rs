//! x86_64: AVX2 + FMA + F16C bodies ([`avx2`], the k-quants in [`kquants`] and
//! [`kquants_low`]), int8 dot products for AVX2, AVX-VNNI and AVX512-VNNI ([`int8`], the
//! k-quants' in [`kquants_int8`] and [`kquants_low_int8`], Q2_K/Q3_K, IQ4_XS and Q5_K on
//! 512-bit registers in [`kquants_low512_int8`], [`iq4_xs512_int8`] and [`q5_k512_int8`], the
//! Q5_0 and Q8_0 decode products in [`q5_0_512_int8`] and [`q8_0_512_int8`]),
//! AVX-512F row kernels ([`avx512`], [`kquants512`], and with AVX-512BW [`kquants_low512`]),
//! the batched int8 GEMM of prompts ([`gemm_i8`] on AVX512-VNNI, [`gemm_i8_avx2`] on the
//! other backends), and the safe wrappers the dispatch table gets after detection.
//!
//! Every backend here builds on AVX2 + FMA + F16C (Haswell, Zen 1 and later all have the
//! three); the VNNI backends replace only the int8 dot products.

mod avx2;
mod avx512;
mod f16;
mod gemm;
mod gemm_i8;
mod gemm_i8_avx2;
mod int8;
mod iq4_xs512_int8;
mod kquants;
mod kquants512;
mod kquants_int8;
mod kquants_low;
mod kquants_low512;
mod kquants_low512_int8;
mod kquants_low_int8;
mod lut;
mod q5_0_512_int8;
mod q5_k512_int8;
mod q8_0_512_int8;
mod repacked;
mod repacked_gemv;
mod ternary;
mod unpack_i8;

use gemm::scalar_rows;

use crate::blocks::{
    BlockIQ4_NL, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};
use crate::dispatch::{Backend, DotQ8Fn, Kernels, Named};
use crate::format::Format;
use crate::scalar::RepackedLayout;

/// Whether this CPU has every feature `backend`'s bodies enable: detected at run time with
/// `std` (`std` caches the answer), from the compile-time target features without it.
#[cfg(feature = "std")]
fn detected(backend: Backend) -> bool {
    use std::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma") && has!("f16c");
    match backend {
        Backend::Avx2 => avx2,
        Backend::AvxVnni => avx2 && has!("avxvnni"),
        // Every CPU with AVX512-VNNI has AVX-512BW (Cascade Lake, Ice Lake, Zen 4 and later);
        // the Q2_K/Q3_K row kernels need it.
        Backend::Avx512Vnni => {
            avx2 && has!("avx512vnni") && has!("avx512vl") && has!("avx512f") && has!("avx512bw")
        }
        _ => false,
    }
}

/// Whether this build's target features include every feature `backend`'s bodies enable.
#[cfg(not(feature = "std"))]
fn detected(backend: Backend) -> bool {
    macro_rules! all {
        ($($f:literal),*) => {
            cfg!(all(target_feature = "avx2", target_feature = "fma", target_feature = "f16c"
                $(, target_feature = $f)*))
        };
    }
    match backend {
        Backend::Avx2 => all!(),
        Backend::AvxVnni => all!("avxvnni"),
        Backend::Avx512Vnni => all!("avx512vnni", "avx512vl", "avx512f", "avx512bw"),
        _ => false,
    }
}

/// Whether the CPU (with `std`) or the build (without) also has AVX512-VBMI (byte permutes),
/// which the AVX-512 Q6_K row kernel needs on top of the AVX512-VNNI backend's features: Ice
/// Lake, Zen 4 and later have it, Cascade Lake (AVX512-VNNI without VBMI) keeps the AVX2
/// kernel.
fn has_vbmi() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512vbmi")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx512vbmi")
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
    k.dot_f32 = named!(dot_f32, "dot_f32/avx2");
    k.axpy = named!(axpy, "axpy/avx2");
    k.axpy_rows_f16 = named!(axpy_rows_f16, "axpy_rows_f16/avx2");
    k.quantize_f16 = named!(quantize_f16, "quantize_f16/avx2");
    k.quantize_act_q8 = named!(quantize_act_q8, "quantize_act_q8/avx2");
    let f = k.format_mut(Format::F16);
    f.dot = named!(dot_f16_f32, "dot_f16_f32/avx2");
    f.dequant = named!(dequant_f16, "dequant_f16/avx2");
    f.dot_rows = Some(if backend == Backend::Avx512Vnni {
        named!(dot_rows_f16_f32_avx512, "dot_rows_f16_f32/avx512")
    } else {
        named!(dot_rows_f16_f32, "dot_rows_f16_f32/avx2")
    });
    let f = k.format_mut(Format::Q4_0);
    f.dot = named!(dot_q4_0_f32, "dot_q4_0_f32/avx2");
    f.dequant = named!(dequant_q4_0, "dequant_q4_0/avx2");
    let f = k.format_mut(Format::Q4_1);
    f.dot = named!(dot_q4_1_f32, "dot_q4_1_f32/avx2");
    f.dequant = named!(dequant_q4_1, "dequant_q4_1/avx2");
    let f = k.format_mut(Format::Q8_0);
    f.dot = named!(dot_q8_0_f32, "dot_q8_0_f32/avx2");
    f.dequant = named!(dequant_q8_0, "dequant_q8_0/avx2");
    let f = k.format_mut(Format::Q5_0);
    f.dot = named!(dot_q5_0_f32, "dot_q5_0_f32/avx2");
    f.dequant = named!(dequant_q5_0, "dequant_q5_0/avx2");
    let f = k.format_mut(Format::Q5_1);
    f.dot = named!(dot_q5_1_f32, "dot_q5_1_f32/avx2");
    f.dequant = named!(dequant_q5_1, "dequant_q5_1/avx2");
    let f = k.format_mut(Format::IQ4_NL);
    f.dot = named!(dot_iq4_nl_f32, "dot_iq4_nl_f32/avx2");
    f.dequant = named!(dequant_iq4_nl, "dequant_iq4_nl/avx2");
    let f = k.format_mut(Format::Q4_K);
    f.dot = named!(dot_q4_k_f32, "dot_q4_k_f32/avx2");
    f.dequant = named!(dequant_q4_k, "dequant_q4_k/avx2");
    f.dot_rows = Some(named!(dot_rows_q4_k_f32, "dot_rows_q4_k_f32/avx2"));
    let f = k.format_mut(Format::Q6_K);
    f.dot = named!(dot_q6_k_f32, "dot_q6_k_f32/avx2");
    f.dequant = named!(dequant_q6_k, "dequant_q6_k/avx2");
    f.dot_rows = Some(named!(dot_rows_q6_k_f32, "dot_rows_q6_k_f32/avx2"));
    let f = k.format_mut(Format::Q5_K);
    f.dot = named!(dot_q5_k_f32, "dot_q5_k_f32/avx2");
    f.dequant = named!(dequant_q5_k, "dequant_q5_k/avx2");
    f.dot_rows = Some(named!(dot_rows_q5_k_f32, "dot_rows_q5_k_f32/avx2"));
    let f = k.format_mut(Format::IQ4_XS);
    f.dot = named!(dot_iq4_xs_f32, "dot_iq4_xs_f32/avx2");
    f.dequant = named!(dequant_iq4_xs, "dequant_iq4_xs/avx2");
    f.dot_rows = Some(named!(dot_rows_iq4_xs_f32, "dot_rows_iq4_xs_f32/avx2"));

    let dots: [Named<DotQ8Fn>; 6] = match backend {
        Backend::AvxVnni => [
            named!(avxvnni::dot_q4_0_q8, "dot_q4_0_q8/avxvnni"),
            named!(avxvnni::dot_q4_1_q8, "dot_q4_1_q8/avxvnni"),
            named!(avxvnni::dot_q8_0_q8, "dot_q8_0_q8/avxvnni"),
            named!(avxvnni::dot_q5_0_q8, "dot_q5_0_q8/avxvnni"),
            named!(avxvnni::dot_q5_1_q8, "dot_q5_1_q8/avxvnni"),
            named!(avxvnni::dot_iq4_nl_q8, "dot_iq4_nl_q8/avxvnni"),
        ],
        Backend::Avx512Vnni => [
            named!(avx512vnni::dot_q4_0_q8, "dot_q4_0_q8/avx512vnni"),
            named!(avx512vnni::dot_q4_1_q8, "dot_q4_1_q8/avx512vnni"),
            named!(avx512vnni::dot_q8_0_q8, "dot_q8_0_q8/avx512vnni"),
            named!(avx512vnni::dot_q5_0_q8, "dot_q5_0_q8/avx512vnni"),
            named!(avx512vnni::dot_q5_1_q8, "dot_q5_1_q8/avx512vnni"),
            named!(avx512vnni::dot_iq4_nl_q8, "dot_iq4_nl_q8/avx512vnni"),
        ],
        _ => [
            named!(avx2_int8::dot_q4_0_q8, "dot_q4_0_q8/avx2"),
            named!(avx2_int8::dot_q4_1_q8, "dot_q4_1_q8/avx2"),
            named!(avx2_int8::dot_q8_0_q8, "dot_q8_0_q8/avx2"),
            named!(avx2_int8::dot_q5_0_q8, "dot_q5_0_q8/avx2"),
            named!(avx2_int8::dot_q5_1_q8, "dot_q5_1_q8/avx2"),
            named!(avx2_int8::dot_iq4_nl_q8, "dot_iq4_nl_q8/avx2"),
        ],
    };
    for (format, dot) in crate::arch::BLOCK32_FORMATS.into_iter().zip(dots) {
        k.format_mut(format).dot_q8 = Some(dot);
    }
    install_kquant_int8!(k, backend, {
        Backend::AvxVnni => kq_avxvnni "avxvnni",
        Backend::Avx512Vnni => kq_avx512vnni "avx512vnni",
        _ => kq_avx2 "avx2",
    }, [
        Q4_K: dot_q4_k_q8, gemm_q4_k_q8;
        Q5_K: dot_q5_k_q8, gemm_q5_k_q8;
        Q6_K: dot_q6_k_q8, gemm_q6_k_q8;
        IQ4_XS: dot_iq4_xs_q8, gemm_iq4_xs_q8;
    ]);
    install_low_kquants(backend, k);
    if backend == Backend::Avx512Vnni {
        let f = k.format_mut(Format::Q2_K);
        f.dot_rows = Some(named!(dot_rows_q2_k_f32_avx512, "dot_rows_q2_k_f32/avx512"));
        // Q2_K's row dot stays the 256-bit one (`kql_avx512vnni`, installed above): with its
        // float part pipelined behind the next block's integers it measured faster than the
        // 512-bit one (8.2–8.5 against 7.8–7.9 GB/s on the bench shapes, Zen 4, loaded).
        f.gemm_q8 = Some(named!(kql512::gemm_q2_k_q8, "gemm_q2_k_q8/avx512vnni"));
        k.format_mut(Format::Q3_K).dot_rows =
            Some(named!(dot_rows_q3_k_f32_avx512, "dot_rows_q3_k_f32/avx512"));
        // Q3_K's row dot stays the 256-bit one (`kql_avx512vnni`): preparing the 512-bit
        // layout and its sub-block sums for every row cost more than it saved (7.9 against
        // 8.5 GB/s on the 576x1536 bench shape, Zen 4, loaded machine).
        k.format_mut(Format::Q3_K).gemm_q8 =
            Some(named!(kql512::gemm_q3_k_q8, "gemm_q3_k_q8/avx512vnni"));
        k.format_mut(Format::IQ4_XS).gemm_q8 =
            Some(named!(kql512::gemm_iq4_xs_q8, "gemm_iq4_xs_q8/avx512vnni"));
        k.format_mut(Format::Q5_K).gemm_q8 =
            Some(named!(kql512::gemm_q5_k_q8, "gemm_q5_k_q8/avx512vnni"));
        k.gemm_i8 = Some(named!(gemm_i8_avx512vnni, "gemm_i8/avx512vnni"));
        k.format_mut(Format::Q4_K).dot_rows =
            Some(named!(dot_rows_q4_k_f32_avx512, "dot_rows_q4_k_f32/avx512"));
        k.format_mut(Format::Q5_K).dot_rows =
            Some(named!(dot_rows_q5_k_f32_avx512, "dot_rows_q5_k_f32/avx512"));
        if has_vbmi() {
            k.format_mut(Format::Q6_K).dot_rows =
                Some(named!(dot_rows_q6_k_f32_avx512, "dot_rows_q6_k_f32/avx512"));
        }
        k.format_mut(Format::IQ4_XS).dot_rows = Some(named!(
            dot_rows_iq4_xs_f32_avx512,
            "dot_rows_iq4_xs_f32/avx512"
        ));
    }
    install_unpack_i8(k);
    if backend != Backend::Avx512Vnni {
        k.gemm_i8 = Some(named!(gemm_i8_avx2, "gemm_i8/avx2"));
    }
    k.gemm_repacked = Some(if backend == Backend::Avx512Vnni {
        named!(gemm_repacked_avx512vnni, "gemm_repacked/avx512vnni")
    } else {
        named!(gemm_repacked_avx2, "gemm_repacked/avx2")
    });
    ternary::install(backend, k);
    gemm::install(backend, k);
    lut::install(k);
    true
}

/// The batched int8 GEMM's `unpack_i8` on every backend here (AVX2 bodies).
fn install_unpack_i8(k: &mut Kernels) {
    use crate::dispatch::UnpackI8Fn;
    let unpacks: [(Format, UnpackI8Fn, &str); 12] = [
        (Format::Q4_0, unpack_i8_q4_0, "unpack_i8_q4_0/avx2"),
        (Format::Q4_1, unpack_i8_q4_1, "unpack_i8_q4_1/avx2"),
        (Format::Q5_0, unpack_i8_q5_0, "unpack_i8_q5_0/avx2"),
        (Format::Q5_1, unpack_i8_q5_1, "unpack_i8_q5_1/avx2"),
        (Format::Q8_0, unpack_i8_q8_0, "unpack_i8_q8_0/avx2"),
        (Format::IQ4_NL, unpack_i8_iq4_nl, "unpack_i8_iq4_nl/avx2"),
        (Format::Q4_K, unpack_i8_q4_k, "unpack_i8_q4_k/avx2"),
        (Format::Q5_K, unpack_i8_q5_k, "unpack_i8_q5_k/avx2"),
        (Format::Q6_K, unpack_i8_q6_k, "unpack_i8_q6_k/avx2"),
        (Format::IQ4_XS, unpack_i8_iq4_xs, "unpack_i8_iq4_xs/avx2"),
        (Format::Q3_K, unpack_i8_q3_k, "unpack_i8_q3_k/avx2"),
        (Format::Q2_K, unpack_i8_q2_k, "unpack_i8_q2_k/avx2"),
    ];
    for (format, f, name) in unpacks {
        k.format_mut(format).unpack_i8 = Some(Named { f, name });
    }
}

/// Q3_K and Q2_K: the AVX2 f32 kernels on every backend (the AVX512-VNNI backend then replaces
/// the row kernels with `kquants_low512`'s), the int8 dots of `backend`'s ISA.
fn install_low_kquants(backend: Backend, k: &mut Kernels) {
    let f = k.format_mut(Format::Q3_K);
    f.dot = named!(dot_q3_k_f32, "dot_q3_k_f32/avx2");
    f.dequant = named!(dequant_q3_k, "dequant_q3_k/avx2");
    f.dot_rows = Some(named!(dot_rows_q3_k_f32, "dot_rows_q3_k_f32/avx2"));
    let f = k.format_mut(Format::Q2_K);
    f.dot = named!(dot_q2_k_f32, "dot_q2_k_f32/avx2");
    f.dequant = named!(dequant_q2_k, "dequant_q2_k/avx2");
    f.dot_rows = Some(named!(dot_rows_q2_k_f32, "dot_rows_q2_k_f32/avx2"));
    install_kquant_int8!(k, backend, {
        Backend::AvxVnni => kql_avxvnni "avxvnni",
        Backend::Avx512Vnni => kql_avx512vnni "avx512vnni",
        _ => kql_avx2 "avx2",
    }, [
        Q3_K: dot_q3_k_q8, gemm_q3_k_q8;
        Q2_K: dot_q2_k_q8, gemm_q2_k_q8;
    ]);
    // The GEMMs share each super-block's activation sums between rows (their own bodies
    // rather than the row dot in a loop).
    k.format_mut(Format::Q2_K).gemm_q8 = Some(match backend {
        Backend::AvxVnni => named!(low_gemm::q2_k_avxvnni, "gemm_q2_k_q8/avxvnni"),
        Backend::Avx512Vnni => named!(low_gemm::q2_k_avx512vnni, "gemm_q2_k_q8/avx512vnni"),
        _ => named!(low_gemm::q2_k_avx2, "gemm_q2_k_q8/avx2"),
    });
    k.format_mut(Format::Q3_K).gemm_q8 = Some(match backend {
        Backend::AvxVnni => named!(low_gemm::q3_k_avxvnni, "gemm_q3_k_q8/avxvnni"),
        Backend::Avx512Vnni => named!(low_gemm::q3_k_avx512vnni, "gemm_q3_k_q8/avx512vnni"),
        _ => named!(low_gemm::q3_k_avx2, "gemm_q3_k_q8/avx2"),
    });
}

// ---- safe wrappers -----------------------------------------------------------------------
// Wrapper notes: `install` is the only code that names these private wrappers, and it runs
// only after `detected(backend)` returned true. Every body enables `avx2,fma,f16c`, which every
// backend here requires; the `avxvnni` and `avx512vnni` int8 bodies additionally enable
// `avxvnni` or `avx512vnni,avx512vl`, and `install` puts them in the table only for the
// backend that detected exactly those; the AVX-512 row kernels (`*_avx512`) additionally enable
// `avx512f` (Q2_K's, Q3_K's, Q5_0's and Q6_K's also `avx512bw`, Q5_0's `avx512vl`), and
// `install` puts them in the table only for the AVX512-VNNI backend, whose detection includes
// all three; Q6_K's also enables `avx512vbmi`, and is installed only when `has_vbmi` found it.

vec_wrappers!(avx2);
kv_f16_wrappers!(f16);
f32_wrappers!(avx2, BlockQ4_0, "Q4_0", dot_q4_0_f32, dequant_q4_0);
f32_wrappers!(avx2, BlockQ4_1, "Q4_1", dot_q4_1_f32, dequant_q4_1);
f32_wrappers!(avx2, BlockQ8_0, "Q8_0", dot_q8_0_f32, dequant_q8_0);
f32_wrappers!(avx2, BlockQ5_0, "Q5_0", dot_q5_0_f32, dequant_q5_0);
f32_wrappers!(avx2, BlockQ5_1, "Q5_1", dot_q5_1_f32, dequant_q5_1);
f32_wrappers!(avx2, BlockIQ4_NL, "IQ4_NL", dot_iq4_nl_f32, dequant_iq4_nl);
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
// Installed only for the AVX512-VNNI backend, whose detection includes `avx512f`.
dot_rows_wrapper!(
    dot_rows_q4_k_f32_avx512,
    BlockQ4_K,
    "Q4_K",
    256,
    kquants512::dot_rows_q4_k_f32,
    above kquants512::KQ_MAX => dot_q4_k_f32,
);
// Installed only for the AVX512-VNNI backend, whose detection includes `avx512f`.
dot_rows_wrapper!(
    dot_rows_q5_k_f32_avx512,
    BlockQ5_K,
    "Q5_K",
    256,
    kquants512::dot_rows_q5_k_f32,
    above kquants512::KQ_MAX => dot_q5_k_f32,
);
/// Q6_K rows by the AVX-512 kernel, whose codes carry a factor 2^24 (`kquants512::rows_q6_k`):
/// its partial sums reach `2^31·max|x|`, so calls whose activations reach
/// [`kquants512::Q6_K_X_LIMIT`] take the AVX2 row kernel, where the reference's sums may still
/// be finite. (One pass over `x` per call, against a pass over `y.len()` rows of weights.)
fn dot_rows_q6_k_f32_avx512(w: &[u8], x: &[f32], y: &mut [f32]) {
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max >= kquants512::Q6_K_X_LIMIT {
        dot_rows_q6_k_f32(w, x, y)
    } else {
        q6_k_rows_avx512(w, x, y)
    }
}

// Installed (through `dot_rows_q6_k_f32_avx512`) only for the AVX512-VNNI backend (whose
// detection includes `avx512bw`), and only when `has_vbmi` found `avx512vbmi`.
dot_rows_wrapper!(
    q6_k_rows_avx512,
    BlockQ6_K,
    "Q6_K",
    256,
    kquants512::dot_rows_q6_k_f32,
    above kquants512::KQ_MAX => dot_q6_k_f32,
);
// Installed only for the AVX512-VNNI backend, as above.
dot_rows_wrapper!(
    dot_rows_iq4_xs_f32_avx512,
    BlockIQ4_XS,
    "IQ4_XS",
    256,
    kquants512::dot_rows_iq4_xs_f32,
    above gemm::PRESCALE_MAX => dot_iq4_xs_f32,
);
int8_wrappers!(avx2_int8 => int8::avx2);
int8_wrappers!(avxvnni => int8::avxvnni);
int8_wrappers!(avx512vnni => int8::avx512vnni);
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
    kquants_low::dot_rows_q2_k_f32,
    above gemm::PRESCALE_MAX => dot_q2_k_f32,
);
// Installed only for the AVX512-VNNI backend, whose detection includes `avx512f` and `avx512bw`.
dot_rows_wrapper!(
    dot_rows_q3_k_f32_avx512,
    BlockQ3_K,
    "Q3_K",
    256,
    kquants_low512::dot_rows_q3_k_f32,
    above gemm::PRESCALE_MAX => dot_q3_k_f32,
);
// Installed only for the AVX512-VNNI backend, whose detection includes `avx512f` and `avx512bw`.
dot_rows_wrapper!(
    dot_rows_q2_k_f32_avx512,
    BlockQ2_K,
    "Q2_K",
    256,
    kquants_low512::dot_rows_q2_k_f32,
    above gemm::PRESCALE_MAX => dot_q2_k_f32,
);
/// Q2_K's and Q3_K's int8 GEMMs over the 256-bit bodies (`kquants_low_int8`), which prepare
/// each super-block of activations once for many rows: one wrapper per instruction set and
/// format, each installed only for its own backend by `install_low_kquants`.
mod low_gemm {
    use super::kquants_low_int8 as body;
    use crate::blocks::{as_blocks, BlockQ2_K, BlockQ3_K};
    use crate::scalar::{act_q8_bytes, gemm_shape, row_blocks, BlockQ8Act};

    macro_rules! low_gemm {
        ($($name:ident => $isa:ident::$gemm:ident, $block:ident $what:literal;)*) => {$(
            pub(super) fn $name(
                w: &[u8],
                m: usize,
                xq: &[u8],
                n: usize,
                y: &mut [f32],
                ldy: usize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let (rb, qb) = gemm_shape(w, m, xq.len(), n, y, ldy);
                let kb = row_blocks(rb, core::mem::size_of::<$block>());
                assert_eq!(qb, act_q8_bytes(256 * kb), "activation rows match the weight rows");
                let blocks: &[$block] =
                    as_blocks(w).expect(concat!($what, " rows are whole blocks"));
                let acts: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole blocks");
                // SAFETY: installed only by `install_low_kquants` for the backend whose
                // features this body enables, after `detected` confirmed them (see the
                // wrapper notes); the shapes were checked above.
                unsafe { body::$isa::$gemm(blocks, m, kb, acts, n, y, ldy) }
            }
        )*};
    }

    low_gemm! {
        q2_k_avx2 => avx2::gemm_q2_k_q8, BlockQ2_K "Q2_K";
        q2_k_avxvnni => avxvnni::gemm_q2_k_q8, BlockQ2_K "Q2_K";
        q2_k_avx512vnni => avx512vnni::gemm_q2_k_q8, BlockQ2_K "Q2_K";
        q3_k_avx2 => avx2::gemm_q3_k_q8, BlockQ3_K "Q3_K";
        q3_k_avxvnni => avxvnni::gemm_q3_k_q8, BlockQ3_K "Q3_K";
        q3_k_avx512vnni => avx512vnni::gemm_q3_k_q8, BlockQ3_K "Q3_K";
    }
}

/// Q2_K and Q3_K int8 wrappers, and the IQ4_XS and Q5_K GEMMs, over the 512-bit bodies
/// (`kquants_low512_int8`, `iq4_xs512_int8`, `q5_k512_int8`), installed only for the
/// AVX512-VNNI backend, whose detection includes every feature they enable.
mod kql512 {
    use super::iq4_xs512_int8 as iq4_xs;
    use super::kquants_low512_int8 as body;
    use super::q5_k512_int8 as q5_k;
    use crate::blocks::{as_blocks, BlockIQ4_XS, BlockQ2_K, BlockQ3_K, BlockQ5_K};
    use crate::scalar::{act_q8_bytes, gemm_shape, row_blocks, BlockQ8Act};

    macro_rules! gemm_wrapper {
        ($body:ident: $gemm:ident, $block:ident, $what:literal) => {
            pub(super) fn $gemm(
                w: &[u8],
                m: usize,
                xq: &[u8],
                n: usize,
                y: &mut [f32],
                ldy: usize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let (rb, qb) = gemm_shape(w, m, xq.len(), n, y, ldy);
                let kb = row_blocks(rb, core::mem::size_of::<$block>());
                assert_eq!(
                    qb,
                    act_q8_bytes(256 * kb),
                    "activation rows match the weight rows"
                );
                let blocks: &[$block] =
                    as_blocks(w).expect(concat!($what, " rows are whole blocks"));
                let acts: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole blocks");
                // SAFETY: as in the row dots (installed only for the AVX512-VNNI backend after
                // its detection); the shapes were checked above.
                unsafe { $body::$gemm(blocks, m, kb, acts, n, y, ldy) }
            }
        };
    }

    gemm_wrapper!(body: gemm_q2_k_q8, BlockQ2_K, "Q2_K");
    gemm_wrapper!(body: gemm_q3_k_q8, BlockQ3_K, "Q3_K");
    // IQ4_XS's single-row dot stays the 256-bit one (`kq_avx512vnni`): without rows to share
    // the activation work it measured slower (9.5 against 11.2 GB/s).
    gemm_wrapper!(iq4_xs: gemm_iq4_xs_q8, BlockIQ4_XS, "IQ4_XS");
    gemm_wrapper!(q5_k: gemm_q5_k_q8, BlockQ5_K, "Q5_K");
}

/// Prefetches into L1 the cache lines [`gemm::PREFETCH_AHEAD`] bytes past each of `row`'s: the
/// int8 k-quant GEMMs run their row dot row after row, and for one token (decoding) the rows
/// ahead stream from memory, past 4 KiB pages where the hardware prefetcher stops (as the row
/// kernels in `gemm.rs` do).
fn prefetch_past(row: &[u8]) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let p = row.as_ptr();
    let mut off = 0;
    while off < row.len() {
        // SAFETY: SSE is part of the x86_64 baseline, so the CPU has `_mm_prefetch`'s feature;
        // PREFETCH never faults, whatever the address, and `wrapping_add` keeps the pointer
        // arithmetic defined past the end of the weights.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(gemm::PREFETCH_AHEAD + off).cast()) };
        off += 64;
    }
}

kquant_int8_wrappers!(kq_avx2 => kquants_int8::avx2, prefetch = prefetch_past {
    dot_q4_k_q8, gemm_q4_k_q8: BlockQ4_K "Q4_K";
    dot_q5_k_q8, gemm_q5_k_q8: BlockQ5_K "Q5_K";
    dot_q6_k_q8, gemm_q6_k_q8: BlockQ6_K "Q6_K";
    dot_iq4_xs_q8, gemm_iq4_xs_q8: BlockIQ4_XS "IQ4_XS";
});
kquant_int8_wrappers!(kq_avxvnni => kquants_int8::avxvnni, prefetch = prefetch_past {
    dot_q4_k_q8, gemm_q4_k_q8: BlockQ4_K "Q4_K";
    dot_q5_k_q8, gemm_q5_k_q8: BlockQ5_K "Q5_K";
    dot_q6_k_q8, gemm_q6_k_q8: BlockQ6_K "Q6_K";
    dot_iq4_xs_q8, gemm_iq4_xs_q8: BlockIQ4_XS "IQ4_XS";
});
kquant_int8_wrappers!(kq_avx512vnni => kquants_int8::avx512vnni, prefetch = prefetch_past {
    dot_q4_k_q8, gemm_q4_k_q8: BlockQ4_K "Q4_K";
    dot_q5_k_q8, gemm_q5_k_q8: BlockQ5_K "Q5_K";
    dot_q6_k_q8, gemm_q6_k_q8: BlockQ6_K "Q6_K";
    dot_iq4_xs_q8, gemm_iq4_xs_q8: BlockIQ4_XS "IQ4_XS";
});
kquant_int8_wrappers!(kql_avx2 => kquants_low_int8::avx2, prefetch = prefetch_past {
    dot_q3_k_q8, gemm_q3_k_q8: BlockQ3_K "Q3_K";
    dot_q2_k_q8, gemm_q2_k_q8: BlockQ2_K "Q2_K";
});
kquant_int8_wrappers!(kql_avxvnni => kquants_low_int8::avxvnni, prefetch = prefetch_past {
    dot_q3_k_q8, gemm_q3_k_q8: BlockQ3_K "Q3_K";
    dot_q2_k_q8, gemm_q2_k_q8: BlockQ2_K "Q2_K";
});
kquant_int8_wrappers!(kql_avx512vnni => kquants_low_int8::avx512vnni, prefetch = prefetch_past {
    dot_q3_k_q8, gemm_q3_k_q8: BlockQ3_K "Q3_K";
    dot_q2_k_q8, gemm_q2_k_q8: BlockQ2_K "Q2_K";
});

/// `unpack_i8` wrappers: whole blocks of the format, handed to the AVX2 body.
macro_rules! unpack_i8_wrappers {
    ($($name:ident: $block:ty => $body:ident;)*) => {$(
        fn $name(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]) {
            let blocks: &[$block] = crate::blocks::as_blocks(row).expect("row is whole blocks");
            // SAFETY: installed only by `install` after `detected` confirmed AVX2, FMA and
            // F16C; the body checks the slices' lengths against the blocks.
            unsafe { unpack_i8::$body(blocks, codes, scales, bias) }
        }
    )*};
}
unpack_i8_wrappers! {
    unpack_i8_q4_0: BlockQ4_0 => unpack_i8_block32;
    unpack_i8_q4_1: BlockQ4_1 => unpack_i8_block32;
    unpack_i8_q5_0: BlockQ5_0 => unpack_i8_block32;
    unpack_i8_q5_1: BlockQ5_1 => unpack_i8_block32;
    unpack_i8_q8_0: BlockQ8_0 => unpack_i8_block32;
    unpack_i8_iq4_nl: BlockIQ4_NL => unpack_i8_block32;
    unpack_i8_q4_k: BlockQ4_K => unpack_i8_q4_k;
    unpack_i8_q5_k: BlockQ5_K => unpack_i8_q5_k;
    unpack_i8_q6_k: BlockQ6_K => unpack_i8_q6_k;
    unpack_i8_iq4_xs: BlockIQ4_XS => unpack_i8_iq4_xs;
    unpack_i8_q3_k: BlockQ3_K => unpack_i8_q3_k;
    unpack_i8_q2_k: BlockQ2_K => unpack_i8_q2_k;
}

/// The batched int8 GEMM on AVX512-VNNI (installed only for the AVX512-VNNI backend, whose
/// detection includes AVX-512F, AVX512-VNNI and AVX512-VL).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
fn gemm_i8_avx512vnni(
    format: Format,
    unpack: crate::dispatch::UnpackI8Fn,
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    // SAFETY: installed only for the AVX512-VNNI backend after `detected` confirmed AVX2, FMA,
    // F16C, AVX-512F, AVX512-VNNI and AVX512-VL; the body checks every shape itself.
    unsafe { gemm_i8::gemm_i8(format, unpack, w, m, xq, n, y, ldy) }
}

/// The batched int8 GEMM on AVX2 (every backend here; AVX512-VNNI installs its own).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
fn gemm_i8_avx2(
    format: Format,
    unpack: crate::dispatch::UnpackI8Fn,
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    // SAFETY: installed only after `detected` confirmed AVX2, FMA and F16C; the body checks
    // every shape itself.
    unsafe { gemm_i8_avx2::gemm_i8(format, unpack, w, m, xq, n, y, ldy) }
}

/// A repacked int8 GEMM entry point for one backend: NEON's signed Q8_0 layout (which x86 never
/// repacks into: `vpdpbusd` wants unsigned codes) through the reference, so that every layout
/// works everywhere; one token of the layouts the one-token path has through
/// `repacked_gemv::$gemv`; the rest through the `$tile` register tiles.
macro_rules! gemm_repacked_entry {
    ($(#[$doc:meta])* $name:ident, $gemv:ident, $tile:ty) => {
        $(#[$doc])*
        #[expect(
            clippy::too_many_arguments,
            reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
        )]
        fn $name(
            layout: RepackedLayout,
            w: &[u8],
            m: usize,
            cols: usize,
            xq: &[u8],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            use repacked_gemv::{$gemv, Iq4Nl, Iq4Xs, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
            if layout.signed() {
                return crate::scalar::gemm_repacked(layout, w, m, cols, xq, n, y, ldy);
            }
            if n == 1 && m > 0 {
                // SAFETY: installed only for the backend named in this function's docs, after
                // `detected` confirmed `$gemv`'s features; `$gemv` checks every shape.
                unsafe {
                    match layout.format() {
                        Format::Q4_0 => return $gemv::<Q4_0>(w, m, cols, xq, y),
                        Format::Q4_1 => return $gemv::<Q4_1>(w, m, cols, xq, y),
                        Format::Q8_0 => return $gemv::<Q8_0>(w, m, cols, xq, y),
                        Format::IQ4_NL => return $gemv::<Iq4Nl>(w, m, cols, xq, y),
                        Format::Q5_0 => return $gemv::<Q5_0>(w, m, cols, xq, y),
                        Format::Q5_1 => return $gemv::<Q5_1>(w, m, cols, xq, y),
                        Format::IQ4_XS => return $gemv::<Iq4Xs>(w, m, cols, xq, y),
                        _ => {}
                    }
                }
            }
            // SAFETY: as above, for the tiles' features; the driver checks every shape.
            unsafe {
                crate::arch::repacked::gemm_repacked::<$tile>(layout, w, m, cols, xq, n, y, ldy)
            }
        }
    };
}

gemm_repacked_entry!(
    /// The int8 GEMM over the repacked formats on AVX512-VNNI (installed only for that
    /// backend, whose detection includes AVX-512F, AVX512-VNNI, AVX512-VL and AVX512-BW).
    gemm_repacked_avx512vnni, gemv512, repacked::Avx512
);

gemm_repacked_entry!(
    /// The int8 GEMM over the repacked formats on AVX2 (every backend here; installed after
    /// `detected` confirmed AVX2, FMA and F16C).
    gemm_repacked_avx2, gemv256, repacked::Avx2
);

/// F16 row · f32: F16C converts the whole 8-lane groups, the scalar reference takes the tail.
fn dot_f16_f32(row: &[u8], x: &[f32]) -> f32 {
    assert_eq!(row.len(), 2 * x.len());
    let n = x.len() - x.len() % f16::LANES;
    // SAFETY: installed only by `install` after `detected` confirmed AVX2, FMA and F16C; the
    // head slices keep row.len() == 2·x.len() with a whole number of lanes.
    let head = unsafe { f16::dot_f16_f32(&row[..2 * n], &x[..n]) };
    head + crate::scalar::dot_f16_f32(&row[2 * n..], &x[n..])
}

/// F16 rows · f32 (decoding's output head): the whole-lane head of every row by the AVX2 row
/// kernel, the tail by the scalar reference.
fn dot_rows_f16_f32(w: &[u8], x: &[f32], y: &mut [f32]) {
    let stride = check_rows_f16(w, x, y);
    let n = x.len() - x.len() % f16::ROWS_LANES;
    // SAFETY: installed only by `install` after `detected` confirmed AVX2, FMA and F16C;
    // `check_rows_f16` checked w.len() = y.len()·stride and stride = 2·x.len() ≥ 2·n.
    unsafe { f16::dot_rows_f16_f32(w, stride, &x[..n], y) };
    add_f16_tails(w, stride, x, n, y);
}

/// As [`dot_rows_f16_f32`], with the AVX-512F row kernel (installed only for the AVX512-VNNI
/// backend, whose detection includes `avx512f`).
fn dot_rows_f16_f32_avx512(w: &[u8], x: &[f32], y: &mut [f32]) {
    let stride = check_rows_f16(w, x, y);
    let n = x.len() - x.len() % f16::ROWS_LANES_512;
    // SAFETY: installed only for the AVX512-VNNI backend after `detected` confirmed AVX2, FMA,
    // F16C and AVX-512F; shapes as in `dot_rows_f16_f32`.
    unsafe { f16::dot_rows_f16_f32_avx512(w, stride, &x[..n], y) };
    add_f16_tails(w, stride, x, n, y);
}

/// Checks a row kernel call's shapes: whole rows of `2·x.len()` bytes, one per output.
fn check_rows_f16(w: &[u8], x: &[f32], y: &[f32]) -> usize {
    let stride = 2 * x.len();
    assert_eq!(
        w.len(),
        y.len() * stride,
        "weights are one F16 row per output"
    );
    stride
}

/// `y[r] += row r · x` over the halves from `n` on (the scalar reference's tail).
fn add_f16_tails(w: &[u8], stride: usize, x: &[f32], n: usize, y: &mut [f32]) {
    if n < x.len() {
        for (yr, row) in y.iter_mut().zip(w.chunks_exact(stride)) {
            *yr += crate::scalar::dot_f16_f32(&row[2 * n..], &x[n..]);
        }
    }
}

/// F16 row → f32, whole lanes by F16C, the tail by the scalar reference.
fn dequant_f16(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len(), 2 * out.len());
    let n = out.len() - out.len() % f16::LANES;
    let (head, tail) = out.split_at_mut(n);
    // SAFETY: as in `dot_f16_f32` (AVX2 and F16C detected; lengths match, whole lanes).
    unsafe { f16::dequant_f16(&row[..2 * n], head) };
    crate::scalar::dequant_f16(&row[2 * n..], tail);
}
