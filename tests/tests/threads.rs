//! The thread pool must not change a single bit: every task writes its own outputs with the
//! same kernels in the same order, so SmolLM2's logits with 2 and 3 threads equal the
//! single-threaded ones exactly, for prompts (batched products, fused Q/K/V and gate/up
//! sections) and decoding, in both activation precisions.

use tern_runtime::pool::ThreadPool;
use tern_runtime::{ActivationPrecision, Session, SessionOptions};
use tern_tests::smollm2;

/// Logits after a 70-token prompt (batches of 64 and 6) and after each of 5 decoded tokens.
fn run(precision: ActivationPrecision, threads: usize) -> Vec<Vec<f32>> {
    let opts = SessionOptions {
        context: 256,
        precision,
        ..Default::default()
    };
    let mut s = if threads == 1 {
        Session::new(smollm2(), &opts).unwrap()
    } else {
        Session::with_parallel(
            smollm2(),
            &opts,
            Box::new(ThreadPool::new(threads).unwrap()),
        )
        .unwrap()
    };
    let vocab = smollm2().config().vocab as u32;
    let prompt: Vec<u32> = (0..70u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let mut out = vec![s.feed(&prompt).expect("prompt").to_vec()];
    for t in 0..5u32 {
        out.push(
            s.feed(&[(t * 104_729 + 7) % vocab])
                .expect("decode")
                .to_vec(),
        );
    }
    out
}

#[test]
fn logits_identical_with_any_thread_count() {
    for precision in [ActivationPrecision::F32, ActivationPrecision::Int8] {
        let one = run(precision, 1);
        for threads in [2, 3] {
            let many = run(precision, threads);
            for (step, (a, b)) in one.iter().zip(&many).enumerate() {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{precision:?}, {threads} threads: logits differ at step {step}"
                );
            }
        }
    }
}
