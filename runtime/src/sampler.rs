//! Choosing the next token from logits: greedy, or temperature sampling with top-k, top-p and
//! min-p filters and a repetition penalty, from a seeded generator (same seed, same text).

use alloc::vec::Vec;

use tern_kernels::scalar::exp_lut_f32;

/// Sampling options. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerOptions {
    /// Softmax temperature; `0` (or less) picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; `1` keeps
    /// all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; `0` keeps all.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this; `1` is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x7e57_7e57,
        }
    }
}

impl SamplerOptions {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerOptions {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks the options an app or a user gave and returns them normalized: the one place
    /// the CLI and the FFI validate sampling. A temperature below [`TEMPERATURE_FLOOR`]
    /// (zero and negative ones included) becomes 0, greedy; NaN or infinite values, `top_p`
    /// or `min_p` outside `[0, 1]` and a repetition penalty that is not a positive finite
    /// number are refused.
    pub fn validated(&self) -> Result<SamplerOptions, SamplerError> {
        let bad = |field, value| Err(SamplerError { field, value });
        if !self.temperature.is_finite() {
            return bad("temperature", self.temperature);
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p", self.top_p);
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p);
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat_penalty", self.repeat_penalty);
        }
        let mut o = self.clone();
        if o.temperature < TEMPERATURE_FLOOR {
            o.temperature = 0.0;
        }
        Ok(o)
    }
}

/// Temperatures below this sample greedily. Sampling divides log-probabilities by the
/// temperature: below about 10⁻³⁸ that overflows f32 (`1e-45` gave `inf · 0 = NaN` and the
/// least likely token), and already at 10⁻³ any two tokens whose log-probabilities differ by
/// more than 0.1 differ by a factor above e¹⁰⁰ ≈ 10⁴³, beyond f32: the draw is the argmax.
pub const TEMPERATURE_FLOOR: f32 = 1e-3;

/// A sampling option out of range ([`SamplerOptions::validated`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerError {
    /// The option's name (`temperature`, `top_p`, `min_p`, `repeat_penalty`).
    pub field: &'static str,
    /// The value given.
    pub value: f32,
}

impl core::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let want = match self.field {
            "temperature" => "a finite number (below 0.001 means greedy)",
            "repeat_penalty" => "a positive finite number (1 is off)",
            _ => "a number between 0 and 1",
        };
        write!(f, "{} {} must be {want}", self.field, self.value)
    }
}

impl core::error::Error for SamplerError {}

/// SplitMix64: tiny, fast and statistically sound for sampling.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A sampler with its own random state.
#[derive(Clone, Debug)]
pub struct Sampler {
    opts: SamplerOptions,
    rng: Rng,
    /// (token, logit or probability) candidates, reused between calls.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded from `opts.seed`.
    pub fn new(opts: SamplerOptions) -> Self {
        let rng = Rng(opts.seed);
        Sampler {
            opts,
            rng,
            cand: Vec::new(),
        }
    }

    /// The options.
    pub fn options(&self) -> &SamplerOptions {
        &self.opts
    }

    /// Picks the next token from `logits`, given the tokens seen so far (for the penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.sample_masked(logits, history, None)
    }

    /// As [`sample`](Self::sample), but only among the tokens whose bit is set in `allowed`
    /// (bit `id % 32` of word `id / 32`), e.g. those a grammar allows next. The penalty
    /// applies first, then every filter (top-k, top-p, min-p, temperature) works within the
    /// allowed set, as if the other tokens were not in the vocabulary. `allowed` must allow
    /// at least one token of `logits`; if it allows none, the result is the first token.
    pub fn sample_masked(
        &mut self,
        logits: &[f32],
        history: &[u32],
        allowed: Option<&[u32]>,
    ) -> u32 {
        let o = &self.opts;
        self.cand.clear();
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if o.repeat_penalty != 1.0 && o.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(o.repeat_last_n)..];
            for &t in recent {
                if let Some(c) = self.cand.get_mut(t as usize) {
                    // Apply once per distinct token, as llama.cpp does.
                    if c.0 == t {
                        c.1 = if c.1 > 0.0 {
                            c.1 / o.repeat_penalty
                        } else {
                            c.1 * o.repeat_penalty
                        };
                        c.0 = u32::MAX;
                    }
                }
            }
            for (i, c) in self.cand.iter_mut().enumerate() {
                c.0 = i as u32;
            }
        }
        if let Some(mask) = allowed {
            let is_allowed = |t: u32| {
                mask.get(t as usize / 32)
                    .is_some_and(|w| w >> (t % 32) & 1 == 1)
            };
            self.cand.retain(|c| is_allowed(c.0));
            if self.cand.is_empty() {
                return 0;
            }
        }
        // Not `<= 0.0`: options that skipped `validated` must not overflow 1/t (or be NaN).
        if o.temperature.is_nan() || o.temperature < TEMPERATURE_FLOOR {
            return argmax(&self.cand);
        }
        // Most likely first; NaN logits sink to the end.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        if o.top_k > 0 && o.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(o.top_k - 1, by_logit);
            self.cand.truncate(o.top_k);
        }
        self.cand.sort_unstable_by(by_logit);
        softmax_in_place(&mut self.cand, 1.0);
        if o.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = self
                .cand
                .iter()
                .position(|c| {
                    cum += c.1;
                    cum >= o.top_p
                })
                .map_or(self.cand.len(), |i| i + 1);
            self.cand.truncate(keep.max(1));
        }
        if o.min_p > 0.0 {
            let floor = self.cand[0].1 * o.min_p;
            let keep = self.cand.iter().take_while(|c| c.1 >= floor).count();
            self.cand.truncate(keep.max(1));
        }
        // Temperature on the survivors' log-probabilities, then draw.
        for c in self.cand.iter_mut() {
            c.1 = libm::logf(c.1.max(f32::MIN_POSITIVE));
        }
        softmax_in_place(&mut self.cand, 1.0 / o.temperature);
        let r = self.rng.next_f32();
        let mut cum = 0.0;
        for c in &self.cand {
            cum += c.1;
            if r < cum {
                return c.0;
            }
        }
        self.cand.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax_logits(logits: &[f32]) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i as u32, l);
        }
    }
    best.0
}

fn argmax(c: &[(u32, f32)]) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for &(i, l) in c {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0
}

/// Turns `(token, logit)` into `(token, probability)` with logits scaled by `scale`, through
/// the table exp (`tern_kernels::scalar::exp_lut_f32`, relative error ≤ 2·10⁻⁷).
fn softmax_in_place(c: &mut [(u32, f32)], scale: f32) {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in c.iter_mut() {
        x.1 = exp_lut_f32((x.1 - max) * scale);
        sum += x.1;
    }
    for x in c.iter_mut() {
        x.1 /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(SamplerOptions::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let opts = SamplerOptions {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let draw = |o: &SamplerOptions| {
            let mut s = Sampler::new(o.clone());
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(&opts), draw(&opts));
        assert_ne!(
            draw(&opts),
            draw(&SamplerOptions {
                seed: 1,
                ..opts.clone()
            })
        );
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplerOptions {
            top_k: 1,
            temperature: 5.0,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.0, 1.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // Token 2 has probability e^-10 of token 0's: min_p 0.01 removes it.
        let mut s = Sampler::new(SamplerOptions {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.01,
            temperature: 1.0,
            ..Default::default()
        });
        for _ in 0..200 {
            assert_ne!(s.sample(&[10.0, 10.0, 0.0], &[]), 2);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Probabilities ≈ 0.88, 0.12, ~0: top_p 0.5 keeps only the first.
        let mut s = Sampler::new(SamplerOptions {
            top_k: 0,
            top_p: 0.5,
            min_p: 0.0,
            temperature: 1.0,
            ..Default::default()
        });
        for _ in 0..100 {
            assert_eq!(s.sample(&[2.0, 0.0, -20.0], &[]), 0);
        }
    }

    #[test]
    fn repeat_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplerOptions {
            repeat_penalty: 2.0,
            ..SamplerOptions::greedy()
        });
        // 1.5/2 = 0.75 < 1.0: token 0 wins once token 1 was seen, even if seen twice.
        assert_eq!(s.sample(&[1.0, 1.5], &[1, 1]), 0);
        assert_eq!(s.sample(&[1.0, 1.5], &[]), 1);
    }

    #[test]
    fn tiny_nan_and_bad_options() {
        let v = |o: SamplerOptions| o.validated();
        let d = SamplerOptions::default();
        // 1e-45 (an f32 subnormal) once overflowed 1/t and sampled the least likely token.
        let tiny = SamplerOptions {
            temperature: 1e-45,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..d.clone()
        };
        assert_eq!(v(tiny.clone()).unwrap().temperature, 0.0);
        let mut s = Sampler::new(tiny.clone());
        let logits = [0.0, 5.0, -3.0, 4.9];
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), 1);
        }
        assert_eq!(
            v(SamplerOptions {
                temperature: -1.0,
                ..d.clone()
            })
            .unwrap()
            .temperature,
            0.0
        );
        assert_eq!(
            v(SamplerOptions {
                temperature: 0.001,
                ..d.clone()
            })
            .unwrap()
            .temperature,
            0.001
        );
        for (field, o) in [
            (
                "temperature",
                SamplerOptions {
                    temperature: f32::NAN,
                    ..d.clone()
                },
            ),
            (
                "temperature",
                SamplerOptions {
                    temperature: f32::INFINITY,
                    ..d.clone()
                },
            ),
            (
                "repeat_penalty",
                SamplerOptions {
                    repeat_penalty: 0.0,
                    ..d.clone()
                },
            ),
            (
                "repeat_penalty",
                SamplerOptions {
                    repeat_penalty: f32::NAN,
                    ..d.clone()
                },
            ),
            (
                "repeat_penalty",
                SamplerOptions {
                    repeat_penalty: -2.0,
                    ..d.clone()
                },
            ),
            (
                "top_p",
                SamplerOptions {
                    top_p: f32::NAN,
                    ..d.clone()
                },
            ),
            (
                "min_p",
                SamplerOptions {
                    min_p: 1.5,
                    ..d.clone()
                },
            ),
        ] {
            assert_eq!(v(o).unwrap_err().field, field);
        }
        // Unvalidated NaN temperature: greedy, not a NaN distribution.
        let mut s = Sampler::new(SamplerOptions {
            temperature: f32::NAN,
            ..tiny
        });
        assert_eq!(s.sample(&logits, &[]), 1);
    }

    #[test]
    fn nan_and_empty_history_do_not_panic() {
        let mut s = Sampler::new(SamplerOptions::default());
        let t = s.sample(&[f32::NAN, 1.0, f32::NEG_INFINITY], &[99, 1]);
        assert!(t < 3);
        let mut g = Sampler::new(SamplerOptions::greedy());
        assert_eq!(g.sample(&[f32::NAN; 3], &[]), 0);
    }

    #[test]
    fn masked_sampling_stays_in_the_allowed_set() {
        // Tokens 1 and 3 allowed: the best logit (token 0) and token 2 must never come out.
        let logits = [9.0, 1.0, 8.0, 0.5];
        let mask = [0b1010u32];
        let mut g = Sampler::new(SamplerOptions::greedy());
        assert_eq!(g.sample_masked(&logits, &[], Some(&mask)), 1);
        for opts in [
            SamplerOptions::default(),
            SamplerOptions {
                temperature: 50.0,
                top_k: 1,
                top_p: 1.0,
                min_p: 0.0,
                repeat_penalty: 3.0,
                ..Default::default()
            },
            SamplerOptions {
                temperature: 50.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                ..Default::default()
            },
        ] {
            let mut s = Sampler::new(opts);
            let drawn: Vec<u32> = (0..200)
                .map(|_| s.sample_masked(&logits, &[1], Some(&mask)))
                .collect();
            assert!(drawn.iter().all(|&t| t == 1 || t == 3), "{drawn:?}");
        }
        // top_k = 1 within the allowed set is the allowed argmax, not the global one.
        let mut k1 = Sampler::new(SamplerOptions {
            top_k: 1,
            ..Default::default()
        });
        assert_eq!(k1.sample_masked(&logits, &[], Some(&mask)), 1);
        // A hot temperature over the allowed pair draws both.
        let mut hot = Sampler::new(SamplerOptions {
            temperature: 50.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        });
        let drawn: Vec<u32> = (0..200)
            .map(|_| hot.sample_masked(&logits, &[], Some(&mask)))
            .collect();
        assert!(drawn.contains(&1) && drawn.contains(&3));
    }
}
