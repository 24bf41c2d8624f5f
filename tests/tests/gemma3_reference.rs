//! The real Gemma 3 270M Q4_K_M file (architecture `gemma3`: scaled embeddings, per-head Q/K
//! norms, post-norms, GeGLU, sliding-window layers with their own RoPE base, SentencePiece
//! vocabulary of 262,144 tokens; mostly Q5_0 tensors and a tied Q8_0 embedding) against
//! llama.cpp on the same file (`make_fixtures.py --prefix gemma3_270m`).

use tern_tests::reference::Tolerances;

const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const PREFIX: &str = "gemma3_270m";

/// Tolerances against llama.cpp: as for Qwen2.5 (`qwen25_reference.rs`), plus llama.cpp's
/// GELU, which it rounds through a 65536-entry f16 table where Tern computes tanh exactly.
/// The largest difference measured over the top-10 logits of 7 prompts and 200 columns at
/// every position of another is 0.95 (printed by the test); the bound is about 2× that. The
/// architecture itself is checked against float64 to 1e-4 on a generated file
/// (`arch_small.rs`), so what remains here is llama.cpp's rounding.
const TOL: Tolerances = Tolerances {
    logit: 2.0,
    logprob: 1.0,
    near_tie: 0.5,
    // llama.cpp's own perplexity is 1.7 % above the exact (float64) one after the first chunk
    // and 0.64 % after all 14 (`gemma3_270m_f64_ppl.json`: 13.9183 against 13.8291; Tern
    // 13.8289), 0.29 % with an f32 KV cache (13.8686, `llama_cpp_kv_f32` in the fixture).
    // Tern is held to the float64 figure (`reference::F64_PPL_REL`) and to llama.cpp
    // within its own measured distance from exact plus margin.
    ppl_rel: 0.02,
};

tern_tests::real_model_suite!(FILE, PREFIX, TOL, 32);
