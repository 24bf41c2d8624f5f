//! Delegates: matrices handed at load to an accelerator (an NPU through a vendor runtime, Core
//! ML, ...), whose products then run there while the rest of the forward pass stays on the CPU.
//!
//! The CPU is the reference and the default: a model has no delegate unless the caller gives
//! one ([`crate::Model::set_delegate`]). A delegate is offered every projection of every layer
//! (Q, K, V, O, FFN gate, up, down) with its GGUF bytes, and accepts or declines each by format
//! and shape, saying why when it declines. What it accepts becomes
//! [`Repr::Delegated`](crate::weights::Repr::Delegated): the forward pass keeps calling the one
//! product of `crate::matrix`, which hands the activations to the [`DelegatedMatrix`] and
//! applies around it what the runtime owns (BitNet's int8 rounding of activations and the
//! per-tensor weight scale), so a delegate only ever computes `x · Wᵀ` for the weights
//! `tern_kernels::Kernels::dequant` decodes from the offered bytes.
//!
//! A delegate may also take a layer's whole gated feed-forward block ([`FfnOffer`]: gate, up,
//! activation, product, BitNet's sub-norm and int8 rounding, down) as one call per layer
//! ([`DelegatedFfn`]): an accelerator pays a fixed cost per call, and three products per layer
//! are three calls. The block is offered first; when the delegate declines it, its three
//! matrices are offered one by one as before. The runtime keeps the FFN's pre-norm, the
//! residual add and any post-norm, and rounds the block's input to int8 when the matrices take
//! int8 activations; everything between is the delegate's, tensor scales included.
//!
//! The output head is offered too ([`Projection::Output`]), as one more matrix.
//!
//! The decisions are kept on the model ([`crate::Model::delegate_decisions`]) so a report
//! (`tern inspect --delegate ...`) can list what was taken and why the rest stays.
//!
//! The interface is two object-safe traits and no types of any vendor: a delegate crate
//! (`tern-delegate-qnn`, std) implements them outside this no_std crate.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use tern_kernels::Format;

use crate::weights::{FfnActivation, TensorRef};

/// Which projection of a layer a matrix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Projection {
    /// Query projection `wq`.
    Q,
    /// Key projection `wk`.
    K,
    /// Value projection `wv`.
    V,
    /// Attention output projection `wo`.
    O,
    /// FFN gate projection.
    Gate,
    /// FFN up projection.
    Up,
    /// FFN down projection.
    Down,
    /// A layer's whole gated FFN block (gate, up, activation, down) as one delegated call
    /// ([`FfnOffer`]); not a matrix, and not in [`Projection::ALL`].
    FfnBlock,
    /// The output head (`output.weight`, or the token embedding when the file ties them); not
    /// in [`Projection::ALL`], offered once after the layers with `layer` = the layer count.
    Output,
}

impl Projection {
    /// In the order of `LayerTensors::matrices`.
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// The GGUF tensor stem (`attn_q`, ..., `ffn_down`; `ffn` for the block, `output`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Projection::Q => "attn_q",
            Projection::K => "attn_k",
            Projection::V => "attn_v",
            Projection::O => "attn_output",
            Projection::Gate => "ffn_gate",
            Projection::Up => "ffn_up",
            Projection::Down => "ffn_down",
            Projection::FfnBlock => "ffn",
            Projection::Output => "output",
        }
    }

    /// Whether it belongs to the feed-forward block (gate, up, down, or the block itself).
    pub fn is_ffn(self) -> bool {
        matches!(
            self,
            Projection::Gate | Projection::Up | Projection::Down | Projection::FfnBlock
        )
    }
}

/// A matrix offered to a delegate at load.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// Layer index.
    pub layer: usize,
    /// Which projection of the layer.
    pub projection: Projection,
    /// Format and shape (`rows` outputs of `cols` inputs). `t.scale` is applied by the
    /// runtime after the delegate's product: the delegate must not apply it.
    pub t: TensorRef,
    /// The matrix's GGUF bytes, `rows · row_bytes` (for I2_S: the packed codes without the
    /// scale trailer). Borrowed for the call only: a delegate copies what it keeps.
    pub bytes: &'a [u8],
}

/// A delegate: prepares the matrices it can run, declines the others.
pub trait Delegate {
    /// Short name for reports (`"qnn"`).
    fn name(&self) -> &str;

    /// Prepares `offer` to run on the accelerator, or says why it stays on the CPU.
    ///
    /// Called once per matrix at load, in layer order and `Projection::ALL` order within a
    /// layer; a delegate may prepare lazily but must decline here whatever it cannot run.
    fn offer(&self, offer: &Offer<'_>) -> Result<Box<dyn DelegatedMatrix>, Declined>;

    /// Prepares a layer's whole gated FFN block, or says why not (its matrices are then offered
    /// one by one). Called once per layer at load, before that layer's matrices. The default
    /// declines: a delegate of single matrices needs nothing more.
    fn offer_ffn(&self, offer: &FfnOffer<'_>) -> Result<Box<dyn DelegatedFfn>, Declined> {
        let _ = offer;
        Err(Declined {
            reason: "no FFN block graphs".into(),
        })
    }
}

/// A layer's gated feed-forward block offered whole to a delegate:
///
/// ```text
/// g = (x · W_gateᵀ) · gate.t.scale          u = (x · W_upᵀ) · up.t.scale
/// h = activation(g) · u
/// h = rmsnorm(h, sub_norm, norm_eps)          if sub_norm (BitNet)
/// h = absmax_int8_roundtrip(h), per token     if int8_activations (BitNet)
/// y = (h · W_downᵀ) · down.t.scale
/// ```
///
/// Unlike a single matrix's product, the block applies the tensor scales itself.
/// `absmax_int8_roundtrip` is `tern_kernels::scalar`'s: per token, `s = 127 / max|h|`, each
/// value `round_half_away(h·s)` clamped to `[−128, 127]` and multiplied by `max|h| / 127` (an
/// all-zero row stays zero), where `round_half_away(v)` truncates `|v| + 0.5` (rounded to f32)
/// toward zero and restores the sign. A delegate that cannot compute this rounding must
/// decline the block.
#[derive(Clone, Copy, Debug)]
pub struct FfnOffer<'a> {
    /// Layer index.
    pub layer: usize,
    /// Gate projection, `(ffn_dim, dim)`.
    pub gate: Offer<'a>,
    /// Up projection, `(ffn_dim, dim)`.
    pub up: Offer<'a>,
    /// Down projection, `(dim, ffn_dim)`.
    pub down: Offer<'a>,
    /// The gate's nonlinearity.
    pub activation: FfnActivation,
    /// RMSNorm weight of `h` before the down projection, `(ffn_dim)` (BitNet's `ffn_sub_norm`).
    pub sub_norm: Option<&'a [f32]>,
    /// The model's RMSNorm epsilon.
    pub norm_eps: f32,
    /// Whether the matrices take per-token absmax int8 activations (BitNet b1.58): the runtime
    /// rounds the block's input, the block must round `h`.
    pub int8_activations: bool,
}

/// A layer's FFN block prepared by a delegate ([`FfnOffer`]).
pub trait DelegatedFfn: Send + Sync + fmt::Debug {
    /// Replaces `x (n, dim)`, the normed input of the block (rounded to int8 already when the
    /// offer said `int8_activations`), by the block's output `y (n, dim)`.
    fn run(&self, x: &mut [f32], n: usize) -> Result<(), DelegateError>;
}

/// Why a delegate did not take a matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declined {
    /// In words, for reports (`"Q4_1: float minimums have no zero point"`).
    pub reason: String,
}

/// A matrix prepared by a delegate.
pub trait DelegatedMatrix: Send + Sync + fmt::Debug {
    /// `y (n, rows) = x (n, cols) · Wᵀ`, where `W` is what `Kernels::dequant` decodes from the
    /// offered bytes (without the tensor's scale). `x` holds at least `n · cols` values and
    /// `y` at least `n · rows`.
    fn multiply(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), DelegateError>;
}

/// Why a delegated product failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelegateError {
    /// The accelerator's runtime refused or failed the product.
    Backend {
        /// What the runtime reported.
        message: String,
    },
    /// The product returned a result of another shape than the matrix's.
    Shape {
        /// Values expected.
        expected: usize,
        /// Values returned.
        found: usize,
    },
}

impl fmt::Display for DelegateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelegateError::Backend { message } => write!(f, "delegate failed: {message}"),
            DelegateError::Shape { expected, found } => write!(
                f,
                "delegate returned {found} values where {expected} were expected"
            ),
        }
    }
}

impl core::error::Error for DelegateError {}

/// What the delegate decided for one matrix, kept on the model for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Layer index.
    pub layer: usize,
    /// Which projection.
    pub projection: Projection,
    /// Storage format.
    pub format: Format,
    /// Rows (outputs).
    pub rows: usize,
    /// Columns (inputs).
    pub cols: usize,
    /// `Ok(())` when the delegate took it, the reason it stays on the CPU otherwise (for
    /// [`Projection::FfnBlock`]: the reason its matrices were offered one by one).
    pub outcome: Result<(), Declined>,
    /// Whether the matrix runs inside its layer's delegated FFN block
    /// ([`Projection::FfnBlock`] taken) rather than as a product of its own.
    pub in_block: bool,
}

impl Decision {
    /// Whether the delegate took the matrix.
    pub fn taken(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for Decision {
    /// One line for `tern inspect`: `blk.3.ffn_gate TQ2_0 512×256: delegated`,
    /// `blk.0.attn_q Q4_1 576×576: CPU (Q4_1: float minimums ...)`, `blk.1.ffn block TQ2_0
    /// 512×256: delegated` (then `blk.1.ffn_up ...: delegated in the FFN block`), `blk.1.ffn
    /// block ...: per matrix (reason)`, `output TQ2_0 1000×256: delegated`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.projection {
            Projection::Output => write!(f, "output")?,
            Projection::FfnBlock => write!(f, "blk.{}.ffn block", self.layer)?,
            p => write!(f, "blk.{}.{}", self.layer, p.gguf_name())?,
        }
        write!(f, " {} {}×{}: ", self.format.name(), self.rows, self.cols)?;
        match (&self.outcome, self.projection) {
            (Ok(()), _) if self.in_block => write!(f, "delegated in the FFN block"),
            (Ok(()), _) => write!(f, "delegated"),
            (Err(d), Projection::FfnBlock) => write!(f, "per matrix ({})", d.reason),
            (Err(d), _) => write!(f, "CPU ({})", d.reason),
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    //! A delegate in plain Rust (the scalar dequantizer and an f64 product) on the small
    //! BitNet models of `tests/reference/make_bitnet_models.py` (skipped when absent): what it
    //! is offered, what the decisions say, that the runtime rounds BitNet's activations and
    //! applies the tensor scale around it, and that its errors reach the caller.

    extern crate std;

    use alloc::sync::Arc;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use tern_kernels::Kernels;

    use super::*;
    use crate::model::Model;
    use crate::ternary::TernaryKernel;
    use crate::weights::Repr;
    use crate::{ActivationPrecision, GenerateError, Session, SessionOptions};

    /// Takes the FFN matrices of one format (as whole blocks when `block`); `fail` makes every
    /// product fail.
    struct Reference {
        format: Format,
        fail: bool,
        block: bool,
        /// A step of the block to leave out (`"int8"`, `"sub_norm"`), to show it matters.
        skip: &'static str,
        offered: Mutex<Vec<(usize, Projection)>>,
    }

    impl Reference {
        fn new(format: Format, fail: bool, block: bool) -> Self {
            Reference {
                format,
                fail,
                block,
                skip: "",
                offered: Mutex::new(Vec::new()),
            }
        }
    }

    /// The FFN block of [`FfnOffer`]'s definition in plain Rust: products in f64 on the scalar
    /// dequantizer's weights, the activation and the norm from `tern_kernels::scalar`.
    #[derive(Debug)]
    struct RefBlock {
        gate: RefMatrix,
        up: RefMatrix,
        down: RefMatrix,
        scales: [f32; 3],
        activation: FfnActivation,
        sub_norm: Option<Vec<f32>>,
        eps: f32,
        int8: bool,
    }

    impl DelegatedFfn for RefBlock {
        fn run(&self, x: &mut [f32], n: usize) -> Result<(), DelegateError> {
            let f = self.gate.rows;
            let (mut g, mut u) = (vec![0.0; n * f], vec![0.0; n * f]);
            self.gate.multiply(x, n, &mut g)?;
            self.up.multiply(x, n, &mut u)?;
            g.iter_mut().for_each(|v| *v *= self.scales[0]);
            u.iter_mut().for_each(|v| *v *= self.scales[1]);
            match self.activation {
                FfnActivation::Silu => tern_kernels::scalar::swiglu(&mut g, &u),
                FfnActivation::GeluTanh => tern_kernels::scalar::gelu_tanh_glu(&mut g, &u),
                FfnActivation::ReluSquared => tern_kernels::scalar::relu_squared_glu(&mut g, &u),
            }
            for h in g.chunks_exact_mut(f) {
                if let Some(w) = &self.sub_norm {
                    tern_kernels::scalar::rmsnorm_in_place(h, w, self.eps);
                }
                if self.int8 {
                    tern_kernels::scalar::absmax_int8_roundtrip(h);
                }
            }
            self.down.multiply(&g, n, x)?;
            x[..n * self.down.rows]
                .iter_mut()
                .for_each(|v| *v *= self.scales[2]);
            Ok(())
        }
    }

    impl Reference {
        fn matrix(&self, o: &Offer<'_>) -> RefMatrix {
            let mut w = vec![0.0; o.t.rows * o.t.cols];
            Kernels::scalar().dequant(o.t.format, o.bytes, &mut w);
            RefMatrix {
                w,
                rows: o.t.rows,
                cols: o.t.cols,
                fail: self.fail,
            }
        }
    }

    #[derive(Debug)]
    struct RefMatrix {
        w: Vec<f32>,
        rows: usize,
        cols: usize,
        fail: bool,
    }

    impl Delegate for Reference {
        fn name(&self) -> &str {
            "reference"
        }

        fn offer(&self, o: &Offer<'_>) -> Result<Box<dyn DelegatedMatrix>, Declined> {
            self.offered.lock().unwrap().push((o.layer, o.projection));
            if !o.projection.is_ffn() {
                return Err(Declined {
                    reason: "attention stays on the CPU".into(),
                });
            }
            if o.t.format != self.format {
                return Err(Declined {
                    reason: alloc::format!("{} is not taken", o.t.format.name()),
                });
            }
            Ok(Box::new(self.matrix(o)))
        }

        fn offer_ffn(&self, o: &FfnOffer<'_>) -> Result<Box<dyn DelegatedFfn>, Declined> {
            self.offered
                .lock()
                .unwrap()
                .push((o.layer, Projection::FfnBlock));
            if !self.block || o.gate.t.format != self.format {
                return Err(Declined {
                    reason: "no blocks".into(),
                });
            }
            Ok(Box::new(RefBlock {
                gate: self.matrix(&o.gate),
                up: self.matrix(&o.up),
                down: self.matrix(&o.down),
                scales: [o.gate.t.scale, o.up.t.scale, o.down.t.scale],
                activation: o.activation,
                sub_norm: o
                    .sub_norm
                    .filter(|_| self.skip != "sub_norm")
                    .map(<[f32]>::to_vec),
                eps: o.norm_eps,
                int8: o.int8_activations && self.skip != "int8",
            }))
        }
    }

    impl DelegatedMatrix for RefMatrix {
        fn multiply(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), DelegateError> {
            if self.fail {
                return Err(DelegateError::Backend {
                    message: "refused".into(),
                });
            }
            for t in 0..n {
                let xt = &x[t * self.cols..(t + 1) * self.cols];
                for r in 0..self.rows {
                    let row = &self.w[r * self.cols..(r + 1) * self.cols];
                    let dot: f64 = row.iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum();
                    y[t * self.rows + r] = dot as f32;
                }
            }
            Ok(())
        }
    }

    fn model(name: &str) -> Option<Model> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        if !path.exists() {
            std::eprintln!("skipped: {} is missing", path.display());
            return None;
        }
        let mut m = Model::open(&path, Kernels::best()).expect("model loads");
        m.set_ternary_kernel(TernaryKernel::F32);
        Some(m)
    }

    fn logits(m: Model) -> Result<Vec<Vec<f32>>, GenerateError> {
        let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 500 + 3).collect();
        let mut s = Session::new(
            Arc::new(m),
            &SessionOptions {
                context: 64,
                precision: ActivationPrecision::F32,
                ..Default::default()
            },
        )
        .unwrap();
        let mut out = vec![s.feed(&prompt)?.to_vec()];
        for t in [7u32, 11, 13] {
            out.push(s.feed(&[t])?.to_vec());
        }
        Ok(out)
    }

    /// Every layer's FFN block, then each projection, then the output head is offered once, in
    /// order; the decisions say which were taken and why the others stay; the taken ones are
    /// `Repr::Delegated`.
    #[test]
    fn decisions_list_every_projection_with_reasons() {
        for block in [false, true] {
            let Some(mut m) = model("bitnet_small_tq2_0.gguf") else {
                return;
            };
            let d = Reference::new(Format::TQ2_0, false, block);
            let n_layers = m.config().n_layers;
            let decisions = m.set_delegate(&d).to_vec();
            let want: Vec<(usize, Projection)> = (0..n_layers)
                .flat_map(|l| {
                    let matrices = Projection::ALL
                        .into_iter()
                        .filter(move |p| !(block && p.is_ffn()));
                    core::iter::once(Projection::FfnBlock)
                        .chain(matrices)
                        .map(move |p| (l, p))
                })
                .chain([(n_layers, Projection::Output)])
                .collect();
            assert_eq!(*d.offered.lock().unwrap(), want);
            assert_eq!(decisions.len(), 8 * n_layers + 1);
            for dec in &decisions {
                let taken = match dec.projection {
                    Projection::FfnBlock => block,
                    p => p.is_ffn(),
                };
                assert_eq!(dec.taken(), taken, "{dec}");
                assert_eq!(
                    dec.in_block,
                    block && dec.projection.is_ffn() && dec.projection != Projection::FfnBlock
                );
                match &dec.outcome {
                    Err(e) if dec.projection == Projection::FfnBlock => {
                        assert_eq!(e.reason, "no blocks")
                    }
                    Err(e) => assert_eq!(e.reason, "attention stays on the CPU"),
                    Ok(()) => {}
                }
                let Some(i) = Projection::ALL.iter().position(|p| *p == dec.projection) else {
                    continue;
                };
                let mat = m.tensors().layers[dec.layer].matrices()[i];
                assert_eq!(matches!(mat.repr(), Repr::Delegated(_)), dec.taken());
                assert_eq!(mat.reads_file(), !dec.taken());
            }
            for l in &m.tensors().layers {
                assert_eq!(l.ffn_delegate.is_some(), block);
            }
            assert_eq!(m.delegate_decisions(), &decisions[..]);
            assert_eq!(
                alloc::format!("{}", decisions[1]),
                "blk.0.attn_q TQ2_0 256×256: CPU (attention stays on the CPU)"
            );
            let (block_line, gate_line) = if block {
                (
                    "blk.0.ffn block TQ2_0 512×256: delegated",
                    "blk.0.ffn_gate TQ2_0 512×256: delegated in the FFN block",
                )
            } else {
                (
                    "blk.0.ffn block TQ2_0 512×256: per matrix (no blocks)",
                    "blk.0.ffn_gate TQ2_0 512×256: delegated",
                )
            };
            assert_eq!(alloc::format!("{}", decisions[0]), block_line);
            assert_eq!(alloc::format!("{}", decisions[5]), gate_line);
            assert!(alloc::format!("{}", decisions.last().unwrap()).starts_with("output "));
            // FFN bytes: gate, up (512×256) and down (256×512) TQ2_0, 66 bytes per 256 weights.
            assert_eq!(
                m.tensors().delegated_bytes_per_token(),
                (n_layers * 3 * 512 * 256 / 256 * 66) as u64
            );
            // Offered again: what was delegated is not (and a block declined before now finds
            // its matrices delegated one by one).
            d.offered.lock().unwrap().clear();
            let again = m.set_delegate(&d).to_vec();
            for (a, b) in again.iter().zip(&decisions) {
                if b.projection != Projection::FfnBlock || block {
                    assert_eq!(a, b);
                }
            }
            assert!(d.offered.lock().unwrap().iter().all(|(_, p)| !p.is_ffn()));
            // Choosing the ternary kernel afterwards leaves them delegated.
            m.set_ternary_kernel(TernaryKernel::Mad);
            let delegated = m.tensors().layers[0]
                .matrices()
                .iter()
                .filter(|w| matches!(w.repr(), Repr::Delegated(_)))
                .count();
            assert_eq!(delegated, 3);
        }
    }

    /// Whole-model logits with the FFNs delegated, as matrices and as whole blocks, equal the
    /// CPU's f32 path. A delegated matrix sees the same int8-rounded activations and must not
    /// apply the scale; a block must apply the scales and round `h` itself (the `scaled` model
    /// has per-tensor scales ≠ 1: getting either wrong moves logits by far more than the
    /// bound). The products differ only in summation order (≤ cols·ε·Σ|w·x| each), but one
    /// activation rounding to a neighbouring int8 code downstream moves logits by ~0.1–0.5:
    /// 1.0 is the bound `tests/tests/bitnet_reference.rs` derives for int8 paths.
    #[test]
    fn delegated_ffn_logits_match_the_cpu() {
        for name in ["bitnet_small_tq2_0.gguf", "bitnet_small_scaled_tq2_0.gguf"] {
            let Some(cpu) = model(name) else {
                continue;
            };
            let reference = logits(cpu).unwrap();
            for block in [false, true] {
                let mut m = model(name).unwrap();
                let d = Reference::new(Format::TQ2_0, false, block);
                assert!(m.set_delegate(&d).iter().any(Decision::taken));
                assert_eq!(m.tensors().layers[0].ffn_delegate.is_some(), block);
                let got = logits(m).unwrap();
                for (step, (r, g)) in reference.iter().zip(&got).enumerate() {
                    let worst = r
                        .iter()
                        .zip(g)
                        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
                    std::eprintln!("{name} block {block} step {step}: largest |Δ| {worst:.2e}");
                    assert!(worst <= 1.0, "{name} block {block} step {step}: {worst}");
                }
            }
        }
    }

    /// The block's own steps matter: a block that skips the int8 rounding of `h`, or the
    /// sub-norm, moves the first logits by more than 0.1, where the correct block stays within
    /// 1e-5 of the CPU on this model (the test above prints it): the steps are exercised.
    #[test]
    fn a_block_missing_a_step_is_caught() {
        let Some(cpu) = model("bitnet_small_tq2_0.gguf") else {
            return;
        };
        let reference = logits(cpu).unwrap();
        for skip in ["int8", "sub_norm"] {
            let mut m = model("bitnet_small_tq2_0.gguf").unwrap();
            let d = Reference {
                skip,
                ..Reference::new(Format::TQ2_0, false, true)
            };
            m.set_delegate(&d);
            let got = logits(m).unwrap();
            let worst = reference[0]
                .iter()
                .zip(&got[0])
                .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
            std::eprintln!("without {skip}: largest |Δ| {worst:.2e}");
            assert!(worst > 0.1, "without {skip}: {worst}");
        }
    }

    /// A failing delegate surfaces as `GenerateError::Delegate`, not as wrong logits, for
    /// matrices and for blocks.
    #[test]
    fn delegate_failure_is_a_typed_error() {
        for block in [false, true] {
            let Some(mut m) = model("bitnet_small_tq2_0.gguf") else {
                return;
            };
            m.set_delegate(&Reference::new(Format::TQ2_0, true, block));
            assert_eq!(
                logits(m).unwrap_err(),
                GenerateError::Delegate(DelegateError::Backend {
                    message: "refused".into()
                })
            );
        }
    }
}
