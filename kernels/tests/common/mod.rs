//! Helpers the kernel test files share: a deterministic generator, the backend a suite runs
//! on, and the rounding-error budget SIMD kernels are held to against the scalar reference.
// Each test file uses the part it needs.
#![allow(
    dead_code,
    reason = "each test binary uses its own subset of these helpers"
)]

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

/// `n` tokens of `cols` activations quantized as the runtime does: per 32-block magnitudes from
/// tiny to large (`wild`: down to subnormals and up to 1e20), zeros, and blocks whose codes are
/// all ±127.
pub fn int8_activations(n: usize, cols: usize, rng: &mut Rng, wild: bool) -> Vec<u8> {
    use tern_kernels::scalar::{self, act_q8_bytes};
    let mags: &[f32] = if wild {
        &[1.0, 1e-30, 1e20, 65504.0, 1e-40, 0.0]
    } else {
        &[1.0, 3.0, 1e-3, 100.0, 0.0]
    };
    let mut x = Vec::with_capacity(n * cols);
    for _ in 0..n * cols / 32 {
        let mag = rng.pick(mags);
        let kind = rng.below(8);
        for _ in 0..32 {
            x.push(match kind {
                0 => mag,
                1 => -mag,
                _ => rng.f32() * mag,
            });
        }
    }
    let qb = act_q8_bytes(cols);
    let mut xq = vec![0u8; n * qb];
    for (xt, qt) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(qb)) {
        scalar::quantize_act_q8(xt, qt);
    }
    xq
}

/// The same bits, or both NaN.
pub fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
