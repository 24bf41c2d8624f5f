//! A loaded model: hyperparameters, its tensors and their representations, the tokenizer and
//! the weight bytes.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::Kernels;

use crate::config::ModelConfig;
use crate::delegate::{
    Decision, Declined, Delegate, DelegateError, DelegatedMatrix, FfnOffer, Offer, Projection,
};
use crate::error::LoadError;
use crate::gguf::{Gguf, GgufError};
use crate::repacked::RepackedMatrix;
use crate::source::WeightSource;
use crate::ternary::{self, LutMatrix, ShapeChoice, TernaryKernel};
use crate::tokenizer::Tokenizer;
use crate::weights::{Matrix, ModelTensors, Repr, TensorLoader};

/// Bytes of a whole GGUF file held in memory: a memory map, a buffer, or flash mapped into the
/// address space.
pub trait WeightBytes: Send + Sync {
    /// The file's bytes.
    fn bytes(&self) -> &[u8];

    /// Tells the memory system that `len` bytes at `offset` are about to be read, or are done
    /// with for now. A hint: the bytes stay readable either way. Buffers ignore it.
    fn advise(&self, _offset: usize, _len: usize, _residency: Residency) {}

    /// Whether [`Residency::DontNeed`] frees the memory of the range (a memory map's pages,
    /// read back from the file when touched again), so that memory estimates may leave the
    /// released bytes out. False by default: buffers ignore the hint.
    fn frees_released(&self) -> bool {
        false
    }

    /// How many of the bytes sit in huge pages, when the holder can tell (a copy in
    /// anonymous memory can: [`crate::fs::CopiedFile`]); `None` otherwise.
    fn huge_page_bytes(&self) -> Option<u64> {
        None
    }
}

/// What [`WeightBytes::advise`] says about a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// Will be read soon: start bringing it into memory.
    WillNeed,
    /// Not needed for a while: the memory may be reclaimed (it is re-read from the file when
    /// touched again).
    DontNeed,
}

impl WeightBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl WeightBytes for &'static [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Descriptive metadata for reports and apps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMeta {
    /// `general.name`, if the file has one.
    pub name: Option<String>,
    /// `tokenizer.chat_template`, if the file has one.
    pub chat_template: Option<String>,
    /// Parameters (weights) in all tensors.
    pub n_params: u64,
    /// Bytes of tensor data.
    pub tensor_bytes: u64,
    /// The most common matrix format, e.g. "Q4_1".
    pub main_format: String,
}

/// A model ready to run. Immutable and shareable: sessions hold it in an
/// [`Arc`].
pub struct Model {
    config: ModelConfig,
    tensors: ModelTensors,
    tokenizer: Tokenizer,
    meta: ModelMeta,
    kernels: Kernels,
    /// FNV-1a of the file length and the GGUF header (everything before the tensor data).
    fingerprint: u64,
    /// The whole file in the address space; `None` for a model streamed from a source.
    weights: Option<Box<dyn WeightBytes>>,
    /// The ternary kernel chosen per matrix shape at load (the matrices hold the result).
    ternary_choices: Vec<ShapeChoice>,
    /// What the delegate decided per layer matrix (empty without one).
    delegate_decisions: Vec<Decision>,
}

impl core::fmt::Debug for Model {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Model {
    /// Loads a model from the bytes of a whole GGUF file, computing with `kernels`.
    ///
    /// Everything is validated here, before the first token: header, hyperparameters, tensor
    /// shapes, formats and byte ranges, and the tokenizer.
    pub fn from_bytes(weights: Box<dyn WeightBytes>, kernels: Kernels) -> Result<Self, LoadError> {
        Self::from_bytes_with_progress(weights, kernels, &mut |_| {})
    }

    /// [`Model::from_bytes`], calling `progress` with the fraction done (0 to 1) as loading
    /// goes (layers validated, tokenizer built).
    pub fn from_bytes_with_progress(
        weights: Box<dyn WeightBytes>,
        kernels: Kernels,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        let file = weights.bytes();
        let mut model = Self::from_header(file, &file, kernels, progress)?;
        model.weights = Some(weights);
        model.set_ternary_kernel(TernaryKernel::Auto);
        Ok(model)
    }

    /// Loads a model whose bytes stay in `source` (flash, a file read with `pread`): reads
    /// only the header and the norm vectors now. Its sessions need a streaming feed
    /// ([`crate::Session::with_feed`]).
    pub fn from_source(source: &dyn WeightSource, kernels: Kernels) -> Result<Self, LoadError> {
        Self::from_source_with_progress(source, kernels, &mut |_| {})
    }

    /// [`Model::from_source`], calling `progress` with the fraction done (0 to 1).
    pub fn from_source_with_progress(
        source: &dyn WeightSource,
        kernels: Kernels,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        // The header's length is unknown until parsed: read a growing prefix until it parses.
        let mut len = (64 * 1024).min(source.len());
        loop {
            let mut prefix = vec![0u8; len as usize];
            source.read_at(0, &mut prefix).map_err(|e| LoadError::Io {
                path: "weight source".into(),
                message: e.to_string(),
            })?;
            match Self::from_header(&prefix, source, kernels.clone(), progress) {
                Err(LoadError::Gguf(GgufError::Truncated { .. })) if len < source.len() => {
                    len = (len * 4).min(source.len());
                }
                other => return other,
            }
        }
    }

    /// Everything but the weight bytes, from a header prefix of `source`.
    fn from_header(
        header: &[u8],
        source: &dyn WeightSource,
        kernels: Kernels,
        progress: &mut dyn FnMut(f32),
    ) -> Result<Self, LoadError> {
        let g = Gguf::parse(header, source.len())?;
        progress(0.05);
        let config = ModelConfig::from_gguf(&g)?;
        let n = config.n_layers as f32;
        let loader = TensorLoader::new(&g, source, &kernels);
        let tensors = crate::arch::describe(&config, loader, &mut |l| {
            progress(0.05 + 0.75 * (l as f32 + 1.0) / n)
        })?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        progress(0.95);
        if tokenizer.vocab_size() != config.vocab {
            return Err(LoadError::BadHyperparameter {
                key: "tokenizer.ggml.tokens".to_string(),
                reason: "has a different length than the embedding has rows",
            });
        }
        let meta = meta_from_gguf(&g)?;
        let header_len =
            usize::try_from(g.data_offset).map_or(header.len(), |n| n.min(header.len()));
        let fingerprint = fnv1a(&[&source.len().to_le_bytes(), &header[..header_len]]);
        progress(1.0);
        let mut model = Model {
            config,
            tensors,
            tokenizer,
            meta,
            kernels,
            fingerprint,
            weights: None,
            ternary_choices: Vec::new(),
            delegate_decisions: Vec::new(),
        };
        // Without the bytes at hand: the integer kernels on the file's bytes (MAD).
        model.set_ternary_kernel(TernaryKernel::Auto);
        Ok(model)
    }

    /// Hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Where each tensor is.
    pub fn tensors(&self) -> &ModelTensors {
        &self.tensors
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Descriptive metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The kernels this model computes with.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Chooses the representation of the ternary matrices ([`Repr`]): the kernel of their
    /// products with int8 activations, repacking weights for [`TernaryKernel::Lut`];
    /// [`TernaryKernel::Auto`], the default at load, times both per shape. Only models whose
    /// whole file is in the address space are timed and repacked; streamed ones take MAD
    /// (or the f32 path for [`TernaryKernel::F32`]).
    pub fn set_ternary_kernel(&mut self, kernel: TernaryKernel) {
        self.ternary_choices = represent_ternary(
            &mut self.tensors,
            self.weights.as_deref(),
            &self.kernels,
            kernel,
        );
    }

    /// Repacks the matrices in a repacked format (Q4_0, Q4_1, Q8_0, IQ4_NL, Q5_0, Q5_1, IQ4_XS:
    /// `tern_kernels::scalar::has_repacked`) into row-interleaved block groups
    /// ([`Repr::Repacked`], counted in [`ModelTensors::repacked_bytes`]) for sessions with
    /// int8 activations, whose prompts and decoding then run on them (`crate::repacked` has
    /// the measurements); returns the bytes repacked. Only when the kernels have
    /// `gemm_repacked` and the whole file is in the address space; matrices in another
    /// representation and with BitNet's own int8 activations stay as they are. Their file bytes
    /// are released ([`Residency::DontNeed`]): f32 products still read them, at the cost of
    /// faulting them in. A tied output head is repacked too: decoding streams it whole every
    /// token (Gemma 3 270M's 262144 × 640 Q8_0 head is two thirds of its bytes per token, and
    /// the repacked product reads it about 1.5× faster than the GGUF rows' `gemm_q8`), while
    /// the embedding reads one row of its file bytes per token, faulted back in when released.
    ///
    /// The file bytes are released slice by slice as they are copied
    /// ([`REPACK_SLICE_BYTES`]), so on a memory map the load's peak is the repacked copy plus
    /// one slice, not a matrix twice ([`crate::budget::SessionMemory`] counts it so).
    pub fn repack_int8(&mut self) -> usize {
        let Some(bytes) = self.weights.as_deref() else {
            return 0;
        };
        let file = bytes.bytes();
        let ModelTensors { layers, output, .. } = &mut self.tensors;
        let mut mats: Vec<&mut Matrix> = layers.iter_mut().flat_map(|l| l.matrices_mut()).collect();
        mats.push(output);
        let mut total = 0;
        for m in mats {
            if repack_int8_bytes(m, &self.kernels).is_none() {
                continue;
            }
            let offset = m.t.offset;
            let mut release = |r: core::ops::Range<usize>| {
                bytes.advise(offset + r.start, r.len(), Residency::DontNeed)
            };
            let view = m.t.view(file);
            if let Some(r) = RepackedMatrix::repack_releasing(
                view,
                &self.kernels,
                REPACK_SLICE_BYTES,
                &mut release,
            ) {
                total += r.heap_bytes();
                m.set_repr(Repr::Repacked(r));
            }
        }
        total
    }

    /// What [`Model::repack_int8`] would repack now: the heap bytes of the copies and the file
    /// bytes it would release, over the same matrices by the same rule (0 and 0 for a streamed
    /// model, or once done).
    pub fn repack_int8_pending(&self) -> (usize, usize) {
        if self.weights.is_none() {
            return (0, 0);
        }
        let t = &self.tensors;
        t.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&t.output])
            .filter_map(|m| Some((repack_int8_bytes(m, &self.kernels)?, m.t.len)))
            .fold((0, 0), |(h, f), (a, b)| (h + a, f + b))
    }

    /// The ternary kernel chosen per distinct ternary matrix shape at load (empty for a
    /// streamed model, which was not timed). What was repacked:
    /// [`ModelTensors::repacked_bytes`] and each [`Matrix::repr`].
    pub fn ternary_choices(&self) -> &[ShapeChoice] {
        &self.ternary_choices
    }

    /// Offers every layer projection and the output head to `delegate` (`crate::delegate`):
    /// those it takes become [`Repr::Delegated`] and their file bytes are released (but the
    /// tied embedding's, whose rows are still read); the rest keep the representation loading
    /// chose. Each layer's FFN block is offered whole first ([`FfnOffer`]) when its matrices
    /// agree on int8 activations; taken, it runs instead of its three products
    /// ([`LayerTensors::ffn_delegate`](crate::weights::LayerTensors::ffn_delegate)); declined,
    /// its matrices are offered one by one. Returns the decisions (per layer: the FFN block,
    /// then the seven matrices; then the output head), also kept for
    /// [`Model::delegate_decisions`]. A streamed model's weights are not in memory to hand
    /// over: everything is declined. What was delegated earlier is not offered again (and is
    /// listed as taken).
    ///
    /// The CPU is the default: a model has no delegate unless this is called, after
    /// [`Model::set_ternary_kernel`] if that is called at all (which leaves delegated matrices
    /// alone).
    pub fn set_delegate(&mut self, delegate: &dyn Delegate) -> &[Decision] {
        let bytes = self.weights.as_deref();
        let eps = self.config.norm_eps;
        let streamed = || Declined {
            reason: "streamed model: its weights are not in memory".into(),
        };
        let mut decisions = Vec::new();
        let n_layers = self.tensors.layers.len();
        for (layer, l) in self.tensors.layers.iter_mut().enumerate() {
            // The FFN block whole, when its matrices are all still on the CPU.
            let ffn = [&l.w_gate, &l.w_up, &l.w_down];
            let int8 = l.w_gate.int8_activations;
            let on_cpu = ffn.iter().all(|m| !matches!(m.repr(), Repr::Delegated(_)));
            let outcome = match bytes {
                _ if l.ffn_delegate.is_some() => Ok(()),
                _ if !on_cpu => Err(Declined {
                    reason: "its matrices were delegated one by one earlier".into(),
                }),
                _ if ffn.iter().any(|m| m.int8_activations != int8) => Err(Declined {
                    reason: "gate, up and down differ in int8 activations".into(),
                }),
                None => Err(streamed()),
                Some(b) => {
                    let offer = |p, m: &Matrix| Offer {
                        layer,
                        projection: p,
                        t: m.t,
                        bytes: &b.bytes()[m.t.offset..m.t.offset + m.t.len],
                    };
                    delegate
                        .offer_ffn(&FfnOffer {
                            layer,
                            gate: offer(Projection::Gate, &l.w_gate),
                            up: offer(Projection::Up, &l.w_up),
                            down: offer(Projection::Down, &l.w_down),
                            activation: l.activation,
                            sub_norm: l.ffn_sub_norm.as_deref(),
                            norm_eps: eps,
                            int8_activations: int8,
                        })
                        .map(|d| {
                            l.ffn_delegate = Some(d.into());
                            for m in [&mut l.w_gate, &mut l.w_up, &mut l.w_down] {
                                m.set_repr(Repr::Delegated(Arc::new(InFfnBlock)));
                                b.advise(m.t.offset, m.t.len, Residency::DontNeed);
                            }
                        })
                }
            };
            decisions.push(Decision {
                layer,
                projection: Projection::FfnBlock,
                format: l.w_gate.t.format,
                rows: l.w_gate.t.rows,
                cols: l.w_gate.t.cols,
                outcome,
                in_block: false,
            });
            let in_block = l.ffn_delegate.is_some();
            for (projection, m) in Projection::ALL.into_iter().zip(l.matrices_mut()) {
                let outcome = offer_matrix(delegate, bytes, layer, projection, m, true);
                decisions.push(Decision {
                    layer,
                    projection,
                    format: m.t.format,
                    rows: m.t.rows,
                    cols: m.t.cols,
                    outcome,
                    in_block: in_block && projection.is_ffn(),
                });
            }
        }
        // The output head; a tied one is the embedding, whose rows stay in use.
        let release = !self.tensors.tied_output;
        let m = &mut self.tensors.output;
        let outcome = offer_matrix(delegate, bytes, n_layers, Projection::Output, m, release);
        decisions.push(Decision {
            layer: n_layers,
            projection: Projection::Output,
            format: m.t.format,
            rows: m.t.rows,
            cols: m.t.cols,
            outcome,
            in_block: false,
        });
        self.delegate_decisions = decisions;
        &self.delegate_decisions
    }

    /// What the delegate decided at the last [`Model::set_delegate`] (empty without a
    /// delegate), in its order.
    pub fn delegate_decisions(&self) -> &[Decision] {
        &self.delegate_decisions
    }

    /// The whole file in the address space, unless the model is streamed from a source.
    pub fn weight_bytes(&self) -> Option<&dyn WeightBytes> {
        self.weights.as_deref()
    }

    /// A fingerprint of the file's header and length: two files with the same
    /// hyperparameters, vocabulary and tensor layout share it; any change to those changes it.
    /// (Weights are not hashed: reading them all would cost a second.)
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Bytes of the largest row of any matrix: the smallest arena a streaming feed can use.
    pub fn min_stream_arena(&self) -> usize {
        let t = &self.tensors;
        t.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&t.output])
            .map(|m| &m.t)
            .chain([&t.token_embd])
            .map(|m| m.row_bytes())
            .max()
            .unwrap_or(0)
    }
}

/// Offers one matrix to `delegate` unless it is delegated already (then `Ok`); taken, it
/// becomes [`Repr::Delegated`] and, with `release`, its file bytes are released.
fn offer_matrix(
    delegate: &dyn Delegate,
    bytes: Option<&dyn WeightBytes>,
    layer: usize,
    projection: Projection,
    m: &mut Matrix,
    release: bool,
) -> Result<(), Declined> {
    let t = m.t;
    match bytes {
        _ if matches!(m.repr(), Repr::Delegated(_)) => Ok(()),
        None => Err(Declined {
            reason: "streamed model: its weights are not in memory".into(),
        }),
        Some(b) => delegate
            .offer(&Offer {
                layer,
                projection,
                t,
                bytes: &b.bytes()[t.offset..t.offset + t.len],
            })
            .map(|d| {
                m.set_repr(Repr::Delegated(d.into()));
                if release {
                    // The accelerator holds its own copy from now on.
                    b.advise(t.offset, t.len, Residency::DontNeed);
                }
            }),
    }
}

/// The representation of a matrix inside a delegated FFN block: the forward pass runs the
/// block ([`crate::delegate::DelegatedFfn`]) and never multiplies the matrix alone.
#[derive(Debug)]
struct InFfnBlock;

impl DelegatedMatrix for InFfnBlock {
    fn multiply(&self, _: &[f32], _: usize, _: &mut [f32]) -> Result<(), DelegateError> {
        Err(DelegateError::Backend {
            message: "this matrix runs only inside its layer's delegated FFN block".into(),
        })
    }
}

/// Source bytes [`Model::repack_int8`] copies between two releases of file pages: small
/// beside a model, large enough that the `madvise` calls cost nothing.
pub const REPACK_SLICE_BYTES: usize = 4 << 20;

/// The heap bytes [`Model::repack_int8`] gives `m`'s repacked copy, or `None` where it leaves
/// `m` as it is (another representation, BitNet's own int8 activations, a format or kernel
/// set without the repacked layout).
fn repack_int8_bytes(m: &Matrix, k: &Kernels) -> Option<usize> {
    if !matches!(m.repr(), Repr::Gguf) || m.int8_activations {
        return None;
    }
    RepackedMatrix::bytes_for(&m.t, k)
}

/// Sets the representation of every matrix of `tensors` for the ternary kernel `want` and
/// returns the choice per distinct ternary shape.
///
/// Ternary matrices with the integer path (`ternary::has_integer_path`) take
/// [`Repr::TernaryMad`], or [`Repr::Gguf`] for [`TernaryKernel::F32`]. With the file's bytes
/// at hand, [`TernaryKernel::Auto`] times MAD against LUT on the first matrix of each shape,
/// and the shapes that chose LUT are repacked into [`Repr::TernaryLut`] (their file bytes are
/// then released: [`Residency::DontNeed`]); a matrix with a code LUT cannot index stays MAD.
/// A tied output head is the embedding, whose rows are still read: never repacked.
fn represent_ternary(
    tensors: &mut ModelTensors,
    bytes: Option<&dyn WeightBytes>,
    k: &Kernels,
    want: TernaryKernel,
) -> Vec<ShapeChoice> {
    let integer = |m: &Matrix| {
        want != TernaryKernel::F32 && ternary::has_integer_path(k, m.t.format, m.t.cols)
    };
    for m in tensors
        .matrices_mut()
        .filter(|m| !matches!(m.repr(), Repr::Delegated(_)))
    {
        let repr = if integer(m) {
            Repr::TernaryMad
        } else {
            Repr::Gguf
        };
        m.set_repr(repr);
    }
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    let file = bytes.bytes();
    let tied = tensors.tied_output;
    let ModelTensors { layers, output, .. } = tensors;
    let mut mats: Vec<&mut Matrix> = layers
        .iter_mut()
        .flat_map(|l| l.matrices_mut())
        .filter(|m| m.t.format.is_ternary() && !matches!(m.repr(), Repr::Delegated(_)))
        .collect();
    if output.t.format.is_ternary() && !tied {
        mats.push(output);
    }
    let mut choices: Vec<ShapeChoice> = Vec::new();
    let shape = |m: &Matrix| (m.t.format, m.t.rows, m.t.cols);
    for m in &mats {
        if choices
            .iter()
            .any(|c| (c.format, c.rows, c.cols) == shape(m))
        {
            continue;
        }
        let (kernel, timed) = match want {
            TernaryKernel::Auto if integer(m) => ternary::choose(m.t.view(file).into(), k),
            TernaryKernel::Auto => (TernaryKernel::F32, None),
            other => (other, None),
        };
        choices.push(ShapeChoice {
            format: m.t.format,
            rows: m.t.rows,
            cols: m.t.cols,
            kernel,
            timed,
        });
    }
    for m in mats {
        let lut = choices
            .iter()
            .any(|c| (c.format, c.rows, c.cols) == shape(m) && c.kernel == TernaryKernel::Lut);
        if lut && integer(m) {
            if let Some(tiles) = LutMatrix::repack(m.t.view(file).into(), k) {
                m.set_repr(Repr::TernaryLut(tiles));
                // The GGUF bytes of a repacked matrix are not read again.
                bytes.advise(m.t.offset, m.t.len, Residency::DontNeed);
            }
        }
    }
    choices
}

/// 64-bit FNV-1a over the concatenated `parts`.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn meta_from_gguf(g: &Gguf<'_>) -> Result<ModelMeta, LoadError> {
    let mut counts: Vec<(tern_kernels::Format, u64)> = Vec::new();
    let (mut n_params, mut tensor_bytes) = (0u64, 0u64);
    for t in g.tensors() {
        n_params = n_params.saturating_add(t.n_elements());
        tensor_bytes = tensor_bytes.saturating_add(t.size);
        if let (Some(f), true) = (t.ggml_type.format(), t.n_dims >= 2) {
            match counts.iter_mut().find(|(g, _)| *g == f) {
                Some((_, n)) => *n += t.n_elements(),
                None => counts.push((f, t.n_elements())),
            }
        }
    }
    let main_format = counts
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or("unknown", |(f, _)| f.name())
        .to_string();
    Ok(ModelMeta {
        name: g.opt_str("general.name")?.map(String::from),
        chat_template: g.opt_str("tokenizer.chat_template")?.map(String::from),
        n_params,
        tensor_bytes,
        main_format,
    })
}
