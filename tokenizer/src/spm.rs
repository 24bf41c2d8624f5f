//! SentencePiece-style BPE with scores (GGUF `tokenizer.ggml.model = "llama"`), as
//! llama.cpp's `llm_tokenizer_spm_session`: the (already `▁`-escaped) text starts as one
//! symbol per UTF-8 character; the adjacent pair whose concatenation is a token with the
//! highest score (leftmost on ties) is merged until no pair is a token. A final symbol
//! that is not a token becomes the byte tokens `<0xXX>` of its bytes.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::vocab::Vocab;

/// "No token".
const NONE: u32 = u32::MAX;

/// Byte fallback of a SentencePiece model.
#[derive(Clone, Debug)]
pub(crate) struct Spm {
    /// Whether text may be cut before every `▁` that follows another character: true
    /// when no token contains `▁` right after a character other than `▁`, as then no
    /// merge can join the pieces on either side of such a cut. Cutting lets long texts
    /// merge piece by piece instead of in one big queue, with the same result.
    split_at_spaces: bool,
    /// Token for each byte: `<0xXX>`, else the one-byte string, else the unknown token,
    /// else [`NONE`] (the byte is dropped; llama.cpp would throw).
    byte_tokens: [u32; 256],
}

/// Reusable buffers for [`Spm::encode`].
#[derive(Default)]
pub(crate) struct SpmScratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Bigram>,
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    /// Token id of the symbol's text, or [`NONE`].
    id: u32,
    /// Byte offset in the text.
    start: u32,
    /// Length in bytes; 0 once merged into the left neighbour.
    len: u32,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
    id: u32,
}

impl Ord for Bigram {
    /// Higher score first, then leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// UTF-8 of `▁` (U+2581), the escaped space.
const SPACE: &[u8] = "\u{2581}".as_bytes();

/// Hex digits of byte token names.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl Spm {
    /// Resolves the byte fallback tokens.
    pub(crate) fn new(vocab: &Vocab, unk: Option<u32>) -> Spm {
        let mut byte_tokens = [NONE; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let name = [b'<', b'0', b'x', HEX[b >> 4], HEX[b & 15], b'>'];
            *slot = vocab
                .token(&name)
                .or_else(|| vocab.token(&[b as u8]))
                .or(unk)
                .unwrap_or(NONE);
        }
        let split_at_spaces = (0..vocab.len() as u32).all(|id| {
            let t = vocab.symbol_bytes(id);
            !(1..t.len()).any(|i| t[i..].starts_with(SPACE) && !t[..i].ends_with(SPACE))
        });
        Spm {
            split_at_spaces,
            byte_tokens,
        }
    }

    /// Tokenizes `text` (spaces already replaced by `▁`), appending ids to `out`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>, s: &mut SpmScratch) {
        if !self.split_at_spaces {
            self.encode_piece(vocab, text, out, s);
            return;
        }
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 1;
        while i < bytes.len() {
            if bytes[i..].starts_with(SPACE) && !bytes[..i].ends_with(SPACE) {
                self.encode_piece(vocab, text.get(start..i).unwrap_or(""), out, s);
                start = i;
                i += SPACE.len();
            } else {
                i += 1;
            }
        }
        self.encode_piece(vocab, text.get(start..).unwrap_or(""), out, s);
    }

    /// Tokenizes a piece of text that no merge may cross.
    fn encode_piece(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>, s: &mut SpmScratch) {
        if text.is_empty() || text.len() > u32::MAX as usize / 2 {
            return;
        }
        let bytes = text.as_bytes();
        s.symbols.clear();
        s.heap.clear();
        let mut iter = text.char_indices().peekable();
        while let Some((start, c)) = iter.next() {
            let i = s.symbols.len() as u32;
            let len = c.len_utf8();
            s.symbols.push(Symbol {
                id: vocab.token(&bytes[start..start + len]).unwrap_or(NONE),
                start: start as u32,
                len: len as u32,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if iter.peek().is_some() { i + 1 } else { NONE },
            });
        }
        let n = s.symbols.len() as u32;
        for i in 1..n {
            try_pair(vocab, bytes, s, i - 1, i);
        }
        while let Some(bg) = s.heap.pop() {
            let (l, r) = (s.symbols[bg.left as usize], s.symbols[bg.right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue; // stale
            }
            let sl = &mut s.symbols[bg.left as usize];
            sl.len += r.len;
            sl.id = bg.id;
            sl.next = r.next;
            s.symbols[bg.right as usize].len = 0;
            if r.next != NONE {
                s.symbols[r.next as usize].prev = bg.left;
            }
            if l.prev != NONE {
                try_pair(vocab, bytes, s, l.prev, bg.left);
            }
            if r.next != NONE {
                try_pair(vocab, bytes, s, bg.left, r.next);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let sym = s.symbols[i as usize];
            if sym.id != NONE {
                out.push(sym.id);
            } else {
                let (a, b) = (sym.start as usize, (sym.start + sym.len) as usize);
                for &byte in &bytes[a..b] {
                    let t = self.byte_tokens[byte as usize];
                    if t != NONE {
                        out.push(t);
                    }
                }
            }
            i = sym.next;
        }
    }
}

/// Queues the merge of adjacent symbols if their concatenation is a token.
#[inline]
fn try_pair(vocab: &Vocab, bytes: &[u8], s: &mut SpmScratch, left: u32, right: u32) {
    let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
    let (a, b) = (l.start as usize, (l.start + l.len + r.len) as usize);
    if let Some(id) = vocab.token(&bytes[a..b]) {
        s.heap.push(Bigram {
            score: vocab.scores[id as usize],
            left,
            right,
            size: l.len + r.len,
            id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn vocab(tokens: &[(&str, f32, i32)]) -> Vocab {
        let toks: Vec<&str> = tokens.iter().map(|t| t.0).collect();
        let scores: Vec<f32> = tokens.iter().map(|t| t.1).collect();
        let types: Vec<i32> = tokens.iter().map(|t| t.2).collect();
        Vocab::new(&toks, Some(&scores), Some(&types))
    }

    fn enc(v: &Vocab, spm: &Spm, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        spm.encode(v, text, &mut out, &mut SpmScratch::default());
        out
    }

    #[test]
    fn highest_score_wins() {
        let v = vocab(&[
            ("<unk>", 0.0, 2),  // 0
            ("▁", -1.0, 1),     // 1
            ("a", -2.0, 1),     // 2
            ("b", -2.0, 1),     // 3
            ("c", -2.0, 1),     // 4
            ("ab", -5.0, 1),    // 5
            ("bc", -1.5, 1),    // 6
            ("▁a", -3.0, 1),    // 7
            ("▁abc", -0.5, 1),  // 8
            ("<0x41>", 0.0, 6), // 9 'A'
        ]);
        let spm = Spm::new(&v, Some(0));
        // "bc" (-1.5) beats "▁a" (-3) beats "ab" (-5); then "▁a" + "bc" is a token.
        assert_eq!(enc(&v, &spm, "▁abc"), vec![8]);
        // "bc" first, then "a" + "bc" is not a token.
        assert_eq!(enc(&v, &spm, "abc"), vec![2, 6]);
        assert_eq!(enc(&v, &spm, "ab"), vec![5]);
        // Byte fallback: 'A' has a byte token, 'Z' falls back to unk.
        assert_eq!(enc(&v, &spm, "aAZ"), vec![2, 9, 0]);
        // Multi-byte characters fall back byte by byte.
        assert_eq!(enc(&v, &spm, "é"), vec![0, 0]);
        assert_eq!(enc(&v, &spm, ""), Vec::<u32>::new());
    }

    #[test]
    fn ties_go_left_and_bytes() {
        let mut toks = vec![("x", 0.0, 1), ("xx", -1.0, 1)];
        let names: Vec<alloc::string::String> =
            (0..256).map(|b| alloc::format!("<0x{b:02X}>")).collect();
        for n in &names {
            toks.push((n.as_str(), 0.0, 6));
        }
        let v = vocab(&toks);
        let spm = Spm::new(&v, None);
        assert_eq!(enc(&v, &spm, "xxx"), vec![1, 0]);
        let e = enc(&v, &spm, "é");
        assert_eq!(e, vec![2 + 0xC3, 2 + 0xA9]);
    }

    #[test]
    fn no_fallback_drops_bytes() {
        let v = vocab(&[("a", 0.0, 1)]);
        let spm = Spm::new(&v, None);
        assert_eq!(enc(&v, &spm, "aza"), vec![0, 0]);
    }

    #[test]
    fn cutting_at_spaces_keeps_results() {
        // A token spanning "a▁" forbids cutting there.
        let v = vocab(&[("▁", -1.0, 1), ("a", -1.0, 1), ("a▁", -0.5, 1)]);
        let spm = Spm::new(&v, None);
        assert!(!spm.split_at_spaces);
        assert_eq!(enc(&v, &spm, "▁a▁"), vec![0, 2]);

        let v = vocab(&[
            ("▁", -1.0, 1),
            ("a", -1.0, 1),
            ("▁a", -0.5, 1),
            ("▁▁", -0.1, 1),
            ("b", -2.0, 1),
            ("ab", -0.3, 1),
            ("▁▁a", -0.2, 1),
            ("▁ab", -0.05, 1),
        ]);
        let spm = Spm::new(&v, None);
        assert!(spm.split_at_spaces);
        assert_eq!(enc(&v, &spm, "▁a▁▁a▁"), vec![2, 6, 0]);
        // Cut and uncut agree on random strings.
        let alphabet = ["▁", "a", "b", "c"];
        let mut state = 1u32;
        for _ in 0..3000 {
            let mut text = alloc::string::String::new();
            for _ in 0..(state % 13) {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                text.push_str(alphabet[(state >> 16) as usize % 4]);
            }
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let mut whole = Vec::new();
            spm.encode_piece(&v, &text, &mut whole, &mut SpmScratch::default());
            assert_eq!(enc(&v, &spm, &text), whole, "{text:?}");
        }
    }
}
