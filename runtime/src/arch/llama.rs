//! `llama`: Llama 1–3.x, SmolLM, TinyLlama and other Llama-shaped models.
//!
//! Normal (adjacent-pair) RoPE, since the converter permutes Q and K to match; Llama 3.x files
//! carry `rope_freqs.weight`, the llama3 scaling rule already applied per frequency, which
//! divides each pair's frequency.

use crate::config::ModelConfig;
use crate::error::LoadError;
use crate::rope::RopeStyle;
use crate::weights::{ModelTensors, TensorLoader};

pub(super) fn describe(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let factors = t.optional_vector("rope_freqs.weight", c.rope_dim / 2)?;
    let rope = super::rope(c, RopeStyle::Normal, factors.as_deref());
    let layers = super::layers(c, t, layer_done, |t, i| super::plain_layer(c, t, i, 0))?;
    super::model(c, t, layers, alloc::vec![rope])
}
