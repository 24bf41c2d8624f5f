//! Architectures: one small module each reads its hyperparameters and tensors and describes its
//! forward pass layer by layer ([`ModelTensors`], [`LayerTensors`]). The forward pass runs that
//! description and never asks which architecture it has.
//!
//! An architecture says where each matrix is and what it means, not how it is computed: every
//! matrix it describes is a [`Matrix`](crate::weights::Matrix) on its GGUF bytes
//! ([`Repr::Gguf`](crate::weights::Repr::Gguf), `TensorRef::into()`). Loading then chooses
//! each matrix's representation once (ternary matrices: MAD on the GGUF bytes or LUT tiles,
//! `--ternary`), and the forward pass multiplies every matrix through the one product that
//! dispatches on it (`crate::matrix`).
//!
//! # Adding an architecture
//!
//! 1. Add a variant to [`Architecture`](crate::config::Architecture) with its GGUF name.
//! 2. Write `arch/<name>.rs` with a `describe` function: start from [`plain_layer`] (pre-norm
//!    attention and gated FFN, the Llama block) and set what differs — biases, Q/K norms,
//!    post-norms, a window, another activation, its [`Rope`] tables — reading extra keys from
//!    [`TensorLoader::gguf`] and extra tensors through the loader (which refuses files with
//!    tensors nobody read). Fused tensors are split by rows with
//!    [`TensorLoader::split_rows`]: nothing is copied. A matrix whose inputs the model defines
//!    differently sets it on the matrix, not in the forward pass (BitNet's ternary matrices
//!    take per-token int8 activations: `Matrix::int8_activations`, see `bitnet.rs`).
//! 3. Add the arm to [`describe`] below.
//! 4. If the block needs a step the description cannot express, add an optional field to
//!    [`LayerTensors`] and the step to `forward.rs` (reading the field, not the architecture).
//!    A new way to store or compute a matrix (a format's repacking, a matrix delegated to an
//!    accelerator) is not a step: it is a [`Repr`](crate::weights::Repr) variant, chosen at
//!    load, with its arm in `crate::matrix`.
//! 5. Test it against llama.cpp on a real or generated file (`tests/reference/`).

mod bitnet;
mod gemma3;
mod llama;
mod phi3;
mod qwen;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::config::{Architecture, ModelConfig};
use crate::error::LoadError;
use crate::rope::{Rope, RopeStyle};
use crate::weights::{FfnActivation, LayerTensors, ModelTensors, TensorLoader, TensorRef};

/// Reads the tensors of `c.arch` through `t` into the model's description, calling
/// `layer_done(i)` after each layer, and checks no tensor of the file was left unread.
pub(crate) fn describe(
    c: &ModelConfig,
    mut t: TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
) -> Result<ModelTensors, LoadError> {
    let layers = t.layers_present();
    if layers != c.n_layers {
        return Err(LoadError::LayerCountMismatch {
            block_count: c.n_layers,
            layers,
        });
    }
    let model = match c.arch {
        Architecture::Llama => llama::describe(c, &mut t, layer_done)?,
        Architecture::Bitnet | Architecture::BitnetB158 => bitnet::describe(c, &mut t, layer_done)?,
        Architecture::Qwen2 | Architecture::Qwen3 => qwen::describe(c, &mut t, layer_done)?,
        Architecture::Gemma3 => gemma3::describe(c, &mut t, layer_done)?,
        Architecture::Phi3 => phi3::describe(c, &mut t, layer_done)?,
    };
    t.finish()?;
    Ok(model)
}

/// `blk.{i}.{what}.weight`.
fn blk(i: usize, what: &str) -> String {
    format!("blk.{i}.{what}.weight")
}

/// The Llama block of layer `i`: RMSNorm pre-norms, separate Q/K/V/O, SiLU-gated FFN, full
/// attention scaled by `1/sqrt(head_dim)`, rotating with table `rope`; nothing optional.
fn plain_layer(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    i: usize,
    rope: usize,
) -> Result<LayerTensors, LoadError> {
    let (dim, q, kv, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let attn_norm = t.vector(&blk(i, "attn_norm"), dim)?;
    let qkv = [
        t.matrix(&blk(i, "attn_q"), dim, q)?,
        t.matrix(&blk(i, "attn_k"), dim, kv)?,
        t.matrix(&blk(i, "attn_v"), dim, kv)?,
    ];
    let gate_up = [
        t.matrix(&blk(i, "ffn_gate"), dim, ffn)?,
        t.matrix(&blk(i, "ffn_up"), dim, ffn)?,
    ];
    let mut l = plain_layer_from(c, t, i, attn_norm, qkv, gate_up)?;
    l.rope = rope;
    Ok(l)
}

/// [`plain_layer`] with the attention norm and the Q/K/V and gate/up matrices given (read
/// from fused tensors, say); reads the rest.
fn plain_layer_from(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    i: usize,
    attn_norm: Vec<f32>,
    [wq, wk, wv]: [TensorRef; 3],
    [w_gate, w_up]: [TensorRef; 2],
) -> Result<LayerTensors, LoadError> {
    Ok(LayerTensors {
        attn_norm,
        wq: wq.into(),
        wk: wk.into(),
        wv: wv.into(),
        qkv_bias: None,
        qk_norm: None,
        rope: 0,
        window: None,
        attn_scale: 1.0 / libm::sqrtf(c.head_dim as f32),
        attn_sub_norm: None,
        wo: t.matrix(&blk(i, "attn_output"), c.q_dim(), c.dim)?.into(),
        attn_post_norm: None,
        ffn_norm: t.vector(&blk(i, "ffn_norm"), c.dim)?,
        w_gate: w_gate.into(),
        w_up: w_up.into(),
        activation: FfnActivation::Silu,
        ffn_sub_norm: None,
        w_down: t.matrix(&blk(i, "ffn_down"), c.ffn_dim, c.dim)?.into(),
        ffn_post_norm: None,
        ffn_delegate: None,
    })
}

/// Per-head RMSNorm weights of queries and keys (`attn_q_norm`, `attn_k_norm`) of layer `i`.
fn qk_norm(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    i: usize,
) -> Result<[Vec<f32>; 2], LoadError> {
    Ok([
        t.vector(&blk(i, "attn_q_norm"), c.head_dim)?,
        t.vector(&blk(i, "attn_k_norm"), c.head_dim)?,
    ])
}

/// One rotation over `c.rope_dim` dimensions at the file's base, linear scale and attention
/// factor.
fn rope(c: &ModelConfig, style: RopeStyle, factors: Option<&[f32]>) -> Rope {
    Rope::new(style, c.rope_dim, c.rope_base, c.rope_freq_scale, factors)
        .with_mscale(c.rope_attn_factor)
}

/// The layers `0..c.n_layers` made by `layer`, reporting each.
fn layers(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layer_done: &mut dyn FnMut(usize),
    mut layer: impl FnMut(&mut TensorLoader<'_, '_>, usize) -> Result<LayerTensors, LoadError>,
) -> Result<Vec<LayerTensors>, LoadError> {
    (0..c.n_layers)
        .map(|i| {
            let l = layer(t, i)?;
            layer_done(i);
            Ok(l)
        })
        .collect()
}

/// The model around `layers`: embedding, final norm, output head (tied to the embedding when
/// the file has no `output.weight`), with nothing optional.
fn model(
    c: &ModelConfig,
    t: &mut TensorLoader<'_, '_>,
    layers: Vec<LayerTensors>,
    ropes: Vec<Rope>,
) -> Result<ModelTensors, LoadError> {
    let token_embd = t.matrix("token_embd.weight", c.dim, c.vocab)?;
    let output_norm = t.vector("output_norm.weight", c.dim)?;
    let (output, tied_output) = if t.has("output.weight") {
        (t.matrix("output.weight", c.dim, c.vocab)?, false)
    } else {
        (token_embd, true)
    };
    Ok(ModelTensors {
        token_embd,
        embd_scale: 1.0,
        layers,
        output_norm,
        output: output.into(),
        tied_output,
        logit_softcap: None,
        ropes,
    })
}

/// `<arch>.<k>`.
fn key(c: &ModelConfig, k: &str) -> String {
    format!("{}.{k}", c.arch.name())
}
