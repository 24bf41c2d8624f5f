//! SmolLM2-135M-Instruct Q4_1 against an independent float64 forward pass of the same
//! dequantized weights (`tests/reference/numpy_reference.py`): the exact answer the quantized
//! model defines, free of any runtime's rounding shortcuts.
//!
//! Tern's default precision (f32 activations, f32 KV cache) should agree with it up to f32
//! rounding; these tolerances are tight enough that any real bug (RoPE pairing, a norm, a block
//! layout) fails them by orders of magnitude.

use tern_runtime::sampler::argmax_logits;
use tern_runtime::{KvType, Session, SessionOptions};
use tern_tests::{fixture, smollm2};

/// Largest logit difference accepted against float64.
///
/// Derivation: each f32 dot product of length n ≤ 1536 carries a relative rounding error of
/// about sqrt(n)·2⁻²⁴ ≈ 2.3e-6 (random-walk accumulation); 30 layers of 7 matrix products and
/// a residual stream whose norm grows to ~100 amplify that to ~1e-4–1e-3 absolute on logits of
/// magnitude ~30. 0.01 leaves an order of magnitude of margin; the measured value is printed.
const LOGIT_TOL: f64 = 0.01;
/// Greedy steps whose float64 top-2 margin is below this may legitimately flip under f32.
const NEAR_TIE: f64 = 2.0 * LOGIT_TOL;

fn session() -> Session {
    session_with(KvType::F32)
}

fn session_with(kv_type: KvType) -> Session {
    Session::new(
        smollm2(),
        &SessionOptions {
            context: 512,
            kv_type,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn logits_at_every_position_match_float64() {
    let f = fixture("smollm2_f64_logits.json");
    let cols = f.get("columns");
    let ids = cols.get("column_ids").ids();
    let positions = cols.get("positions").arr();
    let mut worst = 0.0f64;
    let mut s = session();
    s.feed_scoring(&cols.get("prompt_ids").ids(), |i, logits| {
        for (&id, &r) in ids.iter().zip(&positions[i].get("logits").f64s()) {
            let d = (logits[id as usize] as f64 - r).abs();
            worst = worst.max(d);
            assert!(
                d < LOGIT_TOL,
                "position {i}, id {id}: {} vs float64 {r}",
                logits[id as usize]
            );
        }
        assert_eq!(
            argmax_logits(logits),
            positions[i].get("argmax").num() as u32,
            "argmax at {i}"
        );
    })
    .unwrap();
    eprintln!("largest logit difference from float64: {worst:.6}");
}

/// The default f16 KV cache rounds every stored key and value once (relative error ≤ 2⁻¹¹ ≈
/// 4.9e-4, 60× the f32 path's per-product error): scores of magnitude ~10 move by ~5e-3 and
/// that reaches the logits through 30 layers. Measured: 0.012 at worst over the fixture's
/// positions; 0.1 leaves margin while still failing by orders of magnitude on a real bug
/// (a wrong head layout or a lost position moves logits by whole units).
const F16_KV_LOGIT_TOL: f64 = 0.1;

#[test]
fn f16_kv_cache_logits_stay_near_float64() {
    let f = fixture("smollm2_f64_logits.json");
    let cols = f.get("columns");
    let ids = cols.get("column_ids").ids();
    let positions = cols.get("positions").arr();
    let mut worst = 0.0f64;
    let mut s = session_with(KvType::F16);
    s.feed_scoring(&cols.get("prompt_ids").ids(), |i, logits| {
        for (&id, &r) in ids.iter().zip(&positions[i].get("logits").f64s()) {
            let d = (logits[id as usize] as f64 - r).abs();
            worst = worst.max(d);
            assert!(
                d < F16_KV_LOGIT_TOL,
                "f16 KV, position {i}, id {id}: {} vs float64 {r}",
                logits[id as usize]
            );
        }
    })
    .unwrap();
    eprintln!("f16 KV cache: largest logit difference from float64: {worst:.6}");
}

#[test]
fn top10_logits_match_float64() {
    let f = fixture("smollm2_f64_logits.json");
    let mut s = session();
    let mut worst = 0.0f64;
    for p in f.get("prompts").arr() {
        s.reset();
        let logits = s.feed(&p.get("prompt_ids").ids()).unwrap();
        for pair in p.get("top_k").arr() {
            let (id, r) = (pair.arr()[0].num() as usize, pair.arr()[1].num());
            let d = (logits[id] as f64 - r).abs();
            worst = worst.max(d);
            assert!(
                d < LOGIT_TOL,
                "{}: logit of {id} is {} vs float64 {r}",
                p.get("label").str(),
                logits[id]
            );
        }
    }
    eprintln!("largest top-10 logit difference from float64: {worst:.6}");
}

#[test]
fn greedy_continuations_match_float64() {
    let f = fixture("smollm2_f64_logits.json");
    let mut s = session();
    for p in f.get("greedy").get("prompts").arr() {
        let label = p.get("label").str();
        let expected = p.get("generated_ids").ids();
        let margins = p.get("top1_top2_margin").f64s();
        s.reset();
        let mut logits = s.feed(&p.get("prompt_ids").ids()).unwrap().to_vec();
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let id = argmax_logits(&logits);
            got.push(id);
            logits = s.feed(&[id]).unwrap().to_vec();
        }
        let same = got
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            same == expected.len() || margins[same] < NEAR_TIE,
            "{label}: diverges from float64 at token {same} (margin {})\n tern: {got:?}\n f64:  {expected:?}",
            margins.get(same).copied().unwrap_or(f64::NAN)
        );
    }
}

/// A short version for emulated CPUs (qemu-aarch64 runs the NEON kernels end to end): the
/// first prompt's logits at its last position and its first 4 greedy tokens.
#[test]
fn short_greedy_and_logits_match_float64() {
    let f = fixture("smollm2_f64_logits.json");
    let p = &f.get("greedy").get("prompts").arr()[0];
    let expected = p.get("generated_ids").ids();
    let mut s = session();
    let mut logits = s.feed(&p.get("prompt_ids").ids()).unwrap().to_vec();
    let top = &f.get("prompts").arr()[0];
    assert_eq!(top.get("prompt_ids").ids(), p.get("prompt_ids").ids());
    for pair in top.get("top_k").arr() {
        let (id, r) = (pair.arr()[0].num() as usize, pair.arr()[1].num());
        assert!(
            (logits[id] as f64 - r).abs() < LOGIT_TOL,
            "logit of {id}: {} vs {r}",
            logits[id]
        );
    }
    for (i, &want) in expected.iter().take(4).enumerate() {
        let id = argmax_logits(&logits);
        assert_eq!(id, want, "greedy token {i}");
        logits = s.feed(&[id]).unwrap().to_vec();
    }
    eprintln!("kernels: {:?}", smollm2().kernels().backend());
}
