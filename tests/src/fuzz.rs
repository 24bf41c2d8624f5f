//! The fuzz targets' bodies, shared by `fuzz/` (cargo-fuzz, nightly), the stable mutation
//! driver (`src/bin/fuzz_stable.rs`) and the corpus replay test (`tests/fuzz_corpus.rs`), so
//! the seeds and every crash kept in `fuzz/corpus/` are checked by the normal test suite.
//!
//! Each target takes arbitrary bytes and must return without panicking, aborting or running
//! away: errors are the expected outcome for almost every input.

use std::sync::{Arc, OnceLock};

use tern_kernels::Kernels;
use tern_runtime::chat::{Chat, ChatOptions, ChatTemplate, Message, RenderOptions};
use tern_runtime::gguf::write::GgufWriter;
use tern_runtime::gguf::{Array, GgmlType, Gguf, Value};
use tern_runtime::{Flow, Model, Sampler, SamplerOptions, Session, SessionOptions};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets, by the names `fuzz/fuzz_targets/*.rs` and `scripts/fuzz.sh` use.
pub const TARGETS: [(&str, Target); 5] = [
    ("gguf_parse", gguf_parse),
    ("model_load", model_load),
    ("chat_template", chat_template),
    ("session_restore", session_restore),
    ("conversation_restore", conversation_restore),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// The GGUF reader on arbitrary bytes, then every accessor on what it accepted.
pub fn gguf_parse(data: &[u8]) {
    // A prefix as streaming loads parse it, with the whole length declared.
    let _ = Gguf::parse(&data[..data.len() / 2], data.len() as u64);
    let Ok(g) = Gguf::parse(data, data.len() as u64) else {
        return;
    };
    for (key, value) in g.metadata() {
        let _ = value.to_string();
        if let Some(a) = value.as_array() {
            let _ = a.iter().count();
            let _ = a.get(a.len().saturating_sub(1));
        }
        let _ = (
            g.opt_u64(key),
            g.opt_f32(key),
            g.opt_str(key),
            g.opt_bool(key),
        );
        let _ = (
            g.opt_str_array(key),
            g.opt_f32_array(key),
            g.opt_i32_array(key),
        );
    }
    for t in g.tensors() {
        let _ = (t.n_rows(), t.data(data));
    }
    // What parsed writes back, parses again and writes back to the same bytes (bytes, not
    // values: a NaN is not equal to itself).
    if let Ok(header) = GgufWriter::with_metadata_of(&g).and_then(|w| w.header()) {
        let again = Gguf::parse(&header, header.len() as u64).expect("written header parses");
        let twice = GgufWriter::with_metadata_of(&again).and_then(|w| w.header());
        assert!(
            twice.as_ref() == Ok(&header),
            "metadata changed on a round trip"
        );
    }
}

/// Model load, tokenizer and a two-token greedy decode on arbitrary bytes taken as a GGUF file.
pub fn model_load(data: &[u8]) {
    let Ok(model) = Model::from_bytes(Box::new(data.to_vec()), Kernels::best()) else {
        return;
    };
    let model = Arc::new(model);
    let tok = model.tokenizer();
    let ids = tok.encode("Hello world <s></s> é✓", true, true);
    let _ = (tok.decode(&ids, true), tok.decode(&ids, false));
    let opts = SessionOptions {
        context: 16,
        batch: 4,
        precision: tern_runtime::ActivationPrecision::F32,
        ..SessionOptions::default()
    };
    // A model the fuzzer made may ask for more than the budget: a typed refusal is a pass.
    let Ok(mut s) = Session::new(model, &opts) else {
        return;
    };
    let mut sampler = Sampler::new(SamplerOptions::greedy());
    let _ = s.generate(&ids[..ids.len().min(8)], &mut sampler, 2, &mut |_| {
        Flow::Continue
    });
}

/// A chat template (the bytes as its source) rendered over a short conversation.
pub fn chat_template(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let Ok(t) = ChatTemplate::new(&source) else {
        return;
    };
    let messages = [
        Message::system("Be brief."),
        Message::user("Hi <|im_end|>"),
        Message::assistant("Hello."),
        Message::user("Bye"),
    ];
    let opts = RenderOptions::default();
    let _ = t.render(&messages, &opts);
    let _ = t.render(&messages[1..2], &opts);
}

/// `Session::restore` of arbitrary bytes on the tiny model, then a one-token decode.
pub fn session_restore(data: &[u8]) {
    let mut s = tiny_session();
    if s.restore(data).is_ok() {
        let mut sampler = Sampler::new(SamplerOptions::greedy());
        let _ = s.generate(&[3], &mut sampler, 1, &mut |_| Flow::Continue);
    }
}

/// `Conversation::restore` of arbitrary bytes on the tiny model, then a render.
pub fn conversation_restore(data: &[u8]) {
    let mut c = tiny_conversation();
    if c.restore(data).is_ok() {
        let _ = c.render(true);
    }
}

/// A session on [`tiny_model`] with a 32-token context.
pub fn tiny_session() -> Session {
    let opts = SessionOptions {
        context: 32,
        batch: 4,
        precision: tern_runtime::ActivationPrecision::F32,
        ..SessionOptions::default()
    };
    Session::new(tiny_model(), &opts).expect("the tiny model's 32-token session fits any budget")
}

/// A conversation on [`tiny_model`] with a ChatML template.
pub fn tiny_conversation() -> Chat {
    let template = ChatTemplate::new(CHATML).expect("ChatML parses");
    Chat::new(tiny_session(), template, ChatOptions::default())
}

/// ChatML, the template of the tiny conversation.
pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\
<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// [`tiny_model_bytes`] loaded once.
pub fn tiny_model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = Model::from_bytes(Box::new(tiny_model_bytes()), Kernels::best());
            Arc::new(m.expect("the tiny model loads"))
        })
        .clone()
}

/// Width of the tiny model.
const DIM: usize = 8;
/// Feed-forward width of the tiny model.
const FFN: usize = 16;

/// A complete Llama model of about 20 KB: one layer, width 8, two heads, f32 weights from a
/// fixed pseudo-random sequence, a SentencePiece vocabulary of `<unk>`, `<s>`, `</s>`, the 256
/// byte tokens and a few words. Small enough to seed the fuzzers, real enough to decode.
pub fn tiny_model_bytes() -> Vec<u8> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for w in [
        "▁Hello",
        "▁world",
        "▁the",
        "▁a",
        "e",
        "▁",
        "<|im_start|>",
        "<|im_end|>",
    ] {
        tokens.push(w.into());
        types.push(if w.starts_with("<|") { 3 } else { 1 });
    }
    let vocab = tokens.len();
    let scores: Vec<f32> = (0..vocab).map(|i| -(i as f32)).collect();

    // No leak (LeakSanitizer would report it): the writer borrows these until `to_bytes`.
    let token_values: Vec<Value<'_>> = tokens.iter().map(|t| Value::Str(t.as_str())).collect();
    let mut w = GgufWriter::new();
    let mut set = |k: &str, v| w.set(k, v).unwrap();
    set("general.architecture", Value::Str("llama"));
    set("general.name", Value::Str("tiny"));
    set("llama.block_count", Value::U32(1));
    set("llama.context_length", Value::U32(64));
    set("llama.embedding_length", Value::U32(DIM as u32));
    set("llama.feed_forward_length", Value::U32(FFN as u32));
    set("llama.attention.head_count", Value::U32(2));
    set("llama.attention.head_count_kv", Value::U32(2));
    set("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    set("tokenizer.ggml.model", Value::Str("llama"));
    set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::from(token_values)),
    );
    let scores = scores.into_iter().map(Value::F32).collect::<Vec<_>>();
    set("tokenizer.ggml.scores", Value::Array(Array::from(scores)));
    let types = types.into_iter().map(Value::I32).collect::<Vec<_>>();
    set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::from(types)),
    );
    set("tokenizer.ggml.bos_token_id", Value::U32(1));
    set("tokenizer.ggml.eos_token_id", Value::U32(2));

    let (d, f, v) = (DIM as u64, FFN as u64, vocab as u64);
    let shapes: [(&str, &[u64]); 12] = [
        ("token_embd.weight", &[d, v]),
        ("blk.0.attn_norm.weight", &[d]),
        ("blk.0.attn_q.weight", &[d, d]),
        ("blk.0.attn_k.weight", &[d, d]),
        ("blk.0.attn_v.weight", &[d, d]),
        ("blk.0.attn_output.weight", &[d, d]),
        ("blk.0.ffn_norm.weight", &[d]),
        ("blk.0.ffn_gate.weight", &[d, f]),
        ("blk.0.ffn_up.weight", &[d, f]),
        ("blk.0.ffn_down.weight", &[f, d]),
        ("output_norm.weight", &[d]),
        ("output.weight", &[d, v]),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::new();
    for (name, dims) in shapes {
        w.add_tensor(name, dims, GgmlType::F32).unwrap();
        let n: u64 = dims.iter().product();
        let mut bytes = Vec::with_capacity(n as usize * 4);
        for _ in 0..n {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = if dims.len() == 1 {
                1.0
            } else {
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
            };
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        data.push(bytes);
    }
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    w.to_bytes(&refs).unwrap()
}
