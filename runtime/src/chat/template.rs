//! Chat templates: the Jinja program in a model's `tokenizer.chat_template`, rendered the way
//! Hugging Face transformers' `apply_chat_template` renders it.
//!
//! transformers compiles the template in `ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True, extensions=[loopcontrols])`, adds the globals `raise_exception` and
//! `strftime_now` and a `tojson` filter calling `json.dumps(ensure_ascii=False)`, and renders
//! with `messages`, `tools`, `documents`, `add_generation_prompt` and the special tokens
//! (`bos_token`, `eos_token`, …). [`ChatTemplate`] rebuilds that environment on minijinja,
//! with Python's string and dict methods from `minijinja-contrib` and Python's `str()` for
//! printed values (`True`, `None`, `['a']`), so templates written against jinja2 give the same
//! bytes.
//!
//! Not supported: transformers' `{% generation %}` tag (assistant-token masks for training)
//! and `strftime_now` in local time: it formats the system clock in UTC, or the time given in
//! [`RenderOptions::now`] (see [`strftime`](super::strftime)).

use std::fmt;
use std::string::{String, ToString};
use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Kwargs, Object, Rest, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind};

use super::json::{self, JsonStyle};
use super::namespace_cycles;
use super::strftime::DateTime;
use super::{JsonValue, Message};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// Most template instructions one rendering may run (minijinja's fuel). Rendering a chat is
/// a loop over the messages with a few dozen instructions each: a 1,000-message conversation
/// in Qwen2.5's tool-aware template stays far below it (see the test), while a template from a
/// file that loops for ever, or for 10¹⁰ steps, stops in a fraction of a second with
/// [`TemplateError::OutOfFuel`] instead of hanging a turn that cancel cannot reach.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// The name the template is stored under (shows up in error messages).
const TEMPLATE_NAME: &str = "chat_template";

/// Why a chat template could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// The model has no `tokenizer.chat_template` and no template was supplied.
    Missing,
    /// The template is not valid Jinja.
    Syntax {
        /// The parser's message, with the line.
        message: String,
    },
    /// The template called `raise_exception(message)`: it rejects this conversation (e.g.
    /// roles that do not alternate).
    Raised {
        /// The template's message.
        message: String,
    },
    /// The template ran more than [`TEMPLATE_FUEL`] instructions: it loops (a nested
    /// `range(100000)`) instead of formatting a conversation.
    OutOfFuel,
    /// Rendering failed: an unknown filter or function, an operation on the wrong type, a
    /// value nested too deeply, ….
    Render {
        /// The engine's message, with the line.
        message: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Missing => write!(
                f,
                "the model has no chat template (tokenizer.chat_template); supply one"
            ),
            TemplateError::Syntax { message } => {
                write!(f, "the chat template is not valid Jinja: {message}")
            }
            TemplateError::Raised { message } => {
                write!(f, "the chat template rejected the conversation: {message}")
            }
            TemplateError::Render { message } => {
                write!(f, "rendering the chat template failed: {message}")
            }
            TemplateError::OutOfFuel => write!(
                f,
                "the chat template ran more than {TEMPLATE_FUEL} instructions (an endless loop?)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// What [`raise_exception`] attaches to the engine's error, so rendering can tell a
/// template's own rejection from an engine failure.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Options of one rendering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderOptions {
    /// Append the header that opens the assistant's turn (e.g. `<|im_start|>assistant\n`),
    /// for prompting a reply.
    pub add_generation_prompt: bool,
    /// Tool definitions (`tools`), JSON schemas as transformers passes them. `None` renders
    /// as Python's `None`.
    pub tools: Option<Vec<JsonValue>>,
    /// More variables some templates read (`enable_thinking`, `date_string`, …).
    pub vars: Vec<(String, JsonValue)>,
    /// The time `strftime_now` formats, in seconds since 1970-01-01T00:00:00 UTC, formatted as
    /// a UTC time: add a zone's offset to get that zone's local date (transformers formats the
    /// local time). `None` reads the system clock. Set it for reproducible renderings (tests)
    /// or to give templates the user's local date.
    pub now: Option<i64>,
}

/// A compiled chat template with the special tokens it may print.
///
/// Cheap to share: rendering takes `&self`.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The Jinja source.
    source: String,
    /// `(name, text)` of the special tokens (`bos_token`, `eos_token`, …) passed to every
    /// rendering.
    special: Vec<(&'static str, String)>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source())
            .field("special", &self.special)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` with no special tokens (see
    /// [`with_special_tokens`](Self::with_special_tokens)).
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Syntax {
                message: e.to_string(),
            })?;
        env.set_syntax(syntax.clone());
        // jinja2 drops a single trailing newline of the source, as minijinja does by default.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(|state, value, method, args| {
            match value.as_str().map(|s| py_space_method(s, method, args)) {
                Some(Some(v)) => Ok(v),
                _ => {
                    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
                }
            }
        });
        env.set_formatter(|out, state, value| match json::py_str(value) {
            Some(s) => out
                .write_str(&s)
                .map_err(|_| Error::from(ErrorKind::WriteFailure)),
            None => minijinja::escape_formatter(out, state, value),
        });
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_function("raise_exception", raise_exception);
        // `strftime_now` is passed with each rendering: it formats `RenderOptions::now`.
        env.add_filter("tojson", tojson);
        env.add_filter("trim", trim);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| TemplateError::Syntax {
                message: error_message(&e),
            })?;
        namespace_cycles::check(source, syntax)
            .map_err(|message| TemplateError::Syntax { message })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            special: Vec::new(),
        })
    }

    /// The model's own template (`tokenizer.chat_template`) with its special tokens.
    pub fn from_model(model: &Model) -> Result<Self, TemplateError> {
        let source = model
            .meta()
            .chat_template
            .as_deref()
            .ok_or(TemplateError::Missing)?;
        Ok(Self::new(source)?.with_tokenizer(model.tokenizer()))
    }

    /// This template with `bos_token`, `eos_token`, `unk_token` and `pad_token` set to the
    /// text of the tokenizer's tokens (those it has).
    pub fn with_tokenizer(self, tok: &Tokenizer) -> Self {
        let text = |id: Option<u32>| {
            id.map(|id| String::from_utf8_lossy(tok.token_bytes(id, true)).into_owned())
        };
        self.with_special_tokens(&[
            ("bos_token", text(tok.bos())),
            ("eos_token", text(tok.eos())),
            ("unk_token", text(tok.unk())),
            ("pad_token", text(tok.pad())),
        ])
    }

    /// This template with the given special-token variables (`None`: left undefined).
    pub fn with_special_tokens(mut self, tokens: &[(&'static str, Option<String>)]) -> Self {
        for (name, text) in tokens {
            self.special.retain(|(n, _)| n != name);
            if let Some(t) = text {
                self.special.push((name, t.clone()));
            }
        }
        self
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text of special-token variable `name` (`"bos_token"`, …), if set.
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_str())
    }

    /// Renders `messages`.
    pub fn render(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let mut ctx: Vec<(String, Value)> = Vec::new();
        // A global in transformers; a variable here so each rendering can have its own time
        // (`strftime_now is defined` holds all the same).
        let now = opts.now;
        ctx.push((
            "strftime_now".into(),
            Value::from_function(move |format: String| {
                now.map_or_else(DateTime::now, DateTime::from_unix)
                    .format(&format)
            }),
        ));
        let messages: Vec<Value> = messages.iter().map(message_value).collect();
        ctx.push(("messages".into(), Value::from(messages)));
        let tools = opts
            .tools
            .as_ref()
            .map(|t| Value::from(t.iter().map(json_value).collect::<Vec<_>>()));
        ctx.push(("tools".into(), Value::from(tools)));
        ctx.push(("documents".into(), Value::from(())));
        ctx.push((
            "add_generation_prompt".into(),
            Value::from(opts.add_generation_prompt),
        ));
        for (name, text) in &self.special {
            ctx.push((name.to_string(), Value::from(text.as_str())));
        }
        for (k, v) in &opts.vars {
            set(&mut ctx, k, json_value(v));
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render {
                message: error_message(&e),
            })?;
        template
            .render(Value::from_object(OrderedMap(ctx)))
            .map_err(|e| match raised_message(&e) {
                Some(message) => TemplateError::Raised { message },
                None if e.kind() == ErrorKind::OutOfFuel => TemplateError::OutOfFuel,
                None => TemplateError::Render {
                    message: error_message(&e),
                },
            })
    }

    /// The text the template puts after an assistant message's content, e.g. `<|im_end|>\n`
    /// for ChatML: where the model is trained to end its turn. `None` when the template does
    /// not render a lone user/assistant exchange.
    pub fn end_of_turn_text(&self) -> Option<String> {
        // Private-use characters no template adds on its own.
        const MARK: &str = "\u{F8FF}\u{F8FE}";
        let msgs = [Message::user("\u{F8FD}"), Message::assistant(MARK)];
        let text = self.render(&msgs, &RenderOptions::default()).ok()?;
        let at = text.rfind(MARK)?;
        Some(text[at + MARK.len()..].to_string())
    }
}

/// Sets or replaces `key` in an ordered list of variables.
fn set(vars: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => vars.push((key.to_string(), value)),
    }
}

/// A message as the dict transformers passes: `role`, `content`, then the extra fields.
fn message_value(m: &Message) -> Value {
    let mut fields = vec![
        ("role".to_string(), Value::from(m.role.as_str())),
        ("content".to_string(), Value::from(m.content.as_str())),
    ];
    for (k, v) in &m.extra {
        set(&mut fields, k, json_value(v));
    }
    Value::from_object(OrderedMap(fields))
}

/// The template value of a [`JsonValue`].
fn json_value(v: &JsonValue) -> Value {
    match v {
        JsonValue::Null => Value::from(()),
        JsonValue::Bool(b) => Value::from(*b),
        JsonValue::Int(i) => Value::from(*i),
        JsonValue::Float(f) => Value::from(*f),
        JsonValue::String(s) => Value::from(s.as_str()),
        JsonValue::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        JsonValue::Object(fields) => Value::from_object(OrderedMap(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        )),
    }
}

/// A dict that keeps insertion order, as Python's does (minijinja's own maps sort their keys
/// unless built with `preserve_order`, which would pull in `indexmap`). Small: lookups scan.
#[derive(Debug)]
struct OrderedMap(Vec<(String, Value)>);

impl Object for OrderedMap {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .0
            .iter()
            .map(|(k, _)| Value::from(k.as_str()))
            .collect();
        Enumerator::Values(keys)
    }
}

/// `raise_exception(message)`: fails the rendering with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Python's `str.isspace()` for one character: Unicode's `White_Space` (Rust's
/// `char::is_whitespace`) and the information separators U+001C..=U+001F, which Python also
/// counts (their bidirectional class is B or S).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// jinja2's `trim(value, chars=None)`: Python's `str(value).strip(chars)`, so `None` trims to
/// `'None'` and, without `chars`, Python's whitespace goes (minijinja's own `trim` keeps
/// U+001C..U+001F).
fn trim(value: &Value, chars: Option<Value>) -> Result<Value, Error> {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => json::py_str(value).unwrap_or_else(|| value.to_string()),
    };
    let trimmed = match chars.filter(|c| !c.is_none() && !c.is_undefined()) {
        None => text.trim_matches(is_py_space),
        Some(c) => {
            let c = c.as_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, "trim: chars must be a string")
            })?;
            text.trim_matches(|x| c.contains(x))
        }
    };
    Ok(Value::from(trimmed))
}

/// The Python string methods whose meaning depends on what whitespace is, when called
/// without an explicit set of characters or separator: `strip()`, `lstrip()`, `rstrip()`,
/// `split()` and `isspace()`, with Python's whitespace ([`is_py_space`]). `None` for
/// everything else (minijinja-contrib's `pycompat` handles it).
fn py_space_method(s: &str, method: &str, args: &[Value]) -> Option<Value> {
    // No argument, or an explicit `None` (Python's default).
    let default_arg = match args {
        [] => true,
        [a] => a.is_none(),
        _ => false,
    };
    if !default_arg {
        return None;
    }
    Some(match method {
        "strip" => Value::from(s.trim_matches(is_py_space)),
        "lstrip" => Value::from(s.trim_start_matches(is_py_space)),
        "rstrip" => Value::from(s.trim_end_matches(is_py_space)),
        "split" => s
            .split(is_py_space)
            .filter(|w| !w.is_empty())
            .map(Value::from)
            .collect(),
        "isspace" if args.is_empty() => Value::from(!s.is_empty() && s.chars().all(is_py_space)),
        _ => return None,
    })
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`: Python's `json.dumps`.
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    if args.len() > 4 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    // Each parameter by position, else by keyword.
    let param = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        match args.get(i) {
            Some(v) => Ok(Some(v.clone())),
            None => kwargs.get::<Option<Value>>(name),
        }
    };
    let ensure_ascii = param(0, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = param(1, "indent")?;
    let separators = param(2, "separators")?;
    let sort_keys = param(3, "sort_keys")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    // Python: an int indents by that many spaces, a string by itself; None keeps one line.
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                let n = v.as_i64().ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an int")
                })?;
                Some(" ".repeat(n.clamp(0, 64) as usize))
            }
        },
    };
    let mut style = JsonStyle::python(indent);
    style.sort_keys = sort_keys;
    style.ensure_ascii = ensure_ascii;
    if let Some(seps) = separators.filter(|s| !s.is_none() && !s.is_undefined()) {
        let item = seps.get_item_by_index(0)?;
        let key = seps.get_item_by_index(1)?;
        match (item.as_str(), key.as_str()) {
            (Some(i), Some(k)) => {
                style.item_sep = i.to_string();
                style.key_sep = k.to_string();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be two strings",
                ))
            }
        }
    }
    // Like jinja2's `Markup`: printing it adds nothing.
    Ok(Value::from_safe_string(json::dumps(value, &style)?))
}

/// The message of a `raise_exception` anywhere in `e`'s chain of causes.
fn raised_message(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// The engine's message with the template line, without the debug dump.
fn error_message(e: &Error) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_template_runs_out_of_fuel() {
        // Issue 17: 10^10 steps once hung the turn, out of reach of cancel.
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let start = std::time::Instant::now();
        let e = t.render(&[Message::user("hi")], &RenderOptions::default());
        assert_eq!(e, Err(TemplateError::OutOfFuel));
        // Generous: qemu runs this suite too.
        assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    }

    #[test]
    fn a_long_conversation_stays_within_the_fuel() {
        // Qwen2.5's template (tool-aware, one of the longer ones), 1,000 messages.
        let src = include_str!("../../../tests/reference/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
        let t = ChatTemplate::new(src).unwrap();
        let mut msgs = vec![Message::system("You are helpful.")];
        for i in 0..500 {
            msgs.push(Message::user(&std::format!("question {i}")));
            msgs.push(Message::assistant(&std::format!("answer {i}")));
        }
        let out = t.render(&msgs, &RenderOptions::default()).unwrap();
        assert!(out.contains("answer 499"));
    }

    #[test]
    fn python_whitespace_is_unicode_plus_information_separators() {
        // Every `c` with `chr(c).isspace()` in CPython 3.11.
        const PY: [u32; 29] = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let got: Vec<u32> = (0..=char::MAX as u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_py_space(c))
            .map(u32::from)
            .collect();
        assert_eq!(got, PY);
    }

    #[test]
    fn trim_strip_and_split_use_python_whitespace() {
        let t = ChatTemplate::new(
            "{{ s | trim }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip(none) }}|\
             {{ s.split() }}|{{ s.split(none) | length }}|{{ none | trim }}|\
             {{ [1, none] | trim }}|{{ s | trim(\"\u{1f}\u{1c}\") }}|{{ s.strip(\"\u{1f}\") }}|\
             {{ \"\u{1c} \".isspace() }}|{{ \"a b\".split(\" \") }}",
        )
        .unwrap();
        let opts = RenderOptions {
            vars: vec![(
                "s".into(),
                JsonValue::from("\u{1c}\u{3000}a\u{1f}b \u{a0}\u{1f}"),
            )],
            ..Default::default()
        };
        // jinja2 3.1.6 in transformers' environment.
        let want = "a\u{1f}b|a\u{1f}b|a\u{1f}b \u{a0}\u{1f}|\u{1c}\u{3000}a\u{1f}b|['a', 'b']|2|\
                    None|[1, None]|\u{3000}a\u{1f}b \u{a0}|\u{1c}\u{3000}a\u{1f}b \u{a0}|True|\
                    ['a', 'b']";
        assert_eq!(t.render(&[], &opts).unwrap(), want);
    }

    #[test]
    fn strftime_now_formats_the_given_time() {
        let t = ChatTemplate::new(
            "{% if strftime_now is defined %}{{ strftime_now('%d %b %Y') }}|\
             {{ strftime_now('%-d %B %Y %H:%M') }}{% endif %}",
        )
        .unwrap();
        let opts = RenderOptions {
            // 2024-02-29T13:05:09Z (`date -u -d @1709211909`).
            now: Some(1_709_211_909),
            ..Default::default()
        };
        assert_eq!(
            t.render(&[], &opts).unwrap(),
            "29 Feb 2024|29 February 2024 13:05"
        );
    }
}
