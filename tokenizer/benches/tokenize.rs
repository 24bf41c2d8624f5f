//! Tokenizer throughput on the real models' vocabularies: MB/s of text encoded, and the time
//! to build the tokenizer's tables from GGUF metadata.
//!
//! Tokenizers: Qwen2.5-Coder (byte-level BPE, 151,665 tokens, ~151k merges), Gemma 3
//! (SentencePiece-style, 262,144 tokens) and SmolLM2 (byte-level BPE, 49,152 tokens), loaded
//! from `models/*.gguf`; a missing model is skipped with a note. The corpus is the GPL-3 text
//! (`/usr/share/common-licenses/GPL-3`) plus the workspace README, or the files given as
//! arguments.
//!
//! Each figure is the fastest of several passes (other processes only ever add time).
//!
//! `cargo bench -p tern-tokenizer --bench tokenize [-- FILE...]`.
//!
//! For instruction counts (steadier than time on a shared machine): `--fixed=N` loads each
//! tokenizer once and encodes the corpus exactly N times, printing no times, and
//! `--model=NAME` keeps the tokenizers whose label contains NAME; run the bench binary under
//! `perf stat -e instructions:u` with N = 0 and N > 0 to separate load from encoding.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tern_gguf::Gguf;
use tern_tokenizer::Tokenizer;

const MODELS: [(&str, &str); 3] = [
    (
        "qwen2.5 (bpe 151k)",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
    ("gemma3 (spm 262k)", "gemma-3-270m-q4_k_m.gguf"),
    ("smollm2 (bpe 49k)", "smollm2-135m-instruct-q4_1.gguf"),
];

/// Passes per figure; the fastest is reported.
const PASSES: usize = 7;
/// Least time spent per pass.
const MIN_TIME: Duration = Duration::from_millis(200);

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let opt = |name: &str| std::env::args().find_map(|a| a.strip_prefix(name).map(String::from));
    let fixed: Option<u32> = opt("--fixed=").map(|n| n.parse().expect("--fixed=N: a count"));
    let model = opt("--model=");
    let mut files: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if files.is_empty() {
        files = vec![
            PathBuf::from("/usr/share/common-licenses/GPL-3"),
            root.join("README.md"),
        ];
    }
    let mut text = String::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(s) => text.push_str(&s),
            Err(e) => println!("skipping {}: {e}", f.display()),
        }
    }
    assert!(!text.is_empty(), "no corpus text");
    println!("corpus: {} bytes; fastest of {PASSES} passes", text.len());
    println!(
        "{:<22} {:>10} {:>10} {:>12}",
        "tokenizer", "load ms", "MB/s", "tokens"
    );
    for (label, file) in MODELS {
        if model.as_deref().is_some_and(|m| !label.contains(m)) {
            continue;
        }
        let path = root.join("models").join(file);
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{label:<22} skipped: {} missing", path.display());
            continue;
        };
        let gguf = Gguf::parse(&bytes, bytes.len() as u64).expect("GGUF header");
        if let Some(n) = fixed {
            let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
            for _ in 0..n {
                black_box(tok.encode(black_box(&text), false, false));
            }
            println!("{label:<22} loaded once, encoded {n} times");
            continue;
        }
        let mut load = Duration::MAX;
        let mut tok = None;
        for _ in 0..PASSES {
            let t = Instant::now();
            let built = Tokenizer::from_gguf(&gguf).expect("tokenizer");
            load = load.min(t.elapsed());
            tok = Some(built);
        }
        let tok = tok.expect("PASSES > 0");
        let n_tokens = tok.encode(&text, false, false).len();
        let mut best = f64::INFINITY;
        for _ in 0..PASSES {
            let t = Instant::now();
            let mut reps = 0u32;
            while t.elapsed() < MIN_TIME {
                black_box(tok.encode(black_box(&text), false, false));
                reps += 1;
            }
            best = best.min(t.elapsed().as_secs_f64() / f64::from(reps));
        }
        println!(
            "{label:<22} {:>10.1} {:>10.2} {:>12}",
            load.as_secs_f64() * 1e3,
            text.len() as f64 / best / 1e6,
            n_tokens
        );
    }
}
