//! SmolLM2-135M-Instruct Q4_1 against llama.cpp's outputs on the same file
//! (fixtures from `tests/reference/make_fixtures.py`).

use tern_runtime::sampler::argmax_logits;
use tern_runtime::{Session, SessionOptions};
use tern_tests::{fixture, smollm2};

/// Tokens that must match exactly in every greedy continuation (the bar).
const GREEDY_EXACT: usize = 16;
/// Beyond that, a divergence is accepted only at a step where llama.cpp's own top two logits
/// were closer than this: such a near-tie is decided by rounding (llama.cpp rounds activations
/// to int8 and the KV cache to f16, Tern keeps f32), not by the model.
const NEAR_TIE: f64 = 0.15;

/// Maximum absolute logit difference accepted against llama.cpp.
///
/// Derivation: both runs use the same Q4_1/Q8_0 weights bit for bit. llama.cpp's CPU path
/// quantizes each 32-wide block of activations to int8 before every matmul (error up to
/// amax/254 per element, i.e. ~0.4 % relative) and stores K/V in f16 (~0.05 %); Tern keeps
/// activations in f32. Through 30 residual blocks those independent roundings accumulate like
/// a random walk; on logits whose spread is ~10 and magnitude up to ~30, 0.4 %·sqrt(30 layers ·
/// 7 matmuls)^(1/2)… gives a few tenths. The measured maximum is recorded in the issue note;
/// this bound leaves margin while still catching any real bug (a wrong RoPE pairing, norm or
/// quant layout moves logits by whole units).
const LOGIT_TOL: f64 = 0.5;
/// Tolerance on log-probabilities (logit − logsumexp), the quantity sampling actually uses.
const LOGPROB_TOL: f64 = 0.35;

fn session() -> Session {
    Session::new(smollm2(), &SessionOptions { context: 1024, ..Default::default() })
}

#[test]
fn tokenization_matches_llama_cpp() {
    let model = smollm2();
    let tok = model.tokenizer();
    let f = fixture("smollm2_tokenize.json");
    let mut failures = Vec::new();
    let cases = f.get("cases").arr();
    for case in cases {
        let text = case.get("text").str();
        let expected = case.get("ids").ids();
        let got = tok.encode(text, case.get("add_special").bool(), case.get("parse_special").bool());
        if got != expected {
            failures.push(format!("{:?}: expected {expected:?}, got {got:?}", case.get("label").str()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn detokenization_matches_llama_cpp() {
    let model = smollm2();
    let tok = model.tokenizer();
    let f = fixture("smollm2_tokenize.json");
    for case in f.get("cases").arr() {
        let ids = case.get("ids").ids();
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| tok.token_bytes(id, true).to_vec()).collect();
        assert_eq!(hex(&bytes), case.get("detok_hex").str(), "case {}", case.get("label").str());
    }
}

#[test]
fn greedy_continuations_match_llama_cpp() {
    let f = fixture("smollm2_greedy.json");
    let mut s = session();
    for p in f.get("prompts").arr() {
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
        let same = got.iter().zip(&expected).take_while(|(a, b)| a == b).count();
        assert!(
            same >= GREEDY_EXACT,
            "{label}: only {same} tokens match llama.cpp\n tern: {got:?}\n ref:  {expected:?}"
        );
        if same < expected.len() {
            assert!(
                margins[same] < NEAR_TIE,
                "{label}: diverges at token {same} where llama.cpp's top-2 margin is {} (not a near-tie)",
                margins[same]
            );
        }
    }
}

#[test]
fn logits_match_llama_cpp() {
    let f = fixture("smollm2_logits.json");
    let mut s = session();
    let mut worst = (0.0f64, String::new());
    for p in f.get("prompts").arr() {
        let label = p.get("label").str();
        s.reset();
        let logits = s.feed(&p.get("prompt_ids").ids()).unwrap().to_vec();
        let lse = log_sum_exp(&logits);
        let ref_lse = p.get("logsumexp").num();
        for pair in p.get("top_k").arr() {
            let (id, ref_logit) = (pair.arr()[0].num() as usize, pair.arr()[1].num());
            let d = (logits[id] as f64 - ref_logit).abs();
            let dlp = ((logits[id] as f64 - lse) - (ref_logit - ref_lse)).abs();
            if d > worst.0 {
                worst = (d, format!("{label} id {id}"));
            }
            assert!(d < LOGIT_TOL, "{label}: logit of {id} is {} vs llama.cpp {ref_logit}", logits[id]);
            assert!(dlp < LOGPROB_TOL, "{label}: log-prob of {id} differs by {dlp}");
        }
        let top = argmax_logits(&logits) as usize;
        assert_eq!(top, p.get("top_k").arr()[0].arr()[0].num() as usize, "{label}: top token differs");
    }
    eprintln!("largest top-10 logit difference: {:.4} ({})", worst.0, worst.1);
}

#[test]
fn logits_at_every_position_match_llama_cpp() {
    let f = fixture("smollm2_logits.json");
    let cols = f.get("columns");
    let ids = cols.get("column_ids").ids();
    let mut s = session();
    let prompt = cols.get("prompt_ids").ids();
    let positions = cols.get("positions").arr();
    let mut worst = 0.0f64;
    s.feed_scoring(&prompt, |i, logits| {
        let reference = positions[i].get("logits").f64s();
        for (&id, &r) in ids.iter().zip(&reference) {
            let d = (logits[id as usize] as f64 - r).abs();
            worst = worst.max(d);
            assert!(d < LOGIT_TOL, "position {i}, id {id}: {} vs llama.cpp {r}", logits[id as usize]);
        }
        assert_eq!(argmax_logits(logits), positions[i].get("argmax").num() as u32, "argmax at position {i}");
    })
    .unwrap();
    eprintln!("largest logit difference over {} positions x {} ids: {worst:.4}", positions.len(), ids.len());
}

fn log_sum_exp(l: &[f32]) -> f64 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
