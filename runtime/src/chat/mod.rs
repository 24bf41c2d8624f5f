//! Chat: conversations rendered with the model's own chat template, answered on a session
//! that keeps its KV cache between turns.
//!
//! - [`Message`] and [`JsonValue`]: what a conversation is made of, with the extra fields
//!   (`tool_calls`, `name`, …) Hugging Face templates read passed through untouched.
//! - [`ChatTemplate`] (`std`): the GGUF's `tokenizer.chat_template` rendered by a real Jinja
//!   engine (minijinja) in the environment transformers' `apply_chat_template` provides.
//! - [`Chat`] (`std`): a conversation on a [`Session`](crate::Session). Each turn renders the
//!   whole conversation, reuses the longest common token prefix with what the session has
//!   already processed and feeds only the rest; generation stops at end-of-turn tokens, stop
//!   strings or a token budget; a conversation that outgrows the context drops its oldest
//!   turns (or is refused, see [`OverflowPolicy`]).
//! - [`StopStrings`]: stop strings matched across token boundaries, without ever releasing
//!   the stop string itself.

use alloc::string::String;
use alloc::vec::Vec;

#[cfg(feature = "std")]
mod conversation;
#[cfg(feature = "std")]
mod json;
#[cfg(feature = "std")]
mod namespace_cycles;
#[cfg(feature = "std")]
mod persist;
mod stop;
#[cfg(feature = "std")]
mod strftime;
#[cfg(feature = "std")]
mod template;

#[cfg(feature = "std")]
pub use conversation::{
    Chat, ChatError, ChatOptions, OverflowPolicy, Prefill, Reply, ReplyOptions, ReplyStop,
};
pub use stop::{StopMatch, StopStrings};
#[cfg(feature = "std")]
pub use template::{ChatTemplate, RenderOptions, TemplateError};

/// A JSON-like value: the extra fields of a [`Message`] and extra template variables (tool
/// definitions, flags), handed to the template as the equivalent Python values.
///
/// Objects keep their keys in insertion order, as Python dicts do, so `tojson` prints them
/// in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue {
    /// `null` (`None`).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    Array(Vec<JsonValue>),
    /// A dict, keys in order.
    Object(Vec<(String, JsonValue)>),
}

impl From<&str> for JsonValue {
    fn from(s: &str) -> Self {
        JsonValue::String(String::from(s))
    }
}

impl From<String> for JsonValue {
    fn from(s: String) -> Self {
        JsonValue::String(s)
    }
}

impl From<bool> for JsonValue {
    fn from(b: bool) -> Self {
        JsonValue::Bool(b)
    }
}

impl From<i64> for JsonValue {
    fn from(i: i64) -> Self {
        JsonValue::Int(i)
    }
}

impl From<f64> for JsonValue {
    fn from(f: f64) -> Self {
        JsonValue::Float(f)
    }
}

/// One message of a conversation, as Hugging Face templates see it: `role`, `content`, and
/// any extra fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// `"system"`, `"user"`, `"assistant"`, `"tool"`, or whatever role the template knows.
    pub role: String,
    /// The text.
    pub content: String,
    /// Extra fields passed to the template as they are (`tool_calls`, `name`,
    /// `tool_call_id`, …), after `role` and `content`. A field named `content` or `role`
    /// here replaces the one above (e.g. `content: null` for a tool-call-only message).
    pub extra: Vec<(String, JsonValue)>,
    /// Whether text in `content` that spells a control token (`<|im_end|>`) becomes that
    /// token. `false` (the default) tokenizes it as the text it is, so a user message, a web
    /// page or a mail cannot forge a turn of the conversation; the template's own markers are
    /// tokens either way. Set it only for content the app itself writes with special tokens
    /// in mind. Not saved by [`Chat::save`]: restored messages have it `false`.
    pub parse_special: bool,
}

impl Message {
    /// A message with `role` and `content` and no extra fields.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: String::from(role),
            content: String::from(content),
            extra: Vec::new(),
            parse_special: false,
        }
    }

    /// This message with [`parse_special`](Self::parse_special) set: its content may spell
    /// control tokens.
    pub fn with_special_tokens(mut self) -> Self {
        self.parse_special = true;
        self
    }

    /// A system prompt.
    pub fn system(content: &str) -> Self {
        Self::new("system", content)
    }

    /// A user turn.
    pub fn user(content: &str) -> Self {
        Self::new("user", content)
    }

    /// An assistant turn.
    pub fn assistant(content: &str) -> Self {
        Self::new("assistant", content)
    }

    /// This message with the extra field `key` set to `value`.
    pub fn with_field(mut self, key: &str, value: JsonValue) -> Self {
        match self.extra.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.extra.push((String::from(key), value)),
        }
        self
    }
}
