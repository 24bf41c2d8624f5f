//! `phi3`: Phi-3 and Phi-3.5 mini, Phi-4-mini.
//!
//! The Llama block with fused tensors: `attn_qkv` holds Q, K and V rows one after the other,
//! and `ffn_up` holds the gate rows then the up rows (llama.cpp's `LLM_FFN_SWIGLU` split);
//! both are split by rows at load, so nothing is copied. NEOX RoPE. LongRoPE models carry
//! `rope_factors_short`/`rope_factors_long` (one per rotated pair): a session whose context
//! exceeds `rope.scaling.original_context_length` rotates with the long ones, as llama.cpp
//! chooses per context; `rope.scaling.attn_factor` multiplies sine and cosine. The file's
//! `attention.sliding_window` is ignored, as llama.cpp does (its Phi-3 SWA is disabled).

use alloc::vec;

use crate::config::ModelConfig;
use crate::error::LoadError;
use crate::rope::RopeStyle;
use crate::weights::{ModelTensors, TensorLoader};

use super::{blk, key};

pub(super) fn describe(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let half = c.rope_dim / 2;
    let short = t.optional_vector("rope_factors_short.weight", half)?;
    let long = t.optional_vector("rope_factors_long.weight", half)?;
    let mut rope = super::rope(c, RopeStyle::Neox, short.as_deref());
    if let Some(long) = &long {
        let original = match t
            .gguf()
            .opt_u64(&key(c, "rope.scaling.original_context_length"))?
        {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => c.train_context,
        };
        rope = rope.with_long_factors(original, c.rope_freq_scale, long);
    }
    let (dim, q, kv, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let layers = super::layers(c, t, layer_done, |t, i| {
        let fused_qkv = t.has(&blk(i, "attn_qkv"));
        let fused_up = !t.has(&blk(i, "ffn_gate"));
        let attn_norm = t.vector(&blk(i, "attn_norm"), dim)?;
        let [wq, wk, wv] = if fused_qkv {
            t.split_rows(&blk(i, "attn_qkv"), dim, [q, kv, kv])?
        } else {
            [
                t.matrix(&blk(i, "attn_q"), dim, q)?,
                t.matrix(&blk(i, "attn_k"), dim, kv)?,
                t.matrix(&blk(i, "attn_v"), dim, kv)?,
            ]
        };
        let [w_gate, w_up] = if fused_up {
            t.split_rows(&blk(i, "ffn_up"), dim, [ffn, ffn])?
        } else {
            [
                t.matrix(&blk(i, "ffn_gate"), dim, ffn)?,
                t.matrix(&blk(i, "ffn_up"), dim, ffn)?,
            ]
        };
        super::plain_layer_from(c, t, i, attn_norm, [wq, wk, wv], [w_gate, w_up])
    })?;
    super::model(c, t, layers, vec![rope])
}
