//! The one deterministic generator the test crates share: xorshift64 (Marsaglia's 13/7/17
//! triple), reproducible from a seed and free of dependencies. Not for anything but tests and
//! the stable fuzz driver: a seed of 0 stays 0, so callers pass a nonzero one.

/// xorshift64 state.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[expect(
        clippy::should_implement_trait,
        reason = "an endless generator, not an iterator: callers draw bits, not items"
    )]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// −1, 0 or +1, as a ternary weight.
    pub fn ternary(&mut self) -> f32 {
        ((self.next() >> 33) % 3) as f32 - 1.0
    }

    /// Roughly normal (a sum of four uniforms, mean 0, deviation about 0.58), for float weights.
    pub fn normal(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .sum::<f32>()
    }
}
