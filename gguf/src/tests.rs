//! Tests: an in-memory GGUF writer, round trips, and corrupt, truncated and mutated files.

extern crate std;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;

// ---- A minimal GGUF writer -------------------------------------------------------------------

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s);
}

fn type_id(v: &Value<'_>) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// Writes a value's payload (not its type). Empty arrays are written as arrays of u8.
fn put_value(buf: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => put_u32(buf, *x),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::Str(s) => put_str(buf, s.as_bytes()),
        Value::Array(items) => {
            put_u32(buf, items.get(0).as_ref().map_or(0, type_id));
            put_u64(buf, items.len() as u64);
            for item in items.iter() {
                let item = &item;
                put_value(buf, item);
            }
        }
        Value::U64(x) => put_u64(buf, *x),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
}

struct TensorSpec {
    name: &'static str,
    dims: Vec<u64>,
    ty: u32,
    /// Relative offset; `None` lays tensors out back to back, aligned.
    offset: Option<u64>,
}

fn tensor(name: &'static str, dims: &[u64], ty: u32) -> TensorSpec {
    TensorSpec {
        name,
        dims: dims.to_vec(),
        ty,
        offset: None,
    }
}

struct Builder {
    version: u32,
    /// Alignment used for layout; written to the file only via an explicit kv.
    alignment: u64,
    kvs: Vec<(&'static str, Value<'static>)>,
    tensors: Vec<TensorSpec>,
}

/// What the builder produced, with the positions tests check against.
struct Built {
    bytes: Vec<u8>,
    infos_end: u64,
    data_offset: u64,
    rel_offsets: Vec<u64>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    fn kv(mut self, key: &'static str, v: Value<'static>) -> Self {
        self.kvs.push((key, v));
        self
    }

    fn alignment(mut self, a: u32) -> Self {
        self.alignment = u64::from(a);
        self.kv(ALIGNMENT_KEY, Value::U32(a))
    }

    fn tensor(mut self, t: TensorSpec) -> Self {
        self.tensors.push(t);
        self
    }

    fn build(&self) -> Built {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        put_u32(&mut b, self.version);
        put_u64(&mut b, self.tensors.len() as u64);
        put_u64(&mut b, self.kvs.len() as u64);
        for (k, v) in &self.kvs {
            put_str(&mut b, k.as_bytes());
            put_u32(&mut b, type_id(v));
            put_value(&mut b, v);
        }
        // Sizes of invalid specs are only used for layout, so anything non-panicking will do.
        let size = |t: &TensorSpec| {
            let n = t
                .dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .unwrap_or(0);
            let row = t.dims.first().copied().unwrap_or(1);
            GgmlType(t.ty).tensor_bytes(n, row).unwrap_or(0)
        };
        let mut rel_offsets = Vec::new();
        let mut next = 0u64;
        let mut data_len = 0u64;
        for t in &self.tensors {
            let off = t.offset.unwrap_or(next);
            rel_offsets.push(off);
            next = align_up(off.saturating_add(size(t)), self.alignment).unwrap_or(u64::MAX);
            data_len = data_len.max(off.saturating_add(size(t)));
            put_str(&mut b, t.name.as_bytes());
            put_u32(&mut b, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut b, d);
            }
            put_u32(&mut b, t.ty);
            put_u64(&mut b, off);
        }
        let infos_end = b.len() as u64;
        let data_offset = align_up(infos_end, self.alignment).unwrap();
        b.resize(data_offset as usize, 0);
        // Distinct data bytes so `data()` slices can be checked.
        let data_len = data_len.min(1 << 20);
        b.extend((0..data_len).map(|i| (i * 7 + 3) as u8));
        Built {
            bytes: b,
            infos_end,
            data_offset,
            rel_offsets,
        }
    }
}

/// A small file using every value type, nested arrays, several tensors and alignment 64.
fn rich() -> Builder {
    Builder::new()
        .kv("general.architecture", Value::Str("llama"))
        .alignment(64)
        .kv("u8", Value::U8(200))
        .kv("i8", Value::I8(-5))
        .kv("u16", Value::U16(60000))
        .kv("i16", Value::I16(-30000))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32", Value::I32(-7))
        .kv("f32", Value::F32(1e-5))
        .kv("bool", Value::Bool(true))
        .kv("str", Value::Str("héllo ✓"))
        .kv("u64", Value::U64(u64::MAX))
        .kv("i64", Value::I64(i64::MIN))
        .kv("f64", Value::F64(10000.5))
        .kv(
            "tokens",
            Value::Array(vec![Value::Str("<s>"), Value::Str("a"), Value::Str("")].into()),
        )
        .kv(
            "scores",
            Value::Array(vec![Value::F32(0.5), Value::F32(-1.0)].into()),
        )
        .kv(
            "types",
            Value::Array(vec![Value::I32(1), Value::I32(-2), Value::I32(3)].into()),
        )
        .kv(
            "nested",
            Value::Array(
                vec![
                    Value::Array(vec![Value::U8(1), Value::U8(2)].into()),
                    Value::Array(vec![Value::U8(3)].into()),
                ]
                .into(),
            ),
        )
        .kv("empty", Value::Array(Vec::new().into()))
        .kv(
            "bools",
            Value::Array(vec![Value::Bool(false), Value::Bool(true)].into()),
        )
        .tensor(tensor("token_embd.weight", &[64, 3], 8))
        .tensor(tensor("norm", &[64], 0))
        .tensor(tensor("blk.0.attn_q.weight", &[32, 2, 2], 2))
        .tensor(tensor("four_d", &[2, 2, 2, 2], 1))
}

fn parse(bytes: &[u8]) -> Result<Gguf<'_>, GgufError> {
    Gguf::parse(bytes, bytes.len() as u64)
}

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(_) => panic!("parse unexpectedly succeeded"),
        Err(e) => e,
    }
}

/// Header (24 bytes) then one kv: key `k` and a value whose type and payload are `tail`.
fn one_kv_raw(key: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    put_u32(&mut b, 3);
    put_u64(&mut b, 0);
    put_u64(&mut b, 1);
    put_str(&mut b, key);
    b.extend_from_slice(tail);
    b
}

// ---- Round trips -----------------------------------------------------------------------------

#[test]
fn round_trip_every_value_type() {
    let builder = rich();
    let built = builder.build();
    let g = parse(&built.bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset, built.data_offset);
    assert_eq!(g.data_offset % 64, 0);

    // Metadata in file order, values identical.
    assert_eq!(g.metadata().len(), builder.kvs.len());
    for ((k, v), (ek, ev)) in g.metadata().iter().zip(&builder.kvs) {
        assert_eq!(k, ek);
        assert_eq!(v, ev);
        assert_eq!(g.get(k), Some(ev));
    }
    assert_eq!(g.get("absent"), None);
    let nested = g.get("nested").unwrap().as_array().unwrap();
    let first = nested.get(0).unwrap();
    assert_eq!(first.as_array().unwrap().get(1), Some(Value::U8(2)));

    // Typed accessors.
    assert_eq!(g.req_str("general.architecture"), Ok("llama"));
    assert_eq!(g.req_u64("u8"), Ok(200));
    assert_eq!(g.req_u64("u64"), Ok(u64::MAX));
    assert_eq!(g.req_u64("u32"), Ok(4_000_000_000));
    assert_eq!(g.req_f32("f32"), Ok(1e-5));
    assert_eq!(g.req_f32("f64"), Ok(10000.5));
    assert_eq!(g.req_f32("i32"), Ok(-7.0));
    assert_eq!(g.opt_bool("bool"), Ok(Some(true)));
    assert_eq!(g.opt_str("str"), Ok(Some("héllo ✓")));
    assert_eq!(g.opt_str_array("tokens"), Ok(Some(vec!["<s>", "a", ""])));
    assert_eq!(g.opt_f32_array("scores"), Ok(Some(vec![0.5, -1.0])));
    assert_eq!(g.opt_i32_array("types"), Ok(Some(vec![1, -2, 3])));
    assert_eq!(g.opt_i32_array("empty"), Ok(Some(Vec::new())));
    assert_eq!(g.opt_str_array("empty"), Ok(Some(Vec::new())));

    // Tensors in file order, absolute offsets, sizes from the type table.
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        ["token_embd.weight", "norm", "blk.0.attn_q.weight", "four_d"]
    );
    let sizes = [2 * 3 * 34, 64 * 4, 4 * 18, 16 * 2];
    for (i, t) in g.tensors().iter().enumerate() {
        assert_eq!(t.offset, built.data_offset + built.rel_offsets[i]);
        assert_eq!(t.offset % 64, 0);
        assert_eq!(t.size, sizes[i]);
        assert_eq!(g.tensor(t.name), Some(t));
        let data = t.data(&built.bytes).unwrap();
        assert_eq!(data.len() as u64, t.size);
        assert_eq!(data.as_ptr(), built.bytes[t.offset as usize..].as_ptr());
    }
    let q = g.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.dims, q.n_dims), ([32, 2, 2, 1], 3));
    assert_eq!((q.n_elements(), q.row_len(), q.n_rows()), (128, 32, 4));
    assert_eq!(q.ggml_type, GgmlType::Q4_0);
    assert_eq!(
        g.tensor("token_embd.weight").unwrap().ggml_type,
        GgmlType::Q8_0
    );
    assert_eq!(g.tensor("missing"), None);
}

#[test]
fn default_alignment_and_version_2() {
    let mut b = Builder::new()
        .tensor(tensor("a", &[3], 0))
        .tensor(tensor("b", &[5], 0));
    b.version = 2;
    let built = b.build();
    let g = parse(&built.bytes).unwrap();
    assert_eq!((g.version, g.alignment), (2, DEFAULT_ALIGNMENT));
    assert_eq!(g.data_offset, built.data_offset);
    assert_eq!(g.tensor("b").unwrap().offset, built.data_offset + 32);
}

#[test]
fn empty_file_parses() {
    let built = Builder::new().build();
    let g = parse(&built.bytes).unwrap();
    assert!(g.metadata().is_empty() && g.tensors().is_empty());
    assert_eq!(g.data_offset, 32);
}

#[test]
fn streamed_prefix_parses_and_checks_against_file_len() {
    let built = rich().build();
    let full = built.bytes.len() as u64;
    let prefix = &built.bytes[..built.infos_end as usize];
    let g = Gguf::parse(prefix, full).unwrap();
    let last = g.tensors().last().unwrap();
    assert_eq!(last.offset + last.size, full);
    // The prefix does not hold the data; the whole file does.
    assert_eq!(last.data(prefix), None);
    assert!(last.data(&built.bytes).is_some());
    // A file length shorter than the tensors claim is caught even from a prefix.
    assert!(matches!(
        Gguf::parse(prefix, full - 1),
        Err(GgufError::TensorOutOfBounds { ref tensor, .. }) if tensor == "four_d"
    ));
}

#[test]
fn bytes_beyond_file_len_are_ignored() {
    let built = Builder::new().kv("k", Value::U8(1)).build();
    let mut bytes = built.bytes.clone();
    bytes.extend_from_slice(&[0xff; 100]);
    assert!(Gguf::parse(&bytes, built.bytes.len() as u64).is_ok());
    assert!(matches!(
        Gguf::parse(&bytes, 10),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn accessor_errors() {
    let built = rich().build();
    let g = parse(&built.bytes).unwrap();
    let missing = |k: &str| GgufError::MissingKey { key: k.to_string() };
    let wrong = |k: &str, expected, found| GgufError::WrongType {
        key: k.to_string(),
        expected,
        found,
    };
    assert_eq!(g.req_u64("nope"), Err(missing("nope")));
    assert_eq!(g.req_f32("nope"), Err(missing("nope")));
    assert_eq!(g.req_str("nope"), Err(missing("nope")));
    assert_eq!(g.opt_u64("nope"), Ok(None));
    assert_eq!(g.opt_f32("nope"), Ok(None));
    assert_eq!(g.opt_str("nope"), Ok(None));
    assert_eq!(g.opt_bool("nope"), Ok(None));
    assert_eq!(g.opt_str_array("nope"), Ok(None));
    assert_eq!(g.opt_f32_array("nope"), Ok(None));
    assert_eq!(g.opt_i32_array("nope"), Ok(None));

    assert_eq!(
        g.req_u64("i8"),
        Err(wrong("i8", "non-negative integer", "negative integer"))
    );
    assert_eq!(
        g.req_u64("f32"),
        Err(wrong("f32", "non-negative integer", "f32"))
    );
    assert_eq!(
        g.opt_u64("str"),
        Err(wrong("str", "non-negative integer", "string"))
    );
    assert_eq!(g.req_f32("str"), Err(wrong("str", "number", "string")));
    assert_eq!(g.req_str("u8"), Err(wrong("u8", "string", "u8")));
    assert_eq!(g.opt_bool("u8"), Err(wrong("u8", "bool", "u8")));
    assert_eq!(
        g.opt_str_array("scores"),
        Err(wrong("scores", "array of string", "array of f32"))
    );
    assert_eq!(
        g.opt_str_array("str"),
        Err(wrong("str", "array of string", "string"))
    );
    assert_eq!(
        g.opt_f32_array("tokens"),
        Err(wrong("tokens", "array of f32", "array of string"))
    );
    assert_eq!(
        g.opt_i32_array("nested"),
        Err(wrong("nested", "array of i32", "array of array"))
    );

    // Integer arrays of other widths convert when their values fit i32.
    let b = Builder::new()
        .kv(
            "u8s",
            Value::Array(vec![Value::U8(255), Value::U8(0)].into()),
        )
        .kv("i16s", Value::Array(vec![Value::I16(-3)].into()))
        .kv("u64s", Value::Array(vec![Value::U64(5)].into()))
        .kv(
            "wide",
            Value::Array(vec![Value::I64(-5), Value::I64(1 << 31)].into()),
        )
        .build();
    let g = parse(&b.bytes).unwrap();
    assert_eq!(g.opt_i32_array("u8s"), Ok(Some(vec![255, 0])));
    assert_eq!(g.opt_i32_array("i16s"), Ok(Some(vec![-3])));
    assert_eq!(g.opt_i32_array("u64s"), Ok(Some(vec![5])));
    assert_eq!(
        g.opt_i32_array("wide"),
        Err(wrong(
            "wide",
            "array of i32",
            "array with values outside i32"
        ))
    );
}

#[test]
fn value_conversions_and_display() {
    assert_eq!(Value::I64(-1).as_u64(), None);
    assert_eq!(Value::U64(u64::MAX).as_i64(), None);
    assert_eq!(Value::I16(-4).as_i64(), Some(-4));
    assert_eq!(Value::F32(1.0).as_u64(), None);
    assert_eq!(Value::U8(3).as_f32(), Some(3.0));
    assert_eq!(Value::Bool(true).as_u64(), None);
    assert_eq!(Value::Str("x").as_str(), Some("x"));
    assert_eq!(Value::U8(1).as_bool(), None);

    assert_eq!(Value::U32(7).to_string(), "7");
    assert_eq!(Value::Str("a\nb").to_string(), "\"a\\nb\"");
    let long = "x".repeat(100);
    assert_eq!(
        Value::Str(&long).to_string(),
        format!("\"{}\"…", "x".repeat(60))
    );
    let few = Value::Array(vec![Value::I32(1), Value::Str("b")].into());
    assert_eq!(few.to_string(), "[1, \"b\"]");
    let many = Value::Array((0..100).map(Value::U32).collect());
    assert_eq!(many.to_string(), "[0, 1, 2, 3, 4, 5, 6, 7, … (100 items)]");
    assert_eq!(Value::Array(Vec::new().into()).to_string(), "[]");
}

#[test]
fn type_table() {
    let cases: [(GgmlType, &str, u64, u64); 12] = [
        (GgmlType::F32, "F32", 1, 4),
        (GgmlType::F16, "F16", 1, 2),
        (GgmlType::BF16, "BF16", 1, 2),
        (GgmlType::Q4_0, "Q4_0", 32, 18),
        (GgmlType::Q4_1, "Q4_1", 32, 20),
        (GgmlType::Q8_0, "Q8_0", 32, 34),
        (GgmlType::Q4_K, "Q4_K", 256, 144),
        (GgmlType::Q6_K, "Q6_K", 256, 210),
        (GgmlType::TQ1_0, "TQ1_0", 256, 54),
        (GgmlType::TQ2_0, "TQ2_0", 256, 66),
        (GgmlType(39), "MXFP4", 32, 17),
        (GgmlType(23), "IQ4_XS", 256, 136),
    ];
    for (ty, name, len, bytes) in cases {
        assert_eq!(ty.name(), Some(name));
        assert_eq!(ty.to_string(), name);
        assert_eq!((ty.block_len(), ty.block_bytes()), (Some(len), Some(bytes)));
        assert_eq!(ty.tensor_bytes(len * 6, len * 2), Some(6 * bytes));
    }
    for retired in [4, 5, 31, 32, 33, 37, 38, 40, 123] {
        assert_eq!(GgmlType(retired).name(), None);
        assert_eq!(GgmlType(retired).tensor_bytes(256, 256), None);
    }
    assert_eq!(GgmlType(123).to_string(), "type 123");
    assert_eq!(GgmlType::Q4_0.tensor_bytes(64, 33), None);
    assert_eq!(GgmlType::F32.tensor_bytes(u64::MAX, 1), None);
}

#[cfg(feature = "kernels")]
#[test]
fn type_table_matches_kernel_formats() {
    assert_eq!(GgmlType::Q8_0.format(), Some(tern_kernels::Format::Q8_0));
    assert_eq!(GgmlType::BF16.format(), Some(tern_kernels::Format::BF16));
    assert_eq!(GgmlType::Q4_K.format(), Some(tern_kernels::Format::Q4_K));
    assert_eq!(GgmlType::Q5_0.format(), Some(tern_kernels::Format::Q5_0));
    assert_eq!(GgmlType::Q5_1.format(), Some(tern_kernels::Format::Q5_1));
    assert_eq!(GgmlType(20).format(), Some(tern_kernels::Format::IQ4_NL));
    assert_eq!(GgmlType(9).format(), None, "Q8_1 has no kernel");
    assert_eq!(GgmlType(11).format(), Some(tern_kernels::Format::Q3_K));
    assert_eq!(GgmlType(10).format(), Some(tern_kernels::Format::Q2_K));
    assert_eq!(GgmlType(13).format(), Some(tern_kernels::Format::Q5_K));
    assert_eq!(GgmlType(23).format(), Some(tern_kernels::Format::IQ4_XS));
    // The kernels' format table and the reader's type table agree on every shared fact.
    for f in tern_kernels::Format::ALL {
        let ty = GgmlType(f.ggml_type());
        assert_eq!(ty.format(), Some(f));
        assert_eq!(ty.name(), Some(f.name()));
        let len = f.block_len() as u64;
        // I2_S: the reader counts 4 weights a byte, the kernels 128-weight blocks of 32 bytes.
        assert_eq!(
            ty.block_bytes().map(|b| b * len / ty.block_len().unwrap()),
            Some(f.block_bytes() as u64),
            "{}",
            f.name()
        );
    }
}

#[test]
fn i2_s_size_is_quarter_bytes_plus_trailer() {
    assert_eq!(GgmlType::I2_S.name(), Some("I2_S"));
    assert_eq!(
        GgmlType::I2_S.tensor_bytes(128 * 4, 128),
        Some(128 * 4 / 4 + 32)
    );
    let built = Builder::new()
        .tensor(tensor("w", &[128, 4], 36))
        .tensor(tensor("after", &[8], 0))
        .build();
    let g = parse(&built.bytes).unwrap();
    let w = g.tensor("w").unwrap();
    assert_eq!(w.size, 160);
    assert_eq!(g.tensor("after").unwrap().offset, w.offset + 160);
}

// ---- Truncation ------------------------------------------------------------------------------

#[test]
fn every_truncation_fails_cleanly() {
    let built = rich().build();
    let bytes = &built.bytes;
    let full = bytes.len() as u64;
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        // As a streamed prefix: only an incomplete header is an error, and it is `Truncated`.
        match Gguf::parse(prefix, full) {
            Ok(_) => assert!(cut as u64 >= built.infos_end, "cut {cut}"),
            Err(GgufError::Truncated { .. }) => assert!((cut as u64) < built.infos_end),
            Err(e) => panic!("cut {cut}: unexpected {e:?}"),
        }
        // As a truncated file: always an error, since the last tensor reaches the end.
        match Gguf::parse(prefix, cut as u64) {
            Err(GgufError::Truncated { .. }) => assert!((cut as u64) < built.infos_end),
            Err(GgufError::TensorOutOfBounds { .. }) => assert!(cut as u64 >= built.infos_end),
            other => panic!("cut {cut}: unexpected {other:?}"),
        }
    }
    assert!(parse(bytes).is_ok());
}

#[test]
fn truncation_names_the_field() {
    let built = rich().build();
    let b = &built.bytes;
    let at = |cut: usize| match parse(&b[..cut]) {
        Err(GgufError::Truncated { field, offset }) => (field, offset),
        other => panic!("cut {cut}: {other:?}"),
    };
    assert_eq!(at(0), ("magic", 0));
    assert_eq!(at(3), ("magic", 0));
    assert_eq!(at(6), ("version", 4));
    assert_eq!(at(8), ("tensor count", 8));
    assert_eq!(at(20), ("metadata count", 16));
    assert_eq!(at(24), ("metadata key", 24));
    // Inside the first key's bytes ("general.architecture" follows its length at 24).
    assert_eq!(at(40), ("metadata key", 32));
    // Its value type, then the string value.
    assert_eq!(at(54), ("metadata value type", 52));
    assert_eq!(at(58), ("string value", 56));
    // Inside the last tensor info's offset.
    let last_offset_field = built.infos_end as usize - 8;
    assert_eq!(
        at(last_offset_field + 3),
        ("tensor offset", last_offset_field as u64)
    );
    assert_eq!(
        at(last_offset_field - 2),
        ("tensor type", last_offset_field as u64 - 4)
    );

    let e = parse(&b[..10]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "GGUF truncated reading tensor count at offset 8"
    );
}

// ---- Corrupt headers and metadata ------------------------------------------------------------

#[test]
fn bad_magic_and_versions() {
    let mut b = Builder::new().build().bytes;
    b[0] = b'X';
    assert_eq!(err(&b), GgufError::BadMagic { found: *b"XGUF" });
    for version in [0, 1, 4, 0x0300_0000] {
        let mut builder = Builder::new();
        builder.version = version;
        assert_eq!(
            err(&builder.build().bytes),
            GgufError::UnsupportedVersion { version }
        );
    }
}

#[test]
fn bad_value_type_and_bool() {
    let mut tail = Vec::new();
    put_u32(&mut tail, 13);
    assert_eq!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::InvalidValueType {
            type_id: 13,
            offset: 33
        }
    );

    let mut tail = Vec::new();
    put_u32(&mut tail, 7);
    tail.push(2);
    assert_eq!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::InvalidBool {
            offset: 37,
            value: 2
        }
    );

    // An invalid element type inside an array.
    let mut tail = Vec::new();
    put_u32(&mut tail, 9);
    put_u32(&mut tail, 200);
    put_u64(&mut tail, 0);
    assert_eq!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::InvalidValueType {
            type_id: 200,
            offset: 37
        }
    );
}

#[test]
fn invalid_utf8() {
    let mut tail = Vec::new();
    put_u32(&mut tail, 0);
    tail.push(1);
    assert_eq!(
        err(&one_kv_raw(b"ab\xffc", &tail)),
        GgufError::InvalidUtf8 {
            field: "metadata key",
            offset: 34
        }
    );
    let mut tail = Vec::new();
    put_u32(&mut tail, 8);
    put_str(&mut tail, b"\xc3");
    assert!(matches!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::InvalidUtf8 {
            field: "string value",
            ..
        }
    ));
}

#[test]
fn huge_lengths_are_rejected_before_allocating() {
    // String length beyond the cap.
    let mut b = one_kv_raw(b"", &[]);
    b.truncate(24);
    put_u64(&mut b, 1 << 62);
    b.extend_from_slice(&[0; 64]);
    assert!(matches!(
        err(&b),
        GgufError::TooLarge { field: "metadata key", value, offset: 24, .. } if value == 1 << 62
    ));

    // Array length 2^60 of u8 in a tiny file.
    let mut tail = Vec::new();
    put_u32(&mut tail, 9);
    put_u32(&mut tail, 0);
    put_u64(&mut tail, 1 << 60);
    tail.extend_from_slice(&[0; 16]);
    let limit = MAX_ARRAY_LEN;
    assert_eq!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::TooLarge {
            field: "array length",
            value: 1 << 60,
            limit,
            offset: 41
        }
    );

    // Under the cap but more than the bytes left: strings take at least 8 bytes each, so 3
    // cannot fit in 16. Rejected before allocating.
    let mut tail = Vec::new();
    put_u32(&mut tail, 9);
    put_u32(&mut tail, 8);
    put_u64(&mut tail, 3);
    tail.extend_from_slice(&[0; 16]);
    assert_eq!(
        err(&one_kv_raw(b"k", &tail)),
        GgufError::Truncated {
            field: "array elements",
            offset: 49
        }
    );

    // Counts in the header.
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    put_u32(&mut b, 3);
    put_u64(&mut b, u64::MAX);
    put_u64(&mut b, 0);
    assert!(matches!(
        err(&b),
        GgufError::TooLarge {
            field: "tensor count",
            offset: 8,
            ..
        }
    ));
    b[8..16].copy_from_slice(&0u64.to_le_bytes());
    b[16..24].copy_from_slice(&(MAX_KV + 1).to_le_bytes());
    assert!(matches!(
        err(&b),
        GgufError::TooLarge {
            field: "metadata count",
            offset: 16,
            ..
        }
    ));
    // A plausible count with nothing behind it is just truncated.
    b[16..24].copy_from_slice(&MAX_KV.to_le_bytes());
    assert!(matches!(
        err(&b),
        GgufError::Truncated {
            field: "metadata key",
            offset: 24
        }
    ));
}

#[test]
fn nesting_cap() {
    let nest = |depth: usize| {
        let mut v = Value::U8(1);
        for _ in 0..depth {
            v = Value::Array(vec![v].into());
        }
        Builder::new().kv("n", v).build().bytes
    };
    let ok = nest(MAX_ARRAY_NESTING);
    assert!(parse(&ok).is_ok());
    assert!(matches!(
        err(&nest(MAX_ARRAY_NESTING + 1)),
        GgufError::NestingTooDeep { .. }
    ));
    assert!(matches!(err(&nest(1000)), GgufError::NestingTooDeep { .. }));
}

#[test]
fn duplicates() {
    let b = Builder::new()
        .kv("a", Value::U8(1))
        .kv("a", Value::U8(2))
        .build();
    assert_eq!(
        err(&b.bytes),
        GgufError::DuplicateKey {
            key: "a".to_string()
        }
    );
    let b = Builder::new()
        .tensor(tensor("t", &[4], 0))
        .tensor(tensor("t", &[4], 0))
        .build();
    assert_eq!(
        err(&b.bytes),
        GgufError::DuplicateTensor {
            name: "t".to_string()
        }
    );
}

#[test]
fn alignment_must_be_u32_power_of_two() {
    for value in [0, 3, 48] {
        let b = Builder::new().kv(ALIGNMENT_KEY, Value::U32(value)).build();
        assert_eq!(
            err(&b.bytes),
            GgufError::InvalidAlignment {
                value: value.into()
            }
        );
    }
    let b = Builder::new().kv(ALIGNMENT_KEY, Value::U64(64)).build();
    assert!(matches!(
        err(&b.bytes),
        GgufError::WrongType {
            expected: "u32",
            found: "u64",
            ..
        }
    ));
    let built = Builder::new()
        .alignment(1)
        .tensor(tensor("t", &[3], 24))
        .build();
    let g = parse(&built.bytes).unwrap();
    assert_eq!((g.alignment, g.data_offset), (1, built.infos_end));
}

// ---- Corrupt tensor infos --------------------------------------------------------------------

fn tensor_err(t: TensorSpec) -> GgufError {
    err(&Builder::new().tensor(t).build().bytes)
}

#[test]
fn bad_dims() {
    let invalid = |reason| GgufError::InvalidDims {
        tensor: "t".to_string(),
        reason,
    };
    assert_eq!(tensor_err(tensor("t", &[], 0)), invalid("zero dimensions"));
    assert_eq!(
        tensor_err(tensor("t", &[1, 1, 1, 1, 1], 0)),
        invalid("more than 4 dimensions")
    );
    assert_eq!(
        tensor_err(tensor("t", &[1 << 40, 1 << 40], 0)),
        invalid("element count overflows u64")
    );
    assert_eq!(
        tensor_err(tensor("t", &[(1 << 40) + 1], 0)),
        invalid("dimension exceeds 2^40")
    );
    // Large but representable: out of bounds rather than an overflow.
    assert!(matches!(
        tensor_err(tensor("t", &[1 << 40, 1 << 20], 0)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // A zero dimension is an empty tensor, as in ggml.
    let built = Builder::new().tensor(tensor("t", &[0, 5], 2)).build();
    assert_eq!(parse(&built.bytes).unwrap().tensor("t").unwrap().size, 0);
}

#[test]
fn unknown_type_and_block_multiple() {
    let e = tensor_err(tensor("w", &[32], 99));
    assert_eq!(
        e,
        GgufError::UnknownTensorType {
            tensor: "w".to_string(),
            type_id: 99
        }
    );
    assert!(e.to_string().contains("99") && e.to_string().contains("'w'"));
    assert_eq!(
        tensor_err(tensor("w", &[33, 2], 2)),
        GgufError::RowNotBlockMultiple {
            tensor: "w".to_string(),
            row_len: 33,
            block_len: 32
        }
    );
}

#[test]
fn tensor_offsets() {
    let at = |offset: u64| TensorSpec {
        offset: Some(offset),
        ..tensor("t", &[8], 0)
    };
    // Past the end of the file.
    assert!(matches!(
        tensor_err(at(1 << 20)),
        GgufError::TensorOutOfBounds { size: 32, .. }
    ));
    // So far past that offset + size overflows.
    assert!(matches!(
        tensor_err(at(u64::MAX - 31)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // Not a multiple of the alignment.
    assert_eq!(
        tensor_err(at(16)),
        GgufError::MisalignedTensor {
            tensor: "t".to_string(),
            offset: 16,
            alignment: 32
        }
    );
}

#[test]
fn overlapping_tensors() {
    let b = Builder::new()
        .tensor(TensorSpec {
            offset: Some(0),
            ..tensor("a", &[16], 0)
        })
        .tensor(TensorSpec {
            offset: Some(128),
            ..tensor("c", &[8], 0)
        })
        .tensor(TensorSpec {
            offset: Some(32),
            ..tensor("b", &[8], 0)
        })
        .build();
    assert_eq!(
        err(&b.bytes),
        GgufError::OverlappingTensors {
            first: "a".to_string(),
            second: "b".to_string()
        }
    );
    // Back to back is fine, as are empty tensors anywhere.
    let b = Builder::new()
        .tensor(TensorSpec {
            offset: Some(0),
            ..tensor("a", &[16], 0)
        })
        .tensor(TensorSpec {
            offset: Some(64),
            ..tensor("b", &[8], 0)
        })
        .tensor(TensorSpec {
            offset: Some(32),
            ..tensor("e", &[0], 0)
        })
        .build();
    assert!(parse(&b.bytes).is_ok());
}

#[test]
fn error_messages() {
    let e = GgufError::TooLarge {
        field: "array length",
        value: 9,
        limit: 2,
        offset: 41,
    };
    assert_eq!(
        e.to_string(),
        "GGUF array length at offset 41 is too large: 9 > 2"
    );
    let e = GgufError::UnsupportedVersion { version: 1 };
    assert_eq!(
        e.to_string(),
        "GGUF version 1 is not supported (only 2 and 3)"
    );
    let e = GgufError::BadMagic { found: *b"GGML" };
    assert!(e.to_string().starts_with("not a GGUF file"));
    let e: &dyn core::error::Error = &e;
    assert!(e.source().is_none());
}

// ---- Mutation ------------------------------------------------------------------------------

#[test]
fn random_mutations_never_panic() {
    let base = rich().build().bytes;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ok = 0;
    for _ in 0..5000 {
        let mut b = base.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let pos = (next() % b.len() as u64) as usize;
            b[pos] = match next() % 4 {
                0 => b[pos] ^ (1 << (next() % 8)),
                1 => 0xff,
                2 => 0,
                _ => next() as u8,
            };
        }
        let cut = (next() % (b.len() as u64 + 1)) as usize;
        if let Ok(g) = parse(&b) {
            ok += 1;
            // Whatever parsed must be internally consistent.
            for t in g.tensors() {
                assert_eq!(t.data(&b).map(<[u8]>::len), Some(t.size as usize));
            }
            for (_, v) in g.metadata() {
                let _ = v.to_string();
            }
        }
        let _ = Gguf::parse(&b[..cut], b.len() as u64);
        let _ = Gguf::parse(&b[..cut], cut as u64);
    }
    // Most flips land in values and data, so many mutants still parse.
    assert!(ok > 0);
}

// ---- A real model ----------------------------------------------------------------------------

#[test]
fn real_model() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/smollm2-135m-instruct-q4_1.gguf"
    );
    // The suite needs the model (scripts/test.sh fetches it): a missing file fails, it does
    // not pass silently.
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (run scripts/fetch-model.sh)"));
    let g = parse(&bytes).unwrap();
    assert_eq!(g.req_str("general.architecture"), Ok("llama"));
    assert_eq!(g.req_u64("llama.block_count"), Ok(30));
    assert!(
        (250..=300).contains(&g.tensors().len()),
        "{} tensors",
        g.tensors().len()
    );
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!((emb.n_dims, emb.row_len(), emb.n_rows()), (2, 576, 49152));
    assert_eq!(
        emb.data(&bytes).map(<[u8]>::len),
        Some(576 * 49152 / 32 * 34)
    );
    let tokens = g.opt_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len(), 49152);
    let _: String = g
        .metadata()
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
}
