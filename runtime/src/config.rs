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

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: ggml's "normal" mode, used by `llama` (whose converter
    /// permutes Q and K to match).
    Normal,
    /// Half-split pairs `(i, i + n/2)`: ggml's NEOX mode (Qwen, Gemma, BitNet).
    Neox,
}

/// The architecture family of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama and its many descendants (SmolLM, TinyLlama, Mistral-style dense models).
    Llama,
    /// BitNet b1.58 as llama.cpp's `bitnet` runs it (the 2024 1bitLLM-style reproductions):
    /// Llama plus sub-layer norms before the attention output and down projections, SiLU-gated
    /// FFN, NEOX RoPE (llama.cpp `llm_build_bitnet`, `llama_model_rope_type`).
    Bitnet,
    /// Microsoft's BitNet b1.58 2B4T as bitnet.cpp names it (`bitnet-b1.58`, earlier
    /// `bitnet-25`): as [`Architecture::Bitnet`] but with a squared-ReLU gated FFN (model card:
    /// "squared ReLU (ReLU²) activation in FFN layers", "subln normalization").
    BitnetB158,
}

impl Architecture {
    /// The canonical GGUF name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Bitnet => "bitnet",
            Architecture::BitnetB158 => "bitnet-b1.58",
        }
    }

    /// The architecture a GGUF `general.architecture` names, if Tern runs it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "bitnet" => Some(Architecture::Bitnet),
            "bitnet-b1.58" | "bitnet-25" => Some(Architecture::BitnetB158),
            _ => None,
        }
    }

    /// Whether blocks carry `attn_sub_norm` and `ffn_sub_norm`, and activations entering
    /// ternary matrices are quantized per token to int8 (absmax), as BitNet b1.58 trains them.
    pub fn is_bitnet(self) -> bool {
        matches!(self, Architecture::Bitnet | Architecture::BitnetB158)
    }
}

/// The gate nonlinearity of the gated feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnActivation {
    /// `silu(gate) · up` (SwiGLU).
    Silu,
    /// `relu(gate)² · up`.
    ReluSquared,
}

/// Hyperparameters of a Llama-family model.
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
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// Feed-forward gate nonlinearity.
    pub ffn_activation: FfnActivation,
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
        if let Some(kind) = g.opt_str(&key("rope.scaling.type"))? {
            let factor = g.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            if kind != "none" && factor != 1.0 {
                return Err(bad(
                    &key("rope.scaling.type"),
                    "names a RoPE scaling Tern does not do",
                ));
            }
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
            rope_style: match arch {
                Architecture::Llama => RopeStyle::Normal,
                // The bitnet converters do not permute Q/K, so llama.cpp rotates half-split
                // pairs although the file does not say so.
                Architecture::Bitnet | Architecture::BitnetB158 => RopeStyle::Neox,
            },
            ffn_activation: match g.opt_str(&key("hidden_activation"))? {
                // Recent llama.cpp runs 2B4T as `bitnet` with this key.
                Some("relu2") => FfnActivation::ReluSquared,
                Some("silu") => FfnActivation::Silu,
                Some(_) => {
                    return Err(bad(
                        &key("hidden_activation"),
                        "names an unknown activation",
                    ))
                }
                None => match arch {
                    Architecture::Llama | Architecture::Bitnet => FfnActivation::Silu,
                    Architecture::BitnetB158 => FfnActivation::ReluSquared,
                },
            },
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
