//! Unicode character classes used by the pre-tokenizer splitters (`\p{L}`, `\p{N}`,
//! `\p{P}`, `\s`), looked up in the generated tables of [`super::unicode_tables`].

use super::unicode_tables::{ASCII_CLASS, CLASS_RANGES, WHITESPACE};

/// Class bit: general category L* (`\p{L}`).
pub(crate) const LETTER: u8 = 1;
/// Class bit: general category N* (`\p{N}`).
pub(crate) const NUMBER: u8 = 2;
/// Class bit: general category P* (`\p{P}`).
pub(crate) const PUNCT: u8 = 4;
/// Class bit: White_Space property (`\s`).
pub(crate) const WHITESPACE_BIT: u8 = 8;
/// Class bit set for every real code point, so that "no character" (past the end of a
/// piece) is the only value 0.
pub(crate) const PRESENT: u8 = 0x80;

/// Table class code (0 other, 1 letter, 2 number, 3 punctuation) → class bit.
const CODE_TO_BIT: [u8; 4] = [0, LETTER, NUMBER, PUNCT];

/// Class bits for ASCII, precomputed at compile time.
static ASCII_BITS: [u8; 128] = {
    let mut out = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let mut bits = PRESENT | CODE_TO_BIT[(ASCII_CLASS[i] & 3) as usize];
        // ASCII White_Space: \t \n \v \f \r and space.
        if (i >= 0x09 && i <= 0x0D) || i == 0x20 {
            bits |= WHITESPACE_BIT;
        }
        out[i] = bits;
        i += 1;
    }
    out
};

/// The class bits of code point `cp`: [`PRESENT`] plus any of [`LETTER`], [`NUMBER`],
/// [`PUNCT`], [`WHITESPACE_BIT`].
#[inline]
pub(crate) fn class(cp: u32) -> u8 {
    if cp < 0x80 {
        return ASCII_BITS[cp as usize];
    }
    let code = range_class(cp);
    let mut bits = PRESENT | CODE_TO_BIT[(code & 3) as usize];
    if is_whitespace_non_ascii(cp) {
        bits |= WHITESPACE_BIT;
    }
    bits
}

/// Binary search of the range table for a code point >= 0x80.
fn range_class(cp: u32) -> u8 {
    // Index of the last range whose start is <= cp.
    let idx = CLASS_RANGES.partition_point(|&(start, _)| start <= cp);
    match idx.checked_sub(1) {
        Some(i) => CLASS_RANGES[i].1,
        None => 0,
    }
}

/// White_Space for code points >= 0x80 (only a handful exist).
#[inline]
fn is_whitespace_non_ascii(cp: u32) -> bool {
    WHITESPACE.binary_search(&cp).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is(c: char, bit: u8) -> bool {
        class(c as u32) & bit != 0
    }

    #[test]
    fn ascii_classes() {
        for c in 'a'..='z' {
            assert!(is(c, LETTER));
        }
        for c in 'A'..='Z' {
            assert!(is(c, LETTER));
        }
        for c in '0'..='9' {
            assert!(is(c, NUMBER) && !is(c, LETTER));
        }
        for c in "!\"#%&'()*,-./:;?@[\\]_{}".chars() {
            assert!(is(c, PUNCT), "{c:?}");
        }
        for c in "$+<=>^`|~".chars() {
            assert_eq!(class(c as u32), PRESENT, "{c:?}");
        }
        for c in " \t\n\x0b\x0c\r".chars() {
            assert!(is(c, WHITESPACE_BIT));
        }
        for c in ['\x1c', '\x1f', '\x00', '\x7f'] {
            assert_eq!(class(c as u32), PRESENT);
        }
    }

    #[test]
    fn non_ascii_classes() {
        assert!(is('é', LETTER));
        assert!(is('ß', LETTER));
        assert!(is('我', LETTER));
        assert!(is('ア', LETTER));
        assert!(is('한', LETTER));
        assert!(is('ª', LETTER)); // Lo
        assert!(is('ʰ', LETTER)); // Lm
        assert!(is('²', NUMBER)); // No
        assert!(is('Ⅻ', NUMBER)); // Nl
        assert!(is('٣', NUMBER)); // Nd (Arabic-Indic)
        assert!(is('¿', PUNCT));
        assert!(is('。', PUNCT));
        assert!(is('«', PUNCT));
        assert_eq!(class('€' as u32), PRESENT); // Sc
        assert_eq!(class(0x1F980), PRESENT); // 🦀 So
        assert_eq!(class(0x0301), PRESENT); // combining acute, Mn
        assert_eq!(class(0x200D), PRESENT); // ZWJ, Cf
        assert!(is('\u{a0}', WHITESPACE_BIT));
        assert!(is('\u{3000}', WHITESPACE_BIT));
        assert!(is('\u{85}', WHITESPACE_BIT));
        assert!(!is('\u{200b}', WHITESPACE_BIT)); // zero width space is not White_Space
        assert!(is('\u{2EBF0}', LETTER)); // CJK Ext. I, new in Unicode 15.1
        assert_eq!(class(0x10FFFF), PRESENT);
        assert_eq!(class(0xE000), PRESENT); // private use
    }

    #[test]
    fn whitespace_list_matches() {
        let mut from_class = alloc::vec::Vec::new();
        for cp in 0..0x11_0000u32 {
            if class(cp) & WHITESPACE_BIT != 0 {
                from_class.push(cp);
            }
        }
        assert_eq!(from_class.as_slice(), &WHITESPACE[..]);
        assert_eq!(super::super::unicode_tables::UNICODE_VERSION, "15.1.0");
    }

    #[test]
    fn ranges_sorted() {
        assert!(CLASS_RANGES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(CLASS_RANGES[0].0, 0x80);
    }
}
