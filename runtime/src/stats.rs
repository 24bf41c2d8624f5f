//! Generation statistics, computed in one place for every front end (`tern run`, `tern chat`,
//! the FFI): prompt and decode speed, time to the first token, why generation stopped.
//!
//! Times are given as offsets from the start of the request, so this module needs no clock
//! (`no_std`): the caller reads its own (`std::time::Instant`, a platform timer) at the
//! events. A speed that cannot be measured (no prompt tokens, fewer than two generated tokens,
//! or a zero interval) is `None`, never NaN, infinity or a made-up 0.

use core::time::Duration;

/// What one generation request did and how long it took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerationStats<S> {
    /// Prompt tokens processed before the first token was sampled.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated: usize,
    /// From the start to the end of prompt processing.
    pub prompt_time: Duration,
    /// From the start to the first generated token, if there was one.
    pub first_token: Option<Duration>,
    /// From the end of prompt processing to the end of generation.
    pub decode_time: Duration,
    /// Why generation ended.
    pub stop: S,
}

impl<S> GenerationStats<S> {
    /// The statistics of a request whose prompt was processed at `prompt_done`, whose first
    /// token came at `first_token` and which ended at `end`, all measured from its start.
    /// Offsets out of order (a clock that went backwards) count as zero intervals.
    pub fn from_offsets(
        prompt_tokens: usize,
        generated: usize,
        prompt_done: Duration,
        first_token: Option<Duration>,
        end: Duration,
        stop: S,
    ) -> Self {
        GenerationStats {
            prompt_tokens,
            generated,
            prompt_time: prompt_done,
            first_token,
            decode_time: end.saturating_sub(prompt_done),
            stop,
        }
    }

    /// Prompt tokens per second; `None` without prompt tokens or time.
    pub fn prompt_tok_s(&self) -> Option<f64> {
        rate(self.prompt_tokens, self.prompt_time)
    }

    /// Generated tokens per second after the first: the first token is sampled from the
    /// prompt's logits, so decode speed counts the forward passes after it (llama.cpp's
    /// `eval time` likewise). `None` with fewer than two tokens or no time.
    pub fn decode_tok_s(&self) -> Option<f64> {
        rate(self.generated.saturating_sub(1), self.decode_time)
    }
}

/// `n` per second of `time`, when both are nonzero.
fn rate(n: usize, time: Duration) -> Option<f64> {
    let secs = time.as_secs_f64();
    (n > 0 && secs > 0.0).then(|| n as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_count_tokens_over_their_intervals() {
        let ms = Duration::from_millis;
        let s = GenerationStats::from_offsets(100, 11, ms(500), Some(ms(510)), ms(1500), "eos");
        assert_eq!(s.prompt_tok_s(), Some(200.0));
        assert_eq!(s.decode_time, ms(1000));
        assert_eq!(s.decode_tok_s(), Some(10.0));
        assert_eq!(s.first_token, Some(ms(510)));
    }

    #[test]
    fn nothing_measured_is_none() {
        let ms = Duration::from_millis;
        for generated in [0, 1] {
            let s = GenerationStats::from_offsets(0, generated, ms(0), None, ms(5), ());
            assert_eq!(s.prompt_tok_s(), None);
            assert_eq!(s.decode_tok_s(), None);
        }
        // Zero time, or an end before the prompt (a clock that stepped back).
        let s = GenerationStats::from_offsets(4, 3, ms(0), Some(ms(0)), ms(0), ());
        assert_eq!((s.prompt_tok_s(), s.decode_tok_s()), (None, None));
        let s = GenerationStats::from_offsets(4, 3, ms(9), Some(ms(9)), ms(2), ());
        assert_eq!(s.decode_time, Duration::ZERO);
        assert_eq!(s.decode_tok_s(), None);
    }
}
