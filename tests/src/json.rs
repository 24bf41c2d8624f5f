//! The reference fixtures as JSON values with panicking accessors (a fixture is fixed: a missing
//! key is a broken fixture, named in the panic). Parsed by `serde_json`.

use std::collections::BTreeMap;

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Any number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object.
    Obj(BTreeMap<String, Json>),
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        use serde_json::Value;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            // Every JSON number is a finite f64 here (ids and counts are far below 2^53).
            Value::Number(n) => Json::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Json::Str(s),
            Value::Array(a) => Json::Arr(a.into_iter().map(Json::from).collect()),
            Value::Object(m) => Json::Obj(m.into_iter().map(|(k, v)| (k, Json::from(v))).collect()),
        }
    }
}

impl Json {
    /// Parses a whole document.
    pub fn parse(text: &str) -> Result<Json, String> {
        serde_json::from_str::<serde_json::Value>(text)
            .map(Json::from)
            .map_err(|e| e.to_string())
    }

    /// Member `key` of an object; panics with the key's name if absent (fixtures are fixed).
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .get(key)
                .unwrap_or_else(|| panic!("fixture has no key '{key}'")),
            _ => panic!("not an object when looking up '{key}'"),
        }
    }

    /// Member `key`, if present.
    pub fn opt(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }

    /// An object's members in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Json)> {
        match self {
            Json::Obj(m) => m.iter().map(|(k, v)| (k.as_str(), v)),
            other => panic!("not an object: {other:?}"),
        }
    }

    /// The array's items.
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }

    /// The string.
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// The number.
    pub fn num(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            other => panic!("not a number: {other:?}"),
        }
    }

    /// The boolean.
    pub fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("not a boolean: {other:?}"),
        }
    }

    /// An array of token ids.
    pub fn ids(&self) -> Vec<u32> {
        self.arr().iter().map(|v| v.num() as u32).collect()
    }

    /// An array of numbers.
    pub fn f64s(&self) -> Vec<f64> {
        self.arr().iter().map(Json::num).collect()
    }
}
