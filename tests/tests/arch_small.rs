//! Every architecture without a real file here, on small random-weight GGUF files written in
//! llama.cpp's converter layout (`tests/reference/make_arch_models.py`: `qwen2` with Q/K/V
//! biases, `qwen3` with Q/K norms and a head width from `key_length`, Llama 3.x with
//! `rope_freqs` and the `llama-bpe` tokenizer, `phi3` with fused QKV and gate/up and LongRoPE
//! factors, `gemma3` with sliding-window layers), against llama.cpp on the same files
//! (fixtures `<arch>_small.json`).
//!
//! Checked per model, against the fixture's float64 forward pass of the same dequantized weights
//! (the exact answer the file defines) and against llama.cpp: tokenization; at every prompt
//! position the argmax and the log-sum-exp; the top-10 logits after each prompt; 32 greedy
//! tokens.

use std::sync::Arc;

use tern_kernels::Kernels;
use tern_runtime::sampler::argmax_logits;
use tern_runtime::{KvType, Model, Session, SessionOptions};
use tern_tests::json::Json;
use tern_tests::reference::{log_sum_exp, tokenization_cases};
use tern_tests::{fixture, generated_model};

/// Tolerance against float64. Tern's f32 activations with an f32 KV cache round only in f32
/// arithmetic: dot products of at most a few hundred terms (relative error ~sqrt(n)·2⁻²⁴) over
/// 3–8 layers, on logits below 20, stay near 1e-4; 0.01 leaves two orders of margin (as in
/// `smollm2_exact.rs`), while the bugs these files were built to catch move logits by 27–32
/// (the fixtures' `checks`: Llama 3 without `rope_freqs`, Phi-3's short factors where the long
/// ones apply, Gemma 3 without its sliding window).
const F64_TOL: f64 = 0.01;
/// Greedy tokens or argmaxes may differ from float64 only where its top-2 margin is below this.
const F64_NEAR_TIE: f64 = 2.0 * F64_TOL;
/// Tolerance against llama.cpp, which rounds activations to 8 bits per block before every
/// quantized product and K/V to f16: on these deliberately sharp random models that alone puts
/// it 1.7–3.2 from float64 (the fixtures' `checks`; Tern is measured 0.5–2.9 from it), so
/// llama.cpp is held to this looser bound
/// and its greedy tokens only until its own near-ties. Gemma 3's file sets
/// `final_logit_softcapping`, which the reference (and Tern) apply and llama.cpp skips for
/// Gemma 3: its logits are capped here before comparing, and its log-sum-exp is not compared.
const LLAMA_TOL: f64 = 4.0;
/// A divergence from llama.cpp is accepted only where its top-2 margin is below this.
const LLAMA_NEAR_TIE: f64 = LLAMA_TOL;

fn model(name: &str) -> Arc<Model> {
    let p = generated_model(&format!("{name}_small"));
    Arc::new(Model::open(&p, Kernels::best()).unwrap())
}

/// What Tern computed for one prompt.
struct Run {
    /// Per position: argmax, top-2 margin, log-sum-exp, largest logit.
    positions: Vec<(u32, f64, f64, f64)>,
    /// Logits after the whole prompt.
    last: Vec<f32>,
    /// Greedy tokens after the prompt, as many as the fixture has.
    greedy: Vec<u32>,
}

fn run(s: &mut Session, p: &Json) -> Run {
    let prompt = p.get("prompt_ids").ids();
    let mut positions = Vec::new();
    let mut last = Vec::new();
    s.reset();
    s.feed_scoring(&prompt, |_, logits| {
        let top = argmax_logits(logits);
        let second = logits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top as usize)
            .map(|(_, &l)| l)
            .fold(f32::NEG_INFINITY, f32::max);
        let max = logits[top as usize] as f64;
        positions.push((top, max - second as f64, log_sum_exp(logits), max));
        last = logits.to_vec();
    })
    .unwrap();
    let n = p.get("greedy").get("generated_ids").ids().len();
    let mut logits = last.clone();
    let mut greedy = Vec::new();
    for _ in 0..n {
        let id = argmax_logits(&logits);
        greedy.push(id);
        logits = s.feed(&[id]).unwrap().to_vec();
    }
    Run {
        positions,
        last,
        greedy,
    }
}

/// Compares `r` with one reference's summaries `refs` (the prompt entry for llama.cpp, or its
/// `f64` member). `cap` is applied to the reference's logits first (see [`LLAMA_TOL`]).
/// Returns the largest logit difference and the greedy tokens identical.
fn compare(
    r: &Run,
    refs: &Json,
    label: &str,
    tol: f64,
    near_tie: f64,
    cap: Option<f64>,
) -> (f64, usize) {
    let capped = |x: f64| cap.map_or(x, |c| c * (x / c).tanh());
    let mut worst = 0.0f64;
    let argmax = refs.get("argmax").f64s();
    let lse = refs.get("logsumexp").f64s();
    for (i, &(top, margin, ours_lse, _)) in r.positions.iter().enumerate() {
        if cap.is_none() {
            let d = (ours_lse - lse[i]).abs();
            worst = worst.max(d);
            assert!(d < tol, "{label} position {i}: log-sum-exp differs by {d}");
        }
        assert!(
            top == argmax[i] as u32 || margin < near_tie,
            "{label} position {i}: argmax {top} vs {} at margin {margin}",
            argmax[i]
        );
    }
    if let Some(max) = refs.opt("max_logit") {
        for (i, &m) in max.f64s().iter().enumerate() {
            let d = (r.positions[i].3 - capped(m)).abs();
            worst = worst.max(d);
            assert!(
                d < tol,
                "{label} position {i}: largest logit differs by {d}"
            );
        }
    }
    for pair in refs.get("top_k_last").arr() {
        let (id, v) = (pair.arr()[0].num() as usize, capped(pair.arr()[1].num()));
        let d = (r.last[id] as f64 - v).abs();
        worst = worst.max(d);
        assert!(
            d < tol,
            "{label}: last-position logit of {id} is {} vs {v}",
            r.last[id]
        );
    }
    let g = refs.get("greedy");
    let expected = g.get("generated_ids").ids();
    let margins = g.get("top1_top2_margin").f64s();
    let same = r
        .greedy
        .iter()
        .zip(&expected)
        .take_while(|(a, b)| a == b)
        .count();
    if same < expected.len() {
        assert!(
            margins[same] < near_tie,
            "{label}: greedy diverges at token {same} (reference margin {})\n tern: {:?}\n ref:  {expected:?}",
            margins[same],
            r.greedy
        );
    }
    (worst, same)
}

/// Runs every check of `<name>_small.json`.
fn check(name: &str, arch: &str) {
    let f = fixture(&format!("{name}_small.json"));
    let m = model(name);
    assert_eq!(m.config().arch.name(), arch);
    tokenization_cases(&m, name, f.get("tokenize"));
    let cap = f
        .get("model")
        .get("extra")
        .opt("final_logit_softcapping")
        .map(Json::num);
    let (mut f64_worst, mut llama_worst) = (0.0f64, 0.0f64);
    let mut report = Vec::new();
    for (run_name, fixture_run) in f.get("runs").entries() {
        let mut s = Session::new(
            m.clone(),
            &SessionOptions {
                context: fixture_run.get("n_ctx").num() as usize,
                kv_type: KvType::F32,
                precision: tern_runtime::ActivationPrecision::F32,
                ..Default::default()
            },
        )
        .unwrap();
        for p in fixture_run.get("prompts").arr() {
            let label = format!("{name}/{run_name}/{}", p.get("label").str());
            let r = run(&mut s, p);
            let (d, exact) = compare(
                &r,
                p.get("f64"),
                &format!("{label} vs f64"),
                F64_TOL,
                F64_NEAR_TIE,
                None,
            );
            f64_worst = f64_worst.max(d);
            let (d, llama) = compare(
                &r,
                p,
                &format!("{label} vs llama.cpp"),
                LLAMA_TOL,
                LLAMA_NEAR_TIE,
                cap,
            );
            llama_worst = llama_worst.max(d);
            report.push((label, exact, llama));
        }
    }
    eprintln!(
        "{name}: largest logit difference to float64 {f64_worst:.2e}, to llama.cpp {llama_worst:.3}; \
         greedy tokens identical (float64, llama.cpp): {report:?}"
    );
}

#[test]
fn qwen2_with_biases_matches_llama_cpp() {
    check("qwen2", "qwen2");
}

#[test]
fn qwen3_with_qk_norms_matches_llama_cpp() {
    check("qwen3", "qwen3");
}

#[test]
fn llama3_with_rope_freqs_matches_llama_cpp() {
    check("llama3", "llama");
}

#[test]
fn phi3_fused_with_longrope_matches_llama_cpp() {
    check("phi3", "phi3");
}

#[test]
fn gemma3_with_sliding_windows_matches_llama_cpp() {
    check("gemma3", "gemma3");
}

/// Logits after the last of `tokens`, fed in batches of `batch`.
fn last_logits(m: &Arc<Model>, tokens: &[u32], batch: usize) -> Vec<f32> {
    let mut s = Session::new(
        m.clone(),
        &SessionOptions {
            context: 256,
            batch,
            kv_type: KvType::F32,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    s.feed(tokens).unwrap().to_vec()
}

/// Sliding-window layers keep a ring of `window + batch − 1` positions: whatever the batch
/// size (one token, a few, more than the window, the whole prompt at once) every position sees
/// exactly its window, so the logits agree to f32 summation order.
#[test]
fn gemma3_window_ring_gives_the_same_logits_for_every_batch_size() {
    let m = model("gemma3");
    let window = m.tensors().layers[0].window.expect("layer 0 is local");
    let tokens: Vec<u32> = (0..3 * window as u32 + 5).map(|i| 100 + 37 * i).collect();
    let whole = last_logits(&m, &tokens, tokens.len());
    for batch in [1, 3, window - 1, window + 2] {
        let got = last_logits(&m, &tokens, batch);
        let d = got
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-3, "batch {batch}: logits differ by {d}");
    }
}

/// A prompt batch runs its last layer after attention on the last row only (the rows
/// before it need no logits): its logits agree with scoring every row (`feed_scoring`, all rows
/// through that layer) to f32 summation order, and the keys and values it cached are the same
/// (the next token's logits agree too). On every small architecture, with a batch of 7 rows (the
/// int8 prompt path's row count, odd) and at both precisions.
#[test]
fn prompt_batches_skip_rows_without_logits_and_keep_the_cache() {
    use tern_runtime::ActivationPrecision;
    let tokens: Vec<u32> = (0..7).map(|i| 100 + 37 * i).collect();
    for name in ["llama3", "qwen2", "qwen3", "phi3", "gemma3"] {
        let m = model(name);
        for precision in [ActivationPrecision::F32, ActivationPrecision::Int8] {
            let session = || {
                let opts = SessionOptions {
                    context: 64,
                    batch: 16,
                    kv_type: KvType::F32,
                    precision,
                    ..Default::default()
                };
                Session::new(m.clone(), &opts).unwrap()
            };
            let (mut last, mut all) = (session(), session());
            let skipped = last.feed(&tokens).unwrap().to_vec();
            let mut scored = Vec::new();
            all.feed_scoring(&tokens, |i, row| {
                if i == tokens.len() - 1 {
                    scored = row.to_vec();
                }
            })
            .unwrap();
            let next = [tokens[0] + 5];
            let after = (
                last.feed(&next).unwrap().to_vec(),
                all.feed(&next).unwrap().to_vec(),
            );
            for (what, a, b) in [
                ("prompt", &skipped, &scored),
                ("next token", &after.0, &after.1),
            ] {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                // The skipping pass multiplies one row where the other multiplies seven: the
                // int8 path may take another kernel (fewer than 4 rows) with another summation
                // order; the next token's logits read only the cache, so they are identical.
                let bound = if what == "prompt" { 1e-3 } else { 0.0 };
                assert!(
                    d <= bound,
                    "{name} {precision:?} {what}: logits differ by {d}"
                );
            }
        }
    }
}

/// Rewinding within what the rings hold keeps the tokens; rewinding further forgets them all
/// (the return value says so) and feeding from there gives the logits of a fresh session.
#[test]
fn gemma3_truncate_rewinds_or_starts_over() {
    let m = model("gemma3");
    let window = m.tensors().layers[0].window.expect("layer 0 is local");
    let tokens: Vec<u32> = (0..4 * window as u32).map(|i| 200 + 11 * i).collect();
    let mut s = Session::new(
        m.clone(),
        &SessionOptions {
            context: 256,
            batch: 1,
            kv_type: KvType::F32,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    s.feed(&tokens).unwrap();
    let n = tokens.len();
    // One token back: the window behind it is still held.
    assert_eq!(s.truncate(n - 1), n - 1);
    let again = s.feed(&tokens[n - 1..]).unwrap().to_vec();
    assert_eq!(again, last_logits(&m, &tokens, 1));
    // Far back: the rings no longer hold that window.
    let keep = s.truncate(window);
    assert_eq!(keep, 0);
    let fresh = s.feed(&tokens[keep..2 * window]).unwrap().to_vec();
    assert_eq!(fresh, last_logits(&m, &tokens[..2 * window], 1));
}

/// A Qwen2 file relabelled as `llama` (the same keys under `llama.*`) would load as Llama and
/// print garbage if its Q/K/V biases were ignored: it is refused, naming them.
#[test]
fn tensors_the_architecture_does_not_read_are_refused() {
    use tern_runtime::gguf::write::GgufWriter;
    use tern_runtime::gguf::{Gguf, Value};
    use tern_runtime::LoadError;

    let bytes = std::fs::read(generated_model("qwen2_small")).unwrap();
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        let key = key.replacen("qwen2.", "llama.", 1);
        let value = match (key.as_str(), value) {
            ("general.architecture", _) => Value::Str("llama"),
            (_, v) => v.clone(),
        };
        w.set(&key, value).unwrap();
    }
    let mut data = Vec::new();
    for t in g.tensors() {
        let dims = &t.dims[..t.n_dims as usize];
        w.add_tensor(t.name, dims, t.ggml_type).unwrap();
        data.push(t.data(&bytes).unwrap());
    }
    let relabelled = w.to_bytes(&data).unwrap();
    match Model::from_bytes(Box::new(relabelled), Kernels::best()) {
        Err(LoadError::UnusedTensors { names }) => {
            assert!(names.iter().any(|n| n == "blk.0.attn_q.bias"), "{names:?}");
            assert_eq!(names.len(), 3 * m_layers(&g), "{names:?}");
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a qwen2 file relabelled llama loaded"),
    }
}

fn m_layers(g: &tern_runtime::gguf::Gguf<'_>) -> usize {
    g.req_u64("qwen2.block_count").unwrap() as usize
}
