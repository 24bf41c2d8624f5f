//! Byte-level BPE (GGUF `tokenizer.ggml.model = "gpt2"`), as llama.cpp's
//! `llm_tokenizer_bpe_session`: each pre-tokenized word becomes one symbol per byte (its
//! GPT-2 alphabet character), then the adjacent pair with the lowest merge rank (leftmost
//! on ties) is merged until no pair has a merge; each final symbol is looked up in the
//! vocabulary.
//!
//! Merges are resolved to symbol ids once, at load, so merging only compares integers.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::bytelevel;
use super::hash::{Merge, PairTable};
use super::vocab::Vocab;
use super::TokenizerError;

/// "No symbol": a byte whose alphabet character is neither a token nor a merge part.
const NONE: u32 = u32::MAX;

/// Words up to this many bytes are merged in a stack array, longer ones with a heap.
const SMALL: usize = 32;

/// The merge table of a byte-level BPE model.
#[derive(Clone, Debug)]
pub(crate) struct Bpe {
    merges: PairTable,
    /// Symbol id of each byte's alphabet character.
    byte_sym: [u32; 256],
    /// Look a whole word up in the vocabulary before merging (Llama 3 style).
    ignore_merges: bool,
}

/// Reusable buffers for [`Bpe::encode_word`].
#[derive(Default)]
pub(crate) struct BpeScratch {
    symbols: Vec<Symbol>,
    /// Candidate merges: (rank, left) packed for ordering, right, combined length, result.
    heap: BinaryHeap<Reverse<(u64, u32, u32, u32)>>,
    text: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    id: u32,
    /// Length in bytes of the word; 0 once merged into its left neighbour.
    len: u32,
    prev: u32,
    next: u32,
}

impl Bpe {
    /// Parses the merges ("left right", lowest rank first). Strings that appear in merges
    /// without being tokens are added to `vocab` as extra symbols.
    pub(crate) fn new(
        vocab: &mut Vocab,
        merges: &[&str],
        ignore_merges: bool,
    ) -> Result<Bpe, TokenizerError> {
        let mut table = PairTable::with_capacity(merges.len());
        let mut joined = Vec::new();
        for (index, m) in merges.iter().enumerate() {
            let bytes = m.as_bytes();
            // llama.cpp splits at the first space after the first byte.
            let sep = bytes
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|p| p + 1)
                .ok_or(TokenizerError::BadMerge { index })?;
            let (left, right) = (&bytes[..sep], &bytes[sep + 1..]);
            if right.is_empty() {
                continue; // can never apply
            }
            let rank = u32::try_from(index).map_err(|_| TokenizerError::BadMerge { index })?;
            let a = vocab.intern_symbol(left);
            let b = vocab.intern_symbol(right);
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let result = vocab.intern_symbol(&joined);
            table.insert_if_absent(a, b, Merge { rank, result });
        }
        let mut byte_sym = [NONE; 256];
        for (b, slot) in byte_sym.iter_mut().enumerate() {
            *slot = vocab
                .symbol(bytelevel::byte_to_utf8(b as u8))
                .unwrap_or(NONE);
        }
        Ok(Bpe {
            merges: table,
            byte_sym,
            ignore_merges,
        })
    }

    /// Tokenizes one pre-tokenized word (raw bytes), appending token ids to `out`.
    pub(crate) fn encode_word(
        &self,
        vocab: &Vocab,
        word: &[u8],
        out: &mut Vec<u32>,
        s: &mut BpeScratch,
    ) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges || word.len() == 1 {
            s.text.clear();
            bytelevel::encode_into(word, &mut s.text);
            if let Some(id) = vocab.token(&s.text) {
                out.push(id);
                return;
            }
        }
        if word.len() <= SMALL {
            self.merge_small(vocab, word, out);
        } else {
            self.merge_heap(vocab, word, out, s);
        }
    }

    /// The merge of the pair of symbols `a`, `b` (`None` if either is not a symbol).
    #[inline]
    fn pair(&self, a: u32, b: u32) -> Option<Merge> {
        if a == NONE || b == NONE {
            None
        } else {
            self.merges.get(a, b)
        }
    }

    /// Merging for short words: symbols in a small array, rescanned for the best pair
    /// after each merge. Same result as [`merge_heap`](Self::merge_heap).
    pub(crate) fn merge_small(&self, vocab: &Vocab, word: &[u8], out: &mut Vec<u32>) {
        let n = word.len();
        let mut ids = [NONE; SMALL];
        for (slot, &b) in ids.iter_mut().zip(word) {
            *slot = self.byte_sym[b as usize];
        }
        // merges[i]: the merge joining symbols i and i + 1.
        let mut merges: [Option<Merge>; SMALL] = [None; SMALL];
        for i in 0..n - 1 {
            merges[i] = self.pair(ids[i], ids[i + 1]);
        }
        let mut len = n;
        loop {
            let mut best: Option<(usize, Merge)> = None;
            for (i, m) in merges.iter().enumerate().take(len - 1) {
                if let Some(m) = *m {
                    let better = match best {
                        None => true,
                        Some((_, b)) => m.rank < b.rank,
                    };
                    if better {
                        best = Some((i, m));
                    }
                }
            }
            let Some((i, m)) = best else { break };
            ids[i] = m.result;
            // Drop symbol i + 1.
            ids.copy_within(i + 2..len, i + 1);
            merges.copy_within(i + 2..len, i + 1);
            len -= 1;
            merges[len - 1] = None;
            if i > 0 {
                merges[i - 1] = self.pair(ids[i - 1], ids[i]);
            }
            if i + 1 < len {
                merges[i] = self.pair(ids[i], ids[i + 1]);
            } else {
                merges[i] = None;
            }
        }
        for &id in &ids[..len] {
            emit(vocab, id, out);
        }
    }

    /// Merging for long words: a linked list of symbols and a priority queue of
    /// candidate merges (llama.cpp's algorithm).
    pub(crate) fn merge_heap(
        &self,
        vocab: &Vocab,
        word: &[u8],
        out: &mut Vec<u32>,
        s: &mut BpeScratch,
    ) {
        if word.len() > u32::MAX as usize / 2 {
            return; // unreachable in practice: a single word of 2 GiB
        }
        s.symbols.clear();
        s.heap.clear();
        let n = word.len() as u32;
        for (i, &b) in word.iter().enumerate() {
            let i = i as u32;
            s.symbols.push(Symbol {
                id: self.byte_sym[b as usize],
                len: 1,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            });
        }
        for i in 1..n {
            self.push_pair(s, i - 1, i);
        }
        while let Some(Reverse((key, right, size, result))) = s.heap.pop() {
            let left = key as u32;
            let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue; // stale: one side changed since this pair was queued
            }
            let sl = &mut s.symbols[left as usize];
            sl.len += r.len;
            sl.id = result;
            sl.next = r.next;
            s.symbols[right as usize].len = 0;
            if r.next != NONE {
                s.symbols[r.next as usize].prev = left;
            }
            if l.prev != NONE {
                self.push_pair(s, l.prev, left);
            }
            if r.next != NONE {
                self.push_pair(s, left, r.next);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let sym = s.symbols[i as usize];
            emit(vocab, sym.id, out);
            i = sym.next;
        }
    }

    /// Queues the merge of adjacent symbols `left`, `right` if there is one.
    #[inline]
    fn push_pair(&self, s: &mut BpeScratch, left: u32, right: u32) {
        let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
        if let Some(m) = self.pair(l.id, r.id) {
            let key = ((m.rank as u64) << 32) | left as u64;
            s.heap.push(Reverse((key, right, l.len + r.len, m.result)));
        }
    }
}

/// Appends the token(s) for a final symbol. A symbol that is not a token (a merge result
/// or part missing from the vocabulary) falls back, like llama.cpp, to the single-byte
/// tokens of its text's bytes, skipping those that do not exist.
#[inline]
fn emit(vocab: &Vocab, id: u32, out: &mut Vec<u32>) {
    if id == NONE {
        return;
    }
    if (id as usize) < vocab.len() {
        out.push(id);
        return;
    }
    for &b in vocab.symbol_bytes(id) {
        if let Some(t) = vocab.token(&[b]) {
            out.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A tiny byte-level vocabulary: letters, "Ġ", and a few merges.
    fn tiny() -> (Vocab, Bpe) {
        let tokens = [
            "h", "e", "l", "o", "Ġ", "w", "r", "d", // 0..8
            "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", // 8..17
            "lo",     // 17
        ];
        let merges = [
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "l o",
        ];
        let mut v = Vocab::new(&tokens, None, None);
        let bpe = Bpe::new(&mut v, &merges, false).unwrap();
        (v, bpe)
    }

    fn enc(v: &Vocab, bpe: &Bpe, word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        bpe.encode_word(v, word.as_bytes(), &mut out, &mut BpeScratch::default());
        out
    }

    #[test]
    fn merges_by_rank() {
        let (v, bpe) = tiny();
        assert_eq!(enc(&v, &bpe, "hello"), vec![11]);
        assert_eq!(enc(&v, &bpe, " world"), vec![16]);
        // "l l" (rank 1) beats "l o" (rank 9): "hel" + "lo" is never formed.
        assert_eq!(enc(&v, &bpe, "hellod"), vec![11, 7]);
        assert_eq!(enc(&v, &bpe, "lol"), vec![17, 2]);
        assert_eq!(enc(&v, &bpe, "wd"), vec![5, 7]);
        assert_eq!(enc(&v, &bpe, ""), Vec::<u32>::new());
        // Bytes without a token are dropped (llama.cpp does the same).
        assert_eq!(enc(&v, &bpe, "hzo"), vec![0, 3]);
        assert_eq!(enc(&v, &bpe, "é"), Vec::<u32>::new());
    }

    #[test]
    fn ties_go_left() {
        // "a a" merges leftmost first: "aaa" → "aa" + "a".
        let tokens = ["a", "aa"];
        let mut v = Vocab::new(&tokens, None, None);
        let bpe = Bpe::new(&mut v, &["a a"], false).unwrap();
        assert_eq!(enc(&v, &bpe, "aaa"), vec![1, 0]);
        assert_eq!(enc(&v, &bpe, "aaaa"), vec![1, 1]);
        assert_eq!(enc(&v, &bpe, "aaaaa"), vec![1, 1, 0]);
    }

    #[test]
    fn merge_parts_missing_from_vocab() {
        // "x y" produces "xy", which is not a token; "xy z" produces "xyz", which is.
        let tokens = ["x", "y", "z", "xyz"];
        let mut v = Vocab::new(&tokens, None, None);
        let bpe = Bpe::new(&mut v, &["x y", "xy z"], false).unwrap();
        assert_eq!(enc(&v, &bpe, "xyz"), vec![3]);
        // "xy" alone stays a non-token symbol: falls back to its single-byte tokens.
        assert_eq!(enc(&v, &bpe, "xy"), vec![0, 1]);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn ignore_merges_whole_word() {
        let tokens = ["a", "b", "ab", "abab"];
        let mut v = Vocab::new(&tokens, None, None);
        let bpe = Bpe::new(&mut v, &["a b"], true).unwrap();
        assert_eq!(enc(&v, &bpe, "abab"), vec![3]);
        assert_eq!(enc(&v, &bpe, "aba"), vec![2, 0]);
    }

    #[test]
    fn bad_merges() {
        let mut v = Vocab::new(&["a"], None, None);
        assert_eq!(
            Bpe::new(&mut v, &["a b", "nospace"], false).unwrap_err(),
            TokenizerError::BadMerge { index: 1 }
        );
        assert_eq!(
            Bpe::new(&mut v, &[" ab"], false).unwrap_err(),
            TokenizerError::BadMerge { index: 0 }
        );
        // A trailing separator gives an empty right side: accepted, never applies.
        assert!(Bpe::new(&mut v, &["a "], false).is_ok());
    }

    #[test]
    fn long_word() {
        let (v, bpe) = tiny();
        let word = "hello".repeat(2000);
        let ids = enc(&v, &bpe, &word);
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|&id| id == 11));
    }
}
