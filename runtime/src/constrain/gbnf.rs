//! llama.cpp's GBNF grammars, translated to llguidance's Lark dialect.
//!
//! Hand-written because llguidance reads Lark only (its GBNF converter is a Python script).
//! GBNF as llama.cpp's `grammars/README.md` defines it: `name ::= alternatives` rules (names
//! of letters, digits and `-`), `"literal"` strings and `[...]` / `[^...]` character classes
//! with the escapes `\n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH`, `.` for any character,
//! `( )` groups, `|`, the postfix operators `* + ? {m} {m,} {m,n}`, `#` comments; `root` is
//! the start. Each GBNF rule becomes a lowercase Lark rule `g_<name>` (`-` → `_`), strings
//! become Lark strings, classes and `.` become one-character regexes, and `start: g_root`.
//! Lark adds no implicit whitespace, so the language is the same.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::ConstrainError;

/// Most repetitions a `{m,n}` bound may name (llama.cpp has no limit, but large bounds
/// unroll into huge automata).
pub const MAX_REPEAT: u32 = 10_000;
/// Deepest nesting of parentheses.
pub const MAX_NESTING: usize = 64;

/// Translates a GBNF grammar into an equivalent Lark grammar, or says where it is invalid.
pub fn to_lark(src: &str) -> Result<String, ConstrainError> {
    let mut p = Parser {
        src: src.as_bytes(),
        text: src,
        pos: 0,
        depth: 0,
    };
    // Rule name → (Lark name, body); the order of first definition is kept for the output.
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut referenced: Vec<(String, usize)> = Vec::new();
    p.skip_space(true);
    while p.pos < p.src.len() {
        let at = p.pos;
        let name = p
            .name()
            .ok_or_else(|| p.error(at, "expected a rule name"))?;
        p.skip_space(false);
        if !p.eat("::=") {
            return Err(p.error(p.pos, "expected `::=` after the rule name"));
        }
        p.skip_space(true);
        let body = p.alternatives(&mut referenced)?;
        if index.contains_key(name) {
            return Err(p.error(at, &format!("rule `{name}` is defined twice")));
        }
        index.insert(name.into(), rules.len());
        rules.push((name.into(), body));
        p.skip_space(true);
    }
    for (name, at) in &referenced {
        if !index.contains_key(name) {
            return Err(p.error(*at, &format!("rule `{name}` is not defined")));
        }
    }
    if !index.contains_key("root") {
        return Err(p.error(0, "no `root` rule"));
    }
    let mut out = String::from("start: g_root\n");
    for (name, body) in &rules {
        // Infallible: writing to a String.
        let _ = writeln!(out, "{}: {}", lark_name(name), body);
    }
    Ok(out)
}

/// The Lark rule name of GBNF rule `name`: lowercase Lark names must be `[a-z_][a-z0-9_]*`.
/// Case is kept distinct by escaping uppercase letters (`A` → `_a`... would collide), so
/// uppercase letters become `u` + the letter's lowercase (`Foo` → `g_ufoo`) and `-` → `_d`.
fn lark_name(name: &str) -> String {
    let mut s = String::from("g_");
    for c in name.chars() {
        match c {
            'A'..='Z' => {
                s.push('u');
                s.push(c.to_ascii_lowercase());
            }
            '-' => s.push_str("_d"),
            '_' => s.push_str("__"),
            _ => s.push(c),
        }
    }
    s
}

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, at: usize, message: &str) -> ConstrainError {
        let before = &self.text[..at.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConstrainError::Syntax {
            what: "GBNF",
            line,
            column,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips spaces, tabs and comments; newlines too if `newlines` (a rule's body may
    /// continue on the next line only inside parentheses or after `|`, as in llama.cpp).
    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// `seq ( "|" seq )*`, until the end of the rule (a newline outside parentheses followed
    /// by another rule, a `)` or the end of the text).
    fn alternatives(&mut self, refs: &mut Vec<(String, usize)>) -> Result<String, ConstrainError> {
        let mut out = self.sequence(refs)?;
        loop {
            self.skip_space(self.depth > 0);
            if self.peek() == Some(b'|') {
                self.pos += 1;
                self.skip_space(true);
                out.push_str(" | ");
                out.push_str(&self.sequence(refs)?);
            } else {
                return Ok(out);
            }
        }
    }

    /// Items until `|`, `)`, the end of the line (outside parentheses) or the end.
    fn sequence(&mut self, refs: &mut Vec<(String, usize)>) -> Result<String, ConstrainError> {
        let mut items: Vec<String> = Vec::new();
        loop {
            self.skip_space(self.depth > 0);
            let at = self.pos;
            let item = match self.peek() {
                None | Some(b'|') | Some(b')') | Some(b'\n') | Some(b'\r') => break,
                Some(b'"') => self.string()?,
                Some(b'[') => self.class()?,
                Some(b'.') => {
                    self.pos += 1;
                    String::from("/(?s:.)/")
                }
                Some(b'(') => {
                    self.pos += 1;
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        return Err(self.error(at, "parentheses nested too deeply"));
                    }
                    self.skip_space(true);
                    let inner = self.alternatives(refs)?;
                    self.skip_space(true);
                    if self.peek() != Some(b')') {
                        return Err(self.error(self.pos, "expected `)`"));
                    }
                    self.pos += 1;
                    self.depth -= 1;
                    if inner.is_empty() {
                        String::from("\"\"")
                    } else {
                        format!("({inner})")
                    }
                }
                Some(c) if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {
                    // Infallible: the first byte is a name byte.
                    let name = self.name().unwrap_or_default();
                    let save = self.pos;
                    self.skip_space(false);
                    if self.src[self.pos..].starts_with(b"::=") {
                        // The start of the next rule: this sequence has ended.
                        self.pos = at;
                        break;
                    }
                    self.pos = save;
                    refs.push((name.into(), at));
                    lark_name(name)
                }
                Some(_) => {
                    let c = self.text[self.pos..].chars().next().unwrap_or('?');
                    return Err(self.error(at, &format!("unexpected `{c}`")));
                }
            };
            let item = self.postfix(item)?;
            // `x{0}` matches the empty string: leave it out.
            if !item.is_empty() {
                items.push(item);
            }
        }
        if items.is_empty() {
            return Ok(String::from("\"\""));
        }
        Ok(items.join(" "))
    }

    fn postfix(&mut self, item: String) -> Result<String, ConstrainError> {
        match self.peek() {
            Some(c @ (b'*' | b'+' | b'?')) => {
                self.pos += 1;
                Ok(format!("{item}{}", c as char))
            }
            Some(b'{') => {
                let at = self.pos;
                self.pos += 1;
                let min = self
                    .number()
                    .ok_or_else(|| self.error(self.pos, "expected a number"))?;
                let max = if self.eat(",") {
                    self.skip_space(false);
                    if self.peek() == Some(b'}') {
                        None
                    } else {
                        Some(
                            self.number()
                                .ok_or_else(|| self.error(self.pos, "expected a number"))?,
                        )
                    }
                } else {
                    Some(min)
                };
                self.skip_space(false);
                if !self.eat("}") {
                    return Err(self.error(self.pos, "expected `}`"));
                }
                if max.is_some_and(|m| m < min) {
                    return Err(self.error(at, "repetition bound {m,n} with n < m"));
                }
                if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                    return Err(self.error(at, "repetition bound above 10000"));
                }
                Ok(match max {
                    // Lark has no `{0}`.
                    Some(0) => String::new(),
                    Some(m) if m == min => format!("{item}{{{min}}}"),
                    Some(m) => format!("{item}{{{min},{m}}}"),
                    None => format!("{item}{{{min},}}"),
                })
            }
            _ => Ok(item),
        }
    }

    fn number(&mut self) -> Option<u32> {
        self.skip_space(false);
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.text[start..self.pos].parse().ok()
    }

    /// One character of a string or class body, with escapes.
    fn char(&mut self, in_class: bool) -> Result<char, ConstrainError> {
        let at = self.pos;
        let c = self.text[self.pos..]
            .chars()
            .next()
            .ok_or_else(|| self.error(at, "unterminated literal"))?;
        self.pos += c.len_utf8();
        if c != '\\' {
            if !in_class && (c == '\n' || c == '\r') {
                return Err(self.error(at, "newline inside a string"));
            }
            return Ok(c);
        }
        let e = self
            .peek()
            .ok_or_else(|| self.error(at, "unterminated escape"))?;
        self.pos += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, ConstrainError> {
            let digits = p
                .text
                .get(p.pos..p.pos + n)
                .ok_or_else(|| p.error(at, "short hex escape"))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| p.error(at, "bad hex escape"))?;
            p.pos += n;
            char::from_u32(v).ok_or_else(|| p.error(at, "escape is not a Unicode scalar value"))
        };
        match e {
            b'n' => Ok('\n'),
            b'r' => Ok('\r'),
            b't' => Ok('\t'),
            b'\\' | b'"' | b'[' | b']' | b'-' | b'^' => Ok(e as char),
            b'x' => hex(self, 2),
            b'u' => hex(self, 4),
            b'U' => hex(self, 8),
            _ => Err(self.error(at, &format!("unknown escape `\\{}`", e as char))),
        }
    }

    fn string(&mut self) -> Result<String, ConstrainError> {
        self.pos += 1;
        let mut out = String::from("\"");
        loop {
            if self.peek() == Some(b'"') {
                self.pos += 1;
                break;
            }
            match self.char(false)? {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        Ok(out)
    }

    fn class(&mut self) -> Result<String, ConstrainError> {
        let at = self.pos;
        self.pos += 1;
        let mut out = String::from("/[");
        if self.peek() == Some(b'^') {
            self.pos += 1;
            out.push('^');
        }
        let mut empty = true;
        loop {
            match self.peek() {
                None => return Err(self.error(at, "unterminated character class")),
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let lo = self.char(true)?;
            push_class_char(&mut out, lo);
            if self.peek() == Some(b'-') && self.src.get(self.pos + 1) != Some(&b']') {
                self.pos += 1;
                let hi = self.char(true)?;
                if hi < lo {
                    return Err(self.error(at, "character range out of order"));
                }
                out.push('-');
                push_class_char(&mut out, hi);
            }
            empty = false;
        }
        if empty {
            return Err(self.error(at, "empty character class"));
        }
        out.push_str("]/");
        Ok(out)
    }
}

/// A class member as regex syntax: ASCII letters and digits as they are, everything else as
/// `\x{HEX}` (never special, and no `/` to end the Lark regex).
fn push_class_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_at(src: &str) -> (usize, usize) {
        match to_lark(src) {
            Err(ConstrainError::Syntax { line, column, .. }) => (line, column),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn translates_rules_strings_classes_and_repeats() {
        let g = r#"
# a comment
root ::= greeting ("," ws name)* [.!]?
greeting ::= "hi" | "hello \"you\"\n"
name ::= [A-Za-z_\-] [^\x00-\x1f]{0,5} .
ws ::= [ \t]+
"#;
        let lark = to_lark(g).unwrap();
        assert_eq!(
            lark,
            "start: g_root\n\
             g_root: g_greeting (\",\" g_ws g_name)* /[\\x{2e}\\x{21}]/?\n\
             g_greeting: \"hi\" | \"hello \\\"you\\\"\\x0a\"\n\
             g_name: /[A-Za-z\\x{5f}\\x{2d}]/ /[^\\x{0}-\\x{1f}]/{0,5} /(?s:.)/\n\
             g_ws: /[\\x{20}\\x{9}]/+\n"
        );
    }

    #[test]
    fn multi_line_alternatives_and_names() {
        let g = "root ::= (\n  a-b |\n  Cd\n)\na-b ::= \"x\"{2,}\nCd ::= \"y\"{3}\n";
        let lark = to_lark(g).unwrap();
        assert!(lark.contains("g_root: (g_a_db | g_ucd)"), "{lark}");
        assert!(lark.contains("g_a_db: \"x\"{2,}"), "{lark}");
        assert!(lark.contains("g_ucd: \"y\"{3}"), "{lark}");
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(err_at("root ::= \"a\"\nfoo ::= bar\n"), (2, 9));
        assert_eq!(err_at("root ::= [a-\n"), (1, 10));
        assert_eq!(err_at("root ::= \"abc\n"), (1, 14));
        assert_eq!(err_at("root = \"a\""), (1, 6));
        assert_eq!(err_at("foo ::= \"a\""), (1, 1));
        assert_eq!(err_at("root ::= \"a\"{5,2}"), (1, 13));
        assert_eq!(err_at("root ::= (\"a\""), (1, 14));
        assert_eq!(err_at("root ::= \"a\" @"), (1, 14));
        assert_eq!(err_at("root ::= \"\\q\""), (1, 11));
        assert_eq!(err_at("root ::= \"a\"\nroot ::= \"b\""), (2, 1));
    }
}
