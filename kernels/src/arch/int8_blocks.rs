//! The weight blocks of the int8 tiles (`gemm_*_q8` on every architecture), as those tiles
//! read them: plain field access, so the SIMD work stays in the `#[target_feature]` bodies (a
//! trait method cannot enable features, and would not inline into them if it did).

use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, F16Le};

/// The weight formats of the int8 tiles.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fmt {
    Q4_0,
    Q4_1,
    Q8_0,
}

/// A weight block of one of the [`Fmt`]s.
pub(super) trait Block {
    /// Which format it is, for the branches the tiles resolve at compile time.
    const FMT: Fmt;
    /// The scale.
    fn d(&self) -> F16Le;
    /// The offset (Q4_1; zero for the others, never read).
    fn m(&self) -> F16Le {
        F16Le([0, 0])
    }
    /// The 16 nibble bytes of a Q4 block (Q8_0 never calls it).
    fn qs16(&self) -> &[u8; 16] {
        unreachable!("Q8_0 codes are read whole")
    }
    /// The 32 codes of a Q8_0 block (Q4 blocks never call it).
    fn qs32(&self) -> &[i8; 32] {
        unreachable!("Q4 codes are nibbles")
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
