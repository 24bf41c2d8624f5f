//! The fuzz corpus (`fuzz/corpus/TARGET/`: the seeds and every finding kept) replayed through
//! the same functions the cargo-fuzz targets call, on the stable toolchain: a crash once found
//! stays fixed.

use tern_tests::fuzz::TARGETS;
use tern_tests::fuzz_corpus;

#[test]
fn every_corpus_file_runs_without_panicking() {
    for (name, f) in TARGETS {
        let corpus = fuzz_corpus(name);
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
        for (path, bytes) in corpus {
            let r = std::panic::catch_unwind(|| f(&bytes));
            assert!(r.is_ok(), "{name} panicked on {}", path.display());
        }
    }
}

/// The seeds exercise what they seed: the tiny model loads, the session and conversation
/// snapshots restore (so the restore targets start from valid snapshots).
#[test]
fn the_seeds_are_valid_inputs() {
    use tern_kernels::Kernels;
    use tern_runtime::Model;
    let model = &fuzz_corpus("model_load")[0].1;
    Model::from_bytes(Box::new(model.clone()), Kernels::scalar()).expect("model seed loads");
    let session = &fuzz_corpus("session_restore")[0].1;
    tern_tests::fuzz::tiny_session()
        .restore(session)
        .expect("session seed restores");
    let chat = &fuzz_corpus("conversation_restore")[0].1;
    tern_tests::fuzz::tiny_conversation()
        .restore(chat)
        .expect("conversation seed restores");
}
