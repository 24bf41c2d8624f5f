//! Token → bytes ("pieces"), precomputed for every token as llama.cpp's
//! `token_to_piece(special = true)` renders it, and whole-sequence detokenization
//! (`llama_detokenize` with `remove_special = false`).

use alloc::vec::Vec;

use super::bytelevel;
use super::hash::Arena;
use super::vocab::{attr, Vocab};

/// The rendering of every token.
#[derive(Clone, Debug)]
pub(crate) struct Pieces {
    pieces: Arena,
}

/// UTF-8 of `▁` (U+2581), SentencePiece's escaped space.
const SPM_SPACE: &[u8] = "\u{2581}".as_bytes();

impl Pieces {
    /// Renders every token: control, unknown and user-defined tokens as their text;
    /// normal tokens decoded (byte-level alphabet for `byte_level`, `▁` → space
    /// otherwise); byte tokens `<0xXX>` as that byte; unused / undefined as nothing.
    pub(crate) fn new(vocab: &Vocab, byte_level: bool) -> Pieces {
        let mut pieces = Arena::default();
        let mut buf = Vec::new();
        for id in 0..vocab.len() as u32 {
            buf.clear();
            let a = vocab.attr(id);
            let text = vocab.text(id).unwrap_or("");
            if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                buf.extend_from_slice(text.as_bytes());
            } else if a & attr::NORMAL != 0 {
                if byte_level {
                    for c in text.chars() {
                        match bytelevel::char_to_byte(c) {
                            Some(b) => buf.push(b),
                            // Not in the alphabet: kept as is (llama.cpp writes an
                            // "[UNK_BYTE_0x…]" marker instead).
                            None => {
                                let mut tmp = [0u8; 4];
                                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                            }
                        }
                    }
                } else {
                    replace_spm_spaces(text.as_bytes(), &mut buf);
                }
            } else if a & attr::BYTE != 0 {
                buf.push(byte_token_value(text));
            }
            pieces.push(&buf);
        }
        Pieces { pieces }
    }

    /// The rendering of token `id` (empty if out of range).
    #[inline]
    pub(crate) fn get(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize)
    }
}

/// Copies `text` to `out` with every `▁` replaced by a space.
fn replace_spm_spaces(text: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(SPM_SPACE) {
            out.push(b' ');
            i += SPM_SPACE.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
}

/// The byte of a `<0xXX>` token: the hex digits at offsets 3..5 (as llama.cpp's
/// `strtol(text.substr(3, 2), 16)`; 0 when there are none).
fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp's `clean_up_tokenization_spaces` post-processing of detokenized text:
/// drops the space before `?!.,`, collapses `" ' "` to `"'"`, and drops the space before
/// the contractions `'s 'm 're 've`. Works on bytes; only ASCII is touched.
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    // Pass 1: " ?", " !", " .", " ," → drop the space.
    let src = core::mem::take(text);
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: " ' " → "'" (the space after is skipped and reads as NUL afterwards).
    let mut src = out;
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let x = src[i];
        if i > 0 && x == b'\'' && i + 1 < src.len() && src[i - 1] == b' ' && src[i + 1] == b' ' {
            out.pop();
            i += 1;
            src[i] = 0;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" → drop the space.
    let src = out;
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let x2 = src.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || (i + 2 < src.len()
                    && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn clean(s: &str) -> alloc::string::String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        alloc::string::String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_up_spaces() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("it 's I 'm we 're you 've"), "it's I'm we're you've");
        assert_eq!(clean("don 't we 'll I 'd"), "don 't we 'll I 'd");
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean("  ."), " .");
        assert_eq!(clean(""), "");
        assert_eq!(clean("x ' ' y"), "x'' y");
        assert_eq!(clean("é ."), "é.");
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xFF>"), 255);
        assert_eq!(byte_token_value("<0xf>"), 15);
        assert_eq!(byte_token_value("<0x"), 0);
        assert_eq!(byte_token_value(""), 0);
    }

    #[test]
    fn pieces() {
        let toks = ["Ġhello", "<|x|>", "<0x41>", "▁a▁b", "c", "<u>", "ĉ€"];
        let v = Vocab::new(&toks, None, Some(&[1, 3, 6, 1, 5, 4, 1]));
        let p = Pieces::new(&v, true);
        assert_eq!(p.get(0), b" hello");
        assert_eq!(p.get(1), b"<|x|>");
        assert_eq!(p.get(2), b"A");
        assert_eq!(p.get(3), "▁a▁b".as_bytes()); // '▁' is not in the byte alphabet
        assert_eq!(p.get(4), b"");
        assert_eq!(p.get(5), b"<u>");
        assert_eq!(p.get(6), "\t€".as_bytes());
        assert_eq!(p.get(7), b"");
        let p = Pieces::new(&v, false);
        assert_eq!(p.get(0), "Ġhello".as_bytes());
        assert_eq!(p.get(3), b" a b");
        let _ = vec![0u8];
    }
}
