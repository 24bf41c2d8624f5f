//! Support for Tern's end-to-end tests: locating the real model and reading reference
//! fixtures produced by an independent implementation (`tests/reference/make_fixtures.py`).

pub mod json;
pub mod sha256;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tern_kernels::Kernels;
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

/// Reads `tests/reference/fixtures/NAME`.
pub fn fixture(name: &str) -> Json {
    let p = root().join("tests/reference/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
