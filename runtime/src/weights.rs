//! The model's tensors: where each weight matrix lives in the file, checked once at load, and
//! the representation each matrix computes with.
//!
//! Matrices stay in their GGUF bytes (quantized); only the small norm vectors are decoded to
//! f32 at load. A [`TensorRef`] is an offset into the weight bytes whose range, format and shape
//! were validated, so the forward pass can slice without further checks. A [`Matrix`] is a
//! `TensorRef` with its [`Repr`]: the GGUF bytes for the format's kernels, or a form built
//! from them at load (ternary lookup-table tiles). The forward pass multiplies every matrix
//! through one `project` (`crate::matrix`) that dispatches on the representation, so nothing
//! above it asks what a matrix is stored as.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::{Format, Kernels};

use crate::delegate::{DelegatedFfn, DelegatedMatrix};
use crate::error::LoadError;
use crate::gguf::{Gguf, TensorInfo};
use crate::repacked::RepackedMatrix;
use crate::rope::Rope;
use crate::source::WeightSource;
use crate::ternary::LutMatrix;

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

/// What a [`Matrix`]'s products compute on, chosen once at load.
///
/// Architectures describe every matrix as [`Repr::Gguf`]; loading then picks the ternary
/// representations (`crate::model::Model::set_ternary_kernel`, the CLI's `--ternary
/// auto|mad|lut|f32`). Every representation keeps the matrix's [`TensorRef`]: the bytes stay
/// in the file, and a product the representation declines (activations it cannot take, see
/// below) runs on them as [`Repr::Gguf`] does.
///
/// A representation whose products run off the CPU is [`Repr::Delegated`]: a matrix a
/// delegate (`crate::delegate`) prepared at load in the accelerator's own layout.
#[derive(Clone, Debug, Default)]
pub enum Repr {
    /// The GGUF bytes, read through the feed when the product runs (whole from a memory map,
    /// or in slices under a resident cap or from a stream), through the format's kernels
    /// (`crate::matmul`) at the session's activation precision.
    #[default]
    Gguf,
    /// A ternary matrix on its GGUF bytes, read through the feed: the integer multiply-add
    /// kernels (`crate::ternary`, MAD) when its activations are int8
    /// ([`Matrix::int8_activations`], or the session's `ActivationPrecision::Int8`);
    /// [`Repr::Gguf`]'s path otherwise.
    TernaryMad,
    /// A ternary matrix repacked at load into lookup-table index tiles on the heap (its file
    /// bytes were released, [`Matrix::reads_file`]): the LUT kernels when its activations are
    /// int8, [`Repr::Gguf`]'s path on the file bytes otherwise.
    TernaryLut(LutMatrix),
    /// A matrix a delegate took at load (`crate::Model::set_delegate`): products run on the
    /// accelerator; the runtime rounds BitNet's activations to int8 before and applies the
    /// tensor scale after, as on the GGUF path. Its file bytes were released.
    Delegated(Arc<dyn DelegatedMatrix>),
    /// A Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0 or Q5_1 matrix repacked at load into row-interleaved block
    /// groups on the heap (`crate::repacked`, [`crate::model::Model::repack_int8`]): products
    /// with int8 activations (prompts and decoding) run on it, others on the file bytes as
    /// [`Repr::Gguf`]'s do.
    Repacked(RepackedMatrix),
}

/// A weight matrix of the forward pass: the GGUF tensor it was read from and the
/// representation its products run on.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// Shape, format, scale and where the GGUF bytes are.
    pub t: TensorRef,
    /// Whether the matrix takes per-token absmax int8 activations whatever the session's
    /// precision (BitNet b1.58's ternary matrices, as trained): products on the GGUF bytes
    /// round the activations so first (`scalar::absmax_int8_roundtrip`).
    pub int8_activations: bool,
    repr: Repr,
}

impl From<TensorRef> for Matrix {
    /// The matrix on its GGUF bytes, taking the session's activations.
    fn from(t: TensorRef) -> Self {
        Matrix {
            t,
            int8_activations: false,
            repr: Repr::Gguf,
        }
    }
}

impl Matrix {
    /// The representation its products run on.
    pub fn repr(&self) -> &Repr {
        &self.repr
    }

    /// Sets the representation (at load).
    pub(crate) fn set_repr(&mut self, repr: Repr) {
        self.repr = repr;
    }

    /// Whether products read the GGUF bytes through the feed, so a feed should bring them in
    /// ahead of use: false for representations built at load, whose file bytes were released.
    pub fn reads_file(&self) -> bool {
        match self.repr {
            Repr::Gguf | Repr::TernaryMad => true,
            Repr::TernaryLut(_) | Repr::Delegated(_) | Repr::Repacked(_) => false,
        }
    }

    /// Heap bytes of a representation built at load (0 for those on the file's bytes).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Gguf | Repr::TernaryMad | Repr::Delegated(_) => 0,
            Repr::TernaryLut(lut) => lut.heap_bytes(),
            Repr::Repacked(r) => r.heap_bytes(),
        }
    }
}

/// The gate nonlinearity of the gated feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnActivation {
    /// `silu(gate) · up` (SwiGLU: Llama, Qwen, Phi-3, BitNet 2024).
    Silu,
    /// `relu(gate)² · up` (BitNet b1.58 2B4T).
    ReluSquared,
    /// `gelu_tanh(gate) · up` (GeGLU: Gemma).
    GeluTanh,
}

/// One transformer block as the forward pass runs it: which steps it has and their weights.
///
/// Produced by an architecture module (`crate::arch`); the forward pass reads only this and
/// never asks which architecture it runs. Steps in order: `attn_norm` → Q, K, V (+ biases) →
/// per-head `q_norm`/`k_norm` → RoPE (table `rope`) → attention over `window` positions with
/// scores scaled by `attn_scale` → `attn_sub_norm` → `wo` → `attn_post_norm` → residual; then
/// `ffn_norm` → gate, up → `activation` → `ffn_sub_norm` → `w_down` → `ffn_post_norm` → residual.
#[derive(Clone, Debug)]
pub struct LayerTensors {
    /// RMSNorm weight before attention, `(dim)`.
    pub attn_norm: Vec<f32>,
    /// Query projection, `(q_dim, dim)` (a row slice of a fused QKV tensor for Phi-3).
    pub wq: Matrix,
    /// Key projection, `(kv_dim, dim)`.
    pub wk: Matrix,
    /// Value projection, `(kv_dim, dim)`.
    pub wv: Matrix,
    /// Biases added to Q, K and V (Qwen2): `(q_dim)`, `(kv_dim)`, `(kv_dim)`.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights of queries and keys before RoPE (Qwen3, Gemma 3), `(head_dim)`.
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// Index of this layer's rotation in [`ModelTensors::ropes`].
    pub rope: usize,
    /// Sliding window: each position attends to at most this many positions (itself
    /// included); `None` for full causal attention.
    pub window: Option<usize>,
    /// Factor on attention scores (usually `1/sqrt(head_dim)`).
    pub attn_scale: f32,
    /// RMSNorm weight of the attention result before `wo` (BitNet), `(q_dim)`.
    pub attn_sub_norm: Option<Vec<f32>>,
    /// Output projection, `(dim, q_dim)`.
    pub wo: Matrix,
    /// RMSNorm weight of `wo`'s output before the residual add (Gemma 3), `(dim)`.
    pub attn_post_norm: Option<Vec<f32>>,
    /// RMSNorm weight before the feed-forward, `(dim)`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection, `(ffn_dim, dim)` (the first half of a fused up tensor for Phi-3).
    pub w_gate: Matrix,
    /// Up projection, `(ffn_dim, dim)`.
    pub w_up: Matrix,
    /// Gate nonlinearity.
    pub activation: FfnActivation,
    /// RMSNorm weight of the gated product before `w_down` (BitNet), `(ffn_dim)`.
    pub ffn_sub_norm: Option<Vec<f32>>,
    /// Down projection, `(dim, ffn_dim)`.
    pub w_down: Matrix,
    /// RMSNorm weight of `w_down`'s output before the residual add (Gemma 3), `(dim)`.
    pub ffn_post_norm: Option<Vec<f32>>,
    /// The whole FFN block (gate, up, activation, sub-norm, down) on a delegate
    /// (`crate::delegate::FfnOffer`), run instead of the three products when present; its
    /// three matrices are then [`Repr::Delegated`] placeholders that are never multiplied.
    pub ffn_delegate: Option<Arc<dyn DelegatedFfn>>,
}

impl LayerTensors {
    /// The weight matrices, in the order the forward pass reads them.
    pub fn matrices(&self) -> [&Matrix; 7] {
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

    /// [`LayerTensors::matrices`], to set their representations at load.
    pub(crate) fn matrices_mut(&mut self) -> [&mut Matrix; 7] {
        [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.w_gate,
            &mut self.w_up,
            &mut self.w_down,
        ]
    }
}

/// Every tensor of a model and the description of each step of its forward pass.
#[derive(Clone, Debug)]
pub struct ModelTensors {
    /// Token embedding, `(vocab, dim)`.
    pub token_embd: TensorRef,
    /// Factor on embedding rows (Gemma: `sqrt(dim)`; 1 otherwise).
    pub embd_scale: f32,
    /// Transformer blocks.
    pub layers: Vec<LayerTensors>,
    /// Final RMSNorm weight, `(dim)`.
    pub output_norm: Vec<f32>,
    /// Output head, `(vocab, dim)`; the embedding itself when the file ties them.
    pub output: Matrix,
    /// Whether `output` is the tied embedding.
    pub tied_output: bool,
    /// Final logit soft-capping: `logits = cap · tanh(logits / cap)`.
    pub logit_softcap: Option<f32>,
    /// The rotations layers use (see [`LayerTensors::rope`]).
    pub ropes: Vec<Rope>,
}

impl ModelTensors {
    /// Weight bytes one decoded token reads: every layer matrix, the output head and one
    /// embedding row (norm vectors are negligible and excluded).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .flat_map(|l| l.matrices())
            .map(|m| m.t.len as u64)
            .sum();
        layers + self.output.t.len as u64 + self.token_embd.row_bytes() as u64
    }

    /// Of [`ModelTensors::weight_bytes_per_token`], the GGUF bytes of the matrices delegated
    /// to an accelerator ([`Repr::Delegated`]): the part of a token's weight traffic that
    /// leaves the CPU (the accelerator's own layout may be a little larger or smaller).
    pub fn delegated_bytes_per_token(&self) -> u64 {
        self.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&self.output])
            .filter(|m| matches!(m.repr(), Repr::Delegated(_)))
            .map(|m| m.t.len as u64)
            .sum()
    }

    /// Every matrix of the forward pass (layers, then the output head), to set their
    /// representations at load.
    pub(crate) fn matrices_mut(&mut self) -> impl Iterator<Item = &mut Matrix> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.matrices_mut())
            .chain(core::iter::once(&mut self.output))
    }

    /// Heap bytes of the representations built at load (ternary lookup-table tiles, repacked
    /// `tern_kernels::scalar::has_repacked` formats).
    pub fn repacked_bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&self.output])
            .map(Matrix::heap_bytes)
            .sum()
    }

    /// Each layer's sliding window (`None`: full attention), in layer order.
    pub fn windows(&self) -> Vec<Option<usize>> {
        self.layers.iter().map(|l| l.window).collect()
    }
}

/// Reads a model's tensors from its GGUF header and bytes, checking each against the shape the
/// hyperparameters imply, and remembers which it read so that [`TensorLoader::finish`] can
/// refuse a file with tensors the architecture would silently ignore.
pub struct TensorLoader<'g, 'a> {
    g: &'g Gguf<'a>,
    source: &'g dyn WeightSource,
    kernels: &'g Kernels,
    used: BTreeSet<String>,
}

impl<'g, 'a> TensorLoader<'g, 'a> {
    /// A loader over `g`, the header of `source`, decoding vectors with `kernels`.
    pub fn new(g: &'g Gguf<'a>, source: &'g dyn WeightSource, kernels: &'g Kernels) -> Self {
        TensorLoader {
            g,
            source,
            kernels,
            used: BTreeSet::new(),
        }
    }

    /// The GGUF header (hyperparameter keys).
    pub fn gguf(&self) -> &'g Gguf<'a> {
        self.g
    }

    /// Whether the file has a tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.g.tensor(name).is_some()
    }

    /// The `(rows, cols)` matrix `name`, with its `<base>.scale` tensor (BitNet) folded into
    /// its scale.
    pub fn matrix(&mut self, name: &str, cols: usize, rows: usize) -> Result<TensorRef, LoadError> {
        let mut t = matrix_ref(self.g, self.source, name, cols, rows)?;
        self.used.insert(String::from(name));
        let scale_name = format!("{}.scale", name.strip_suffix(".weight").unwrap_or(name));
        if self.has(&scale_name) {
            t.scale *= self.vector(&scale_name, 1)?[0];
        }
        Ok(t)
    }

    /// The matrix `name` of `cols` columns stacked from parts of `rows[i]` rows each (a fused
    /// tensor such as Phi-3's `attn_qkv`), as one [`TensorRef`] per part: rows of a GGUF
    /// matrix are contiguous, so a part is a range of its bytes and nothing is copied.
    pub fn split_rows<const N: usize>(
        &mut self,
        name: &str,
        cols: usize,
        rows: [usize; N],
    ) -> Result<[TensorRef; N], LoadError> {
        let whole = self.matrix(name, cols, rows.iter().sum())?;
        let rb = whole.row_bytes();
        let mut first = 0;
        Ok(rows.map(|r| {
            let part = TensorRef {
                rows: r,
                offset: whole.offset + first * rb,
                len: r * rb,
                ..whole
            };
            first += r;
            part
        }))
    }

    /// The vector `name` of `len` values, decoded to f32.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let t = matrix_ref(self.g, self.source, name, len, 1)?;
        self.used.insert(String::from(name));
        let mut bytes = vec![0u8; t.len];
        self.source
            .read_at(t.offset as u64, &mut bytes)
            .map_err(|e| LoadError::Io {
                path: format!("tensor '{name}'"),
                message: e.to_string(),
            })?;
        let mut out = vec![0.0; len];
        self.kernels.dequant(t.format, &bytes, &mut out);
        Ok(out)
    }

    /// The vector `name` if the file has it.
    pub fn optional_vector(
        &mut self,
        name: &str,
        len: usize,
    ) -> Result<Option<Vec<f32>>, LoadError> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    /// One more than the highest `N` among tensor names `blk.N.*` (0 when there are none): the
    /// layers the file holds, to check against `block_count`.
    pub fn layers_present(&self) -> usize {
        self.g
            .tensors()
            .iter()
            .filter_map(|t| {
                let rest = t.name.strip_prefix("blk.")?;
                let (n, _) = rest.split_once('.')?;
                n.parse::<usize>().ok()
            })
            .max()
            .map_or(0, |n| n.saturating_add(1))
    }

    /// Checks that every tensor of the file was read: a tensor the architecture does not use
    /// means the file is of another variant, and running it without would give wrong output.
    pub fn finish(self) -> Result<(), LoadError> {
        let unused: Vec<String> = self
            .g
            .tensors()
            .iter()
            .map(|t| t.name)
            .filter(|n| !self.used.contains(*n))
            .map(String::from)
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(LoadError::UnusedTensors { names: unused })
        }
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
