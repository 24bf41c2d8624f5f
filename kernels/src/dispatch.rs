//! One table of kernel functions, chosen once and passed explicitly.
//!
//! [`Kernels::scalar`] fills every slot with the reference implementation; [`Kernels::best`]
//! starts from it and lets each SIMD backend the CPU supports overwrite its slots. The model
//! holds a `&Kernels`; there is no global state.

use crate::format::Format;
use crate::scalar;

/// Dot product of one row of weights (GGUF bytes of whole blocks) with f32 activations.
pub type DotFn = fn(row: &[u8], x: &[f32]) -> f32;
/// Dequantizes one row of weights (GGUF bytes of whole blocks) to f32.
pub type DequantFn = fn(row: &[u8], out: &mut [f32]);

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
}

impl FormatKernels {
    /// The two kernels every format has; optional slots start empty.
    pub const fn new(dot: Named<DotFn>, dequant: Named<DequantFn>) -> Self {
        FormatKernels { dot, dequant }
    }
}

/// The dispatch table.
#[derive(Clone, Debug)]
pub struct Kernels {
    formats: [FormatKernels; Format::COUNT],
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
                Format::Q4_K => FormatKernels::new(
                    named!(scalar::dot_q4_k_f32, "dot_q4_k_f32/scalar"),
                    named!(scalar::dequant_q4_k, "dequant_q4_k/scalar"),
                ),
                Format::Q6_K => FormatKernels::new(
                    named!(scalar::dot_q6_k_f32, "dot_q6_k_f32/scalar"),
                    named!(scalar::dequant_q6_k, "dequant_q6_k/scalar"),
                ),
                Format::TQ1_0 => FormatKernels::new(
                    named!(scalar::dot_tq1_0_f32, "dot_tq1_0_f32/scalar"),
                    named!(scalar::dequant_tq1_0, "dequant_tq1_0/scalar"),
                ),
                Format::TQ2_0 => FormatKernels::new(
                    named!(scalar::dot_tq2_0_f32, "dot_tq2_0_f32/scalar"),
                    named!(scalar::dequant_tq2_0, "dequant_tq2_0/scalar"),
                ),
                // Scale 1: the runtime multiplies by the tensor's scale (see `Format::I2_S`).
                Format::I2_S => FormatKernels::new(
                    named!(scalar::dot_i2_s_f32_unscaled, "dot_i2_s_f32_unscaled/scalar"),
                    named!(scalar::dequant_i2_s_unscaled, "dequant_i2_s_unscaled/scalar"),
                ),
            }
        };
        Kernels {
            formats: Format::ALL.map(fk),
        }
    }

    /// The fastest kernels this CPU supports (detected at run time with `std`, from target
    /// features without it).
    pub fn best() -> Self {
        Self::scalar()
    }

    /// The kernels of `format`.
    #[inline]
    pub fn format(&self, format: Format) -> &FormatKernels {
        &self.formats[format.index()]
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

    /// `(format, dot kernel name)` for every format, for reports.
    pub fn names(&self) -> impl Iterator<Item = (Format, &'static str)> + '_ {
        Format::ALL
            .iter()
            .map(move |&f| (f, self.format(f).dot.name))
    }
}
