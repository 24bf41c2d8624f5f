//! Stop strings matched on streamed text, across token boundaries.

use alloc::string::String;
use alloc::vec::Vec;

/// Watches streamed text for stop strings.
///
/// Text goes in piece by piece (one token's worth at a time); what comes out is the text
/// that can safely be shown: everything except a tail that could still turn out to be the
/// start of a stop string. When a stop string is complete, the text before it is released
/// and the stop string and everything after it are dropped. So the caller never sees any
/// part of a stop string, even one split over several tokens.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    /// Non-empty stop strings.
    stops: Vec<String>,
    /// Text received but not yet released: a possible prefix of a stop string.
    held: String,
}

/// What [`StopStrings::push`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMatch {
    /// No stop string yet.
    None,
    /// Stop string number `.0` (in the order given) is complete.
    Found(usize),
}

impl StopStrings {
    /// A matcher for `stops`; empty strings are ignored.
    pub fn new<S: AsRef<str>>(stops: &[S]) -> Self {
        StopStrings {
            stops: stops
                .iter()
                .map(|s| String::from(s.as_ref()))
                .filter(|s| !s.is_empty())
                .collect(),
            held: String::new(),
        }
    }

    /// Whether there are no stop strings.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Adds `text` and appends the text now safe to release to `out`.
    ///
    /// On [`StopMatch::Found`] the text before the stop string has been released, the rest is
    /// discarded and the matcher is empty again.
    pub fn push(&mut self, text: &str, out: &mut String) -> StopMatch {
        if self.stops.is_empty() {
            out.push_str(text);
            return StopMatch::None;
        }
        self.held.push_str(text);
        // The earliest complete stop string wins (the first listed on a tie).
        let found = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, i)) = found {
            out.push_str(&self.held[..at]);
            self.held.clear();
            return StopMatch::Found(i);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| partial_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let release = self.held.len() - keep;
        out.push_str(&self.held[..release]);
        self.held.drain(..release);
        StopMatch::None
    }

    /// Releases the held-back tail (the text ended without completing a stop string) and
    /// empties the matcher.
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.held);
        self.held.clear();
    }

    /// The text received but held back: it could still begin a stop string.
    pub fn held(&self) -> &str {
        &self.held
    }

    /// Forgets held-back text.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`, returning the released text and the match.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, StopMatch) {
        let mut m = StopStrings::new(stops);
        let mut out = String::new();
        for p in pieces {
            if let StopMatch::Found(i) = m.push(p, &mut out) {
                return (out, StopMatch::Found(i));
            }
        }
        m.finish(&mut out);
        (out, StopMatch::None)
    }

    #[test]
    fn no_stops_passes_everything_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), StopMatch::None));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), StopMatch::None));
    }

    #[test]
    fn stop_inside_one_piece() {
        assert_eq!(
            run(&["END"], &["hello END world"]),
            ("hello ".into(), StopMatch::Found(0))
        );
    }

    #[test]
    fn stop_straddling_pieces_is_never_released() {
        let mut m = StopStrings::new(&["###"]);
        let mut out = String::new();
        assert_eq!(m.push("abc#", &mut out), StopMatch::None);
        assert_eq!(out, "abc");
        assert_eq!(m.push("#", &mut out), StopMatch::None);
        assert_eq!(out, "abc");
        assert_eq!(m.push("#tail", &mut out), StopMatch::Found(0));
        assert_eq!(out, "abc");
    }

    #[test]
    fn false_alarm_is_released() {
        assert_eq!(
            run(&["###"], &["a#", "#b", "c"]),
            ("a##bc".into(), StopMatch::None)
        );
        // Held text that never completes comes out at the end.
        assert_eq!(run(&["###"], &["a", "##"]), ("a##".into(), StopMatch::None));
    }

    #[test]
    fn earliest_stop_wins() {
        assert_eq!(
            run(&["world", "lo w"], &["hel", "lo world"]),
            ("hel".into(), StopMatch::Found(1))
        );
    }

    #[test]
    fn multibyte_stop_strings() {
        assert_eq!(
            run(&["日本"], &["é日", "本x"]),
            ("é".into(), StopMatch::Found(0))
        );
        assert_eq!(
            run(&["日本"], &["é日", "x"]),
            ("é日x".into(), StopMatch::None)
        );
    }

    #[test]
    fn character_by_character() {
        let text = "The answer is 42.\nUser: more";
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(
            run(&["\nUser:"], &pieces),
            ("The answer is 42.".into(), StopMatch::Found(0))
        );
    }
}
