//! GPT-2's byte-level alphabet ("bytes_to_unicode"): every byte maps to one printable
//! code point, so byte-level BPE vocabularies store arbitrary bytes as text.
//!
//! Bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` stand for themselves; the remaining 68 bytes,
//! in increasing order, map to U+0100, U+0101, … (so space 0x20 becomes `Ġ` U+0120 and
//! newline 0x0A becomes `Ċ` U+010A).

/// Whether byte `b` stands for itself in the alphabet.
const fn is_direct(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

/// Byte → code point of its alphabet character.
static BYTE_TO_CP: [u16; 256] = {
    let mut out = [0u16; 256];
    let mut n = 0u16;
    let mut b = 0usize;
    while b < 256 {
        if is_direct(b as u32) {
            out[b] = b as u16;
        } else {
            out[b] = 256 + n;
            n += 1;
        }
        b += 1;
    }
    out
};

/// Code point (< 0x144) → byte + 1, 0 when the code point is not in the alphabet.
static CP_TO_BYTE: [u16; 0x144] = {
    let mut out = [0u16; 0x144];
    let mut b = 0usize;
    while b < 256 {
        out[BYTE_TO_CP[b] as usize] = b as u16 + 1;
        b += 1;
    }
    out
};

/// UTF-8 encoding of each byte's alphabet character: (bytes, length 1 or 2).
static BYTE_TO_UTF8: [([u8; 2], u8); 256] = {
    let mut out = [([0u8; 2], 0u8); 256];
    let mut b = 0usize;
    while b < 256 {
        let cp = BYTE_TO_CP[b] as u32;
        if cp < 0x80 {
            out[b] = ([cp as u8, 0], 1);
        } else {
            out[b] = ([0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8], 2);
        }
        b += 1;
    }
    out
};

/// The UTF-8 bytes of the alphabet character standing for byte `b`.
#[inline]
pub(crate) fn byte_to_utf8(b: u8) -> &'static [u8] {
    let (bytes, len) = &BYTE_TO_UTF8[b as usize];
    &bytes[..*len as usize]
}

/// Appends the alphabet encoding of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut alloc::vec::Vec<u8>) {
    for &b in bytes {
        out.extend_from_slice(byte_to_utf8(b));
    }
}

/// The byte an alphabet character stands for, `None` if `c` is not in the alphabet.
#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x144 {
        let v = CP_TO_BYTE[cp as usize];
        if v != 0 {
            return Some((v - 1) as u8);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn known_mappings() {
        assert_eq!(byte_to_utf8(b' '), "Ġ".as_bytes());
        assert_eq!(byte_to_utf8(b'\n'), "Ċ".as_bytes());
        assert_eq!(byte_to_utf8(b'\t'), "ĉ".as_bytes());
        assert_eq!(byte_to_utf8(b'a'), b"a");
        assert_eq!(byte_to_utf8(0xAD), "Ń".as_bytes());
        assert_eq!(byte_to_utf8(0x7F), "ġ".as_bytes());
        assert_eq!(byte_to_utf8(0xE9), "é".as_bytes());
        assert_eq!(char_to_byte('Ġ'), Some(b' '));
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte('Ń'), Some(0xAD));
        assert_eq!(char_to_byte('ń'), None); // U+0144, just past the alphabet
        assert_eq!(char_to_byte('€'), None);
        assert_eq!(char_to_byte(' '), None);
    }

    #[test]
    fn bijection() {
        let mut seen = Vec::new();
        for b in 0..=255u8 {
            let s = core::str::from_utf8(byte_to_utf8(b)).unwrap();
            let mut chars = s.chars();
            let c = chars.next().unwrap();
            assert!(chars.next().is_none());
            assert_eq!(char_to_byte(c), Some(b));
            assert!(!seen.contains(&c));
            seen.push(c);
        }
        let mut out = Vec::new();
        encode_into(b"a b", &mut out);
        assert_eq!(out, "aĠb".as_bytes());
    }
}
