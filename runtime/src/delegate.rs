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
//! The decisions are kept on the model ([`crate::Model::delegate_decisions`]) so a report
//! (`tern inspect --delegate ...`) can list what was taken and why the rest stays.
//!
//! The interface is two object-safe traits and no types of any vendor: a delegate crate
//! (`tern-delegate-qnn`, std) implements them outside this no_std crate.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use tern_kernels::Format;

use crate::weights::TensorRef;

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

    /// The GGUF tensor stem (`attn_q`, ..., `ffn_down`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Projection::Q => "attn_q",
            Projection::K => "attn_k",
            Projection::V => "attn_v",
            Projection::O => "attn_output",
            Projection::Gate => "ffn_gate",
            Projection::Up => "ffn_up",
            Projection::Down => "ffn_down",
        }
    }

    /// Whether it belongs to the feed-forward block (gate, up, down).
    pub fn is_ffn(self) -> bool {
        matches!(self, Projection::Gate | Projection::Up | Projection::Down)
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
    /// `Ok(())` when the delegate took it, the reason it stays on the CPU otherwise.
    pub outcome: Result<(), Declined>,
}

impl Decision {
    /// Whether the delegate took the matrix.
    pub fn taken(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for Decision {
    /// One line for `tern inspect`: `blk.3.ffn_gate TQ2_0 512×256: delegated` or
    /// `blk.0.attn_q Q4_1 576×576: CPU (Q4_1: float minimums ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blk.{}.{} {} {}×{}: ",
            self.layer,
            self.projection.gguf_name(),
            self.format.name(),
            self.rows,
            self.cols
        )?;
        match &self.outcome {
            Ok(()) => write!(f, "delegated"),
            Err(d) => write!(f, "CPU ({})", d.reason),
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

    /// Takes the FFN matrices of one format; `fail` makes every product fail.
    struct Reference {
        format: Format,
        fail: bool,
        offered: Mutex<Vec<(usize, Projection)>>,
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
            let mut w = vec![0.0; o.t.rows * o.t.cols];
            Kernels::scalar().dequant(o.t.format, o.bytes, &mut w);
            Ok(Box::new(RefMatrix {
                w,
                rows: o.t.rows,
                cols: o.t.cols,
                fail: self.fail,
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

    /// Every layer projection is offered once, in order; the decisions say which were taken
    /// and why the others stay; the taken ones are `Repr::Delegated`.
    #[test]
    fn decisions_list_every_projection_with_reasons() {
        let Some(mut m) = model("bitnet_small_tq2_0.gguf") else {
            return;
        };
        let d = Reference {
            format: Format::TQ2_0,
            fail: false,
            offered: Mutex::new(Vec::new()),
        };
        let n_layers = m.config().n_layers;
        let decisions = m.set_delegate(&d).to_vec();
        let want: Vec<(usize, Projection)> = (0..n_layers)
            .flat_map(|l| Projection::ALL.map(|p| (l, p)))
            .collect();
        assert_eq!(*d.offered.lock().unwrap(), want);
        assert_eq!(decisions.len(), 7 * n_layers);
        for (dec, l) in decisions.iter().zip(&want) {
            assert_eq!((dec.layer, dec.projection), *l);
            assert_eq!(dec.taken(), dec.projection.is_ffn());
            if let Err(e) = &dec.outcome {
                assert_eq!(e.reason, "attention stays on the CPU");
            }
            let layer = &m.tensors().layers[dec.layer];
            let mat = layer.matrices()[Projection::ALL
                .iter()
                .position(|p| *p == dec.projection)
                .unwrap()];
            assert_eq!(matches!(mat.repr(), Repr::Delegated(_)), dec.taken());
            assert_eq!(mat.reads_file(), !dec.taken());
        }
        assert_eq!(m.delegate_decisions(), &decisions[..]);
        assert_eq!(
            alloc::format!("{}", decisions[0]),
            "blk.0.attn_q TQ2_0 256×256: CPU (attention stays on the CPU)"
        );
        assert_eq!(
            alloc::format!("{}", decisions[4]),
            "blk.0.ffn_gate TQ2_0 512×256: delegated"
        );
        // FFN bytes: gate, up (512×256) and down (256×512) TQ2_0, 66 bytes per 256 weights.
        assert_eq!(
            m.tensors().delegated_bytes_per_token(),
            (n_layers * 3 * 512 * 256 / 256 * 66) as u64
        );
        // Offered again: the delegated matrices are not.
        d.offered.lock().unwrap().clear();
        assert_eq!(m.set_delegate(&d), &decisions[..]);
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

    /// Whole-model logits with the FFNs delegated equal the CPU's f32 path. The delegate sees
    /// the same int8-rounded activations and must not apply the scale (the `scaled` model has
    /// per-tensor scales ≠ 1: forgetting either moves logits by far more than the bound). The
    /// two products differ only in f32 summation order (≤ cols·ε·Σ|w·x| each), but one
    /// activation rounding to a neighbouring int8 code downstream moves logits by ~0.1–0.5:
    /// 1.0 is the bound `tests/tests/bitnet_reference.rs` derives for int8 paths.
    #[test]
    fn delegated_ffn_logits_match_the_cpu() {
        for name in ["bitnet_small_tq2_0.gguf", "bitnet_small_scaled_tq2_0.gguf"] {
            let Some(cpu) = model(name) else {
                continue;
            };
            let reference = logits(cpu).unwrap();
            let mut m = model(name).unwrap();
            let d = Reference {
                format: Format::TQ2_0,
                fail: false,
                offered: Mutex::new(Vec::new()),
            };
            assert!(m.set_delegate(&d).iter().any(Decision::taken));
            let got = logits(m).unwrap();
            for (step, (r, g)) in reference.iter().zip(&got).enumerate() {
                let worst = r
                    .iter()
                    .zip(g)
                    .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
                std::eprintln!("{name} step {step}: largest |Δ| {worst:.2e}");
                assert!(worst <= 1.0, "{name} step {step}: {worst}");
            }
        }
    }

    /// A failing delegate surfaces as `GenerateError::Delegate`, not as wrong logits.
    #[test]
    fn delegate_failure_is_a_typed_error() {
        let Some(mut m) = model("bitnet_small_tq2_0.gguf") else {
            return;
        };
        let d = Reference {
            format: Format::TQ2_0,
            fail: true,
            offered: Mutex::new(Vec::new()),
        };
        m.set_delegate(&d);
        assert_eq!(
            logits(m).unwrap_err(),
            GenerateError::Delegate(DelegateError::Backend {
                message: "refused".into()
            })
        );
    }
}
