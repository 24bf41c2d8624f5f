//! `gemma3`: Gemma 3 (text).
//!
//! Per block: `attn_norm` → Q, K, V → per-head RMSNorm of Q and K → RoPE (NEOX) → attention →
//! `post_attention_norm` → residual; `ffn_norm` → GELU(tanh)-gated FFN → `post_ffw_norm` →
//! residual. Embeddings are scaled by `sqrt(dim)`. Facts from llama.cpp (`llama-model.cpp`,
//! `src/models/gemma3.cpp`) and the Gemma reference config:
//!
//! - Sliding-window layers: with the pattern 6 (llama.cpp `set_swa_pattern(6)`), layer `i` is
//!   local unless `i % 6 == 5`; a local layer attends to the last `attention.sliding_window`
//!   positions (itself included) and rotates with base `rope.freq_base_swa` (default 10000)
//!   and no linear scaling; global layers use `rope.freq_base` and the file's scaling.
//! - Query scale `1/sqrt(head_dim)`, except the 62-layer 27B model's `1/sqrt(dim / heads)`.
//! - RMSNorm weights in GGUF already include Gemma's `+1`.
//! - `final_logit_softcapping`, when the file has it, caps logits as `cap·tanh(x/cap)` (as the
//!   reference does; llama.cpp applies it only to Gemma 3 files without sliding windows).

use alloc::vec;

use crate::config::ModelConfig;
use crate::error::LoadError;
use crate::rope::{Rope, RopeStyle};
use crate::weights::{FfnActivation, ModelTensors, TensorLoader};

use super::{blk, key};

/// Layers per period of the sliding-window pattern: the last of each period is global.
const DEFAULT_SWA_PERIOD: u64 = 6;
/// RoPE base of the sliding-window layers when the file does not say.
const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;

pub(super) fn describe(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let g = t.gguf();
    let bad = |k: &str, reason| LoadError::BadHyperparameter {
        key: key(c, k),
        reason,
    };
    let window = match g.opt_u64(&key(c, "attention.sliding_window"))? {
        Some(0) => return Err(bad("attention.sliding_window", "is zero")),
        Some(w) => {
            Some(usize::try_from(w).map_err(|_| bad("attention.sliding_window", "is too large"))?)
        }
        None => None,
    };
    let period = g
        .opt_u64(&key(c, "attention.sliding_window_pattern"))?
        .unwrap_or(DEFAULT_SWA_PERIOD);
    if period == 0 {
        return Err(bad("attention.sliding_window_pattern", "is zero"));
    }
    let local_base = g
        .opt_f32(&key(c, "rope.freq_base_swa"))?
        .unwrap_or(DEFAULT_LOCAL_ROPE_BASE);
    if !(local_base.is_finite() && local_base > 0.0) {
        return Err(bad("rope.freq_base_swa", "is not a positive number"));
    }
    let softcap = g.opt_f32(&key(c, "final_logit_softcapping"))?;
    if softcap.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(bad("final_logit_softcapping", "is not a positive number"));
    }
    let attn_scale = if c.n_layers == 62 {
        1.0 / libm::sqrtf((c.dim / c.n_heads) as f32)
    } else {
        1.0 / libm::sqrtf(c.head_dim as f32)
    };

    // Table 0: global layers; table 1: sliding-window layers.
    let ropes = vec![
        super::rope(c, RopeStyle::Neox, None),
        Rope::new(RopeStyle::Neox, c.rope_dim, local_base, 1.0, None)
            .with_mscale(c.rope_attn_factor),
    ];
    let layers = super::layers(c, t, layer_done, |t, i| {
        let local = window.is_some() && (i as u64 % period) != period - 1;
        let mut l = super::plain_layer(c, t, i, usize::from(local))?;
        l.qk_norm = Some(super::qk_norm(c, t, i)?);
        l.window = if local { window } else { None };
        l.attn_scale = attn_scale;
        l.attn_post_norm = Some(t.vector(&blk(i, "post_attention_norm"), c.dim)?);
        l.activation = FfnActivation::GeluTanh;
        l.ffn_post_norm = Some(t.vector(&blk(i, "post_ffw_norm"), c.dim)?);
        Ok(l)
    })?;
    let mut m = super::model(c, t, layers, ropes)?;
    m.embd_scale = libm::sqrtf(c.dim as f32);
    m.logit_softcap = softcap;
    Ok(m)
}
