//! One table of kernel functions, chosen once and passed explicitly.
//!
//! [`Kernels::scalar`] fills every slot with the reference implementation; a SIMD [`Backend`]
//! starts from it and overwrites the slots it implements, after checking that the CPU has its
//! features (run-time detection with the `std` feature, the compile-time target features
//! without). [`Kernels::best`] picks the best backend the CPU supports,
//! [`Kernels::with_backend`] forces one (tests, `tern bench --kernels`). The model holds a
//! `&Kernels`; there is no global state.

use crate::format::Format;
use crate::scalar;

/// Dot product of one row of weights (GGUF bytes of whole blocks) with f32 activations.
pub type DotFn = fn(row: &[u8], x: &[f32]) -> f32;
/// Dequantizes one row of weights (GGUF bytes of whole blocks) to f32.
pub type DequantFn = fn(row: &[u8], out: &mut [f32]);
/// Dot product of one row of weights with int8 activations: `xq` holds the
/// [`scalar::BlockQ8Act`] blocks [`Kernels::quantize_act_q8`] wrote for the f32 activations.
/// Activation codes must lie in [−127, 127], as the quantizer writes them: the SIMD paths rely
/// on it to never saturate (a −128 gives an unspecified, memory-safe result).
pub type DotQ8Fn = fn(row: &[u8], xq: &[u8]) -> f32;
/// f32 values → an F16 row ([`scalar::quantize_f16`]): the f16 KV cache's stores.
pub type QuantizeF16Fn = fn(x: &[f32], out: &mut [u8]);
/// Dot product of one row of weights with f16 activations: `xh` holds the
/// [`scalar::BlockF16Act`] blocks [`Kernels::quantize_act_f16`] wrote for the f32 activations,
/// and the result follows the arithmetic contract of `scalar::act_f16` bit for bit.
pub type DotF16Fn = fn(row: &[u8], xh: &[u8]) -> f32;
/// Dot product of two f32 vectors of equal length.
pub type DotF32Fn = fn(a: &[f32], b: &[f32]) -> f32;
/// `y[i] += a · x[i]`.
pub type AxpyFn = fn(y: &mut [f32], a: f32, x: &[f32]);
/// `y[i] += Σ_p a[p] · row p[i]` over `a.len()` F16 rows of `y.len()` halves, back to back
/// ([`scalar::axpy_rows_f16`]): attention over an f16 value cache, one call per head.
pub type AxpyRowsF16Fn = fn(y: &mut [f32], a: &[f32], rows: &[u8]);
/// Quantizes f32 activations (a multiple of 32) to [`scalar::BlockQ8Act`] blocks
/// ([`scalar::act_q8_bytes`] bytes).
pub type QuantizeActFn = fn(x: &[f32], out: &mut [u8]);
/// `y[r] = row r · x` for the `y.len()` rows of weights in `w` (whole rows, back to back):
/// decoding's matrix-vector product, several rows per call so activation loads and per-block
/// work are shared and the rows ahead are prefetched.
pub type DotRowsFn = fn(w: &[u8], x: &[f32], y: &mut [f32]);
/// `y[t·ldy + r] = row r · token t` for `m` weight rows in `w` and `n` rows of int8
/// activations in `xq` ([`scalar::act_q8_bytes`] each): the int8 path's product for decoding
/// (`n = 1`) and prompts, reusing each weight block across tokens.
pub type GemmQ8Fn = fn(w: &[u8], m: usize, xq: &[u8], n: usize, y: &mut [f32], ldy: usize);
/// `y[t·ldy + r] = a[r] · b[t]` for `m` rows of `a` and `n` rows of `b` of equal width: prompt
/// processing with f32 activations, over weight rows dequantized once.
pub type GemmF32Fn = fn(a: &[f32], m: usize, b: &[f32], n: usize, y: &mut [f32], ldy: usize);
/// Decodes one row of weights (whole blocks) into the batched int8 GEMM's form
/// ([`crate::format::Int8Layout`]): one code per weight, one scale per group, and for formats
/// with a bias one bias per group (`bias` is left alone otherwise).
pub type UnpackI8Fn = fn(row: &[u8], codes: &mut [i8], scales: &mut [f32], bias: &mut [f32]);
/// `y[t·ldy + r] = row r · token t` for `m` rows of `format` weights and `n` rows of int8
/// activations ([`scalar::act_q8_bytes`] each), through `unpack` (the format's `unpack_i8`):
/// prompt processing at int8 precision, with the arithmetic of [`scalar::gemm_i8`] bit for bit.
pub type GemmI8Fn = fn(
    format: Format,
    unpack: UnpackI8Fn,
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
);
/// `y[t·ldy + r] = row r · token t` for the `m` rows of `cols` weights of a matrix `w` repacked
/// in `layout` (Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0, Q5_1 or IQ4_XS: [`scalar::repack`]; any layout,
/// though a backend is fast on the one [`Kernels::repacked_layout`] names) and `n` rows of int8
/// activations ([`scalar::act_q8_bytes`] each), with the arithmetic of [`scalar::gemm_repacked`]
/// bit for bit (which is [`scalar::gemm_i8`]'s on the matrix's GGUF bytes).
pub type GemmRepackedFn = fn(
    layout: scalar::RepackedLayout,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
);
/// `x[i] = exp(x[i])` through the table exp ([`scalar::exp_lut_f32`]).
pub type ExpFn = fn(x: &mut [f32]);
/// Softmax in place through the table exp ([`scalar::softmax_lut_f32`]).
pub type SoftmaxFn = fn(x: &mut [f32]);
/// `gate[i] = silu(gate[i]) · up[i]` through the table exp ([`scalar::swiglu_lut_f32`]).
pub type SwigluFn = fn(gate: &mut [f32], up: &[f32]);

/// Dot product of one row of ternary weights (TQ1_0, TQ2_0, I2_S) with one token's per-token
/// int8 activations, without the activation scale: bit-identical on every backend (see
/// [`scalar::ActQ8Row`] and the exactness contract of `scalar::ternary_int8`).
pub type DotQ8RowFn = fn(row: &[u8], act: &scalar::ActQ8Row<'_>) -> f32;
/// Decodes one row of ternary weights to one code byte per weight and its block scales
/// ([`scalar::unpack_tq2_0`]).
pub type UnpackFn = fn(row: &[u8], codes: &mut [u8], scales: &mut [f32]);
/// Rows × tokens of unpacked ternary codes against per-token int8 activations
/// ([`scalar::gemm_codes_q8row`]).
pub type GemmCodesFn =
    fn(codes: &[u8], rows: usize, scales: &[f32], acts: &[scalar::ActQ8Row<'_>], out: &mut [f32]);
/// Builds one token's ternary lookup tables ([`scalar::lut_tables`]).
pub type LutTablesFn = fn(qs: &[i8], tables: &mut [u8]);
/// One 32-row index tile against one token's lookup tables ([`scalar::lut_gemv`]).
pub type LutGemvFn = fn(tile: &[u8], tables: &[u8], scales: &[f32], out: &mut [f32; 32]);
/// One 32-row index tile back to row-major codes ([`scalar::lut_unpack_tile`]).
pub type LutUnpackFn = fn(tile: &[u8], codes: &mut [u8]);
/// One token's activations → per-token int8 codes and 128-run sums, returning the step
/// ([`scalar::quantize_act_q8_row`]).
pub type QuantizeActRowFn = fn(x: &[f32], qs: &mut [i8], sums: &mut [i32]) -> Option<f32>;

/// A kernel function with the name `tern inspect` and `tern bench` print.
#[derive(Clone, Copy, Debug)]
pub struct Named<F> {
    /// The function.
    pub f: F,
    /// What it is, e.g. `"dot_q4_1_f32/scalar"`.
    pub name: &'static str,
}

/// The kernels of one weight format.
#[derive(Clone, Copy, Debug)]
pub struct FormatKernels {
    /// Row · f32 activations.
    pub dot: Named<DotFn>,
    /// Row → f32.
    pub dequant: Named<DequantFn>,
    /// Row · int8 activations (the fast path), for formats that have one.
    pub dot_q8: Option<Named<DotQ8Fn>>,
    /// Row · f16 activations, for formats that have one on this backend: the scalar table
    /// holds the references (which emulate f16 arithmetic); a SIMD backend keeps the slot only
    /// where the CPU does f16 arithmetic natively (aarch64 FEAT_FP16), so elsewhere the
    /// runtime's f16 precision falls back to the faster and more accurate f32 kernels.
    pub dot_f16: Option<Named<DotF16Fn>>,
    /// Many rows · f32 activations, for formats that have a multi-row kernel (the runtime
    /// loops over `dot` otherwise).
    pub dot_rows: Option<Named<DotRowsFn>>,
    /// Many rows · many int8 activation rows, for formats that have one (the runtime loops
    /// over `dot_q8` otherwise).
    pub gemm_q8: Option<Named<GemmQ8Fn>>,
    /// Row → the batched int8 GEMM's codes, scales and biases, for formats it takes.
    pub unpack_i8: Option<Named<UnpackI8Fn>>,
    /// Ternary formats: row · per-token int8 activations (BitNet's integer path).
    pub dot_q8_row: Option<Named<DotQ8RowFn>>,
    /// Ternary formats: row → one code byte per weight and block scales.
    pub unpack: Option<Named<UnpackFn>>,
}

impl FormatKernels {
    /// The two kernels every format has; optional slots start empty.
    pub const fn new(dot: Named<DotFn>, dequant: Named<DequantFn>) -> Self {
        FormatKernels {
            dot,
            dequant,
            dot_q8: None,
            dot_f16: None,
            dot_rows: None,
            gemm_q8: None,
            unpack_i8: None,
            dot_q8_row: None,
            unpack: None,
        }
    }
}

/// A set of kernel implementations, named as `--kernels` names them.
///
/// Each SIMD backend includes the ones it builds on: [`Backend::AvxVnni`] is
/// [`Backend::Avx2`] with VNNI int8 dots, [`Backend::NeonDotprod`] is [`Backend::Neon`] with
/// `sdot` int8 dots, [`Backend::NeonI8mm`] is [`Backend::NeonDotprod`] with `smmla` batched
/// int8 GEMMs. Slots a backend does not implement stay scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// The reference kernels, on every CPU.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 with AVX-VNNI (`vpdpbusd`, VEX) int8 dots.
    AvxVnni,
    /// AVX2 with AVX512-VNNI + AVX512-VL (`vpdpbusd` on 256-bit registers) int8 dots, and
    /// AVX-512F row kernels for f32 decoding.
    Avx512Vnni,
    /// aarch64 NEON (Advanced SIMD, every ARMv8-A core).
    Neon,
    /// NEON with the ARMv8.2 dot product extension (`sdot`) for the int8 dots.
    NeonDotprod,
    /// [`Backend::NeonDotprod`] with the ARMv8.6 int8 matrix multiply extension (`smmla`) for
    /// the batched int8 GEMMs of prompt processing.
    NeonI8mm,
}

impl Backend {
    /// Every backend, best first: the order [`Kernels::best`] tries them in.
    pub const ALL: [Backend; 7] = [
        Backend::Avx512Vnni,
        Backend::AvxVnni,
        Backend::Avx2,
        Backend::NeonI8mm,
        Backend::NeonDotprod,
        Backend::Neon,
        Backend::Scalar,
    ];

    /// The name `--kernels` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::AvxVnni => "avxvnni",
            Backend::Avx512Vnni => "avx512vnni",
            Backend::Neon => "neon",
            Backend::NeonDotprod => "neon-dotprod",
            Backend::NeonI8mm => "neon-i8mm",
        }
    }

    /// The backend called `name` (see [`Backend::name`]).
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether the backend's int8 dot products are fast enough that int8 activations should
    /// be the default (the runtime's `ActivationPrecision::Auto`). Chosen by measurement
    /// (issue 16): under qemu the dotprod and i8mm levels execute 2.6–4× the instructions per
    /// decoded token in f32 that they do in int8 (SmolLM2 Q4_0/Q4_1/Q8_0/Q4_K_M); on x86 even
    /// plain AVX2 (`vpmaddubsw`, no VNNI) decodes SmolLM2 Q4_1 2.7× and Gemma 3 270M 2.2× as
    /// fast in int8, one thread. NEON without dotprod, unmeasured, stays f32.
    pub const fn has_fast_int8_dot(self) -> bool {
        matches!(
            self,
            Backend::Avx2
                | Backend::AvxVnni
                | Backend::Avx512Vnni
                | Backend::NeonDotprod
                | Backend::NeonI8mm
        )
    }

    /// Whether this CPU (and this build's architecture) supports the backend.
    pub fn is_available(self) -> bool {
        Kernels::with_backend(self).is_some()
    }
}

/// The dispatch table.
#[derive(Clone, Debug)]
pub struct Kernels {
    formats: [FormatKernels; Format::COUNT],
    /// f32 · f32: attention scores, and batched matmul after dequantization.
    pub dot_f32: Named<DotF32Fn>,
    /// `y += a·x`: attention's weighted sum of f32 values.
    pub axpy: Named<AxpyFn>,
    /// `y += Σ a[p]·row p`: attention's weighted sum of f16 values (the default KV cache;
    /// its scores use the F16 format's `dot_rows`).
    pub axpy_rows_f16: Named<AxpyRowsF16Fn>,
    /// f32 → f16 with IEEE rounding: keys and values into the f16 KV cache.
    pub quantize_f16: Named<QuantizeF16Fn>,
    /// f32 rows × f32 rows: prompt processing over dequantized weights.
    pub gemm_f32: Named<GemmF32Fn>,
    /// Rows of any format with an `unpack_i8` × int8 activation rows: prompt processing at
    /// int8 precision ([`Kernels::gemm_i8`]). The scalar table holds the reference; a SIMD
    /// backend keeps the slot only where it has a fast one (elsewhere the runtime's batched
    /// int8 products use the formats' `gemm_q8`).
    pub gemm_i8: Option<Named<GemmI8Fn>>,
    /// Repacked rows (`scalar::has_repacked`) × int8 activation rows ([`GemmRepackedFn`]): the runtime
    /// repacks those matrices at load when this slot is filled. The scalar table holds the
    /// reference; a SIMD backend keeps the slot only where it has a SIMD tile.
    pub gemm_repacked: Option<Named<GemmRepackedFn>>,
    /// The layout Q8_0 is repacked into ([`Kernels::repacked_layout`]): codes plus 128 (the
    /// default, for `vpdpbusd`) or signed ([`scalar::RepackedLayout::Q8_0_SIGNED`], for NEON's
    /// `sdot`, which has no unsigned × signed form without i8mm).
    pub(crate) repacked_q8_0: scalar::RepackedLayout,
    /// The table exp over a slice.
    pub exp: Named<ExpFn>,
    /// Softmax with the table exp: attention weights.
    pub softmax: Named<SoftmaxFn>,
    /// SwiGLU with the table exp: the feed-forward gate.
    pub swiglu: Named<SwigluFn>,
    /// GeGLU (tanh GELU) with the table exp ([`scalar::gelu_tanh_glu_lut_f32`]): Gemma's
    /// feed-forward gate.
    pub gelu: Named<SwigluFn>,
    /// The format-independent ternary kernels: batched integer GEMM and lookup tables.
    pub ternary: TernaryKernels,
    /// f32 activations → int8 blocks for the `dot_q8` slots.
    pub quantize_act_q8: Named<QuantizeActFn>,
    /// f32 activations → f16 blocks ([`scalar::BlockF16Act`]) for the `dot_f16` slots.
    pub quantize_act_f16: Named<QuantizeActFn>,
    backend: Backend,
}

macro_rules! named {
    ($f:path, $name:literal) => {
        Named { f: $f, name: $name }
    };
}

impl Kernels {
    /// Every slot scalar: the reference, and what `--kernels scalar` forces.
    pub fn scalar() -> Self {
        let fk = |f: Format| -> FormatKernels {
            match f {
                Format::F32 => FormatKernels::new(
                    named!(scalar::dot_f32_f32, "dot_f32_f32/scalar"),
                    named!(scalar::dequant_f32, "dequant_f32/scalar"),
                ),
                Format::F16 => FormatKernels::new(
                    named!(scalar::dot_f16_f32, "dot_f16_f32/scalar"),
                    named!(scalar::dequant_f16, "dequant_f16/scalar"),
                ),
                Format::BF16 => FormatKernels::new(
                    named!(scalar::dot_bf16_f32, "dot_bf16_f32/scalar"),
                    named!(scalar::dequant_bf16, "dequant_bf16/scalar"),
                ),
                Format::Q4_0 => FormatKernels::new(
                    named!(scalar::dot_q4_0_f32, "dot_q4_0_f32/scalar"),
                    named!(scalar::dequant_q4_0, "dequant_q4_0/scalar"),
                ),
                Format::Q4_1 => FormatKernels::new(
                    named!(scalar::dot_q4_1_f32, "dot_q4_1_f32/scalar"),
                    named!(scalar::dequant_q4_1, "dequant_q4_1/scalar"),
                ),
                Format::Q8_0 => FormatKernels::new(
                    named!(scalar::dot_q8_0_f32, "dot_q8_0_f32/scalar"),
                    named!(scalar::dequant_q8_0, "dequant_q8_0/scalar"),
                ),
                Format::Q5_0 => FormatKernels::new(
                    named!(scalar::dot_q5_0_f32, "dot_q5_0_f32/scalar"),
                    named!(scalar::dequant_q5_0, "dequant_q5_0/scalar"),
                ),
                Format::Q5_1 => FormatKernels::new(
                    named!(scalar::dot_q5_1_f32, "dot_q5_1_f32/scalar"),
                    named!(scalar::dequant_q5_1, "dequant_q5_1/scalar"),
                ),
                Format::IQ4_NL => FormatKernels::new(
                    named!(scalar::dot_iq4_nl_f32, "dot_iq4_nl_f32/scalar"),
                    named!(scalar::dequant_iq4_nl, "dequant_iq4_nl/scalar"),
                ),
                Format::Q4_K => FormatKernels::new(
                    named!(scalar::dot_q4_k_f32, "dot_q4_k_f32/scalar"),
                    named!(scalar::dequant_q4_k, "dequant_q4_k/scalar"),
                ),
                Format::Q6_K => FormatKernels::new(
                    named!(scalar::dot_q6_k_f32, "dot_q6_k_f32/scalar"),
                    named!(scalar::dequant_q6_k, "dequant_q6_k/scalar"),
                ),
                Format::Q3_K => FormatKernels::new(
                    named!(scalar::dot_q3_k_f32, "dot_q3_k_f32/scalar"),
                    named!(scalar::dequant_q3_k, "dequant_q3_k/scalar"),
                ),
                Format::Q2_K => FormatKernels::new(
                    named!(scalar::dot_q2_k_f32, "dot_q2_k_f32/scalar"),
                    named!(scalar::dequant_q2_k, "dequant_q2_k/scalar"),
                ),
                Format::TQ1_0 => FormatKernels::new(
                    named!(scalar::dot_tq1_0_f32, "dot_tq1_0_f32/scalar"),
                    named!(scalar::dequant_tq1_0, "dequant_tq1_0/scalar"),
                ),
                Format::TQ2_0 => FormatKernels::new(
                    named!(scalar::dot_tq2_0_f32, "dot_tq2_0_f32/scalar"),
                    named!(scalar::dequant_tq2_0, "dequant_tq2_0/scalar"),
                ),
                Format::Q5_K => FormatKernels::new(
                    named!(scalar::dot_q5_k_f32, "dot_q5_k_f32/scalar"),
                    named!(scalar::dequant_q5_k, "dequant_q5_k/scalar"),
                ),
                Format::IQ4_XS => FormatKernels::new(
                    named!(scalar::dot_iq4_xs_f32, "dot_iq4_xs_f32/scalar"),
                    named!(scalar::dequant_iq4_xs, "dequant_iq4_xs/scalar"),
                ),
                // Scale 1: the runtime multiplies by the tensor's scale (see `Format::I2_S`).
                Format::I2_S => FormatKernels::new(
                    named!(
                        scalar::dot_i2_s_f32_unscaled,
                        "dot_i2_s_f32_unscaled/scalar"
                    ),
                    named!(
                        scalar::dequant_i2_s_unscaled,
                        "dequant_i2_s_unscaled/scalar"
                    ),
                ),
            }
        };
        let mut k = Kernels {
            formats: Format::ALL.map(fk),
            dot_f32: named!(scalar::dot_f32, "dot_f32/scalar"),
            axpy: named!(scalar::axpy, "axpy/scalar"),
            axpy_rows_f16: named!(scalar::axpy_rows_f16, "axpy_rows_f16/scalar"),
            quantize_f16: named!(scalar::quantize_f16, "quantize_f16/scalar"),
            gemm_f32: named!(scalar::gemm_f32, "gemm_f32/scalar"),
            gemm_i8: Some(named!(scalar::gemm_i8, "gemm_i8/scalar")),
            gemm_repacked: Some(named!(scalar::gemm_repacked, "gemm_repacked/scalar")),
            repacked_q8_0: match scalar::RepackedLayout::of(Format::Q8_0) {
                Some(l) => l,
                None => unreachable!("Q8_0 has a repacked layout"),
            },
            exp: named!(scalar::exp_lut_f32_in_place, "exp_lut_f32/scalar"),
            softmax: named!(scalar::softmax_lut_f32, "softmax_lut_f32/scalar"),
            swiglu: named!(scalar::swiglu_lut_f32, "swiglu_lut_f32/scalar"),
            gelu: named!(
                scalar::gelu_tanh_glu_lut_f32,
                "gelu_tanh_glu_lut_f32/scalar"
            ),
            quantize_act_q8: named!(scalar::quantize_act_q8, "quantize_act_q8/scalar"),
            quantize_act_f16: named!(scalar::quantize_act_f16, "quantize_act_f16/scalar"),
            ternary: TernaryKernels::scalar(),
            backend: Backend::Scalar,
        };
        // The int8 path's references: optional slots, so set here rather than in `new`.
        k.format_mut(Format::Q4_0).dot_q8 = Some(named!(scalar::dot_q4_0_q8, "dot_q4_0_q8/scalar"));
        k.format_mut(Format::Q4_1).dot_q8 = Some(named!(scalar::dot_q4_1_q8, "dot_q4_1_q8/scalar"));
        k.format_mut(Format::Q8_0).dot_q8 = Some(named!(scalar::dot_q8_0_q8, "dot_q8_0_q8/scalar"));
        // The f16 path's references (emulated f16 arithmetic, see `scalar::act_f16`).
        k.format_mut(Format::Q4_0).dot_f16 =
            Some(named!(scalar::dot_q4_0_f16, "dot_q4_0_f16/scalar"));
        k.format_mut(Format::Q4_1).dot_f16 =
            Some(named!(scalar::dot_q4_1_f16, "dot_q4_1_f16/scalar"));
        k.format_mut(Format::Q8_0).dot_f16 =
            Some(named!(scalar::dot_q8_0_f16, "dot_q8_0_f16/scalar"));
        // Multi-row kernels (decode and prompt products), defined by loops over the above.
        k.format_mut(Format::F16).dot_rows =
            Some(named!(scalar::dot_rows_f16_f32, "dot_rows_f16_f32/scalar"));
        let f = k.format_mut(Format::Q4_0);
        f.dot_rows = Some(named!(
            scalar::dot_rows_q4_0_f32,
            "dot_rows_q4_0_f32/scalar"
        ));
        f.gemm_q8 = Some(named!(scalar::gemm_q4_0_q8, "gemm_q4_0_q8/scalar"));
        let f = k.format_mut(Format::Q4_1);
        f.dot_rows = Some(named!(
            scalar::dot_rows_q4_1_f32,
            "dot_rows_q4_1_f32/scalar"
        ));
        f.gemm_q8 = Some(named!(scalar::gemm_q4_1_q8, "gemm_q4_1_q8/scalar"));
        let f = k.format_mut(Format::Q8_0);
        f.dot_rows = Some(named!(
            scalar::dot_rows_q8_0_f32,
            "dot_rows_q8_0_f32/scalar"
        ));
        f.gemm_q8 = Some(named!(scalar::gemm_q8_0_q8, "gemm_q8_0_q8/scalar"));
        // The other 32-weight block formats: every optional slot Q4_0 has.
        type Block32 = (
            Format,
            Named<DotQ8Fn>,
            Named<DotF16Fn>,
            Named<DotRowsFn>,
            Named<GemmQ8Fn>,
        );
        let blocks32: [Block32; 3] = [
            (
                Format::Q5_0,
                named!(scalar::dot_q5_0_q8, "dot_q5_0_q8/scalar"),
                named!(scalar::dot_q5_0_f16, "dot_q5_0_f16/scalar"),
                named!(scalar::dot_rows_q5_0_f32, "dot_rows_q5_0_f32/scalar"),
                named!(scalar::gemm_q5_0_q8, "gemm_q5_0_q8/scalar"),
            ),
            (
                Format::Q5_1,
                named!(scalar::dot_q5_1_q8, "dot_q5_1_q8/scalar"),
                named!(scalar::dot_q5_1_f16, "dot_q5_1_f16/scalar"),
                named!(scalar::dot_rows_q5_1_f32, "dot_rows_q5_1_f32/scalar"),
                named!(scalar::gemm_q5_1_q8, "gemm_q5_1_q8/scalar"),
            ),
            (
                Format::IQ4_NL,
                named!(scalar::dot_iq4_nl_q8, "dot_iq4_nl_q8/scalar"),
                named!(scalar::dot_iq4_nl_f16, "dot_iq4_nl_f16/scalar"),
                named!(scalar::dot_rows_iq4_nl_f32, "dot_rows_iq4_nl_f32/scalar"),
                named!(scalar::gemm_iq4_nl_q8, "gemm_iq4_nl_q8/scalar"),
            ),
        ];
        for (format, dot_q8, dot_f16, dot_rows, gemm_q8) in blocks32 {
            let f = k.format_mut(format);
            f.dot_q8 = Some(dot_q8);
            f.dot_f16 = Some(dot_f16);
            f.dot_rows = Some(dot_rows);
            f.gemm_q8 = Some(gemm_q8);
        }
        type KQuant = (Format, Named<DotQ8Fn>, Named<DotRowsFn>, Named<GemmQ8Fn>);
        let kquants: [KQuant; 6] = [
            (
                Format::Q4_K,
                named!(scalar::dot_q4_k_q8, "dot_q4_k_q8/scalar"),
                named!(scalar::dot_rows_q4_k_f32, "dot_rows_q4_k_f32/scalar"),
                named!(scalar::gemm_q4_k_q8, "gemm_q4_k_q8/scalar"),
            ),
            (
                Format::Q6_K,
                named!(scalar::dot_q6_k_q8, "dot_q6_k_q8/scalar"),
                named!(scalar::dot_rows_q6_k_f32, "dot_rows_q6_k_f32/scalar"),
                named!(scalar::gemm_q6_k_q8, "gemm_q6_k_q8/scalar"),
            ),
            (
                Format::Q3_K,
                named!(scalar::dot_q3_k_q8, "dot_q3_k_q8/scalar"),
                named!(scalar::dot_rows_q3_k_f32, "dot_rows_q3_k_f32/scalar"),
                named!(scalar::gemm_q3_k_q8, "gemm_q3_k_q8/scalar"),
            ),
            (
                Format::Q2_K,
                named!(scalar::dot_q2_k_q8, "dot_q2_k_q8/scalar"),
                named!(scalar::dot_rows_q2_k_f32, "dot_rows_q2_k_f32/scalar"),
                named!(scalar::gemm_q2_k_q8, "gemm_q2_k_q8/scalar"),
            ),
            (
                Format::Q5_K,
                named!(scalar::dot_q5_k_q8, "dot_q5_k_q8/scalar"),
                named!(scalar::dot_rows_q5_k_f32, "dot_rows_q5_k_f32/scalar"),
                named!(scalar::gemm_q5_k_q8, "gemm_q5_k_q8/scalar"),
            ),
            (
                Format::IQ4_XS,
                named!(scalar::dot_iq4_xs_q8, "dot_iq4_xs_q8/scalar"),
                named!(scalar::dot_rows_iq4_xs_f32, "dot_rows_iq4_xs_f32/scalar"),
                named!(scalar::gemm_iq4_xs_q8, "gemm_iq4_xs_q8/scalar"),
            ),
        ];
        for (format, dot_q8, dot_rows, gemm_q8) in kquants {
            let f = k.format_mut(format);
            f.dot_q8 = Some(dot_q8);
            f.dot_rows = Some(dot_rows);
            f.gemm_q8 = Some(gemm_q8);
        }
        // The batched int8 GEMM's common form of weights.
        for f in Format::ALL {
            k.format_mut(f).unpack_i8 = scalar::unpack_i8_ref(f).map(|f| Named {
                f,
                name: "unpack_i8/scalar",
            });
        }
        // Ternary formats' per-token int8 path (BitNet b1.58).
        let t = k.format_mut(Format::TQ1_0);
        t.dot_q8_row = Some(named!(scalar::dot_tq1_0_q8row, "dot_tq1_0_q8row/scalar"));
        t.unpack = Some(named!(scalar::unpack_tq1_0, "unpack_tq1_0/scalar"));
        let t = k.format_mut(Format::TQ2_0);
        t.dot_q8_row = Some(named!(scalar::dot_tq2_0_q8row, "dot_tq2_0_q8row/scalar"));
        t.unpack = Some(named!(scalar::unpack_tq2_0, "unpack_tq2_0/scalar"));
        let t = k.format_mut(Format::I2_S);
        t.dot_q8_row = Some(named!(scalar::dot_i2_s_q8row, "dot_i2_s_q8row/scalar"));
        t.unpack = Some(named!(scalar::unpack_i2_s, "unpack_i2_s/scalar"));
        k
    }

    /// The fastest kernels this CPU supports: the first of [`Backend::ALL`] it has (detected
    /// once, at run time with `std`, from target features without it).
    pub fn best() -> Self {
        Backend::ALL
            .into_iter()
            .find_map(Self::with_backend)
            .unwrap_or_else(Self::scalar)
    }

    /// `backend`'s kernels (scalar where it has none), or `None` when this CPU or build lacks
    /// its features.
    pub fn with_backend(backend: Backend) -> Option<Self> {
        let mut k = Self::scalar();
        if !crate::arch::install(backend, &mut k) {
            return None;
        }
        k.backend = backend;
        Some(k)
    }

    /// The backend this table was built for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The kernels of `format`.
    #[inline]
    pub fn format(&self, format: Format) -> &FormatKernels {
        &self.formats[format.index()]
    }

    /// The kernels of `format`, to overwrite (the `arch` backends).
    pub(crate) fn format_mut(&mut self, format: Format) -> &mut FormatKernels {
        &mut self.formats[format.index()]
    }

    /// Dot product of a row of `format` weights with `x`.
    #[inline]
    pub fn dot(&self, format: Format, row: &[u8], x: &[f32]) -> f32 {
        (self.formats[format.index()].dot.f)(row, x)
    }

    /// Dequantizes a row of `format` weights into `out`.
    #[inline]
    pub fn dequant(&self, format: Format, row: &[u8], out: &mut [f32]) {
        (self.formats[format.index()].dequant.f)(row, out)
    }

    /// Dot product of a row of `format` weights with int8 activations `xq` (from
    /// [`Kernels::quantize_act_q8`]), or `None` when the format has no int8 kernel.
    #[inline]
    pub fn dot_q8(&self, format: Format, row: &[u8], xq: &[u8]) -> Option<f32> {
        self.formats[format.index()].dot_q8.map(|k| (k.f)(row, xq))
    }

    /// Whether [`Kernels::gemm_i8`] takes `format`.
    #[inline]
    pub fn has_gemm_i8(&self, format: Format) -> bool {
        self.gemm_i8.is_some() && self.format(format).unpack_i8.is_some()
    }

    /// The layout this backend repacks `format` into for [`Kernels::gemm_repacked`], if it
    /// has the repacked GEMM and the format a repacked layout: the format's default row of
    /// [`scalar::REPACKED_FORMATS`], but for Q8_0 the backend's choice (signed codes on NEON
    /// with the dot product extension, codes plus 128 elsewhere). Repack with this, and pass
    /// the same layout to `gemm_repacked`.
    pub fn repacked_layout(&self, format: Format) -> Option<scalar::RepackedLayout> {
        self.gemm_repacked?;
        match format {
            Format::Q8_0 => Some(self.repacked_q8_0),
            _ => scalar::RepackedLayout::of(format),
        }
    }

    /// `y[t·ldy + r] = row r · token t` for `m` rows of `format` weights in `w` and `n` rows of
    /// int8 activations in `xq` (from [`Kernels::quantize_act_q8`]): the batched int8 GEMM,
    /// each weight unpacked once per call ([`GemmI8Fn`]). Its results equal the format's
    /// `gemm_q8` up to float rounding ([`scalar::gemm_i8`] states the bound); it pays off from
    /// a few tokens on. Panics unless [`Kernels::has_gemm_i8`].
    #[expect(
        clippy::too_many_arguments,
        reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
    )]
    #[inline]
    pub fn gemm_i8(
        &self,
        format: Format,
        w: &[u8],
        m: usize,
        xq: &[u8],
        n: usize,
        y: &mut [f32],
        ldy: usize,
    ) {
        let unpack = self
            .format(format)
            .unpack_i8
            .expect("format has an int8 GEMM layout");
        let gemm = self.gemm_i8.expect("this backend has an int8 GEMM");
        (gemm.f)(format, unpack.f, w, m, xq, n, y, ldy)
    }

    /// Dot product of a row of `format` weights with f16 activations `xh` (from
    /// [`Kernels::quantize_act_f16`]), or `None` when the format has no f16 kernel here.
    #[inline]
    pub fn dot_f16(&self, format: Format, row: &[u8], xh: &[u8]) -> Option<f32> {
        self.formats[format.index()].dot_f16.map(|k| (k.f)(row, xh))
    }

    /// Whether this table has f16-activation kernels (`--precision f16` runs in f16 for the
    /// formats that have one and in f32 for the others).
    pub fn has_f16_activations(&self) -> bool {
        Format::ALL
            .iter()
            .any(|&f| self.format(f).dot_f16.is_some())
    }

    /// `(format, dot kernel name)` for every format, for reports.
    pub fn names(&self) -> impl Iterator<Item = (Format, &'static str)> + '_ {
        Format::ALL
            .iter()
            .map(move |&f| (f, self.format(f).dot.name))
    }
}

/// The ternary kernels that do not depend on the weight format: they work on unpacked codes or
/// on the lookup-table index layout the runtime repacks weights into at load.
#[derive(Clone, Copy, Debug)]
pub struct TernaryKernels {
    /// One token's f32 activations → int8 codes with one scale (BitNet's per-token absmax).
    pub quantize_act_row: Named<QuantizeActRowFn>,
    /// Rows × tokens over unpacked codes: batched prompt processing.
    pub gemm_codes: Named<GemmCodesFn>,
    /// One token's activation codes → lookup tables.
    pub lut_tables: Named<LutTablesFn>,
    /// One index tile · one token's tables.
    pub lut_gemv: Named<LutGemvFn>,
    /// One index tile → codes, for the batched kernel.
    pub lut_unpack: Named<LutUnpackFn>,
}

impl TernaryKernels {
    /// The scalar references.
    pub const fn scalar() -> Self {
        TernaryKernels {
            quantize_act_row: named!(scalar::quantize_act_q8_row, "quantize_act_q8_row/scalar"),
            gemm_codes: named!(scalar::gemm_codes_q8row, "gemm_codes_q8row/scalar"),
            lut_tables: named!(scalar::lut_tables, "lut_tables/scalar"),
            lut_gemv: named!(scalar::lut_gemv, "lut_gemv/scalar"),
            lut_unpack: named!(scalar::lut_unpack_tile, "lut_unpack_tile/scalar"),
        }
    }
}
