//! Python's text forms of template values: `json.dumps` (transformers' `tojson` filter) and
//! `str()` (what `{{ value }}` prints in jinja2), so renderings match byte for byte.

use std::fmt::Write;
use std::string::{String, ToString};
use std::vec::Vec;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Deepest nesting `tojson` and `str()` follow before giving up (a template cannot build
/// cycles, but a value can be deep).
const MAX_DEPTH: usize = 128;

/// How `json.dumps` lays out its output.
pub(crate) struct JsonStyle {
    /// `indent`: `None` keeps everything on one line.
    pub indent: Option<String>,
    /// Between items (`", "` inline, `","` when indented).
    pub item_sep: String,
    /// Between a key and its value.
    pub key_sep: String,
    /// `sort_keys`.
    pub sort_keys: bool,
    /// `ensure_ascii`: escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
}

impl JsonStyle {
    /// `json.dumps` defaults with transformers' `ensure_ascii=False`.
    pub fn python(indent: Option<String>) -> Self {
        let item_sep = if indent.is_some() { "," } else { ", " };
        JsonStyle {
            indent,
            item_sep: item_sep.to_string(),
            key_sep: ": ".to_string(),
            sort_keys: false,
            ensure_ascii: false,
        }
    }
}

/// `json.dumps(value, ...)` with `style`.
pub(crate) fn dumps(value: &Value, style: &JsonStyle) -> Result<String, Error> {
    let mut out = String::new();
    write_json(&mut out, value, style, 0)?;
    Ok(out)
}

fn write_json(out: &mut String, v: &Value, style: &JsonStyle, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match v.kind() {
        // As `json.dumps(jinja2.Undefined())`: a missing field is an error, not `null`.
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: Object of type Undefined is not JSON serializable",
            ))
        }
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v),
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_container(out, style, depth, '[', ']', items.len(), |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for k in v.try_iter()? {
                let item = v.get_item(&k)?;
                pairs.push((json_key(&k)?, item));
            }
            if style.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, style, depth, '{', '}', pairs.len(), |out, i| {
                write_json_str(out, &pairs[i].0, style);
                out.push_str(&style.key_sep);
                write_json(out, &pairs[i].1, style, depth + 1)
            })?;
        }
        _ => write_json_str(out, &v.to_string(), style),
    }
    Ok(())
}

/// Python's `json.dumps` turns non-string keys into strings this way.
fn json_key(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::None | ValueKind::Undefined => "null".to_string(),
        ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).to_string(),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, k);
            s
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: keys must be str, int, float, bool or None",
            ))
        }
    })
}

fn write_container(
    out: &mut String,
    style: &JsonStyle,
    depth: usize,
    open: char,
    close: char,
    n: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if n == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    for i in 0..n {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, depth + 1);
        item(out, i)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

fn write_number(out: &mut String, v: &Value) {
    // By kind, not by value: Python's `json.dumps(3.0)` is `3.0` and `json.dumps(1e16)` is
    // `1e+16` (`as_i64` would accept both as integers).
    if v.is_integer() {
        // Any width, 128-bit ones included: the decimal form.
        out.push_str(&v.to_string());
    } else if let Ok(f) = f64::try_from(v.clone()) {
        out.push_str(&py_float(f, true));
    } else {
        out.push_str(&v.to_string());
    }
}

/// A JSON string literal as Python writes it.
fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back to `f`, in fixed notation for
/// exponents −4..16 and scientific otherwise. `json` spells non-finite values `NaN` /
/// `Infinity`, `repr` spells them `nan` / `inf`.
pub(crate) fn py_float(f: f64, json: bool) -> String {
    if f.is_nan() {
        return (if json { "NaN" } else { "nan" }).to_string();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 {
            std::format!("-{s}")
        } else {
            s.to_string()
        };
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e3", "1e-7".
    let sci = std::format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(mant);
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    out
}

/// What `{{ value }}` prints in jinja2 for values whose Python `str()` differs from
/// minijinja's default: `True`/`False`, `None`, floats, and lists and dicts as Python
/// literals. `None` when minijinja's own output already matches (strings, integers,
/// undefined).
pub(crate) fn py_str(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            let mut out = String::new();
            py_repr(&mut out, v, 0);
            Some(out)
        }
        ValueKind::Number if !v.is_integer() => {
            f64::try_from(v.clone()).ok().map(|f| py_float(f, false))
        }
        _ => None,
    }
}

/// Python's `repr()` of a template value.
fn py_repr(out: &mut String, v: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number if !v.is_integer() => {
            if let Ok(f) = f64::try_from(v.clone()) {
                out.push_str(&py_float(f, false));
            }
        }
        ValueKind::String => py_repr_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = v.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &item, depth + 1);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = v.try_iter() {
                for (i, k) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &k, depth + 1);
                    out.push_str(": ");
                    py_repr(out, &v.get_item(&k).unwrap_or_default(), depth + 1);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double one.
fn py_repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn floats_print_like_python_repr() {
        // Expected values are Python 3's repr().
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.5e-7, "1.5e-07"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (2.5e-300, "2.5e-300"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(f, false), want, "{f}");
        }
        assert_eq!(py_float(f64::NAN, true), "NaN");
        assert_eq!(py_float(f64::NEG_INFINITY, true), "-Infinity");
        assert_eq!(py_float(f64::INFINITY, false), "inf");
    }

    #[test]
    fn json_like_python_dumps() {
        let v = Value::from(vec![
            Value::from("a\"b\\c\nd\u{1}é"),
            Value::from(1),
            Value::from(2.5),
            Value::from(true),
            Value::from(()),
        ]);
        assert_eq!(
            dumps(&v, &JsonStyle::python(None)).unwrap(),
            "[\"a\\\"b\\\\c\\nd\\u0001é\", 1, 2.5, true, null]"
        );
        let ascii = JsonStyle {
            ensure_ascii: true,
            ..JsonStyle::python(None)
        };
        assert_eq!(
            dumps(&Value::from("é🎉"), &ascii).unwrap(),
            "\"\\u00e9\\ud83c\\udf89\""
        );
        let v = Value::from(vec![Value::from(1), Value::from(Vec::<Value>::new())]);
        assert_eq!(
            dumps(&v, &JsonStyle::python(Some("  ".into()))).unwrap(),
            "[\n  1,\n  []\n]"
        );
        // Undefined (a missing field) is not serializable, as in jinja2.
        assert!(dumps(&Value::UNDEFINED, &JsonStyle::python(None)).is_err());
        let v = Value::from(vec![Value::from(1), Value::UNDEFINED]);
        assert!(dumps(&v, &JsonStyle::python(None)).is_err());
        // Integral floats stay floats, as in Python; wide integers stay integers.
        let v = Value::from(vec![
            Value::from(3.0),
            Value::from(-0.0),
            Value::from(1e16),
            Value::from(i64::MIN),
            Value::from(u64::MAX),
            Value::from(i128::MAX),
        ]);
        assert_eq!(
            dumps(&v, &JsonStyle::python(None)).unwrap(),
            "[3.0, -0.0, 1e+16, -9223372036854775808, 18446744073709551615, \
             170141183460469231731687303715884105727]"
        );
    }

    #[test]
    fn str_like_python() {
        assert_eq!(py_str(&Value::from(true)).as_deref(), Some("True"));
        assert_eq!(py_str(&Value::from(())).as_deref(), Some("None"));
        assert_eq!(py_str(&Value::from(3)), None);
        assert_eq!(py_str(&Value::from("x")), None);
        let v = Value::from(vec![
            Value::from("it's"),
            Value::from(1.0),
            Value::from(false),
        ]);
        assert_eq!(py_str(&v).as_deref(), Some("[\"it's\", 1.0, False]"));
    }
}
