//! `bitnet` (llama.cpp's BitNet b1.58, the 2024 1bitLLM-style reproductions) and
//! `bitnet-b1.58` (Microsoft's 2B4T as bitnet.cpp names it, earlier `bitnet-25`).
//!
//! The Llama block plus an RMSNorm on the attention result before `wo` (`attn_sub_norm`) and
//! on the gated product before `w_down` (`ffn_sub_norm`); NEOX RoPE although the file does not
//! say so (the converters do not permute Q/K; llama.cpp `llama_model_rope_type`); ternary
//! matrices meet per-token absmax int8 activations, as the model was trained. The FFN gate is
//! SiLU for `bitnet` and squared ReLU for 2B4T (its model card: "squared ReLU (ReLU²)"), or as
//! the file's `hidden_activation` key says (recent llama.cpp runs 2B4T as `bitnet` with it).

use alloc::vec;

use crate::config::{Architecture, ModelConfig};
use crate::error::LoadError;
use crate::rope::RopeStyle;
use crate::weights::{FfnActivation, ModelTensors, TensorLoader};

use super::{blk, key};

pub(super) fn describe(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let activation = match t.gguf().opt_str(&key(c, "hidden_activation"))? {
        Some("relu2") => FfnActivation::ReluSquared,
        Some("silu") => FfnActivation::Silu,
        Some(_) => {
            return Err(LoadError::BadHyperparameter {
                key: key(c, "hidden_activation"),
                reason: "names an unknown activation",
            })
        }
        None if c.arch == Architecture::BitnetB158 => FfnActivation::ReluSquared,
        None => FfnActivation::Silu,
    };
    let layers = super::layers(c, t, layer_done, |t, i| {
        let mut l = super::plain_layer(c, t, i, 0)?;
        l.attn_sub_norm = Some(t.vector(&blk(i, "attn_sub_norm"), c.q_dim())?);
        l.ffn_sub_norm = Some(t.vector(&blk(i, "ffn_sub_norm"), c.ffn_dim)?);
        l.activation = activation;
        Ok(l)
    })?;
    let mut m = super::model(c, t, layers, vec![super::rope(c, RopeStyle::Neox, None)])?;
    // As trained: the ternary matrices take per-token absmax int8 activations. A file
    // requantized to another format (Q4_0, say) runs those matrices as Llama does.
    for w in m.matrices_mut() {
        w.int8_activations = w.t.format.is_ternary();
    }
    Ok(m)
}
