//! The malformed-file corpus: the tiny model ([`crate::fuzz::tiny_model_bytes`]) broken in one
//! named way per file (truncations, bit flips, huge counts and lengths, overflowing dims, bad
//! offsets, duplicates, a missing tensor, …), each with the error kind loading must give.
//! `tests/malformed.rs` checks every case; `fuzz_stable malformed` writes them to
//! `fuzz/malformed/` (with `expected.tsv`) for other tools.

use tern_kernels::Kernels;
use tern_runtime::{LoadError, Model};

use crate::fuzz::tiny_model_bytes;

/// One malformed file.
pub struct Case {
    /// File name: what is broken.
    pub name: String,
    /// The file.
    pub bytes: Vec<u8>,
    /// The error kind loading gives: variant names as [`kind`] spells them (`"Ok"` if it
    /// loads).
    pub expected: &'static str,
}

/// The outcome of loading `bytes`, as [`kind`] names it.
pub fn load_kind(bytes: &[u8]) -> String {
    kind(&Model::from_bytes(Box::new(bytes.to_vec()), Kernels::scalar()).map(drop))
}

/// An error's variant path without fields: `Gguf(Truncated)`, `MissingTensor`, `Ok`.
pub fn kind(r: &Result<(), LoadError>) -> String {
    let Err(e) = r else {
        return "Ok".into();
    };
    let debug = format!("{e:?}");
    let mut out = String::new();
    let mut rest = debug.as_str();
    let mut open = 0;
    loop {
        let end = rest
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        out.push_str(&rest[..end]);
        if rest[end..].starts_with('(') {
            out.push('(');
            open += 1;
            rest = &rest[end + 1..];
        } else {
            break;
        }
    }
    out.extend(std::iter::repeat_n(')', open));
    out
}

/// Position of `needle` in `hay` (the first).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| {
            panic!(
                "{:?} not in the tiny model",
                String::from_utf8_lossy(needle)
            )
        })
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Where the value of metadata `key` starts (after its type).
fn value_at(b: &[u8], key: &str) -> usize {
    find(b, key.as_bytes()) + key.len() + 4
}

/// Where tensor `name`'s info fields start: (n_dims, dims, type, offset) positions.
fn tensor_at(b: &[u8], name: &str) -> (usize, usize, usize, usize) {
    // The tensor info follows the metadata: search after the last metadata key.
    let from = find(b, b"tokenizer.ggml.eos_token_id");
    let p = from + find(&b[from..], name.as_bytes()) + name.len();
    let n_dims = u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
    let dims = p + 4;
    let ty = dims + 8 * n_dims;
    (p, dims, ty, ty + 4)
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let good = tiny_model_bytes();
    let mut cases = Vec::new();
    let mut case = |name: &str, expected: &'static str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        edit(&mut bytes);
        cases.push(Case {
            name: name.into(),
            bytes,
            expected,
        });
    };
    case("good", "Ok", &|_| {});
    case("empty", "Gguf(Truncated)", &|b| b.clear());
    case("truncated-header", "Gguf(Truncated)", &|b| b.truncate(100));
    case("truncated-tensor-data", "Gguf(TensorOutOfBounds)", &|b| {
        b.truncate(b.len() - 100)
    });
    case("bad-magic", "Gguf(BadMagic)", &|b| b[0] = b'X');
    case("bitflip-magic", "Gguf(BadMagic)", &|b| b[2] ^= 0x10);
    case("bitflip-tensor-data", "Ok", &|b| {
        let at = b.len() - 1000;
        b[at] ^= 0x01
    });
    case("version-1", "Gguf(UnsupportedVersion)", &|b| {
        put(b, 4, &1u32.to_le_bytes())
    });
    case("huge-tensor-count", "Gguf(TooLarge)", &|b| {
        put(b, 8, &u64::MAX.to_le_bytes())
    });
    case("huge-metadata-count", "Gguf(TooLarge)", &|b| {
        put(b, 16, &u64::MAX.to_le_bytes())
    });
    case("huge-key-length", "Gguf(TooLarge)", &|b| {
        put(b, 24, &u64::MAX.to_le_bytes())
    });
    case("overlong-key-length", "Gguf(Truncated)", &|b| {
        put(b, 24, &(1u64 << 25).to_le_bytes())
    });
    case("key-not-utf8", "Gguf(InvalidUtf8)", &|b| b[32] = 0xFF);
    case("bad-value-type", "Gguf(InvalidValueType)", &|b| {
        let at = value_at(b, "general.architecture") - 4;
        put(b, at, &13u32.to_le_bytes())
    });
    case("huge-array-count", "Gguf(TooLarge)", &|b| {
        let at = value_at(b, "tokenizer.ggml.tokens") + 4;
        put(b, at, &u64::MAX.to_le_bytes())
    });
    case("overlong-array-count", "Gguf(Truncated)", &|b| {
        let at = value_at(b, "tokenizer.ggml.tokens") + 4;
        put(b, at, &(1u64 << 24).to_le_bytes())
    });
    // Array elements stay encoded after parsing, but are still validated by it.
    case("array-string-not-utf8", "Gguf(InvalidUtf8)", &|b| {
        let at = find(b, "▁world".as_bytes());
        b[at + 3] = 0xFF
    });
    case("duplicate-key", "Gguf(DuplicateKey)", &|b| {
        let at = find(b, b"tokenizer.ggml.scores");
        put(b, at, b"tokenizer.ggml.tokens")
    });
    case("block-count-2", "LayerCountMismatch", &|b| {
        let at = value_at(b, "llama.block_count");
        put(b, at, &2u32.to_le_bytes())
    });
    case("bos-past-vocabulary", "Tokenizer(TokenOutOfRange)", &|b| {
        let at = value_at(b, "tokenizer.ggml.bos_token_id");
        put(b, at, &100_000u32.to_le_bytes())
    });
    case("overflowing-dims", "Gguf(InvalidDims)", &|b| {
        let (_, dims, _, _) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, dims, &(1u64 << 40).to_le_bytes());
        put(b, dims + 8, &(1u64 << 40).to_le_bytes())
    });
    case("zero-dims", "Gguf(InvalidDims)", &|b| {
        let (n, _, _, _) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, n, &0u32.to_le_bytes())
    });
    case("five-dims", "Gguf(InvalidDims)", &|b| {
        let (n, _, _, _) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, n, &5u32.to_le_bytes())
    });
    case("unknown-tensor-type", "Gguf(UnknownTensorType)", &|b| {
        let (_, _, ty, _) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, ty, &99u32.to_le_bytes())
    });
    case("offset-past-end", "Gguf(TensorOutOfBounds)", &|b| {
        let (_, _, _, off) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, off, &(1u64 << 40).to_le_bytes())
    });
    case("offset-overflowing", "Gguf(MisalignedTensor)", &|b| {
        let (_, _, _, off) = tensor_at(b, "blk.0.attn_q.weight");
        put(b, off, &(u64::MAX - 3).to_le_bytes())
    });
    case("offset-misaligned", "Gguf(MisalignedTensor)", &|b| {
        let (_, _, _, off) = tensor_at(b, "blk.0.attn_q.weight");
        let v = u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
        put(b, off, &(v + 4).to_le_bytes())
    });
    case("overlapping-tensors", "Gguf(OverlappingTensors)", &|b| {
        let (_, _, _, q) = tensor_at(b, "blk.0.attn_q.weight");
        let (_, _, _, k) = tensor_at(b, "blk.0.attn_k.weight");
        let v = b[q..q + 8].to_vec();
        put(b, k, &v)
    });
    case("duplicate-tensor", "Gguf(DuplicateTensor)", &|b| {
        let from = find(b, b"tokenizer.ggml.eos_token_id");
        let at = from + find(&b[from..], b"blk.0.attn_k.weight");
        put(b, at, b"blk.0.attn_q.weight")
    });
    case("missing-tensor", "MissingTensor", &|b| {
        let from = find(b, b"tokenizer.ggml.eos_token_id");
        let at = from + find(&b[from..], b"blk.0.ffn_up.weight");
        put(b, at, b"blk.0.ffn_xx.weight")
    });
    case("layer-past-block-count", "LayerCountMismatch", &|b| {
        let from = find(b, b"tokenizer.ggml.eos_token_id");
        let at = from + find(&b[from..], b"blk.0.ffn_up.weight");
        put(b, at, b"blk.1.ffn_up.weight")
    });
    case("shape-mismatch", "ShapeMismatch", &|b| {
        let (_, dims, _, _) = tensor_at(b, "blk.0.ffn_gate.weight");
        // [8, 16] → [16, 8]: the same bytes, the wrong shape.
        put(b, dims, &16u64.to_le_bytes());
        put(b, dims + 8, &8u64.to_le_bytes())
    });
    cases
}
