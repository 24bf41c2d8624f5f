//! `--precision f16` on SmolLM2-135M-Instruct Q4_1 against the independent float64 forward
//! pass (`smollm2_f64_logits.json`, as `smollm2_exact.rs`), short enough for qemu.
//!
//! The f16 path runs on the NEON FEAT_FP16 kernels where the CPU has them (qemu `max`) and on
//! the scalar reference, which emulates the same arithmetic bit for bit, elsewhere (x86_64):
//! the SIMD tables of those CPUs fall back to f32 for this precision, which
//! `f16_falls_back_to_f32_without_fp16_kernels` checks. Under qemu `cortex-a53` the emulation
//! is too slow for the float64 test (minutes); run only the fallback test there
//! (`scripts/test.sh` does).

use std::sync::Arc;

use tern_kernels::Kernels;
use tern_runtime::sampler::argmax_logits;
use tern_runtime::{ActivationPrecision, Model, Session, SessionOptions};
use tern_tests::{fixture, smollm2_path};

/// Largest logit difference accepted against float64 under f16 activations.
///
/// Derivation: the f16 path rounds each activation to 11 significant bits and sums each block
/// of 32 products four deep in f16 (`tern_kernels::scalar::act_f16`): about two f16 roundings
/// per term, a relative error of rms 2⁻¹¹/√3 each where the f32 path has 2⁻²⁴ each, i.e. some
/// 2¹³/√(3·n/2) ≈ 100–200 times the f32 path's per-product error for n = 576…1536. The f32 path
/// lands within ~1e-3 of float64 on these logits (`smollm2_exact.rs`), so f16 should land
/// within ~0.2; 0.5 leaves margin, and is still far below what a wrong kernel (a swapped
/// nibble, a lost block scale) produces.
const F16_LOGIT_TOL: f64 = 0.5;

/// The model on kernels that run f16 activations: the best table if it has them, else the
/// scalar reference.
fn model() -> Arc<Model> {
    let best = Kernels::best();
    let k = if best.has_f16_activations() {
        best
    } else {
        Kernels::scalar()
    };
    Arc::new(Model::open(&smollm2_path(), k).expect("model loads"))
}

#[test]
fn f16_logits_and_greedy_tokens_match_float64() {
    let model = model();
    assert!(model.kernels().has_f16_activations());
    eprintln!(
        "kernels: {:?}, Q4_1 f16 dot {}",
        model.kernels().backend(),
        model
            .kernels()
            .format(tern_kernels::Format::Q4_1)
            .dot_f16
            .unwrap()
            .name
    );
    let f = fixture("smollm2_f64_logits.json");
    let p = &f.get("greedy").get("prompts").arr()[0];
    let top = &f.get("prompts").arr()[0];
    assert_eq!(top.get("prompt_ids").ids(), p.get("prompt_ids").ids());
    let opts = |precision| SessionOptions {
        context: 64,
        precision,
        ..Default::default()
    };
    let mut s16 = Session::new(model.clone(), &opts(ActivationPrecision::F16)).unwrap();
    let mut s32 = Session::new(model, &opts(ActivationPrecision::F32)).unwrap();
    let mut l16 = s16.feed(&p.get("prompt_ids").ids()).unwrap().to_vec();
    let l32 = s32.feed(&p.get("prompt_ids").ids()).unwrap().to_vec();

    let (mut worst, mut worst32, mut worst_vs_f32) = (0.0f64, 0.0f64, 0.0f64);
    for pair in top.get("top_k").arr() {
        let (id, r) = (pair.arr()[0].num() as usize, pair.arr()[1].num());
        worst = worst.max((l16[id] as f64 - r).abs());
        worst32 = worst32.max((l32[id] as f64 - r).abs());
        worst_vs_f32 = worst_vs_f32.max((l16[id] as f64 - l32[id] as f64).abs());
    }
    eprintln!(
        "top-10 logits vs float64: f16 {worst:.4}, f32 {worst32:.6}; f16 vs f32 {worst_vs_f32:.4}"
    );
    assert!(worst < F16_LOGIT_TOL, "f16 logits {worst} from float64");
    // The f16 logits must actually differ from f32's (else the f16 path did not run).
    assert!(
        worst_vs_f32 > 0.0,
        "f16 logits equal f32's: f16 path not taken"
    );

    // Four greedy tokens; the float64 top-2 margins there are ≥ 1.2, more than 2·tolerance, so
    // no flip is excusable.
    let expected = p.get("generated_ids").ids();
    let margins = p.get("top1_top2_margin").f64s();
    for (i, &want) in expected.iter().take(4).enumerate() {
        assert!(margins[i] > 2.0 * F16_LOGIT_TOL);
        let id = argmax_logits(&l16);
        assert_eq!(id, want, "greedy token {i} under f16");
        l16 = s16.feed(&[id]).unwrap().to_vec();
    }
}

/// With the best kernels of this CPU: if they lack f16-activation kernels (x86_64, aarch64
/// without FEAT_FP16), `--precision f16` is the f32 path bit for bit; if they have them, it is
/// not.
#[test]
fn f16_falls_back_to_f32_without_fp16_kernels() {
    let model = tern_tests::smollm2();
    let has = model.kernels().has_f16_activations();
    let f = fixture("smollm2_f64_logits.json");
    let ids = f.get("prompts").arr()[0].get("prompt_ids").ids();
    let logits = |precision| {
        let opts = SessionOptions {
            context: 64,
            precision,
            ..Default::default()
        };
        Session::new(model.clone(), &opts)
            .unwrap()
            .feed(&ids)
            .unwrap()
            .to_vec()
    };
    let (l16, l32) = (
        logits(ActivationPrecision::F16),
        logits(ActivationPrecision::F32),
    );
    let same = l16
        .iter()
        .zip(&l32)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    eprintln!(
        "{:?}: f16 kernels {has}, f16 logits equal f32's: {same}",
        model.kernels().backend()
    );
    assert_eq!(same, !has);
}
