//! Hyperparameters, read from GGUF metadata and checked.

use alloc::format;
use alloc::string::{String, ToString};

use crate::error::LoadError;
use crate::gguf::Gguf;

/// Largest embedding width, head count, layer count etc. Tern accepts: far beyond any model a
/// phone can run, small enough that buffer sizes derived from them cannot overflow.
pub const MAX_DIM: u64 = 1 << 20;
/// Largest context length Tern accepts.
pub const MAX_CONTEXT: u64 = 1 << 24;

pub use crate::rope::RopeStyle;
pub use crate::weights::FfnActivation;

/// The architecture of a model, as `general.architecture` names it. What each one means for
/// the forward pass lives in its module under `crate::arch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// Llama and its many descendants (Llama 2/3.x, SmolLM, TinyLlama, Mistral-style dense
    /// models).
    Llama,
    /// BitNet b1.58 as llama.cpp's `bitnet` runs it (the 2024 1bitLLM-style reproductions).
    Bitnet,
    /// Microsoft's BitNet b1.58 2B4T as bitnet.cpp names it (`bitnet-b1.58`, earlier
    /// `bitnet-25`).
    BitnetB158,
    /// Qwen2 and Qwen2.5 (and DeepSeek-R1-Distill-Qwen): Llama with Q/K/V biases, NEOX RoPE.
    Qwen2,
    /// Qwen3 (dense): per-head Q/K RMSNorm, no biases, NEOX RoPE.
    Qwen3,
    /// Gemma 3: scaled embeddings, Q/K norms, post-norms, GeGLU, sliding-window layers.
    Gemma3,
    /// Phi-3 and Phi-4-mini: fused QKV and gate/up tensors, LongRoPE factors.
    Phi3,
}

impl Architecture {
    /// Every architecture Tern runs.
    pub const ALL: [Architecture; 7] = [
        Architecture::Llama,
        Architecture::Bitnet,
        Architecture::BitnetB158,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
        Architecture::Phi3,
    ];

    /// The canonical GGUF name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Bitnet => "bitnet",
            Architecture::BitnetB158 => "bitnet-b1.58",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma3 => "gemma3",
            Architecture::Phi3 => "phi3",
        }
    }

    /// The architecture a GGUF `general.architecture` names, if Tern runs it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bitnet-25" => Some(Architecture::BitnetB158),
            _ => Self::ALL.into_iter().find(|a| a.name() == name),
        }
    }
}

/// The hyperparameters every architecture has, read from `<arch>.*` keys and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Architecture,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Embedding width.
    pub dim: usize,
    /// Hidden width of the feed-forward network.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// RoPE base frequency (of global layers, where a model has two kinds).
    pub rope_base: f32,
    /// Linear RoPE scaling: positions are multiplied by this (`1 / rope.scaling.factor`).
    pub rope_freq_scale: f32,
    /// Factor on RoPE's sine and cosine (`rope.scaling.attn_factor`, LongRoPE; 1 otherwise).
    pub rope_attn_factor: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Context length the model was trained with.
    pub train_context: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
}

impl ModelConfig {
    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Reads and checks the hyperparameters of `g`.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self, LoadError> {
        let arch_name = g.req_str("general.architecture")?;
        let arch = Architecture::from_name(arch_name).ok_or_else(|| {
            LoadError::UnsupportedArchitecture {
                name: arch_name.to_string(),
            }
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let dim_of = |k: &str| -> Result<usize, LoadError> {
            let v = g.req_u64(&key(k))?;
            positive(&key(k), v, MAX_DIM)
        };

        let n_layers = dim_of("block_count")?;
        let dim = dim_of("embedding_length")?;
        let ffn_dim = dim_of("feed_forward_length")?;
        let n_heads = dim_of("attention.head_count")?;
        let n_kv_heads = match g.opt_u64(&key("attention.head_count_kv"))? {
            Some(v) => positive(&key("attention.head_count_kv"), v, MAX_DIM)?,
            None => n_heads,
        };
        if n_heads % n_kv_heads != 0 {
            return Err(bad(
                &key("attention.head_count_kv"),
                "does not divide the head count",
            ));
        }
        let head_dim = match g.opt_u64(&key("attention.key_length"))? {
            Some(v) => positive(&key("attention.key_length"), v, MAX_DIM)?,
            None => {
                if dim % n_heads != 0 {
                    return Err(bad(
                        &key("attention.head_count"),
                        "does not divide the width",
                    ));
                }
                dim / n_heads
            }
        };
        if let Some(v) = g.opt_u64(&key("attention.value_length"))? {
            if v != head_dim as u64 {
                return Err(bad(
                    &key("attention.value_length"),
                    "differs from the key length",
                ));
            }
        }
        let rope_dim = match g.opt_u64(&key("rope.dimension_count"))? {
            Some(v) => positive(&key("rope.dimension_count"), v, MAX_DIM)?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(bad(
                &key("rope.dimension_count"),
                "is odd or exceeds the head width",
            ));
        }
        let rope_base = g.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(bad(&key("rope.freq_base"), "is not a positive number"));
        }
        // Linear scaling (positions divided by the factor) is what ggml does when the file names
        // a factor without a type; YaRN and others change the rotation itself: refused.
        let factor = g.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
        let rope_freq_scale = match g.opt_str(&key("rope.scaling.type"))? {
            Some("none") => 1.0,
            None | Some("linear") if factor.is_finite() && factor > 0.0 => 1.0 / factor,
            None | Some("linear") => {
                return Err(bad(&key("rope.scaling.factor"), "is not a positive number"))
            }
            Some(_) if factor == 1.0 => 1.0,
            Some(_) => {
                return Err(bad(
                    &key("rope.scaling.type"),
                    "names a RoPE scaling Tern does not do",
                ))
            }
        };
        let rope_attn_factor = g.opt_f32(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0);
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(bad(
                &key("rope.scaling.attn_factor"),
                "is not a positive number",
            ));
        }
        let norm_eps = g
            .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        if !(norm_eps.is_finite() && norm_eps >= 0.0) {
            return Err(bad(
                &key("attention.layer_norm_rms_epsilon"),
                "is not a small positive number",
            ));
        }
        let train_context = match g.opt_u64(&key("context_length"))? {
            Some(v) => positive(&key("context_length"), v, MAX_CONTEXT)?,
            None => 2048,
        };
        let vocab = match g.tensor("token_embd.weight") {
            Some(t) => positive("token_embd.weight rows", t.n_rows(), MAX_DIM)?,
            None => {
                return Err(LoadError::MissingTensor {
                    name: "token_embd.weight".into(),
                })
            }
        };
        Ok(ModelConfig {
            arch,
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dim,
            rope_base,
            rope_freq_scale,
            rope_attn_factor,
            norm_eps,
            train_context,
            vocab,
        })
    }
}

fn bad(key: &str, reason: &'static str) -> LoadError {
    LoadError::BadHyperparameter {
        key: String::from(key),
        reason,
    }
}

fn positive(key: &str, v: u64, max: u64) -> Result<usize, LoadError> {
    if v == 0 {
        return Err(bad(key, "is zero"));
    }
    if v > max {
        return Err(bad(key, "is implausibly large"));
    }
    usize::try_from(v).map_err(|_| bad(key, "does not fit this machine's address space"))
}
