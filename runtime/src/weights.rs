//! The model's tensors: where each weight matrix lives in the file, checked once at load.
//!
//! Matrices stay in their GGUF bytes (quantized); only the small norm vectors are decoded to
//! f32 at load. A [`TensorRef`] is an offset into the weight bytes whose range, format and shape
//! were validated, so the forward pass can slice without further checks.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::{Format, Kernels};

use crate::config::ModelConfig;
use crate::error::LoadError;
use crate::gguf::{Gguf, TensorInfo};
use crate::source::WeightSource;

/// A validated weight matrix inside the weight bytes: `rows` rows of `cols` weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorRef {
    /// Storage format.
    pub format: Format,
    /// Weights per row (GGUF `ne[0]`).
    pub cols: usize,
    /// Rows (GGUF `ne[1]`).
    pub rows: usize,
    /// Absolute offset of the first byte in the file.
    pub offset: usize,
    /// Bytes of the whole matrix (for I2_S, the packed codes without the scale trailer).
    pub len: usize,
    /// Factor applied to every output of the matrix: BitNet's per-tensor weight scale (the
    /// I2_S trailer, or a `<name>.scale` tensor); 1 otherwise.
    pub scale: f32,
}

impl TensorRef {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.len / self.rows
    }

    /// The matrix's bytes in `file`, which must be the bytes it was validated against.
    pub fn view<'a>(&self, file: &'a [u8]) -> QMatrix<'a> {
        QMatrix {
            t: *self,
            data: &file[self.offset..self.offset + self.len],
        }
    }
}

/// A weight matrix with its bytes at hand.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    /// Shape and format.
    pub t: TensorRef,
    /// `rows · row_bytes` bytes.
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Bytes of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.t.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// The tensors of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerTensors {
    /// RMSNorm weight before attention, `(dim)`.
    pub attn_norm: Vec<f32>,
    /// Query projection, `(q_dim, dim)`.
    pub wq: TensorRef,
    /// Key projection, `(kv_dim, dim)`.
    pub wk: TensorRef,
    /// Value projection, `(kv_dim, dim)`.
    pub wv: TensorRef,
    /// Output projection, `(dim, q_dim)`.
    pub wo: TensorRef,
    /// BitNet: RMSNorm weight of the attention result before `wo`, `(q_dim)`.
    pub attn_sub_norm: Option<Vec<f32>>,
    /// RMSNorm weight before the feed-forward, `(dim)`.
    pub ffn_norm: Vec<f32>,
    /// BitNet: RMSNorm weight of the gated product before `w_down`, `(ffn_dim)`.
    pub ffn_sub_norm: Option<Vec<f32>>,
    /// Gate projection, `(ffn_dim, dim)`.
    pub w_gate: TensorRef,
    /// Up projection, `(ffn_dim, dim)`.
    pub w_up: TensorRef,
    /// Down projection, `(dim, ffn_dim)`.
    pub w_down: TensorRef,
}

impl LayerTensors {
    /// The weight matrices, in the order the forward pass reads them.
    pub fn matrices(&self) -> [&TensorRef; 7] {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w_gate,
            &self.w_up,
            &self.w_down,
        ]
    }
}

/// Every tensor of a Llama-family model.
#[derive(Clone, Debug)]
pub struct ModelTensors {
    /// Token embedding, `(vocab, dim)`.
    pub token_embd: TensorRef,
    /// Transformer blocks.
    pub layers: Vec<LayerTensors>,
    /// Final RMSNorm weight, `(dim)`.
    pub output_norm: Vec<f32>,
    /// Output head, `(vocab, dim)`; the embedding itself when the file ties them.
    pub output: TensorRef,
    /// Whether `output` is the tied embedding.
    pub tied_output: bool,
    /// Per-pair RoPE frequency divisors (`rope_freqs.weight`, Llama 3 style), if present.
    pub rope_freqs: Option<Vec<f32>>,
}

impl ModelTensors {
    /// Finds and checks every tensor `cfg` needs in `g`, the header of `source`. Reads only
    /// the small norm vectors; matrices stay where they are. `layer_done(i)` follows each layer.
    pub fn from_gguf(
        g: &Gguf<'_>,
        source: &dyn WeightSource,
        cfg: &ModelConfig,
        kernels: &Kernels,
        layer_done: &mut dyn FnMut(usize),
    ) -> Result<Self, LoadError> {
        let (dim, q, kv, ffn) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let vector = |name: &str, len: usize| -> Result<Vec<f32>, LoadError> {
            let t = matrix_ref(g, source, name, len, 1)?;
            let mut bytes = vec![0u8; t.len];
            source
                .read_at(t.offset as u64, &mut bytes)
                .map_err(|e| LoadError::Io {
                    path: format!("tensor '{name}'"),
                    message: e.to_string(),
                })?;
            let mut out = vec![0.0; len];
            kernels.dequant(t.format, &bytes, &mut out);
            Ok(out)
        };
        // A matrix, with its `<base>.scale` tensor (BitNet) folded into its scale.
        let matrix = |name: &str, cols: usize, rows: usize| -> Result<TensorRef, LoadError> {
            let mut t = matrix_ref(g, source, name, cols, rows)?;
            let scale_name = format!("{}.scale", name.strip_suffix(".weight").unwrap_or(name));
            if g.tensor(&scale_name).is_some() {
                t.scale *= vector(&scale_name, 1)?[0];
            }
            Ok(t)
        };
        let optional = |name: &str, len: usize| -> Result<Option<Vec<f32>>, LoadError> {
            g.tensor(name).map(|_| vector(name, len)).transpose()
        };
        let bitnet = cfg.arch.is_bitnet();
        let sub_norm = |name: &str, len: usize| -> Result<Option<Vec<f32>>, LoadError> {
            match optional(name, len)? {
                None if bitnet => Err(LoadError::MissingTensor {
                    name: name.to_string(),
                }),
                v => Ok(v),
            }
        };

        let token_embd = matrix("token_embd.weight", dim, cfg.vocab)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(LayerTensors {
                attn_norm: vector(&n("attn_norm"), dim)?,
                wq: matrix(&n("attn_q"), dim, q)?,
                wk: matrix(&n("attn_k"), dim, kv)?,
                wv: matrix(&n("attn_v"), dim, kv)?,
                wo: matrix(&n("attn_output"), q, dim)?,
                attn_sub_norm: sub_norm(&n("attn_sub_norm"), q)?,
                ffn_norm: vector(&n("ffn_norm"), dim)?,
                ffn_sub_norm: sub_norm(&n("ffn_sub_norm"), ffn)?,
                w_gate: matrix(&n("ffn_gate"), dim, ffn)?,
                w_up: matrix(&n("ffn_up"), dim, ffn)?,
                w_down: matrix(&n("ffn_down"), ffn, dim)?,
            });
            layer_done(i);
        }
        let output_norm = vector("output_norm.weight", dim)?;
        let (output, tied_output) = match g.tensor("output.weight") {
            Some(_) => (matrix("output.weight", dim, cfg.vocab)?, false),
            None => (token_embd, true),
        };
        let rope_freqs = optional("rope_freqs.weight", cfg.rope_dim / 2)?;
        Ok(ModelTensors {
            token_embd,
            layers,
            output_norm,
            output,
            tied_output,
            rope_freqs,
        })
    }

    /// Weight bytes one decoded token reads: every layer matrix, the output head and one
    /// embedding row (norm vectors are negligible and excluded).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .flat_map(|l| l.matrices())
            .map(|t| t.len as u64)
            .sum();
        layers + self.output.len as u64 + self.token_embd.row_bytes() as u64
    }
}

/// Looks up `name`, checks it is a `(rows, cols)` matrix in a computable format whose bytes lie
/// inside `source`, and returns where it is (reading I2_S's per-tensor scale from its trailer).
fn matrix_ref(
    g: &Gguf<'_>,
    source: &dyn WeightSource,
    name: &str,
    cols: usize,
    rows: usize,
) -> Result<TensorRef, LoadError> {
    let t: &TensorInfo<'_> = g.tensor(name).ok_or_else(|| LoadError::MissingTensor {
        name: name.to_string(),
    })?;
    let found = [t.row_len(), t.n_rows()];
    if found != [cols as u64, rows as u64] {
        return Err(LoadError::ShapeMismatch {
            tensor: name.to_string(),
            expected: [cols as u64, rows as u64],
            found,
        });
    }
    let unsupported = |what: String| LoadError::UnsupportedType {
        tensor: name.to_string(),
        ty: what,
    };
    let format = t
        .ggml_type
        .format()
        .ok_or_else(|| unsupported(t.ggml_type.to_string()))?;
    // I2_S (bitnet.cpp) stores its f32 scale after the packed codes, padded to 32 bytes.
    let trailer = if format == Format::I2_S { 32 } else { 0 };
    let len = format.row_bytes(cols).and_then(|rb| rb.checked_mul(rows));
    let offset = usize::try_from(t.offset).ok();
    let (len, offset) = match (len, offset) {
        (Some(len), Some(offset))
            if (len + trailer) as u64 == t.size
                && offset
                    .checked_add(len + trailer)
                    .is_some_and(|e| e as u64 <= source.len()) =>
        {
            (len, offset)
        }
        _ => {
            return Err(unsupported(format!(
                "{} with an inconsistent byte size",
                t.ggml_type
            )))
        }
    };
    let mut scale = 1.0;
    if format == Format::I2_S {
        let mut b = [0u8; 4];
        source
            .read_at((offset + len) as u64, &mut b)
            .map_err(|e| LoadError::Io {
                path: format!("tensor '{name}'"),
                message: e.to_string(),
            })?;
        scale = f32::from_le_bytes(b);
        if !scale.is_finite() {
            return Err(unsupported(String::from("I2_S with a non-finite scale")));
        }
    }
    Ok(TensorRef {
        format,
        cols,
        rows,
        offset,
        len,
        scale,
    })
}
