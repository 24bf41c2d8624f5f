//! The bytes of a saved conversation: its messages (with their extra fields) followed by the
//! session snapshot, framed like every Tern snapshot (magic, version, …, CRC-32).

use alloc::string::String;
use alloc::vec::Vec;

use super::{JsonValue, Message};
use crate::session::{check_snapshot, crc32, ByteReader, RestoreError};

/// First bytes of a saved chat.
pub(crate) const CHAT_MAGIC: [u8; 8] = *b"TERNCHAT";
/// Version of the chat framing.
pub(crate) const CHAT_VERSION: u32 = 1;
/// Deepest nesting of extra fields accepted when reading.
const MAX_DEPTH: usize = 64;

/// `magic | version | messages | session snapshot | crc32`.
pub(crate) fn encode_chat(messages: &[Message], session: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(session.len() + 256);
    out.extend_from_slice(&CHAT_MAGIC);
    out.extend_from_slice(&CHAT_VERSION.to_le_bytes());
    put_len(&mut out, messages.len());
    for m in messages {
        put_str(&mut out, &m.role);
        put_str(&mut out, &m.content);
        put_len(&mut out, m.extra.len());
        for (k, v) in &m.extra {
            put_str(&mut out, k);
            put_json(&mut out, v);
        }
    }
    put_len(&mut out, session.len());
    out.extend_from_slice(session);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The messages and the session snapshot of a saved chat, checked.
pub(crate) fn decode_chat(bytes: &[u8]) -> Result<(Vec<Message>, &[u8]), RestoreError> {
    let body = check_snapshot(bytes, &CHAT_MAGIC, CHAT_VERSION)?;
    let mut r = ByteReader::new(&body[CHAT_MAGIC.len() + 4..]);
    let n = r.usize("message count")?;
    let mut messages = Vec::new();
    for _ in 0..n {
        let role = get_str(&mut r, "message role")?;
        let content = get_str(&mut r, "message content")?;
        let n_extra = r.usize("field count")?;
        let mut extra = Vec::new();
        for _ in 0..n_extra {
            let k = get_str(&mut r, "field name")?;
            let v = get_json(&mut r, 0)?;
            extra.push((k, v));
        }
        messages.push(Message {
            role,
            content,
            extra,
            parse_special: false,
        });
    }
    let len = r.usize("session length")?;
    let session = r.bytes(len, "session length")?;
    if r.remaining() != 0 {
        return Err(RestoreError::Malformed { what: "length" });
    }
    Ok((messages, session))
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn get_str(r: &mut ByteReader<'_>, what: &'static str) -> Result<String, RestoreError> {
    let n = r.usize(what)?;
    let bytes = r.bytes(n, what)?;
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| RestoreError::Malformed { what })
}

/// Tags of [`JsonValue`] variants.
const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STRING: u8 = 5;
const ARRAY: u8 = 6;
const OBJECT: u8 = 7;

fn put_json(out: &mut Vec<u8>, v: &JsonValue) {
    match v {
        JsonValue::Null => out.push(NULL),
        JsonValue::Bool(false) => out.push(FALSE),
        JsonValue::Bool(true) => out.push(TRUE),
        JsonValue::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        JsonValue::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        JsonValue::String(s) => {
            out.push(STRING);
            put_str(out, s);
        }
        JsonValue::Array(items) => {
            out.push(ARRAY);
            put_len(out, items.len());
            for item in items {
                put_json(out, item);
            }
        }
        JsonValue::Object(fields) => {
            out.push(OBJECT);
            put_len(out, fields.len());
            for (k, v) in fields {
                put_str(out, k);
                put_json(out, v);
            }
        }
    }
}

fn get_json(r: &mut ByteReader<'_>, depth: usize) -> Result<JsonValue, RestoreError> {
    if depth > MAX_DEPTH {
        return Err(RestoreError::Malformed {
            what: "field nesting",
        });
    }
    Ok(match r.bytes(1, "field type")?[0] {
        NULL => JsonValue::Null,
        FALSE => JsonValue::Bool(false),
        TRUE => JsonValue::Bool(true),
        INT => JsonValue::Int(r.u64("integer field")? as i64),
        FLOAT => JsonValue::Float(f64::from_bits(r.u64("float field")?)),
        STRING => JsonValue::String(get_str(r, "string field")?),
        ARRAY => {
            let n = r.usize("list length")?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(get_json(r, depth + 1)?);
            }
            JsonValue::Array(items)
        }
        OBJECT => {
            let n = r.usize("dict length")?;
            let mut fields = Vec::new();
            for _ in 0..n {
                let k = get_str(r, "dict key")?;
                fields.push((k, get_json(r, depth + 1)?));
            }
            JsonValue::Object(fields)
        }
        _ => return Err(RestoreError::Malformed { what: "field type" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<Message> {
        vec![
            Message::system("Be brief."),
            Message::user("Weather in Paris?"),
            Message::assistant("").with_field(
                "tool_calls",
                JsonValue::Array(vec![JsonValue::Object(vec![
                    ("name".into(), "get_weather".into()),
                    (
                        "arguments".into(),
                        JsonValue::Object(vec![
                            ("city".into(), "Paris".into()),
                            ("days".into(), JsonValue::Int(-3)),
                            ("hot".into(), JsonValue::Bool(true)),
                            ("t".into(), JsonValue::Float(21.5)),
                            ("x".into(), JsonValue::Null),
                        ]),
                    ),
                ])]),
            ),
            Message::new("tool", "sunny, 21.5 °C"),
        ]
    }

    #[test]
    fn round_trip() {
        let bytes = encode_chat(&sample(), b"session bytes");
        let (messages, session) = decode_chat(&bytes).unwrap();
        assert_eq!(messages, sample());
        assert_eq!(session, b"session bytes");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected_without_panicking() {
        let bytes = encode_chat(&sample(), b"session bytes");
        for n in 0..bytes.len() {
            assert!(decode_chat(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_chat(&bad).is_err(), "flipped byte {i}");
        }
    }

    /// A body with a valid checksum but nonsense inside: errors, not panics or huge
    /// allocations.
    #[test]
    fn malformed_bodies_with_valid_checksums() {
        let frame = |body: &[u8]| {
            let mut out = Vec::from(&CHAT_MAGIC[..]);
            out.extend_from_slice(&CHAT_VERSION.to_le_bytes());
            out.extend_from_slice(body);
            let crc = crc32(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        };
        let huge = u64::MAX.to_le_bytes();
        assert!(decode_chat(&frame(&huge)).is_err());
        let mut body = Vec::new();
        put_len(&mut body, 1);
        put_str(&mut body, "user");
        body.extend_from_slice(&huge);
        assert!(decode_chat(&frame(&body)).is_err());
        let mut deep = Vec::new();
        put_len(&mut deep, 1);
        put_str(&mut deep, "user");
        put_str(&mut deep, "x");
        put_len(&mut deep, 1);
        put_str(&mut deep, "k");
        for _ in 0..1000 {
            deep.push(ARRAY);
            put_len(&mut deep, 1);
        }
        assert_eq!(
            decode_chat(&frame(&deep)).map(|_| ()),
            Err(RestoreError::Malformed {
                what: "field nesting"
            })
        );
    }
}
