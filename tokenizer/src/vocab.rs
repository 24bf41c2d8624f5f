//! The vocabulary: token strings, scores and attributes, with string → id lookup.
//!
//! Besides the model's tokens (ids `0..n_vocab`), the string store can hold extra
//! "symbols" (ids `n_vocab..`): strings that occur in BPE merges without being tokens
//! themselves. They let merges work on ids; they are never returned as tokens.

use alloc::vec::Vec;

use super::hash::{Arena, StrTable};

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub(crate) mod attr {
    /// Token type 0 or unrecognised.
    pub(crate) const UNDEFINED: u16 = 0;
    /// Token type 2: the unknown token.
    pub(crate) const UNKNOWN: u16 = 1 << 0;
    /// Token type 5.
    pub(crate) const UNUSED: u16 = 1 << 1;
    /// Token type 1.
    pub(crate) const NORMAL: u16 = 1 << 2;
    /// Token type 3.
    pub(crate) const CONTROL: u16 = 1 << 3;
    /// Token type 4.
    pub(crate) const USER_DEFINED: u16 = 1 << 4;
    /// Token type 6: `<0xXX>`.
    pub(crate) const BYTE: u16 = 1 << 5;

    /// Attribute bits of a GGUF `tokenizer.ggml.token_type` value.
    pub(crate) fn from_type(t: i32) -> u16 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => UNDEFINED,
        }
    }
}

/// Token strings, scores and attributes.
#[derive(Clone, Debug)]
pub(crate) struct Vocab {
    /// Strings of the tokens (`0..n_vocab`) then of the extra symbols.
    strings: Arena,
    /// String → id (for duplicated strings, the lowest id).
    table: StrTable,
    n_vocab: usize,
    /// Attribute bits per token.
    pub(crate) attrs: Vec<u16>,
    /// Score per token (SentencePiece merge priority), 0 when absent.
    pub(crate) scores: Vec<f32>,
}

impl Vocab {
    /// Builds the vocabulary. `types` and `scores`, when given, must be at least as long
    /// as `tokens` (checked by the caller).
    pub(crate) fn new(tokens: &[&str], scores: Option<&[f32]>, types: Option<&[i32]>) -> Vocab {
        let n = tokens.len();
        let mut strings = Arena::default();
        let mut table = StrTable::with_capacity(n);
        let mut attrs = Vec::with_capacity(n);
        let mut score_vec = Vec::with_capacity(n);
        for (i, tok) in tokens.iter().enumerate() {
            let idx = strings.push(tok.as_bytes()) as u32;
            // Empty strings never match anything (llama.cpp renames them "[EMPTY_i]").
            if !tok.is_empty() {
                table.insert_if_absent(&strings, idx);
            }
            attrs.push(match types {
                Some(t) => attr::from_type(t[i]),
                None => attr::NORMAL,
            });
            let s = scores.map_or(0.0, |s| s[i]);
            // NaN sorts last; -0.0 ties with 0.0 as in llama.cpp's `<` comparison.
            score_vec.push(if s.is_nan() {
                f32::NEG_INFINITY
            } else if s == 0.0 {
                0.0
            } else {
                s
            });
        }
        Vocab {
            strings,
            table,
            n_vocab: n,
            attrs,
            scores: score_vec,
        }
    }

    /// Number of tokens.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.n_vocab
    }

    /// The stored string of token `id` (`None` out of range).
    #[inline]
    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        if (id as usize) < self.n_vocab {
            core::str::from_utf8(self.strings.get(id as usize)).ok()
        } else {
            None
        }
    }

    /// The bytes of token or extra symbol `id` (empty if unknown).
    #[inline]
    pub(crate) fn symbol_bytes(&self, id: u32) -> &[u8] {
        self.strings.get(id as usize)
    }

    /// Token id of an exact string.
    #[inline]
    pub(crate) fn token(&self, s: &[u8]) -> Option<u32> {
        match self.table.get(&self.strings, s) {
            Some(id) if (id as usize) < self.n_vocab => Some(id),
            _ => None,
        }
    }

    /// Token or extra symbol id of an exact string.
    #[inline]
    pub(crate) fn symbol(&self, s: &[u8]) -> Option<u32> {
        self.table.get(&self.strings, s)
    }

    /// Id of `s` as a token or extra symbol, adding it as an extra symbol if new.
    pub(crate) fn intern_symbol(&mut self, s: &[u8]) -> u32 {
        if let Some(id) = self.symbol(s) {
            return id;
        }
        let idx = self.strings.push(s) as u32;
        self.table.insert_if_absent(&self.strings, idx)
    }

    /// Number of tokens plus extra symbols.
    #[cfg(test)]
    pub(crate) fn n_symbols(&self) -> usize {
        self.strings.len()
    }

    /// Attribute bits of token `id` (0 out of range).
    #[inline]
    pub(crate) fn attr(&self, id: u32) -> u16 {
        self.attrs
            .get(id as usize)
            .copied()
            .unwrap_or(attr::UNDEFINED)
    }

    /// Whether token `id` has any of the attribute bits `mask`.
    #[inline]
    pub(crate) fn has(&self, id: u32, mask: u16) -> bool {
        self.attr(id) & mask != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_symbols() {
        let toks = ["a", "b", "", "ab", "a"];
        let mut v = Vocab::new(&toks, None, Some(&[1, 1, 1, 3, 6]));
        assert_eq!(v.len(), 5);
        assert_eq!(v.token(b"a"), Some(0)); // duplicate keeps the first id
        assert_eq!(v.token(b"ab"), Some(3));
        assert_eq!(v.token(b""), None);
        assert_eq!(v.text(2), Some(""));
        assert_eq!(v.text(5), None);
        assert!(v.has(3, attr::CONTROL));
        assert!(v.has(4, attr::BYTE));
        assert_eq!(v.attr(99), attr::UNDEFINED);
        let x = v.intern_symbol(b"xy");
        assert_eq!(x, 5);
        assert_eq!(v.intern_symbol(b"xy"), 5);
        assert_eq!(v.intern_symbol(b"b"), 1);
        assert_eq!(v.token(b"xy"), None);
        assert_eq!(v.symbol(b"xy"), Some(5));
        assert_eq!(v.symbol_bytes(5), b"xy");
        assert_eq!(v.text(5), None);
        assert_eq!(v.n_symbols(), 6);
    }

    #[test]
    fn attr_types() {
        assert_eq!(attr::from_type(1), attr::NORMAL);
        assert_eq!(attr::from_type(2), attr::UNKNOWN);
        assert_eq!(attr::from_type(5), attr::UNUSED);
        assert_eq!(attr::from_type(4), attr::USER_DEFINED);
        assert_eq!(attr::from_type(0), attr::UNDEFINED);
        assert_eq!(attr::from_type(-3), attr::UNDEFINED);
        assert_eq!(attr::from_type(77), attr::UNDEFINED);
    }
}
