//! The streaming loader: a model read through a small fixed arena (as a device without mmap
//! would, from flash) and a memory-mapped model with a resident-memory cap must compute exactly
//! what the plain memory-mapped model computes.

use std::sync::Arc;

use tern_kernels::Kernels;
use tern_runtime::feed::StreamFeed;
use tern_runtime::fs::{FileSource, WeightMemory};
use tern_runtime::parallel::Serial;
use tern_runtime::sampler::argmax_logits;
use tern_runtime::{Model, Session, SessionOptions};
use tern_tests::{smollm2, smollm2_path};

/// Arena for the streaming path: 2 MiB, against a 98 MB model.
const ARENA: usize = 2 << 20;

/// Greedy tokens and the final logits after `prompt`.
fn greedy(s: &mut Session, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut logits = s.feed(prompt).unwrap().to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let id = argmax_logits(&logits);
        out.push(id);
        logits = s.feed(&[id]).unwrap().to_vec();
    }
    (out, logits)
}

fn prompt() -> Vec<u32> {
    smollm2()
        .tokenizer()
        .encode("The capital of France is", true, true)
}

#[test]
fn streaming_through_a_small_arena_matches_mmap() {
    let opts = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut mapped = Session::new(smollm2(), &opts).unwrap();
    let expected = greedy(&mut mapped, &prompt(), 8);

    let source = FileSource::open(&smollm2_path()).unwrap();
    let model = Arc::new(Model::from_source(&source, Kernels::best()).unwrap());
    assert!(
        model.weight_bytes().is_none(),
        "a streamed model holds no file bytes"
    );
    assert!(model.min_stream_arena() <= ARENA);
    let feed = StreamFeed::new(source, vec![0u8; ARENA].into_boxed_slice());
    let mut streamed =
        Session::with_feed(model.clone(), &opts, Box::new(Serial), Box::new(feed)).unwrap();
    let got = greedy(&mut streamed, &prompt(), 8);

    assert_eq!(got.0, expected.0, "greedy tokens differ");
    assert_eq!(
        got.1, expected.1,
        "logits differ (same kernels, same order: must be identical)"
    );
    // Every decode step re-reads all matrices: at least the weights of 8 + prompt passes.
    let per_pass = model.tensors().weight_bytes_per_token();
    assert!(
        streamed.bytes_streamed() >= 9 * (per_pass - model.tensors().token_embd.row_bytes() as u64)
    );
    assert_eq!(model.fingerprint(), smollm2().fingerprint());
}

#[test]
fn resident_cap_releases_layers_and_matches() {
    let free = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let capped = SessionOptions {
        max_resident: 16 << 20,
        ..free.clone()
    };
    // Only a map's pages can be released: the cap runs on one.
    let mapped = Model::open_with(
        &smollm2_path(),
        Kernels::best(),
        WeightMemory::Map,
        &mut |_| {},
    );
    let mapped = Arc::new(mapped.unwrap());
    let a = greedy(&mut Session::new(smollm2(), &free).unwrap(), &prompt(), 8);
    let b = greedy(&mut Session::new(mapped, &capped).unwrap(), &prompt(), 8);
    assert_eq!(a, b);
}

#[test]
fn a_copy_in_huge_pages_matches_the_map() {
    let opts = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let open = |memory| {
        Arc::new(Model::open_with(&smollm2_path(), Kernels::best(), memory, &mut |_| {}).unwrap())
    };
    let (mapped, copied) = (open(WeightMemory::Map), open(WeightMemory::Copy));
    let copy_bytes = copied.weight_bytes().unwrap();
    assert_eq!(copy_bytes.bytes(), mapped.weight_bytes().unwrap().bytes());
    // Linux reports the huge pages it gave the copy (possibly none, when memory is fragmented).
    #[cfg(target_os = "linux")]
    assert!(copy_bytes.huge_page_bytes().is_some());
    let a = greedy(&mut Session::new(mapped, &opts).unwrap(), &prompt(), 8);
    let b = greedy(&mut Session::new(copied, &opts).unwrap(), &prompt(), 8);
    assert_eq!(
        a, b,
        "same bytes, same kernels: identical tokens and logits"
    );
}

#[test]
fn streamed_model_without_a_feed_is_a_typed_error() {
    let source = FileSource::open(&smollm2_path()).unwrap();
    let model = Arc::new(Model::from_source(&source, Kernels::best()).unwrap());
    let mut s = Session::new(
        model,
        &SessionOptions {
            context: 16,
            precision: tern_runtime::ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let err = s.feed(&[1, 2, 3]).unwrap_err();
    assert!(
        matches!(err, tern_runtime::GenerateError::WeightRead { .. }),
        "{err:?}"
    );
}

#[test]
fn arena_smaller_than_a_row_is_a_typed_error() {
    let source = FileSource::open(&smollm2_path()).unwrap();
    let model = Arc::new(Model::from_source(&source, Kernels::best()).unwrap());
    let feed = StreamFeed::new(source, vec![0u8; 64].into_boxed_slice());
    let opts = SessionOptions {
        context: 16,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let mut s = Session::with_feed(model, &opts, Box::new(Serial), Box::new(feed)).unwrap();
    assert!(matches!(
        s.feed(&[1]).unwrap_err(),
        tern_runtime::GenerateError::WeightRead { .. }
    ));
}

/// Generation that stops after a token leaves it pending; continuing runs it first, so two
/// calls of 4 tokens produce exactly what one call of 8 does.
#[test]
fn generation_continues_after_max_tokens() {
    use tern_runtime::{Event, Flow, Sampler, SamplerOptions};
    let opts = SessionOptions {
        context: 64,
        precision: tern_runtime::ActivationPrecision::F32,
        ..Default::default()
    };
    let collect = |s: &mut Session, prompt: &[u32], n: usize| {
        let mut ids = Vec::new();
        let mut sampler = Sampler::new(SamplerOptions::greedy());
        s.generate(prompt, &mut sampler, n, &mut |e| {
            if let Event::Token { id, .. } = e {
                ids.push(id);
            }
            Flow::Continue
        })
        .unwrap();
        ids
    };
    let mut one = Session::new(smollm2(), &opts).unwrap();
    let whole = collect(&mut one, &prompt(), 8);
    let mut two = Session::new(smollm2(), &opts).unwrap();
    let mut parts = collect(&mut two, &prompt(), 4);
    assert_eq!(two.pending_token(), parts.last().copied());
    parts.extend(collect(&mut two, &[], 4));
    assert_eq!(parts, whole);
}
