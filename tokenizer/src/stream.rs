//! Streaming detokenization: turn generated token ids into text as they arrive, without
//! ever emitting half of a multi-byte UTF-8 character.

use alloc::string::String;
use alloc::vec::Vec;

use super::Tokenizer;

/// Streaming detokenizer: push token ids one at a time and get back the text that is
/// complete so far.
///
/// Bytes of a UTF-8 sequence that is still incomplete are held back until a later token
/// completes it. Bytes that can never become valid UTF-8 are emitted as U+FFFD, one per
/// maximal invalid subsequence (as [`String::from_utf8_lossy`] does), so the concatenation
/// of everything returned by [`push`](Self::push) and [`finish`](Self::finish) equals
/// `String::from_utf8_lossy` of all the tokens' bytes.
///
/// Tokens render as [`Tokenizer::token_bytes`] does, with `special = false` unless set
/// with [`with_special`](Self::with_special) (control tokens then render as their text).
/// No leading space is stripped.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Bytes received but not yet returned: at most an incomplete UTF-8 prefix (≤ 3 bytes)
    /// between calls.
    pending: Vec<u8>,
    special: bool,
}

impl StreamDecoder {
    /// A decoder that renders control tokens as nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that renders control tokens as their text when `special` is true.
    pub fn with_special(special: bool) -> Self {
        StreamDecoder {
            pending: Vec::new(),
            special,
        }
    }

    /// Adds token `id` and returns the text completed by it (possibly empty). Unknown
    /// ids add nothing.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let mut out = String::new();
        self.push_to(tok, id, &mut out);
        out
    }

    /// Like [`push`](Self::push), appending the completed text to `out` instead.
    pub fn push_to(&mut self, tok: &Tokenizer, id: u32, out: &mut String) {
        self.push_bytes_to(tok.token_bytes(id, self.special), out);
    }

    /// Adds raw bytes and appends the text they complete to `out`.
    pub fn push_bytes_to(&mut self, bytes: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            // Fast path: no carried-over bytes, decode straight from the input.
            let rest = drain_valid(bytes, out);
            self.pending.extend_from_slice(rest);
        } else {
            self.pending.extend_from_slice(bytes);
            let pending = core::mem::take(&mut self.pending);
            let rest = drain_valid(&pending, out);
            self.pending.extend_from_slice(rest);
        }
    }

    /// Returns whatever is still held back (an incomplete sequence becomes U+FFFD) and
    /// resets the decoder for a new stream.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Whether bytes are being held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Appends the decodable prefix of `bytes` to `out` (invalid subsequences as U+FFFD) and
/// returns the incomplete tail that may still be completed by more bytes.
fn drain_valid<'a>(mut bytes: &'a [u8], out: &mut String) -> &'a [u8] {
    loop {
        match core::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return &[];
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid` is valid UTF-8 by construction.
                out.push_str(core::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        bytes = &rest[n.min(rest.len())..];
                    }
                    None => return rest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> (alloc::vec::Vec<String>, String) {
        let mut d = StreamDecoder::new();
        let mut outs = alloc::vec::Vec::new();
        for c in chunks {
            let mut s = String::new();
            d.push_bytes_to(c, &mut s);
            outs.push(s);
        }
        (outs, d.finish())
    }

    #[test]
    fn emoji_split_across_chunks() {
        let crab = "🦀".as_bytes(); // F0 9F A6 80
        let (outs, fin) = feed(&[b"a", &crab[..1], &crab[1..3], &crab[3..], b"b"]);
        assert_eq!(outs, ["a", "", "", "🦀", "b"]);
        assert_eq!(fin, "");
    }

    #[test]
    fn invalid_bytes() {
        // A stray continuation byte can never complete: replaced at once.
        let (outs, fin) = feed(&[b"x\x80y"]);
        assert_eq!(outs, ["x\u{FFFD}y"]);
        assert_eq!(fin, "");
        // A lead byte followed by a non-continuation: replaced once that is seen.
        let (outs, fin) = feed(&[b"\xE2\x82", b"A"]);
        assert_eq!(outs, ["", "\u{FFFD}A"]);
        assert_eq!(fin, "");
        // Truncated at the end of the stream.
        let (outs, fin) = feed(&[b"ok\xF0\x9F"]);
        assert_eq!(outs, ["ok"]);
        assert_eq!(fin, "\u{FFFD}");
        // Overlong / out-of-range lead bytes.
        let (outs, _) = feed(&[b"\xC0\xAF\xFF"]);
        assert_eq!(outs, ["\u{FFFD}\u{FFFD}\u{FFFD}"]);
    }

    #[test]
    fn matches_lossy_on_all_splits() {
        let data: &[u8] = b"h\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x80\xE2\x82z\xF0\x9F\x98";
        let expect = String::from_utf8_lossy(data).into_owned();
        for i in 0..=data.len() {
            for j in i..=data.len() {
                let (outs, fin) = feed(&[&data[..i], &data[i..j], &data[j..]]);
                let got: String = outs.concat() + &fin;
                assert_eq!(got, expect, "split at {i}, {j}");
            }
        }
        // Byte by byte.
        let chunks: alloc::vec::Vec<&[u8]> = data.chunks(1).collect();
        let (outs, fin) = feed(&chunks);
        assert_eq!(outs.concat() + &fin, expect);
    }
}
