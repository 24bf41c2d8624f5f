//! Rotary position embeddings: the per-pair frequencies one kind of layer rotates with.
//!
//! A model has one [`Rope`] per distinct rotation (Gemma 3 has two: its sliding-window layers use
//! another base than its global ones); each layer names its table by index. The angle of pair
//! `i` at position `p` is `p · freq_scale · base^(−2i/dim) / factor[i]` (ggml's `rope_ext` with
//! no YaRN extrapolation), and both sine and cosine are multiplied by `mscale`.

use alloc::vec::Vec;

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: ggml's "normal" mode, used by `llama` (whose converter
    /// permutes Q and K to match).
    Normal,
    /// Half-split pairs `(i, i + n/2)`: ggml's NEOX mode (Qwen, Gemma, Phi-3, BitNet).
    Neox,
}

/// One rotation: its pairing, and the frequency of each rotated pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// How dimensions pair up.
    pub style: RopeStyle,
    /// Dimensions of each head that rotate (the first `dim`; the rest pass through).
    pub dim: usize,
    /// The base frequency (for reports).
    pub base: f32,
    /// Frequencies for contexts up to `long.above` (or always, without `long`): `(dim / 2)`.
    inv_freq: Vec<f32>,
    /// Factor on sine and cosine (Phi-3's LongRoPE attention factor; 1 otherwise).
    mscale: f32,
    /// LongRoPE (Phi-3): other per-pair factors for sessions longer than the trained context.
    long: Option<LongRope>,
}

/// The frequencies a LongRoPE model switches to for long contexts.
#[derive(Clone, Debug, PartialEq)]
struct LongRope {
    /// A session whose context exceeds this many positions uses `inv_freq`.
    above: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `base^(−2i/dim) · freq_scale / factors[i]` for each rotated pair (`factors` of length
    /// `dim / 2`, e.g. Llama 3's `rope_freqs`).
    pub fn new(
        style: RopeStyle,
        dim: usize,
        base: f32,
        freq_scale: f32,
        factors: Option<&[f32]>,
    ) -> Self {
        Rope {
            style,
            dim,
            base,
            inv_freq: inv_freq(dim, base, freq_scale, factors),
            mscale: 1.0,
            long: None,
        }
    }

    /// This rotation with sine and cosine multiplied by `mscale`.
    pub fn with_mscale(mut self, mscale: f32) -> Self {
        self.mscale = mscale;
        self
    }

    /// This rotation, switching to `long_factors` in sessions whose context exceeds `above`
    /// positions (LongRoPE: `self` was built with the short factors).
    pub fn with_long_factors(
        mut self,
        above: usize,
        freq_scale: f32,
        long_factors: &[f32],
    ) -> Self {
        let inv = inv_freq(self.dim, self.base, freq_scale, Some(long_factors));
        self.long = Some(LongRope {
            above,
            inv_freq: inv,
        });
        self
    }

    /// Whether a session of `ctx` positions rotates with the long factors.
    pub fn uses_long(&self, ctx: usize) -> bool {
        self.long.as_ref().is_some_and(|l| ctx > l.above)
    }

    /// The frequencies a session of `ctx` positions uses, `(dim / 2)`.
    pub fn inv_freq(&self, ctx: usize) -> &[f32] {
        match &self.long {
            Some(l) if ctx > l.above => &l.inv_freq,
            _ => &self.inv_freq,
        }
    }

    /// Writes the cosines and sines of position `pos` for a session of `ctx` positions into
    /// `cos` and `sin`, `(dim / 2)` each.
    pub fn angles(&self, ctx: usize, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let p = pos as f32;
        for ((&f, c), s) in self.inv_freq(ctx).iter().zip(cos).zip(sin) {
            let a = p * f;
            *c = libm::cosf(a) * self.mscale;
            *s = libm::sinf(a) * self.mscale;
        }
    }
}

fn inv_freq(dim: usize, base: f32, freq_scale: f32, factors: Option<&[f32]>) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let f = libm::powf(base, -2.0 * i as f32 / dim as f32) * freq_scale;
            f / factors.map_or(1.0, |ff| ff[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_divide_and_long_switches_by_context() {
        let short = [1.0, 2.0];
        let long = [4.0, 8.0];
        let r = Rope::new(RopeStyle::Neox, 4, 100.0, 1.0, Some(&short))
            .with_long_factors(16, 1.0, &long)
            .with_mscale(2.0);
        let close = |a: &[f32], b: [f32; 2]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7);
        assert!(close(r.inv_freq(16), [1.0, 0.1 / 2.0]));
        assert!(close(r.inv_freq(17), [0.25, 0.1 / 8.0]));
        assert!(!r.uses_long(16) && r.uses_long(17));
        let (mut c, mut s) = ([0.0; 2], [0.0; 2]);
        r.angles(4, 0, &mut c, &mut s);
        assert_eq!((c, s), ([2.0, 2.0], [0.0, 0.0]));
    }

    #[test]
    fn linear_scale_multiplies_every_frequency() {
        let a = Rope::new(RopeStyle::Normal, 8, 10_000.0, 1.0, None);
        let b = Rope::new(RopeStyle::Normal, 8, 10_000.0, 0.125, None);
        for (x, y) in a.inv_freq(1).iter().zip(b.inv_freq(1)) {
            assert_eq!(*x * 0.125, *y);
        }
    }
}
