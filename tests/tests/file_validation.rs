//! Files llama.cpp refuses are refused here too, with a typed error naming the problem
//! (issue 17): a BPE vocabulary without merges, a `block_count` that disagrees with the layers
//! present, special token ids outside the vocabulary.

use tern_kernels::Kernels;
use tern_runtime::gguf::write::GgufWriter;
use tern_runtime::gguf::{Gguf, Value};
use tern_runtime::tokenizer::TokenizerError;
use tern_runtime::{LoadError, Model};
use tern_tests::generated_model;

/// What [`rewrite`] does to one metadata pair.
enum Edit {
    Keep,
    Drop,
    Set(Value<'static>),
}

/// `qwen2_small` (a BPE model, 2 layers) rewritten: `edit` says what happens to each metadata
/// key, `extra` pairs are added, tensors for which `keep` is false are left out.
fn rewrite(
    edit: impl Fn(&str) -> Edit,
    extra: &[(&str, Value<'static>)],
    keep: impl Fn(&str) -> bool,
) -> Vec<u8> {
    let bytes = std::fs::read(generated_model("qwen2_small")).unwrap();
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        match edit(key) {
            Edit::Keep => w.set(key, value.clone()).unwrap(),
            Edit::Drop => {}
            Edit::Set(v) => w.set(key, v).unwrap(),
        }
    }
    for (key, value) in extra {
        w.set(key, value.clone()).unwrap();
    }
    let mut data = Vec::new();
    for t in g.tensors().iter().filter(|t| keep(t.name)) {
        w.add_tensor(t.name, &t.dims[..t.n_dims as usize], t.ggml_type)
            .unwrap();
        data.push(t.data(&bytes).unwrap());
    }
    w.to_bytes(&data).unwrap()
}

fn load(bytes: Vec<u8>) -> Result<Model, LoadError> {
    Model::from_bytes(Box::new(bytes), Kernels::scalar())
}

fn n_layers() -> u64 {
    let bytes = std::fs::read(generated_model("qwen2_small")).unwrap();
    let g = Gguf::parse(&bytes, bytes.len() as u64).unwrap();
    g.req_u64("qwen2.block_count").unwrap()
}

#[test]
fn the_unedited_file_loads() {
    let m = load(rewrite(|_| Edit::Keep, &[], |_| true)).expect("loads");
    assert_eq!(m.config().n_layers as u64, n_layers());
}

#[test]
fn bpe_without_merges_is_refused() {
    let file = rewrite(
        |k| match k {
            "tokenizer.ggml.merges" => Edit::Drop,
            _ => Edit::Keep,
        },
        &[],
        |_| true,
    );
    match load(file) {
        Err(LoadError::Tokenizer(TokenizerError::MissingMerges)) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a BPE model without merges loaded"),
    }
}

#[test]
fn block_count_below_the_layers_present_is_refused() {
    let n = n_layers();
    let file = rewrite(
        |k| match k {
            "qwen2.block_count" => Edit::Set(Value::U32(n as u32 - 1)),
            _ => Edit::Keep,
        },
        &[],
        |_| true,
    );
    match load(file) {
        Err(LoadError::LayerCountMismatch {
            block_count,
            layers,
        }) => assert_eq!((block_count, layers), (n as usize - 1, n as usize)),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a file with a layer past block_count loaded"),
    }
}

#[test]
fn block_count_above_the_layers_present_is_refused() {
    let n = n_layers();
    let last = format!("blk.{}.", n - 1);
    let file = rewrite(|_| Edit::Keep, &[], |t| !t.starts_with(&last));
    match load(file) {
        Err(LoadError::LayerCountMismatch {
            block_count,
            layers,
        }) => assert_eq!((block_count, layers), (n as usize, n as usize - 1)),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a file missing its last layer loaded"),
    }
}

/// Every special id key, set past the vocabulary (as a u32 and as a u64 beyond u32), is refused
/// naming the token.
#[test]
fn special_token_ids_outside_the_vocabulary_are_refused() {
    let keys = [
        ("tokenizer.ggml.bos_token_id", "bos"),
        ("tokenizer.ggml.eos_token_id", "eos"),
        ("tokenizer.ggml.eot_token_id", "eot"),
        ("tokenizer.ggml.unknown_token_id", "unk"),
        ("tokenizer.ggml.padding_token_id", "pad"),
    ];
    for (key, name) in keys {
        for value in [
            Value::U32(1 << 30),
            Value::U64((1 << 32) + 1),
            Value::I32(-1),
        ] {
            let file = rewrite(
                |k| if k == key { Edit::Drop } else { Edit::Keep },
                &[(key, value.clone())],
                |_| true,
            );
            match load(file) {
                Err(LoadError::Tokenizer(TokenizerError::TokenOutOfRange { field, .. })) => {
                    assert_eq!(field, name, "{key} = {value}")
                }
                Err(LoadError::Gguf(e)) if matches!(value, Value::I32(_)) => {
                    // A negative id is the wrong type for an id: named by its key.
                    assert!(e.to_string().contains(key), "{key} = {value}: {e}")
                }
                Err(e) => panic!("{key} = {value}: refused for another reason: {e}"),
                Ok(_) => panic!("{key} = {value} loaded"),
            }
        }
    }
}
