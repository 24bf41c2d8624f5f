//! Tests of the public tokenizer API: tiny hand-made vocabularies, and the real SmolLM2
//! vocabulary read from the GGUF in `models/` checked against llama.cpp's fixtures.

extern crate std;

use super::*;
use alloc::string::ToString;
use alloc::vec;
use std::path::{Path, PathBuf};

/// A small byte-level BPE vocabulary with ChatML-style control tokens.
fn tiny_gpt2(add_bos: Option<bool>) -> Tokenizer {
    let tokens = vec![
        "<|endoftext|>", // 0 control
        "<|im_start|>",  // 1 control
        "<|im_end|>",    // 2 control
        "<tool>",        // 3 user-defined
        "h",
        "e",
        "l",
        "o",
        "Ġ",
        "w",
        "r",
        "d", // 4..12
        "he",
        "ll",
        "hell",
        "hello",
        "Ġw",
        "or",
        "Ġwor",
        "ld",
        "Ġworld", // 12..21
        "Ċ",      // 21 newline
        "!",      // 22
        "1",      // 23
        "2",      // 24
        "ðŁ",     // 25 first two bytes of 🦀 (F0 9F)
        "¦",      // 26 (A6)
        "Ģ",      // 27 (80)
    ];
    let merges = vec![
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "ð Ł",
    ];
    let n = tokens.len();
    let mut types = vec![1; n];
    types[0] = 3;
    types[1] = 3;
    types[2] = 3;
    types[3] = 4;
    Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2",
        pre: Some("smollm"),
        tokens,
        token_types: Some(types),
        merges,
        bos: Some(1),
        eos: Some(2),
        add_bos,
        ..Default::default()
    })
    .unwrap()
}

/// A small SentencePiece vocabulary with scores and byte tokens.
fn tiny_llama() -> Tokenizer {
    let mut tokens: Vec<String> = vec![
        "<unk>".into(),
        "<s>".into(),
        "</s>".into(),
        "▁".into(),
        "▁H".into(),
        "▁He".into(),
        "ll".into(),
        "o".into(),
        "▁w".into(),
        "or".into(),
        "ld".into(),
        "H".into(),
        "e".into(),
        "l".into(),
        "w".into(),
        "r".into(),
        "d".into(),
        "▁Hello".into(),
        "▁world".into(),
        "[INST]".into(),
    ];
    let n_named = tokens.len();
    for b in 0..256 {
        tokens.push(alloc::format!("<0x{b:02X}>"));
    }
    let mut scores = vec![0.0f32; tokens.len()];
    let mut types = vec![1i32; tokens.len()];
    for (i, s) in scores.iter_mut().enumerate().take(n_named) {
        *s = -(i as f32);
    }
    types[0] = 2;
    types[1] = 3;
    types[2] = 3;
    types[19] = 3;
    for t in types.iter_mut().skip(n_named) {
        *t = 6;
    }
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Tokenizer::from_spec(TokenizerSpec {
        model: "llama",
        tokens: refs,
        scores: Some(scores),
        token_types: Some(types),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn tokenizer_is_send_sync() {
    fn check<T: Send + Sync + Clone + core::fmt::Debug>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
    check::<TokenizerError>();
}

#[test]
fn spec_errors() {
    let base = || TokenizerSpec {
        model: "gpt2",
        tokens: vec!["a", "b"],
        ..Default::default()
    };
    let err = |s: TokenizerSpec<'_>| Tokenizer::from_spec(s).unwrap_err();
    assert_eq!(
        err(TokenizerSpec {
            model: "t5",
            ..base()
        }),
        TokenizerError::UnknownModel { name: "t5".into() }
    );
    assert_eq!(
        err(TokenizerSpec {
            pre: Some("nope"),
            ..base()
        }),
        TokenizerError::UnknownPreTokenizer {
            name: "nope".into()
        }
    );
    assert_eq!(
        err(TokenizerSpec {
            tokens: vec![],
            ..base()
        }),
        TokenizerError::EmptyVocab
    );
    assert_eq!(
        err(TokenizerSpec {
            scores: Some(vec![0.0]),
            ..base()
        }),
        TokenizerError::LengthMismatch {
            field: "scores",
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        err(TokenizerSpec {
            token_types: Some(vec![]),
            ..base()
        }),
        TokenizerError::LengthMismatch {
            field: "token_types",
            expected: 2,
            found: 0
        }
    );
    assert_eq!(
        err(TokenizerSpec {
            merges: vec!["a b", "ab"],
            ..base()
        }),
        TokenizerError::BadMerge { index: 1 }
    );
    assert_eq!(
        err(TokenizerSpec {
            eos: Some(2),
            ..base()
        }),
        TokenizerError::TokenOutOfRange {
            field: "eos",
            id: 2,
            vocab: 2
        }
    );
    assert_eq!(
        err(TokenizerSpec {
            add_bos: Some(true),
            ..base()
        }),
        TokenizerError::MissingSpecialToken {
            flag: "add_bos",
            token: "bos"
        }
    );
    // "llama" defaults to add_bos with BOS id 1, which a 1-token vocabulary lacks.
    assert!(matches!(
        err(TokenizerSpec {
            model: "llama",
            tokens: vec!["a"],
            ..Default::default()
        }),
        TokenizerError::MissingSpecialToken { .. }
    ));
    // Too-long per-token arrays are fine (llama.cpp only requires enough entries).
    assert!(Tokenizer::from_spec(TokenizerSpec {
        scores: Some(vec![0.0; 3]),
        ..base()
    })
    .is_ok());
}

#[test]
fn accepted_pre_names() {
    for (name, canonical) in [
        (None, "default"),
        (Some("default"), "default"),
        (Some("gpt2"), "gpt2"),
        (Some("gpt-2"), "gpt-2"),
        (Some("smollm"), "smollm"),
        (Some("llama-bpe"), "llama-bpe"),
        (Some("llama3"), "llama3"),
        (Some("qwen2"), "qwen2"),
        (Some("starcoder"), "starcoder"),
    ] {
        let t = Tokenizer::from_spec(TokenizerSpec {
            model: "gpt2",
            pre: name,
            tokens: vec!["a", "b"],
            bos: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.pre(), canonical);
        assert_eq!(t.kind(), "gpt2");
        // llama.cpp turns add_bos on by default for the Llama 3 pre-tokenizers only.
        assert_eq!(t.add_bos(), canonical.starts_with("llama"));
    }
    let t = tiny_llama();
    assert_eq!((t.kind(), t.pre()), ("llama", "default"));
}

#[test]
fn gpt2_encode_decode() {
    let t = tiny_gpt2(None);
    assert_eq!(t.vocab_size(), 28);
    assert_eq!(t.encode("hello world", false, false), vec![15, 20]);
    assert_eq!(t.encode("hello world", true, true), vec![15, 20]); // add_bos off
    assert_eq!(t.encode("", true, true), Vec::<u32>::new());
    assert_eq!(
        t.encode("hello\n12!", false, false),
        vec![15, 21, 23, 24, 22]
    );
    // Bytes with no token are dropped, as in llama.cpp.
    assert_eq!(t.encode("hex", false, false), vec![12]);
    assert_eq!(t.decode(&[15, 20, 21], false), "hello world\n");
    assert_eq!(t.token_text(20), Some("Ġworld"));
    assert_eq!(t.token_id("Ġworld"), Some(20));
    assert_eq!(t.token_id("ð"), None); // only a merge part, not a token
    assert_eq!(t.token_id(""), None);
    assert_eq!(t.token_text(28), None);

    let t = tiny_gpt2(Some(true));
    assert_eq!(t.encode("hello", true, false), vec![1, 15]);
    assert_eq!(t.encode("", true, false), vec![1]);
}

#[test]
fn gpt2_special_tokens() {
    let t = tiny_gpt2(None);
    let text = "<|im_start|>hello<|im_end|>\n";
    assert_eq!(t.encode(text, false, true), vec![1, 15, 2, 21]);
    // Without parse_special the control tokens are just text: '<', '|' … have no tokens
    // here, so only the letters survive.
    let plain = t.encode(text, false, false);
    assert!(!plain.contains(&1) && !plain.contains(&2));
    // User-defined tokens are matched either way.
    assert_eq!(t.encode("<tool>hello", false, false), vec![3, 15]);
    assert_eq!(t.encode("<tool>hello", false, true), vec![3, 15]);

    assert_eq!(t.token_bytes(1, true), b"<|im_start|>");
    assert_eq!(t.token_bytes(1, false), b"");
    assert_eq!(t.token_bytes(3, false), b"<tool>");
    assert_eq!(t.token_bytes(20, false), b" world");
    assert_eq!(t.token_bytes(999, true), b"");
    assert_eq!(t.token_bytes(u32::MAX, true), b"");
    assert_eq!(t.decode(&[1, 15, 2], true), "<|im_start|>hello<|im_end|>");
    assert_eq!(t.decode(&[1, 15, 2], false), "hello");
    assert_eq!(t.decode(&[7777, u32::MAX], true), "");

    assert!(t.is_control(0) && t.is_control(2) && !t.is_control(3) && !t.is_control(15));
    assert!(!t.is_control(u32::MAX));
    assert!(t.is_end_of_generation(2)); // eos, also <|im_end|>
    assert!(t.is_end_of_generation(0)); // <|endoftext|>
    assert!(!t.is_end_of_generation(1));
    assert!(!t.is_end_of_generation(u32::MAX));
    assert_eq!(t.end_of_generation_tokens(), &[0, 2]);
    assert_eq!(t.eot(), Some(0));
    assert_eq!((t.bos(), t.eos()), (Some(1), Some(2)));
}

#[test]
fn gpt2_defaults_follow_llama_cpp() {
    // Without ids in the GGUF, llama.cpp uses 11 for BOS and EOS of "gpt2" models.
    let tokens: Vec<String> = (0..20).map(|i| alloc::format!("t{i}")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let t = Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2",
        tokens: refs.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(11), Some(11), None));
    assert!(t.is_end_of_generation(11));
    let t = Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2",
        tokens: refs[..5].to_vec(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!((t.bos(), t.eos()), (None, None));
}

#[test]
fn llama_encode_decode() {
    let t = tiny_llama();
    assert_eq!(t.bos(), Some(1));
    assert_eq!(t.eos(), Some(2));
    assert_eq!(t.unk(), Some(0));
    assert!(t.add_bos());
    // "▁Hello" and "▁world" are tokens reachable by merges? No: merges need every
    // intermediate to be a token. "▁H"+"e" → "▁He", "l"+"l" → "ll", "▁He"+"ll" is not
    // a token, so the result is "▁He" "ll" "o".
    assert_eq!(t.encode("Hello", false, false), vec![5, 6, 7]);
    assert_eq!(t.encode("Hello", true, false), vec![1, 5, 6, 7]);
    // Unknown characters fall back to byte tokens: 'é' = C3 A9.
    assert_eq!(t.encode("é", false, false), vec![3, 20 + 0xC3, 20 + 0xA9]);
    // The space prefix is added again after a special token.
    assert_eq!(t.encode("[INST]Hello", false, true), vec![19, 5, 6, 7]);
    assert_eq!(
        t.encode("[INST]", false, false)[0],
        3 // "▁" then bytes / chars of "[INST]"
    );
    assert_eq!(t.encode("", true, true), vec![1]);
    assert_eq!(t.encode("", false, true), Vec::<u32>::new());

    // Decoding: '▁' → ' ', byte tokens → bytes, leading space of the first token dropped.
    assert_eq!(t.decode(&[5, 6, 7], false), "Hello");
    assert_eq!(t.decode(&[1, 5, 6, 7], false), " Hello"); // BOS first: nothing stripped
    assert_eq!(t.decode(&[1, 5, 6, 7], true), "<s> Hello");
    assert_eq!(t.decode(&[3, 20 + 0xC3, 20 + 0xA9], false), "é");
    assert_eq!(t.token_bytes(20 + 0x0A, false), b"\n");
    assert_eq!(t.token_bytes(0, false), b""); // unknown: special
    assert_eq!(t.token_bytes(0, true), b"<unk>");
    assert!(t.is_end_of_generation(2));
}

#[test]
fn llama_without_types_infers_byte_tokens() {
    let t = Tokenizer::from_spec(TokenizerSpec {
        model: "llama",
        tokens: vec!["<unk>", "<s>", "</s>", "<0x41>", "▁"],
        add_bos: Some(false),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(t.encode("A", false, false), vec![4, 3]);
    assert_eq!(t.decode(&[3], false), "A");
}

#[test]
fn stream_decoder_on_tokens() {
    let t = tiny_gpt2(None);
    let crab = t.encode("🦀", false, false);
    // F0 9F merge into "ðŁ"; A6 and 80 are single-byte tokens.
    assert_eq!(crab, vec![25, 26, 27]);
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&t, 15), "hello");
    assert_eq!(d.push(&t, 25), "");
    assert!(d.has_pending());
    assert_eq!(d.push(&t, 26), "");
    assert_eq!(d.push(&t, 1), ""); // control token: nothing, pending kept
    assert_eq!(d.push(&t, 27), "🦀");
    assert_eq!(d.push(&t, 99_999), "");
    assert_eq!(d.finish(), "");
    // An interrupted sequence: U+FFFD once it can no longer complete.
    assert_eq!(d.push(&t, 25), "");
    assert_eq!(d.push(&t, 15), "\u{FFFD}hello");
    assert_eq!(d.push(&t, 25), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    let mut d = StreamDecoder::with_special(true);
    let mut s = String::new();
    d.push_to(&t, 1, &mut s);
    assert_eq!(s, "<|im_start|>");
}

/// Deterministic pseudo-random strings over a tricky alphabet.
fn random_strings(seed: u64, count: usize) -> Vec<String> {
    let alphabet: Vec<char> = " \t\n\r\u{a0}\u{3000}aZé'sSlLrRvVedDmMtT0123456789٣²!?.,$+<=>^~|`(\u{301}\u{200d}我ア한🦀🏽\u{fffd}\u{10ffff}<|im_end|>▁"
        .chars()
        .collect();
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..count)
        .map(|_| {
            let len = next() % 24;
            (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect()
        })
        .collect()
}

#[test]
fn no_panics_on_random_input() {
    let toks = [tiny_gpt2(None), tiny_llama()];
    for text in random_strings(7, 3000) {
        for t in &toks {
            for (a, p) in [(false, false), (true, true), (false, true)] {
                let ids = t.encode(&text, a, p);
                let _ = t.decode(&ids, true);
                let _ = t.decode(&ids, false);
            }
        }
    }
    for kind in [
        PreKind::Default,
        PreKind::Gpt2,
        PreKind::Smollm,
        PreKind::Llama3,
        PreKind::Qwen2,
    ] {
        for text in random_strings(11, 2000) {
            let mut out = Vec::new();
            pretokenize::split(kind, &text, &mut PreScratch::default(), &mut out);
            let joined: String = out.iter().map(|&(a, b)| &text[a..b]).collect();
            assert_eq!(joined, text);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real model: SmolLM2-135M-Instruct, with a test-only GGUF metadata scanner.
// ---------------------------------------------------------------------------------------

/// A GGUF metadata value (only what the tokenizer needs is kept).
#[derive(Debug)]
enum GgufValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrArray(Vec<String>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f32>),
    Other,
}

/// Reads the key/value section of a GGUF file.
fn read_gguf_metadata(
    path: &Path,
) -> std::io::Result<std::collections::BTreeMap<String, GgufValue>> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::File::open(path)?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    fn bad(msg: &str) -> Error {
        Error::new(ErrorKind::InvalidData, msg.to_string())
    }
    fn rd<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32_(r: &mut impl Read) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(rd(r)?))
    }
    fn u64_(r: &mut impl Read) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(rd(r)?))
    }
    fn string(r: &mut impl Read) -> std::io::Result<String> {
        let n = u64_(r)?;
        if n > 1 << 30 {
            return Err(bad("string too long"));
        }
        let mut b = vec![0u8; n as usize];
        r.read_exact(&mut b)?;
        String::from_utf8(b).map_err(|_| bad("non-UTF-8 string"))
    }
    /// Reads one scalar of type `t`: (as integer, as float, as string).
    fn scalar(r: &mut impl Read, t: u32) -> std::io::Result<GgufValue> {
        Ok(match t {
            0 => GgufValue::Int(rd::<1>(r)?[0] as i64),
            1 => GgufValue::Int(rd::<1>(r)?[0] as i8 as i64),
            2 => GgufValue::Int(u16::from_le_bytes(rd(r)?) as i64),
            3 => GgufValue::Int(i16::from_le_bytes(rd(r)?) as i64),
            4 => GgufValue::Int(u32_(r)? as i64),
            5 => GgufValue::Int(i32::from_le_bytes(rd(r)?) as i64),
            6 => GgufValue::Float(f32::from_le_bytes(rd(r)?) as f64),
            7 => GgufValue::Bool(rd::<1>(r)?[0] != 0),
            8 => GgufValue::Str(string(r)?),
            10 => GgufValue::Int(u64_(r)? as i64),
            11 => GgufValue::Int(i64::from_le_bytes(rd(r)?)),
            12 => GgufValue::Float(f64::from_le_bytes(rd(r)?)),
            _ => return Err(bad("unknown GGUF type")),
        })
    }
    if &rd::<4>(&mut r)? != b"GGUF" {
        return Err(bad("not a GGUF file"));
    }
    let _version = u32_(&mut r)?;
    let _n_tensors = u64_(&mut r)?;
    let n_kv = u64_(&mut r)?;
    let mut kv = std::collections::BTreeMap::new();
    for _ in 0..n_kv {
        let key = string(&mut r)?;
        let t = u32_(&mut r)?;
        let value = if t == 9 {
            let et = u32_(&mut r)?;
            let count = u64_(&mut r)?;
            let mut strs = Vec::new();
            let mut ints = Vec::new();
            let mut floats = Vec::new();
            for _ in 0..count {
                match scalar(&mut r, et)? {
                    GgufValue::Str(s) => strs.push(s),
                    GgufValue::Int(i) => ints.push(i),
                    GgufValue::Float(f) => floats.push(f as f32),
                    _ => {}
                }
            }
            match et {
                8 => GgufValue::StrArray(strs),
                6 | 12 => GgufValue::FloatArray(floats),
                7 => GgufValue::Other,
                _ => GgufValue::IntArray(ints),
            }
        } else {
            scalar(&mut r, t)?
        };
        kv.insert(key, value);
    }
    Ok(kv)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads the SmolLM2 tokenizer metadata; a missing model fails the test (scripts/test.sh
/// fetches it).
fn smollm2_metadata() -> std::collections::BTreeMap<String, GgufValue> {
    let path = repo_root().join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        path.exists(),
        "{} not found (run scripts/fetch-model.sh)",
        path.display()
    );
    read_gguf_metadata(&path).expect("reading GGUF metadata")
}

/// Builds a tokenizer from GGUF metadata, the way the GGUF glue is expected to.
fn tokenizer_from_metadata(kv: &std::collections::BTreeMap<String, GgufValue>) -> Tokenizer {
    Tokenizer::from_spec(spec_from_metadata(kv)).expect("building the tokenizer")
}

/// The tokenizer spec in GGUF metadata.
fn spec_from_metadata(kv: &std::collections::BTreeMap<String, GgufValue>) -> TokenizerSpec<'_> {
    let s = |k: &str| match kv.get(k) {
        Some(GgufValue::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    let strs = |k: &str| match kv.get(k) {
        Some(GgufValue::StrArray(v)) => v.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let id = |k: &str| match kv.get(k) {
        Some(GgufValue::Int(i)) => u32::try_from(*i).ok(),
        _ => None,
    };
    let flag = |k: &str| match kv.get(k) {
        Some(GgufValue::Bool(b)) => Some(*b),
        _ => None,
    };
    TokenizerSpec {
        model: s("tokenizer.ggml.model").unwrap_or(""),
        pre: s("tokenizer.ggml.pre"),
        tokens: strs("tokenizer.ggml.tokens"),
        scores: match kv.get("tokenizer.ggml.scores") {
            Some(GgufValue::FloatArray(v)) => Some(v.clone()),
            _ => None,
        },
        token_types: match kv.get("tokenizer.ggml.token_type") {
            Some(GgufValue::IntArray(v)) => Some(v.iter().map(|&x| x as i32).collect()),
            _ => None,
        },
        merges: strs("tokenizer.ggml.merges"),
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        eot: id("tokenizer.ggml.eot_token_id"),
        unk: id("tokenizer.ggml.unknown_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        add_bos: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token"),
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
    }
}

#[test]
fn smollm2_known_tokenizations() {
    let kv = smollm2_metadata();
    let t = tokenizer_from_metadata(&kv);
    assert_eq!(t.kind(), "gpt2");
    assert_eq!(t.pre(), "smollm");
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!((t.bos(), t.eos()), (Some(1), Some(2)));
    assert!(!t.add_bos());
    assert_eq!(t.encode("Hello world", false, true), vec![19556, 905]);
    assert_eq!(
        t.encode("The capital of France is", false, true),
        vec![504, 3575, 282, 4649, 314]
    );
    assert_eq!(
        t.encode("The capital of France is", true, true),
        vec![504, 3575, 282, 4649, 314]
    );
    assert_eq!(t.decode(&[19556, 905], false), "Hello world");
    // llama.cpp's EOG set for this model: <|endoftext|>, <|im_end|>, <reponame>.
    assert_eq!(t.end_of_generation_tokens(), &[0, 2, 4]);
    assert_eq!(t.eot(), Some(0));
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_text(905), Some("Ġworld"));
}

// --- llama.cpp reference fixtures ------------------------------------------------------

/// The fixtures' JSON, read by `serde_json` (a dev-dependency).
type Json = serde_json::Value;

/// Panicking accessors: a fixture is fixed, so a value of the wrong kind is a broken fixture.
trait Fixture {
    fn str(&self) -> &str;
    fn arr(&self) -> &[Json];
    fn bool(&self) -> bool;
    fn num(&self) -> f64;
}

impl Fixture for Json {
    fn str(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("not a string: {self:?}"))
    }
    fn arr(&self) -> &[Json] {
        self.as_array()
            .unwrap_or_else(|| panic!("not an array: {self:?}"))
    }
    fn bool(&self) -> bool {
        self.as_bool()
            .unwrap_or_else(|| panic!("not a bool: {self:?}"))
    }
    fn num(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("not a number: {self:?}"))
    }
}

fn parse_json(text: &str) -> Json {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}

#[test]
fn smollm2_matches_llama_cpp_fixtures() {
    let kv = smollm2_metadata();
    let path = repo_root().join("tests/reference/fixtures/smollm2_tokenize.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = tokenizer_from_metadata(&kv);
    let fixture = parse_json(&text);
    let vocab = fixture.get("vocab").unwrap();
    assert_eq!(vocab.get("n_vocab").unwrap().num() as usize, t.vocab_size());
    assert_eq!(vocab.get("bos_id").unwrap().num() as u32, t.bos().unwrap());
    assert_eq!(vocab.get("eos_id").unwrap().num() as u32, t.eos().unwrap());
    assert_eq!(
        vocab.get("llama_vocab_get_add_bos").unwrap().bool(),
        t.add_bos()
    );
    let mut failures = Vec::new();
    let cases = fixture.get("cases").unwrap().arr();
    for case in cases {
        let label = case.get("label").unwrap().str();
        let input = case.get("text").unwrap().str();
        let add_special = case.get("add_special").unwrap().bool();
        let parse_special = case.get("parse_special").unwrap().bool();
        let want: Vec<u32> = case
            .get("ids")
            .unwrap()
            .arr()
            .iter()
            .map(|v| v.num() as u32)
            .collect();
        let got = t.encode(input, add_special, parse_special);
        if got != want {
            failures.push(alloc::format!(
                "{label} (add_special={add_special}, parse_special={parse_special}): got {got:?}, want {want:?}"
            ));
            continue;
        }
        let pieces: Vec<&str> = case
            .get("pieces")
            .unwrap()
            .arr()
            .iter()
            .map(Fixture::str)
            .collect();
        let texts: Vec<&str> = want.iter().map(|&id| t.token_text(id).unwrap()).collect();
        assert_eq!(texts, pieces, "{label}: pieces");
        let with: Vec<u8> = want
            .iter()
            .flat_map(|&id| t.token_bytes(id, true).to_vec())
            .collect();
        let without: Vec<u8> = want
            .iter()
            .flat_map(|&id| t.token_bytes(id, false).to_vec())
            .collect();
        assert_eq!(
            hex(&with),
            case.get("detok_hex").unwrap().str(),
            "{label}: detok"
        );
        assert_eq!(
            hex(&without),
            case.get("detok_no_special_hex").unwrap().str(),
            "{label}: detok without special"
        );
        if case.get("roundtrip_exact").map(Fixture::bool) == Some(true) {
            assert_eq!(t.decode(&want, true), input, "{label}: roundtrip");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    std::eprintln!("{} llama.cpp fixture cases match", cases.len());
}

#[test]
fn smollm2_long_text_roundtrip_and_speed() {
    let kv = smollm2_metadata();
    let t = tokenizer_from_metadata(&kv);
    let text = match std::fs::read_to_string("/usr/share/common-licenses/GPL-3") {
        Ok(s) => s,
        Err(_) => random_strings(3, 3000).concat(),
    };
    let start = std::time::Instant::now();
    let ids = t.encode(&text, false, true);
    let elapsed = start.elapsed();
    std::eprintln!(
        "encoded {} bytes into {} tokens in {:.2} ms",
        text.len(),
        ids.len(),
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(t.decode(&ids, false), text);
    let mut d = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        d.push_to(&t, id, &mut streamed);
    }
    streamed.push_str(&d.finish());
    assert_eq!(streamed, text);
    // Encoding a concatenation of random tricky strings must round-trip too.
    for s in random_strings(5, 500) {
        let ids = t.encode(&s, false, false);
        assert_eq!(t.decode(&ids, true), s);
    }
}

#[test]
fn small_and_heap_merging_agree() {
    let kv = smollm2_metadata();
    let t = tokenizer_from_metadata(&kv);
    let Model::Bpe(bpe) = &t.model else { panic!() };
    let mut texts = random_strings(9, 2000);
    if let Ok(gpl) = std::fs::read_to_string("/usr/share/common-licenses/GPL-3") {
        texts.push(gpl);
    }
    let mut scratch = bpe::BpeScratch::default();
    let mut words = Vec::new();
    for text in &texts {
        words.clear();
        pretokenize::split(PreKind::Gpt2, text, &mut PreScratch::default(), &mut words);
        for &(a, b) in &words {
            let w = &text.as_bytes()[a..b];
            for len in 1..=w.len().min(32) {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                bpe.merge_small(&t.vocab, &w[..len], &mut x);
                bpe.merge_heap(&t.vocab, &w[..len], &mut y, &mut scratch);
                assert_eq!(x, y, "{:?}", &w[..len]);
            }
        }
    }
}

/// The SentencePiece-style vocabulary `testdata/make_llama_cpp_cases.py` derives from the
/// SmolLM2 tokens: (tokens, scores, types).
fn derived_spm_vocab(smol_tokens: &[&str]) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut toks: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    toks.extend((0..256).map(|b| alloc::format!("<0x{b:02X}>")));
    toks.extend(["[INST]".into(), "<tool>".into(), "<|im_end|>".into()]);
    let mut types = vec![2, 3, 3];
    types.extend([6; 256]);
    types.extend([3, 4, 1]);
    let mut seen: std::collections::BTreeSet<String> = toks.iter().cloned().collect();
    for t in smol_tokens.iter().skip(17) {
        let Some(bytes) = t
            .chars()
            .map(bytelevel::char_to_byte)
            .collect::<Option<Vec<u8>>>()
        else {
            continue;
        };
        let Ok(s) = String::from_utf8(bytes) else {
            continue;
        };
        let s = s.replace(' ', "\u{2581}");
        if !s.is_empty() && seen.insert(s.clone()) {
            toks.push(s);
            types.push(1);
        }
    }
    let mut scores = vec![0.0f32; 262];
    scores.extend((0..toks.len() - 262).map(|i| -(i as f32 + 1.0)));
    (toks, scores, types)
}

#[test]
fn variants_match_llama_cpp() {
    let kv = smollm2_metadata();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testdata/llama_cpp_cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("reading llama_cpp_cases.jsonl");
    let base = spec_from_metadata(&kv);
    let (spm_toks, spm_scores, spm_types) = derived_spm_vocab(&base.tokens);
    let build = |variant: &str| -> Tokenizer {
        let mut spec = base.clone();
        match variant {
            "smollm" => {}
            "nopre" => spec.pre = None,
            "spm" => {
                spec = TokenizerSpec {
                    model: "llama",
                    tokens: spm_toks.iter().map(String::as_str).collect(),
                    scores: Some(spm_scores.clone()),
                    token_types: Some(spm_types.clone()),
                    bos: Some(1),
                    eos: Some(2),
                    unk: Some(0),
                    pad: Some(0),
                    ..Default::default()
                };
            }
            pre => spec.pre = Some(pre),
        }
        Tokenizer::from_spec(spec).expect("building variant")
    };
    let mut cache: std::collections::BTreeMap<String, Tokenizer> = Default::default();
    let (mut bad, mut n) = (Vec::new(), 0);
    for line in text.lines() {
        let j = parse_json(line);
        let v = j.get("v").unwrap().str();
        let t = cache.entry(v.to_string()).or_insert_with(|| build(v));
        let s = j.get("t").unwrap().str();
        let add = j.get("add").unwrap().bool();
        let ps = j.get("ps").unwrap().bool();
        let want: Vec<u32> = j
            .get("ids")
            .unwrap()
            .arr()
            .iter()
            .map(|v| v.num() as u32)
            .collect();
        n += 1;
        let got = t.encode(s, add, ps);
        let dt = hex(&t.decode_bytes(&want, true));
        let df = hex(&t.decode_bytes(&want, false));
        if got != want || dt != j.get("dt").unwrap().str() || df != j.get("df").unwrap().str() {
            bad.push(alloc::format!(
                "{v} {s:?} add={add} ps={ps}: got {got:?} want {want:?}"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {n} differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        cache.len() == 7,
        "variants: {:?}",
        cache.keys().collect::<Vec<_>>()
    );
    std::eprintln!("{n} llama.cpp cases over {} variants match", cache.len());
}
