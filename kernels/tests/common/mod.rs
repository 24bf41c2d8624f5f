//! Helpers the kernel test files share: a deterministic generator, the backend a suite runs
//! on, and the rounding-error budget SIMD kernels are held to against the scalar reference.
// Each test file uses the part it needs.
#![allow(dead_code)]

use tern_kernels::{Backend, Kernels};

/// Deterministic xorshift64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [−1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.next() as u8)
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// `backend`'s kernels, or `None` (reported) when this CPU or build lacks it.
pub fn kernels(backend: Backend) -> Option<Kernels> {
    let k = Kernels::with_backend(backend);
    if k.is_none() {
        println!(
            "skipped: this CPU/build lacks the {} backend",
            backend.name()
        );
    }
    k
}

/// The unit roundoff of f32.
pub const EPS: f64 = f32::EPSILON as f64 / 2.0;

/// γ_k = k·u / (1 − k·u): the relative error bound of `k` roundings.
pub fn gamma(k: usize) -> f64 {
    let k = k as f64 * EPS;
    k / (1.0 - k)
}

/// Smallest positive f32 (subnormal), 2^-149: what an underflowing product can lose.
pub const F32_TINY: f64 = 1.401298464324817e-45;

/// How far two evaluations of a sum of `n` products may differ when each term passes through
/// at most `k` roundings (see the budget notes of the test files' module docs).
pub fn budget(k: usize, abs_sum: f64, n: usize) -> f64 {
    2.0 * gamma(k) * abs_sum + 2.0 * n as f64 * F32_TINY
}

/// Asserts `|got − want| ≤ bound`.
pub fn assert_close(what: &str, got: f32, want: f32, bound: f64) {
    let diff = (got as f64 - want as f64).abs();
    assert!(
        diff <= bound,
        "{what}: {got:e} vs reference {want:e}: |Δ| = {diff:e} > {bound:e}"
    );
}
