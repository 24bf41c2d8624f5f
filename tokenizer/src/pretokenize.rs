//! Pre-tokenizers of byte-level BPE models: split text into words before BPE, exactly as
//! llama.cpp's `unicode_regex_split` does for each `tokenizer.ggml.pre`.
//!
//! Each pre-tokenizer is a list of regex passes; a pass splits every piece left by the
//! previous one into its matches plus the unmatched gaps between them (a gap is a piece
//! too), and a regex never looks past the end of the piece it runs on. The regexes are
//! matched here by hand-written left-to-right scanners that give the same leftmost,
//! first-alternative, greedy matches:
//!
//! * `gpt2`:   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! * `llama3`: `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! * `qwen2`:  the `llama3` regex with `\p{N}` in place of `\p{N}{1,3}`
//! * `smollm` (also starcoder, refact, command-r, …): `\p{N}`, then `gpt2`
//! * `default` (llama.cpp's fallback when the GGUF names none): `[\p{P}\$\+<=>\^~\|]+`,
//!   then `gpt2`, then `\p{N}+`, then `[0-9][0-9][0-9]`
//!
//! `\p{L}`/`\p{N}`/`\p{P}` are Unicode general categories L*/N*/P* and `\s` is the
//! White_Space property (see [`super::unicode`]).

use alloc::vec::Vec;

use super::unicode::{class, LETTER, NUMBER, PRESENT, PUNCT, WHITESPACE_BIT};

/// Which family of split rules a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreKind {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT` passes.
    Default,
    /// The GPT-2 regex alone.
    Gpt2,
    /// Single digits, then the GPT-2 regex (SmolLM, StarCoder, Refact, Command-R, …).
    Smollm,
    /// The Llama 3 regex (digits in groups of up to three).
    Llama3,
    /// The Qwen2 regex (the Llama 3 one with single digits).
    Qwen2,
}

/// Reusable buffers for [`split`].
#[derive(Default)]
pub(crate) struct PreScratch {
    /// Code points of the text.
    cps: Vec<u32>,
    /// Class bits of each code point ([`class`]).
    cls: Vec<u8>,
    /// Byte offset of each code point, plus the text length at the end.
    offs: Vec<usize>,
    /// Pieces as code point index ranges, ping-ponged between passes.
    a: Vec<(usize, usize)>,
    b: Vec<(usize, usize)>,
}

/// Splits `text` into words, appending their byte ranges to `out` in order. The ranges
/// cover `text` exactly, without gaps or overlaps, and none is empty.
pub(crate) fn split(kind: PreKind, text: &str, s: &mut PreScratch, out: &mut Vec<(usize, usize)>) {
    if text.is_empty() {
        return;
    }
    s.cps.clear();
    s.cls.clear();
    s.offs.clear();
    for (off, c) in text.char_indices() {
        s.cps.push(c as u32);
        s.cls.push(class(c as u32));
        s.offs.push(off);
    }
    s.offs.push(text.len());

    let n = s.cps.len();
    s.a.clear();
    s.a.push((0, n));
    let cps = &s.cps[..];
    let cls = &s.cls[..];
    let passes: &[Pass] = match kind {
        PreKind::Gpt2 => &[Pass::Gpt2],
        PreKind::Smollm => &[Pass::EachNumber, Pass::Gpt2],
        PreKind::Llama3 => &[Pass::Llama3(3)],
        PreKind::Qwen2 => &[Pass::Llama3(1)],
        PreKind::Default => &[
            Pass::PunctRuns,
            Pass::Gpt2,
            Pass::NumberRuns,
            Pass::AsciiDigitTriples,
        ],
    };
    for pass in passes {
        s.b.clear();
        for &(lo, hi) in &s.a {
            let mut p = Pieces {
                out: &mut s.b,
                prev_end: lo,
            };
            match *pass {
                Pass::Gpt2 => gpt2(cps, cls, lo, hi, &mut p),
                Pass::Llama3(max_digits) => llama3(cps, cls, lo, hi, max_digits, &mut p),
                Pass::EachNumber => each_number(cls, lo, hi, &mut p),
                Pass::NumberRuns => runs(lo, hi, &mut p, |i| cls[i] & NUMBER != 0),
                Pass::PunctRuns => runs(lo, hi, &mut p, |i| {
                    cls[i] & PUNCT != 0
                        || matches!(
                            cps[i],
                            0x24 | 0x2B | 0x3C | 0x3D | 0x3E | 0x5E | 0x7E | 0x7C
                        )
                }),
                Pass::AsciiDigitTriples => ascii_digit_triples(cps, lo, hi, &mut p),
            }
            // Whatever a pass left unmatched at the end is a piece too.
            p.add(hi);
        }
        core::mem::swap(&mut s.a, &mut s.b);
    }
    out.extend(s.a.iter().map(|&(lo, hi)| (s.offs[lo], s.offs[hi])));
}

/// One regex pass.
#[derive(Clone, Copy)]
enum Pass {
    Gpt2,
    /// The Llama 3 / Qwen2 regex with digit groups of at most this many.
    Llama3(usize),
    /// `\p{N}`: every number character alone.
    EachNumber,
    /// `\p{N}+`.
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`.
    PunctRuns,
    /// `[0-9][0-9][0-9]`.
    AsciiDigitTriples,
}

/// Output of one pass over one piece: pieces are added by their end index.
struct Pieces<'a> {
    out: &'a mut Vec<(usize, usize)>,
    prev_end: usize,
}

impl Pieces<'_> {
    /// Ends the current piece at `end` (no-op if it would be empty).
    #[inline]
    fn add(&mut self, end: usize) {
        if end > self.prev_end {
            self.out.push((self.prev_end, end));
            self.prev_end = end;
        }
    }
}

const APOSTROPHE: u32 = '\'' as u32;
const SPACE: u32 = ' ' as u32;
const CR: u32 = '\r' as u32;
const LF: u32 = '\n' as u32;

/// Whether code points `a`, `b` (ASCII, case as given) spell a contraction suffix after
/// an apostrophe: returns its length (1 or 2), 0 if none.
#[inline]
fn contraction_len(a: u32, b: Option<u32>) -> usize {
    match a {
        0x73 | 0x74 | 0x6D | 0x64 => 1,      // s t m d
        0x72 | 0x76 if b == Some(0x65) => 2, // re ve
        0x6C if b == Some(0x6C) => 2,        // ll
        _ => 0,
    }
}

/// ASCII lowercase of a code point (the contraction alternatives only involve ASCII).
#[inline]
fn lower(cp: u32) -> u32 {
    if (0x41..=0x5A).contains(&cp) {
        cp + 0x20
    } else {
        cp
    }
}

/// The GPT-2 regex on piece `[lo, hi)`.
fn gpt2(cps: &[u32], cls: &[u8], lo: usize, hi: usize, p: &mut Pieces<'_>) {
    let get = |i: usize| if i < hi { cls[i] } else { 0 };
    let not_word = |f: u8| f & PRESENT != 0 && f & (WHITESPACE_BIT | LETTER | NUMBER) == 0;
    let mut pos = lo;
    while pos < hi {
        let c = cps[pos];
        let f = cls[pos];
        // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
        if c == APOSTROPHE && pos + 1 < hi {
            let next2 = if pos + 2 < hi {
                Some(cps[pos + 2])
            } else {
                None
            };
            let n = contraction_len(cps[pos + 1], next2);
            if n > 0 {
                pos += 1 + n;
                p.add(pos);
                continue;
            }
        }
        let f2 = if c == SPACE { get(pos + 1) } else { f };
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let run_class = if f2 & LETTER != 0 {
            Some(LETTER)
        } else if f2 & NUMBER != 0 {
            Some(NUMBER)
        } else if not_word(f2) {
            None
        } else {
            Some(0)
        };
        match run_class {
            Some(0) => {}
            Some(bit) => {
                pos += (c == SPACE) as usize;
                while get(pos) & bit != 0 {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }
            None => {
                pos += (c == SPACE) as usize;
                while not_word(get(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }
        }
        whitespace_tail(cps, cls, pos, hi, false, p, &mut pos);
    }
}

/// The Llama 3 regex (Qwen2's with `max_digits` 1) on piece `[lo, hi)`.
fn llama3(cps: &[u32], cls: &[u8], lo: usize, hi: usize, max_digits: usize, p: &mut Pieces<'_>) {
    let get = |i: usize| if i < hi { cls[i] } else { 0 };
    let not_word = |f: u8| f & PRESENT != 0 && f & (WHITESPACE_BIT | LETTER | NUMBER) == 0;
    let mut pos = lo;
    while pos < hi {
        let c = cps[pos];
        let f = cls[pos];
        // (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
        if c == APOSTROPHE && pos + 1 < hi {
            let next2 = if pos + 2 < hi {
                Some(lower(cps[pos + 2]))
            } else {
                None
            };
            let n = contraction_len(lower(cps[pos + 1]), next2);
            if n > 0 {
                pos += 1 + n;
                p.add(pos);
                continue;
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(c == CR || c == LF || f & NUMBER != 0)
            && (f & LETTER != 0 || get(pos + 1) & LETTER != 0)
        {
            pos += 1;
            while get(pos) & LETTER != 0 {
                pos += 1;
            }
            p.add(pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if f & NUMBER != 0 {
            let mut start = pos;
            while get(pos) & NUMBER != 0 {
                pos += 1;
                if pos - start >= max_digits {
                    p.add(pos);
                    start = pos;
                }
            }
            p.add(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`; a lone trailing space also lands here, which gives
        // the same piece as `\s+` would.
        let f2 = if c == SPACE { get(pos + 1) } else { f };
        if f2 & (WHITESPACE_BIT | LETTER | NUMBER) == 0 {
            pos += (c == SPACE) as usize;
            while not_word(get(pos)) {
                pos += 1;
            }
            while pos < hi && (cps[pos] == CR || cps[pos] == LF) {
                pos += 1;
            }
            p.add(pos);
            continue;
        }
        whitespace_tail(cps, cls, pos, hi, true, p, &mut pos);
    }
}

/// The whitespace alternatives shared by both regexes, at `start`:
/// (`\s*[\r\n]+` if `newline_rule`,) `\s+(?!\S)`, `\s+`, else a single unmatched character.
fn whitespace_tail(
    cps: &[u32],
    cls: &[u8],
    start: usize,
    hi: usize,
    newline_rule: bool,
    p: &mut Pieces<'_>,
    pos: &mut usize,
) {
    let mut end = start;
    let mut last_newline_end = None;
    while end < hi && cls[end] & WHITESPACE_BIT != 0 {
        if cps[end] == CR || cps[end] == LF {
            last_newline_end = Some(end + 1);
        }
        end += 1;
    }
    let n = end - start;
    *pos = match last_newline_end {
        // \s*[\r\n]+: up to the last newline of the run
        Some(e) if newline_rule => e,
        // \s+(?!\S): a run followed by a non-space gives that non-space its last char
        _ if n > 1 && end < hi => end - 1,
        // \s+
        _ if n > 0 => end,
        // no alternative matches: the character is a gap of its own
        _ => start + 1,
    };
    p.add(*pos);
}

/// `\p{N}`: each number character is a piece, and so is each run between them.
fn each_number(cls: &[u8], lo: usize, hi: usize, p: &mut Pieces<'_>) {
    for (i, &c) in cls.iter().enumerate().take(hi).skip(lo) {
        if c & NUMBER != 0 {
            p.add(i);
            p.add(i + 1);
        }
    }
}

/// A `[class]+` regex: every maximal run of `is_in` characters is a piece, and so is each
/// run between them.
fn runs(lo: usize, hi: usize, p: &mut Pieces<'_>, is_in: impl Fn(usize) -> bool) {
    let mut i = lo;
    while i < hi {
        if is_in(i) {
            p.add(i);
            while i < hi && is_in(i) {
                i += 1;
            }
            p.add(i);
        } else {
            i += 1;
        }
    }
}

/// `[0-9][0-9][0-9]`: leftmost non-overlapping triples of ASCII digits.
fn ascii_digit_triples(cps: &[u32], lo: usize, hi: usize, p: &mut Pieces<'_>) {
    let is_digit = |i: usize| i < hi && (0x30..=0x39).contains(&cps[i]);
    let mut i = lo;
    while i < hi {
        if is_digit(i) && is_digit(i + 1) && is_digit(i + 2) {
            p.add(i);
            p.add(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn words(kind: PreKind, text: &str) -> Vec<&str> {
        let mut s = PreScratch::default();
        let mut out = Vec::new();
        split(kind, text, &mut s, &mut out);
        // Ranges tile the text.
        let mut at = 0;
        for &(a, b) in &out {
            assert_eq!(a, at);
            assert!(b > a);
            at = b;
        }
        assert_eq!(at, text.len());
        out.iter().map(|&(a, b)| &text[a..b]).collect()
    }

    #[test]
    fn empty() {
        for kind in [
            PreKind::Default,
            PreKind::Gpt2,
            PreKind::Smollm,
            PreKind::Llama3,
            PreKind::Qwen2,
        ] {
            assert!(words(kind, "").is_empty());
        }
    }

    #[test]
    fn gpt2_basic() {
        let g = |t| words(PreKind::Gpt2, t);
        assert_eq!(g("Hello world"), vec!["Hello", " world"]);
        assert_eq!(
            g("I'm sure they'll, DON'T it's"),
            vec!["I", "'m", " sure", " they", "'ll", ",", " DON", "'", "T", " it", "'s"]
        );
        assert_eq!(
            g("  hello   world\n\n  x"),
            vec![" ", " hello", "  ", " world", "\n\n ", " x"]
        );
        assert_eq!(g("12345 abc123"), vec!["12345", " abc", "123"]);
        assert_eq!(g("trailing  "), vec!["trailing", "  "]);
        assert_eq!(g("a \tb"), vec!["a", " ", "\t", "b"]);
        // `\s+(?!\S)` gives up the "\n", which then matches `\s+` alone.
        assert_eq!(g("x\r\ny"), vec!["x", "\r", "\n", "y"]);
        assert_eq!(
            g("hi!!! ?? (ok)"),
            vec!["hi", "!!!", " ??", " (", "ok", ")"]
        );
        assert_eq!(g("' '"), vec!["'", " '"]);
        assert_eq!(g("'"), vec!["'"]);
        assert_eq!(g("can't"), vec!["can", "'t"]);
        assert_eq!(g("'re're"), vec!["'re", "'re"]);
        assert_eq!(g("'rere"), vec!["'re", "re"]);
    }

    #[test]
    fn gpt2_unicode() {
        let g = |t| words(PreKind::Gpt2, t);
        assert_eq!(g("café naïve"), vec!["café", " naïve"]);
        assert_eq!(g("我爱你。好"), vec!["我爱你", "。", "好"]);
        assert_eq!(g("I love 🦀!"), vec!["I", " love", " 🦀!"]);
        assert_eq!(g("a\u{a0}b"), vec!["a", "\u{a0}", "b"]);
        assert_eq!(g("e\u{301}t"), vec!["e", "\u{301}", "t"]);
        assert_eq!(g("x²"), vec!["x", "²"]);
        assert_eq!(g("\u{3000}\u{3000}字"), vec!["\u{3000}", "\u{3000}", "字"]);
    }

    #[test]
    fn smollm_digits() {
        let s = |t| words(PreKind::Smollm, t);
        assert_eq!(s("12345"), vec!["1", "2", "3", "4", "5"]);
        assert_eq!(s("a 12b"), vec!["a", " ", "1", "2", "b"]);
        assert_eq!(s("3.14"), vec!["3", ".", "1", "4"]);
        assert_eq!(s("x٣y"), vec!["x", "٣", "y"]);
        assert_eq!(s("Hello world"), vec!["Hello", " world"]);
        assert_eq!(
            s("  hello   world\n\n  x"),
            vec![" ", " hello", "  ", " world", "\n\n ", " x"]
        );
        assert_eq!(s("$1,000"), vec!["$", "1", ",", "0", "0", "0"]);
    }

    #[test]
    fn llama3_rules() {
        let l = |t| words(PreKind::Llama3, t);
        assert_eq!(l("12345"), vec!["123", "45"]);
        assert_eq!(l("1234567"), vec!["123", "456", "7"]);
        assert_eq!(l("Hello world"), vec!["Hello", " world"]);
        assert_eq!(
            l("I'm DON'T THEY'LL we'Ve"),
            vec!["I", "'m", " DON", "'T", " THEY", "'LL", " we", "'Ve"]
        );
        assert_eq!(
            l("  hello   world\n\n  x"),
            vec![" ", " hello", "  ", " world", "\n\n", " ", " x"]
        );
        assert_eq!(
            l("line one\r\nline two\r\n"),
            vec!["line", " one", "\r\n", "line", " two", "\r\n"]
        );
        assert_eq!(l("(hello) !!\n\nx"), vec!["(hello", ")", " !!\n\n", "x"]);
        assert_eq!(l("\ttabs\tand"), vec!["\ttabs", "\tand"]);
        assert_eq!(l("end  "), vec!["end", "  "]);
        assert_eq!(l("a  \n b"), vec!["a", "  \n", " b"]);
        assert_eq!(l(" "), vec![" "]);
        assert_eq!(l("x "), vec!["x", " "]);
        assert_eq!(l("🦀🦀 ok"), vec!["🦀🦀", " ok"]);
        assert_eq!(l("我爱你。"), vec!["我爱你", "。"]);
        assert_eq!(l(" 42"), vec![" ", "42"]);
    }

    #[test]
    fn qwen2_rules() {
        let q = |t| words(PreKind::Qwen2, t);
        assert_eq!(q("12345"), vec!["1", "2", "3", "4", "5"]);
        assert_eq!(q("ab12"), vec!["ab", "1", "2"]);
        assert_eq!(q("It's 3pm"), vec!["It", "'s", " ", "3", "pm"]);
        assert_eq!(
            q("  hello   world\n\n  x"),
            vec![" ", " hello", "  ", " world", "\n\n", " ", " x"]
        );
        assert_eq!(q("a\r\n\r\nb  "), vec!["a", "\r\n\r\n", "b", "  "]);
        assert_eq!(
            q("DON'T 我们 🦀\t1"),
            vec!["DON", "'T", " 我们", " 🦀", "\t", "1"]
        );
    }

    #[test]
    fn default_passes() {
        let d = |t| words(PreKind::Default, t);
        assert_eq!(d("don't"), vec!["don", "'", "t"]);
        assert_eq!(d("Hello, world!"), vec!["Hello", ",", " world", "!"]);
        assert_eq!(d("1234567"), vec!["123", "456", "7"]);
        assert_eq!(d("a 12345"), vec!["a", " ", "123", "45"]);
        assert_eq!(d("x+=y`z"), vec!["x", "+=", "y", "`", "z"]);
        assert_eq!(d("€5"), vec!["€", "5"]);
        assert_eq!(
            d("  hello   world\n\n  x"),
            vec![" ", " hello", "  ", " world", "\n\n ", " x"]
        );
    }
}
