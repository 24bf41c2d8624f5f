//! Support for Tern's end-to-end tests: locating the real model and reading reference
//! fixtures produced by an independent implementation (`tests/reference/make_fixtures.py`).

pub mod fuzz;
pub mod json;
pub mod malformed;
pub mod reference;
pub mod rng;
pub mod sha256;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tern_kernels::Kernels;
use tern_runtime::gguf::{Gguf, GgufError};
use tern_runtime::tokenizer::Tokenizer;
use tern_runtime::Model;

use json::Json;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the default model, fetched by `scripts/fetch-model.sh` (the test command runs it
/// first). Tests fail, not skip, when it is missing: a skipped reference test checks nothing.
pub fn smollm2_path() -> PathBuf {
    let p = root().join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        p.display()
    );
    p
}

/// SmolLM2-135M-Instruct Q4_1, loaded once per test binary.
pub fn smollm2() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(Model::open(&smollm2_path(), Kernels::best()).expect("model loads"))
        })
        .clone()
}

/// A real model other than the default one, fetched by `scripts/fetch-models.sh` (the test
/// command runs it first), loaded once per test binary per name. Fails, not skips, when missing.
pub fn real_model(file: &str) -> Arc<Model> {
    static MODELS: std::sync::Mutex<Vec<(String, Arc<Model>)>> = std::sync::Mutex::new(Vec::new());
    let mut models = MODELS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, m)) = models.iter().find(|(f, _)| f == file) {
        return m.clone();
    }
    let p = root().join("models").join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    let m = Arc::new(Model::open(&p, Kernels::best()).expect("model loads"));
    models.push((file.to_string(), m.clone()));
    m
}

/// Path of `models/NAME`, which `hint` (a command) creates. Tests fail, not skip, when it is
/// missing.
pub fn model_path(name: &str, hint: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(p.exists(), "{} is missing: run {hint}", p.display());
    p
}

/// Path of the generated test model `models/NAME.gguf` (`tests/reference/make_arch_models.py`:
/// qwen2_small, qwen3_small, phi3_small, llama3_small, gemma3_small), checked against the size
/// its fixture `NAME.json` recorded, so a file left from an older version of the script fails
/// here instead of as a numerical mismatch.
pub fn generated_model(name: &str) -> PathBuf {
    let hint = "tests/reference/make_arch_models.sh --no-fixture";
    let p = model_path(&format!("{name}.gguf"), hint);
    let f = fixture(&format!("{name}.json"));
    let want = f.get("model").get("bytes").num() as u64;
    let got = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        got,
        want,
        "{} is not the file {name}.json was made from: delete it and run {hint}",
        p.display()
    );
    p
}

/// The tokenizer of the GGUF file at `path`, built from its header alone, so the file's
/// architecture need not be one Tern runs. Reads a growing prefix until the header parses.
pub fn tokenizer_from_file(path: &Path) -> Tokenizer {
    let file_len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let mut len = (16u64 << 20).min(file_len);
    loop {
        let mut buf = vec![0u8; len as usize];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut buf))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match Gguf::parse(&buf, file_len) {
            Ok(g) => {
                return Tokenizer::from_gguf(&g)
                    .unwrap_or_else(|e| panic!("{}: tokenizer: {e}", path.display()))
            }
            Err(GgufError::Truncated { .. }) if len < file_len => len = (len * 4).min(file_len),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// Reads `tests/reference/fixtures/NAME`.
pub fn fixture(name: &str) -> Json {
    let p = root().join("tests/reference/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The files of `fuzz/corpus/TARGET/` (seeds and kept findings), sorted by name.
pub fn fuzz_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}
