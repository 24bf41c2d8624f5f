//! The real Qwen2.5-Coder-1.5B-Instruct Q4_K_M file (1.1 GB: mostly Q4_K, Q6_K `ffn_down` and
//! output head, Q4_K token embeddings) against llama.cpp on the same file
//! (`make_fixtures.py --prefix qwen25_15b`). Opt-in: `scripts/test-heavy.sh` fetches the file
//! and runs this with `--features heavy`; `cargo test` alone does not build it.

use tern_tests::real_model;
use tern_tests::reference::{self, Tolerances};

const FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
const PREFIX: &str = "qwen25_15b";

/// The same reasoning as the 0.5B file's bounds (`qwen25_reference.rs`): llama.cpp rounds the
/// activations of every quantized product to 8 bits (Q8_K per 256 values for these k-quant
/// tensors) and keeps K/V in f16, Tern's f32 path does neither; the logit bound is about 2.5×
/// the largest difference the test prints.
const TOL: Tolerances = Tolerances {
    logit: 1.0,
    logprob: 1.0,
    near_tie: 0.5,
    ppl_rel: 0.005,
};

tern_tests::real_model_suite!(FILE, PREFIX, TOL, 32);

#[test]
fn chat_template_renders_as_jinja2_with_tools() {
    let cases = reference::chat_template(&real_model(FILE), PREFIX);
    assert!(cases >= 12, "only {cases} cases");
}
