//! The 32-weight blocks as the SIMD kernels read them (the int8 tiles of `gemm_*_q8` on every
//! architecture, and the row kernels of the newer formats): plain field access, so the SIMD
//! work stays in the `#[target_feature]` bodies (a trait method cannot enable features, and
//! would not inline into them if it did).

use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, F16Le};
use crate::scalar::{IQ4_NL_VALUES, Q4_0_VALUES};

/// The 32-weight block formats.
#[derive(Clone, Copy, PartialEq, Eq)]
#[expect(non_camel_case_types, reason = "GGUF's names")]
pub(super) enum Fmt {
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    IQ4_NL,
}

impl Fmt {
    /// Whether the block has an offset `m` (value `q·d + m`): its codes are then unsigned.
    pub(super) const fn has_m(self) -> bool {
        matches!(self, Fmt::Q4_1 | Fmt::Q5_1)
    }

    /// Whether the codes the int8 dots take may be negative (the sign trick of `vpmaddubsw`;
    /// NEON multiplies signed by signed and never asks).
    #[cfg_attr(
        not(target_arch = "x86_64"),
        expect(dead_code, reason = "only `vpmaddubsw` needs the sign trick")
    )]
    pub(super) const fn signed(self) -> bool {
        !self.has_m()
    }

    /// The 16-entry codebook a 4-bit code is looked up in (Q4_0's for the formats that have
    /// none; they never read it).
    pub(super) const fn lut(self) -> &'static [i8; 16] {
        match self {
            Fmt::IQ4_NL => &IQ4_NL_VALUES,
            _ => &Q4_0_VALUES,
        }
    }
}

/// A weight block of one of the [`Fmt`]s.
pub(super) trait Block {
    /// Which format it is, for the branches the tiles resolve at compile time.
    const FMT: Fmt;
    /// The scale.
    fn d(&self) -> F16Le;
    /// The offset (Q4_1, Q5_1; zero for the others, never read).
    fn m(&self) -> F16Le {
        F16Le([0, 0])
    }
    /// The 16 nibble bytes of a 4- or 5-bit block (Q8_0 never calls it).
    fn qs16(&self) -> &[u8; 16] {
        unreachable!("Q8_0 codes are read whole")
    }
    /// The 32 codes of a Q8_0 block (the others never call it).
    fn qs32(&self) -> &[i8; 32] {
        unreachable!("only Q8_0 stores whole codes")
    }
    /// The fifth bits of a Q5 block (the others never call it).
    fn qh(&self) -> &[u8; 4] {
        unreachable!("only Q5 blocks have fifth bits")
    }
}

impl Block for BlockQ4_0 {
    const FMT: Fmt = Fmt::Q4_0;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn qs16(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Block for BlockQ4_1 {
    const FMT: Fmt = Fmt::Q4_1;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> F16Le {
        self.m
    }
    #[inline(always)]
    fn qs16(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Block for BlockQ8_0 {
    const FMT: Fmt = Fmt::Q8_0;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn qs32(&self) -> &[i8; 32] {
        &self.qs
    }
}

impl Block for BlockQ5_0 {
    const FMT: Fmt = Fmt::Q5_0;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn qs16(&self) -> &[u8; 16] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> &[u8; 4] {
        &self.qh
    }
}

impl Block for BlockQ5_1 {
    const FMT: Fmt = Fmt::Q5_1;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn m(&self) -> F16Le {
        self.m
    }
    #[inline(always)]
    fn qs16(&self) -> &[u8; 16] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> &[u8; 4] {
        &self.qh
    }
}

impl Block for BlockIQ4_NL {
    const FMT: Fmt = Fmt::IQ4_NL;
    #[inline(always)]
    fn d(&self) -> F16Le {
        self.d
    }
    #[inline(always)]
    fn qs16(&self) -> &[u8; 16] {
        &self.qs
    }
}
