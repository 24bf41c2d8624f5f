//! `qwen2` (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen) and `qwen3` (dense).
//!
//! Both rotate half-split pairs (NEOX). Qwen2 adds biases to Q, K and V; Qwen3 has none but
//! RMS-normalizes each query and key head (`attn_q_norm`, `attn_k_norm`, length head_dim)
//! before RoPE, and its head width comes from `key_length` (not `embedding_length / heads`).

use alloc::vec;

use crate::config::{Architecture, ModelConfig};
use crate::error::LoadError;
use crate::rope::RopeStyle;
use crate::weights::{ModelTensors, TensorLoader};

pub(super) fn describe(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let layers = super::layers(c, t, layer_done, |t, i| {
        let mut l = super::plain_layer(c, t, i, 0)?;
        if c.arch == Architecture::Qwen3 {
            l.qk_norm = Some(super::qk_norm(c, t, i)?);
        } else {
            let bias = |t: &mut TensorLoader<'_, '_>, w: &str, len| {
                t.vector(&alloc::format!("blk.{i}.{w}.bias"), len)
            };
            l.qkv_bias = Some([
                bias(t, "attn_q", c.q_dim())?,
                bias(t, "attn_k", c.kv_dim())?,
                bias(t, "attn_v", c.kv_dim())?,
            ]);
        }
        Ok(l)
    })?;
    super::model(c, t, layers, vec![super::rope(c, RopeStyle::Neox, None)])
}
