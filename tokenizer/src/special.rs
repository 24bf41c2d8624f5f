//! Special-token partitioning: cut the text around occurrences of control / user-defined
//! / unknown tokens before the normal tokenizer sees it (llama.cpp's
//! `tokenizer_st_partition`).
//!
//! llama.cpp takes the special tokens one at a time, longest text first, and splits every
//! still-unclaimed text fragment at each left-to-right, non-overlapping occurrence of
//! that token. This module gives the same result in one scan: it finds every occurrence
//! of every special token with a trie, then accepts them in (priority, position) order,
//! skipping those that overlap an already accepted one. Control and unknown tokens take
//! part only when `parse_special` is set; user-defined tokens always do.

use alloc::vec::Vec;

use super::vocab::{attr, Vocab};

/// A piece of the partitioned input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Text to tokenize normally: a byte range of the input.
    Text(usize, usize),
    /// A special token matched verbatim.
    Token(u32),
}

/// Marks "no entry" in a trie node / "no child" in the root table.
const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Entry {
    id: u32,
    len: usize,
    /// Control / unknown: matched only with `parse_special`.
    needs_parse_special: bool,
}

#[derive(Clone, Debug)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Index into `entries` of the token ending here, or [`NONE`].
    terminal: u32,
}

/// Finds special tokens in text.
#[derive(Clone, Debug)]
pub(crate) struct SpecialMatcher {
    /// Special tokens in priority order: longer text first, then lower id.
    entries: Vec<Entry>,
    /// Trie over the token texts; node 0 is the root.
    nodes: Vec<Node>,
    /// Root children by first byte.
    root: [u32; 256],
}

impl SpecialMatcher {
    /// Collects the vocabulary's control, user-defined and unknown tokens.
    pub(crate) fn new(vocab: &Vocab) -> SpecialMatcher {
        let mask = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut ids: Vec<(usize, u32)> = (0..vocab.len() as u32)
            .filter(|&id| vocab.has(id, mask))
            .filter_map(|id| {
                let len = vocab.text(id).map_or(0, str::len);
                (len > 0).then_some((len, id))
            })
            .collect();
        ids.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut m = SpecialMatcher {
            entries: Vec::with_capacity(ids.len()),
            nodes: alloc::vec![Node {
                children: Vec::new(),
                terminal: NONE,
            }],
            root: [NONE; 256],
        };
        for (len, id) in ids {
            let e = m.entries.len() as u32;
            m.entries.push(Entry {
                id,
                len,
                needs_parse_special: vocab.has(id, attr::CONTROL | attr::UNKNOWN),
            });
            let text = vocab.symbol_bytes(id);
            let mut node = 0usize;
            for &b in text {
                node = m.child_or_insert(node, b);
            }
            if m.nodes[node].terminal == NONE {
                m.nodes[node].terminal = e;
            }
        }
        m
    }

    fn child_or_insert(&mut self, node: usize, b: u8) -> usize {
        let pos = match self.nodes[node].children.binary_search_by_key(&b, |c| c.0) {
            Ok(i) => return self.nodes[node].children[i].1 as usize,
            Err(i) => i,
        };
        let new = self.nodes.len() as u32;
        self.nodes.push(Node {
            children: Vec::new(),
            terminal: NONE,
        });
        self.nodes[node].children.insert(pos, (b, new));
        if node == 0 {
            self.root[b as usize] = new;
        }
        new as usize
    }

    #[inline]
    fn child(&self, node: usize, b: u8) -> Option<usize> {
        let ch = &self.nodes[node].children;
        ch.binary_search_by_key(&b, |c| c.0)
            .ok()
            .map(|i| ch[i].1 as usize)
    }

    /// Whether any special token exists at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Splits `text` into fragments, appending them to `out`. Empty text gives nothing.
    pub(crate) fn partition(&self, text: &str, parse_special: bool, out: &mut Vec<Fragment>) {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return;
        }
        if self.is_empty() {
            out.push(Fragment::Text(0, bytes.len()));
            return;
        }
        // Every occurrence of every allowed special token: (priority, start).
        let mut occ: Vec<(u32, usize)> = Vec::new();
        for start in 0..bytes.len() {
            let first = self.root[bytes[start] as usize];
            if first == NONE {
                continue;
            }
            let mut node = first as usize;
            let mut j = start + 1;
            loop {
                let e = self.nodes[node].terminal;
                if e != NONE && (parse_special || !self.entries[e as usize].needs_parse_special) {
                    occ.push((e, start));
                }
                if j >= bytes.len() {
                    break;
                }
                match self.child(node, bytes[j]) {
                    Some(n) => node = n,
                    None => break,
                }
                j += 1;
            }
        }
        if occ.is_empty() {
            out.push(Fragment::Text(0, bytes.len()));
            return;
        }
        occ.sort_unstable();

        // Accept in priority order, leftmost first, skipping overlaps.
        let mut claimed = alloc::vec![false; bytes.len()];
        let mut accepted: Vec<(usize, usize, u32)> = Vec::new();
        for (e, start) in occ {
            let entry = &self.entries[e as usize];
            let end = start + entry.len;
            if claimed[start..end].iter().any(|&c| c) {
                continue;
            }
            claimed[start..end].iter_mut().for_each(|c| *c = true);
            accepted.push((start, end, entry.id));
        }
        accepted.sort_unstable();

        let mut at = 0;
        for (start, end, id) in accepted {
            if start > at {
                out.push(Fragment::Text(at, start));
            }
            out.push(Fragment::Token(id));
            at = end;
        }
        if at < bytes.len() {
            out.push(Fragment::Text(at, bytes.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn matcher(tokens: &[&str], types: &[i32]) -> (Vocab, SpecialMatcher) {
        let v = Vocab::new(tokens, None, Some(types));
        let m = SpecialMatcher::new(&v);
        (v, m)
    }

    fn parts(m: &SpecialMatcher, text: &str, parse: bool) -> Vec<Fragment> {
        let mut out = Vec::new();
        m.partition(text, parse, &mut out);
        out
    }

    #[test]
    fn chatml() {
        let (_, m) = matcher(
            &["a", "<|im_start|>", "<|im_end|>", "<tool>"],
            &[1, 3, 3, 4],
        );
        let t = "<|im_start|>user\nHi<|im_end|>\n";
        assert_eq!(
            parts(&m, t, true),
            vec![
                Fragment::Token(1),
                Fragment::Text(12, 19),
                Fragment::Token(2),
                Fragment::Text(29, 30)
            ]
        );
        // Without parse_special control tokens are plain text.
        assert_eq!(parts(&m, t, false), vec![Fragment::Text(0, t.len())]);
        // User-defined tokens are matched either way.
        assert_eq!(
            parts(&m, "x<tool><tool>", false),
            vec![Fragment::Text(0, 1), Fragment::Token(3), Fragment::Token(3)]
        );
        assert!(parts(&m, "", true).is_empty());
        assert_eq!(parts(&m, "<|im_end|", true), vec![Fragment::Text(0, 9)]);
    }

    #[test]
    fn longest_token_takes_priority() {
        // "bcd" is longer, so it is cut out first even though "ab" starts further left
        // (llama.cpp processes special tokens longest first).
        let (_, m) = matcher(&["ab", "bcd", "x"], &[3, 3, 1]);
        assert_eq!(
            parts(&m, "abcd", true),
            vec![Fragment::Text(0, 1), Fragment::Token(1)]
        );
        // Non-overlapping repeats, left to right.
        let (_, m) = matcher(&["aa"], &[3]);
        assert_eq!(
            parts(&m, "aaaaa", true),
            vec![Fragment::Token(0), Fragment::Token(0), Fragment::Text(4, 5)]
        );
        // A token and its prefix.
        let (_, m) = matcher(&["<s>", "<s>x"], &[3, 4]);
        assert_eq!(
            parts(&m, "<s><s>x", false),
            vec![Fragment::Text(0, 3), Fragment::Token(1)]
        );
        assert_eq!(
            parts(&m, "<s><s>x", true),
            vec![Fragment::Token(0), Fragment::Token(1)]
        );
    }

    #[test]
    fn normal_and_byte_tokens_are_not_special() {
        let (_, m) = matcher(&["<0x0A>", "hello", "<unk>"], &[6, 1, 2]);
        assert_eq!(
            parts(&m, "<0x0A>hello<unk>", true),
            vec![Fragment::Text(0, 11), Fragment::Token(2)]
        );
        assert_eq!(parts(&m, "<unk>", false), vec![Fragment::Text(0, 5)]);
        assert!(!m.is_empty());
    }

    #[test]
    fn multibyte_boundaries() {
        let (_, m) = matcher(&["▁<x>", "é"], &[4, 1]);
        let t = "é▁<x>é";
        let p = parts(&m, t, false);
        assert_eq!(
            p,
            vec![
                Fragment::Text(0, 2),
                Fragment::Token(0),
                Fragment::Text(8, 10)
            ]
        );
        for f in p {
            if let Fragment::Text(a, b) = f {
                assert!(t.get(a..b).is_some());
            }
        }
    }
}
