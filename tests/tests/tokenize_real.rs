//! Tern's tokenizer, built from GGUF metadata alone ([`Tokenizer::from_gguf`]), against
//! llama.cpp's on the real Gemma 3 270M (SentencePiece, 262,144 tokens) and Qwen2.5-Coder-0.5B
//! (byte-level BPE, pre-tokenizer `qwen2`) files, and on the tokenizers of the generated models
//! (`llama-bpe` on the Qwen vocabulary, `smollm` with Phi-3's chat tokens appended, Gemma's and
//! Qwen's copied as they are). Fixtures: `tests/reference/make_fixtures.py --prefix
//! {gemma3_270m,qwen25_05b}` and `tests/reference/make_arch_models.py`.
//!
//! Every case checks the ids of `llama_tokenize(text, add_special, parse_special)`, the bytes of
//! each token (`llama_token_to_piece` with and without `special`) and the bytes of
//! `llama_detokenize` (leading-space removal, `clean_up_tokenization_spaces`).

use std::path::Path;

use tern_runtime::tokenizer::Tokenizer;
use tern_tests::json::Json;
use tern_tests::{fixture, generated_model, model_path, tokenizer_from_file};

const FETCH: &str = "scripts/fetch-models.sh";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every difference between Tern and the fixture's cases, one line each.
fn differences(tok: &Tokenizer, cases: &[Json]) -> Vec<String> {
    let mut out = Vec::new();
    for case in cases {
        let label = format!(
            "{} (add_special {}, parse_special {})",
            case.get("label").str(),
            case.get("add_special").bool(),
            case.get("parse_special").bool()
        );
        let text = case.get("text").str();
        let expected = case.get("ids").ids();
        let got = tok.encode(
            text,
            case.get("add_special").bool(),
            case.get("parse_special").bool(),
        );
        if got != expected {
            out.push(format!(
                "{label}: ids: llama.cpp {expected:?}, tern {got:?}"
            ));
        }
        // Detokenizing llama.cpp's ids, so a tokenization difference does not hide these.
        for (special, key) in [(true, "detok_hex"), (false, "detok_no_special_hex")] {
            let pieces: Vec<u8> = expected
                .iter()
                .flat_map(|&id| tok.token_bytes(id, special).to_vec())
                .collect();
            if hex(&pieces) != case.get(key).str() {
                out.push(format!(
                    "{label}: pieces (special {special}): llama.cpp {}, tern {}",
                    case.get(key).str(),
                    hex(&pieces)
                ));
            }
        }
        if let Some(want) = case.opt("detokenize_hex") {
            let got = hex(&tok.decode_bytes(&expected, true));
            if got != want.str() {
                out.push(format!(
                    "{label}: detokenize: llama.cpp {}, tern {got}",
                    want.str()
                ));
            }
        }
    }
    out
}

/// The vocabulary facts llama.cpp reports (size, special ids, whether BOS is added).
fn vocab_differences(tok: &Tokenizer, vocab: &Json) -> Vec<String> {
    let id = |v: Option<u32>| v.map_or(-1, i64::from);
    let mut out = Vec::new();
    let facts = [
        ("n_vocab", tok.vocab_size() as i64),
        ("bos_id", id(tok.bos())),
        ("eos_id", id(tok.eos())),
    ];
    for (key, ours) in facts {
        let theirs = vocab.get(key).num() as i64;
        if ours != theirs {
            out.push(format!("{key}: llama.cpp {theirs}, tern {ours}"));
        }
    }
    // Without tokenizer.ggml.eot_token_id, llama.cpp takes the first EOT-named token its
    // std::unordered_map yields: an order that depends on the C++ library (libstdc++ gives
    // <|endoftext|> for SmolLM2 but <|im_end|> for Qwen2.5; libc++ on Android and iOS may
    // differ). Tern takes the lowest id. Both must be tokens that end generation.
    let theirs = vocab.get("eot_id").num() as i64;
    let ends = |id: i64| u32::try_from(id).is_ok_and(|id| tok.is_end_of_generation(id));
    if (theirs == -1) != tok.eot().is_none()
        || (theirs != -1 && !(ends(theirs) && ends(id(tok.eot()))))
    {
        out.push(format!(
            "eot_id: llama.cpp {theirs}, tern {:?}, end-of-generation tokens {:?}",
            tok.eot(),
            tok.end_of_generation_tokens()
        ));
    }
    let eog = vocab.get("eog_ids").ids();
    if tok.end_of_generation_tokens() != eog.as_slice() {
        out.push(format!(
            "end-of-generation tokens: llama.cpp {eog:?}, tern {:?}",
            tok.end_of_generation_tokens()
        ));
    }
    let add_bos = vocab.get("llama_vocab_get_add_bos").bool();
    if tok.add_bos() != add_bos {
        out.push(format!(
            "add_bos: llama.cpp {add_bos}, tern {}",
            tok.add_bos()
        ));
    }
    let add_eos = vocab.get("llama_vocab_get_add_eos").bool();
    if tok.add_eos() != add_eos {
        out.push(format!(
            "add_eos: llama.cpp {add_eos}, tern {}",
            tok.add_eos()
        ));
    }
    out
}

fn check(path: &Path, tokenize: &Json) {
    let tok = tokenizer_from_file(path);
    let model_file = path.file_name().unwrap_or_default().to_string_lossy();
    let cases = tokenize.get("cases").arr();
    let mut failures = vocab_differences(&tok, tokenize.get("vocab"));
    failures.extend(differences(&tok, cases));
    assert!(
        failures.is_empty(),
        "{model_file}: {} differences over {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn gemma3_270m_matches_llama_cpp() {
    let f = fixture("gemma3_270m_tokenize.json");
    assert_eq!(f.get("vocab").get("tokenizer_model").str(), "llama");
    check(&model_path("gemma-3-270m-q4_k_m.gguf", FETCH), &f);
}

#[test]
fn qwen25_05b_matches_llama_cpp() {
    let f = fixture("qwen25_05b_tokenize.json");
    assert_eq!(f.get("vocab").get("tokenizer_pre").str(), "qwen2");
    check(
        &model_path("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", FETCH),
        &f,
    );
}

#[test]
fn generated_models_match_llama_cpp() {
    for name in [
        "qwen2_small",
        "qwen3_small",
        "phi3_small",
        "llama3_small",
        "gemma3_small",
    ] {
        let f = fixture(&format!("{name}.json"));
        check(&generated_model(name), f.get("tokenize"));
    }
}

#[test]
fn llama3_small_uses_llama_bpe_with_bos() {
    // The pre-tokenizer the Llama 3 model names, and llama.cpp's default that goes with it.
    let tok = tokenizer_from_file(&generated_model("llama3_small"));
    assert_eq!(tok.pre(), "llama-bpe");
    assert!(tok.add_bos());
    assert_eq!(
        tok.token_text(tok.bos().unwrap()),
        Some("<|begin_of_text|>")
    );
    let eot = tok.token_id("<|eot_id|>").unwrap();
    assert!(tok.is_end_of_generation(eot));
}
