//! The NPU delegate as a model option: [`DelegateOptions`] in
//! [`ModelOptions::delegate`](crate::ModelOptions::delegate), applied once at load, and what it
//! took ([`crate::Model::delegate_decisions`]).
//!
//! The CPU stays the default: without a `delegate` nothing here runs. With one, loading hands
//! the model's layer projections, FFN blocks and output head to `tern-delegate-qnn` (as
//! `tern inspect --delegate` does; docs/npu.md) before any session exists. A library that is
//! missing or does not load fails the load with [`TernError::DelegateUnavailable`], a matrix
//! whose graph the backend refuses with [`TernError::DelegateFailed`]: an app that wants the
//! CPU path then loads again without the option, instead of silently getting a model that is
//! half on the NPU. Matrices the delegate cannot run by design (their format has no exact
//! packing, e.g. Q4_1 or the K-quants) are not errors: they stay on the CPU and their
//! decisions say why.
//!
//! The delegate needs the cargo feature `npu` (std and ONNX Runtime's API, loaded at run time
//! from the library the app bundles); a build without it refuses a delegate with
//! [`TernError::DelegateUnavailable`].

use tern_runtime::delegate::Decision;

use crate::error::TernError;

/// Which delegate runs the projections it can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum DelegateKind {
    /// Qualcomm's Hexagon NPU (HTP) through ONNX Runtime's QNN execution provider, with CPU
    /// fallback disabled: a graph the HTP cannot run fails instead of running on the CPU.
    Qnn,
    /// The same graphs on ONNX Runtime's CPU provider: checks the delegate's path on a device
    /// (or a desktop) without an NPU. Slower than Tern's own CPU kernels; not for production.
    OrtCpu,
}

/// Where the NPU delegate's libraries are and what it compiles for.
///
/// On Android the app bundles Microsoft's `com.microsoft.onnxruntime:onnxruntime-android-qnn`
/// package, whose AAR carries `libonnxruntime.so` (with the QNN provider built in) and
/// Qualcomm's `libQnnHtp*.so`; they are extracted to the app's native library directory
/// (`applicationInfo.nativeLibraryDir`, with `android:extractNativeLibs="true"` or
/// `useLegacyPackaging`), and the paths below are files in it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct DelegateOptions {
    /// Which delegate.
    pub kind: DelegateKind,
    /// Full path of ONNX Runtime's library (`<nativeLibraryDir>/libonnxruntime.so`);
    /// `null`/`nil` reads the `ORT_DYLIB_PATH` environment variable (desktop tests). One
    /// process loads one ONNX Runtime: every model must name the same library.
    #[uniffi(default = None)]
    pub ort_library: Option<String>,
    /// The QNN provider as a separate plugin library (`libonnxruntime_providers_qnn.so` of the
    /// PyPI wheel `onnxruntime-qnn`); `null`/`nil` when QNN is built into `libonnxruntime.so`,
    /// as in `onnxruntime-android-qnn` (what a device app passes). Unused by `OrtCpu`.
    #[uniffi(default = None)]
    pub qnn_provider_library: Option<String>,
    /// Full path of QNN's HTP backend, `<nativeLibraryDir>/libQnnHtp.so`. Required for `Qnn`
    /// (loading fails with `InvalidArgument` without it); unused by `OrtCpu`.
    #[uniffi(default = None)]
    pub qnn_backend_library: Option<String>,
    /// The SoC model QNN compiles for; `null`/`nil` is `"57"` (Snapdragon 8 Gen 3, SM8650).
    /// Unused by `OrtCpu`.
    #[uniffi(default = None)]
    pub soc_model: Option<String>,
    /// A directory the delegate may write compiled graphs to (e.g. `cacheDir/qnn`): the next
    /// load reads them instead of compiling again (seconds per layer saved). `null`/`nil`
    /// compiles at every load. Unused by `OrtCpu`.
    #[uniffi(default = None)]
    pub cache_dir: Option<String>,
}

/// What the delegate decided for one matrix (or one layer's FFN block), for an app to show
/// what runs on the NPU.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct DelegateDecision {
    /// The layer; the output head's is the number of layers.
    pub layer: u32,
    /// The GGUF tensor stem: `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_gate`,
    /// `ffn_up`, `ffn_down`; `ffn` for a layer's whole FFN block; `output` for the head.
    pub projection: String,
    /// The matrix's GGUF format, e.g. `Q4_0`.
    pub format: String,
    /// Whether it runs on the delegate (for `ffn`: as one graph for the whole block).
    pub taken: bool,
    /// Why it stays on the CPU (for `ffn`: why its matrices were offered one by one);
    /// `null`/`nil` when taken.
    pub reason: Option<String>,
    /// One line for a log or a settings screen: `blk.3.ffn_gate Q4_0 1536×576: delegated in
    /// the FFN block`, `blk.0.attn_q Q4_1 576×576: CPU (Q4_1: float minimums ...)`.
    pub description: String,
}

impl From<&Decision> for DelegateDecision {
    fn from(d: &Decision) -> Self {
        DelegateDecision {
            layer: u32::try_from(d.layer).unwrap_or(u32::MAX),
            projection: d.projection.gguf_name().to_string(),
            format: d.format.name().to_string(),
            taken: d.taken(),
            reason: d.outcome.as_ref().err().map(|e| e.reason.clone()),
            description: d.to_string(),
        }
    }
}

/// Hands `model`'s projections to the delegate `options` name (see the module docs).
#[cfg(feature = "npu")]
pub(crate) fn apply(
    options: &DelegateOptions,
    model: &mut tern_runtime::Model,
) -> Result<(), TernError> {
    use std::path::PathBuf;
    use tern_delegate_qnn::{Backend, QnnDelegate, QnnOptions};

    let backend = match options.kind {
        DelegateKind::OrtCpu => Backend::Cpu,
        DelegateKind::Qnn => Backend::Qnn {
            provider_library: options.qnn_provider_library.as_ref().map(PathBuf::from),
            backend_library: options
                .qnn_backend_library
                .as_ref()
                .map(PathBuf::from)
                .ok_or_else(|| TernError::InvalidArgument {
                    reason: "the Qnn delegate needs qnn_backend_library (libQnnHtp.so)".into(),
                })?,
            soc_model: options.soc_model.clone().unwrap_or_else(|| "57".into()),
        },
    };
    let delegate = QnnDelegate::new(QnnOptions {
        ort_library: options.ort_library.as_ref().map(PathBuf::from),
        backend,
        cache_dir: options.cache_dir.as_ref().map(PathBuf::from),
        ..QnnOptions::default()
    })
    .map_err(|e| TernError::DelegateUnavailable {
        reason: e.to_string(),
    })?;
    check(model.set_delegate(&delegate))
}

/// Without the `npu` feature: refuses, saying so.
#[cfg(not(feature = "npu"))]
pub(crate) fn apply(
    options: &DelegateOptions,
    model: &mut tern_runtime::Model,
) -> Result<(), TernError> {
    let _ = model;
    Err(TernError::DelegateUnavailable {
        reason: format!(
            "this build of Tern has no NPU delegate ({:?} asked for): build tern-ffi with \
             the cargo feature `npu`",
            options.kind
        ),
    })
}

/// `DelegateFailed` when a matrix's graph failed to compile, naming the first; declines by
/// format are fine. A layer's FFN block graph that failed is not an error by itself: its
/// matrices are then offered one by one, and their own decisions count.
#[cfg(feature = "npu")]
fn check(decisions: &[Decision]) -> Result<(), TernError> {
    let failed = decisions.iter().filter(|d| {
        d.projection != tern_runtime::delegate::Projection::FfnBlock
            && d.outcome
                .as_ref()
                .is_err_and(|e| e.reason.starts_with(tern_delegate_qnn::COMPILE_FAILED))
    });
    let mut failed = failed.peekable();
    let Some(first) = failed.peek() else {
        return Ok(());
    };
    let first = first.to_string();
    let n = failed.count();
    Err(TernError::DelegateFailed {
        reason: if n == 1 {
            first
        } else {
            format!("{first} (and {} more)", n - 1)
        },
    })
}

#[cfg(test)]
mod tests {
    //! Always: the decision records. Without `npu`: a delegate is refused. With `npu`: a
    //! missing library, a `Qnn` delegate without its backend, compile failures told from
    //! declines; and with `ORT_DYLIB_PATH` (`scripts/test-npu.sh` sets it, with
    //! `TERN_REQUIRE_NPU_TESTS=1`, which turns its absence into a failure), SmolLM2 requantized
    //! to Q4_0 on ONNX Runtime's CPU provider: the CPU's greedy tokens and the decisions.

    use std::path::PathBuf;

    use tern_kernels::Format;
    use tern_runtime::delegate::{Declined, Projection};

    use super::*;
    use crate::{Model, ModelOptions};

    fn model_path(name: &str, hint: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name);
        assert!(p.exists(), "{} is missing: {hint}", p.display());
        p.display().to_string()
    }

    /// SmolLM2 Q4_1: every matrix declined by format, so loading it compiles nothing.
    fn q4_1() -> String {
        model_path(
            "smollm2-135m-instruct-q4_1.gguf",
            "run scripts/fetch-model.sh",
        )
    }

    fn with_delegate(delegate: DelegateOptions) -> ModelOptions {
        ModelOptions {
            threads: 2,
            delegate: Some(delegate),
            ..ModelOptions::default()
        }
    }

    fn ort_cpu(ort_library: Option<String>) -> DelegateOptions {
        DelegateOptions {
            kind: DelegateKind::OrtCpu,
            ort_library,
            qnn_provider_library: None,
            qnn_backend_library: None,
            soc_model: None,
            cache_dir: None,
        }
    }

    #[cfg(not(feature = "npu"))]
    #[test]
    fn without_the_feature_a_delegate_is_unavailable() {
        let e = Model::new(q4_1(), with_delegate(ort_cpu(None))).unwrap_err();
        assert!(
            matches!(&e, TernError::DelegateUnavailable { reason } if reason.contains("`npu`")),
            "{e:?}"
        );
    }

    #[cfg(feature = "npu")]
    #[test]
    fn a_missing_library_is_delegate_unavailable() {
        let missing = "/nonexistent/libonnxruntime.so";
        let e = Model::new(q4_1(), with_delegate(ort_cpu(Some(missing.into())))).unwrap_err();
        assert!(
            matches!(&e, TernError::DelegateUnavailable { reason } if reason.contains(missing)),
            "{e:?}"
        );
        let qnn = DelegateOptions {
            kind: DelegateKind::Qnn,
            ..ort_cpu(Some(missing.into()))
        };
        let e = Model::new(q4_1(), with_delegate(qnn.clone())).unwrap_err();
        assert!(
            matches!(&e, TernError::InvalidArgument { reason } if reason.contains("qnn_backend_library")),
            "{e:?}"
        );
        let qnn = DelegateOptions {
            qnn_backend_library: Some("/nonexistent/libQnnHtp.so".into()),
            ..qnn
        };
        let e = Model::new(q4_1(), with_delegate(qnn)).unwrap_err();
        assert!(matches!(e, TernError::DelegateUnavailable { .. }), "{e:?}");
    }

    /// ONNX Runtime's library, or `None` (skipped, said on stderr) when this run does not
    /// require it.
    #[cfg(feature = "npu")]
    fn ort_library() -> Option<String> {
        match std::env::var("ORT_DYLIB_PATH") {
            Ok(v) => Some(v),
            Err(_) if std::env::var_os("TERN_REQUIRE_NPU_TESTS").is_some() => {
                panic!("TERN_REQUIRE_NPU_TESTS is set but ORT_DYLIB_PATH is not")
            }
            Err(_) => {
                eprintln!("ORT_DYLIB_PATH unset: run scripts/test-npu.sh for this check");
                None
            }
        }
    }

    /// 16 greedy tokens of `m` after `prompt`.
    #[cfg(feature = "npu")]
    fn greedy_tokens(m: &Model, prompt: &str) -> Vec<u32> {
        use std::sync::Arc;
        use tern_runtime::{Event, Flow, Sampler, SamplerOptions};

        let mut s = tern_runtime::Session::new(Arc::clone(&m.inner), &Default::default()).unwrap();
        let ids = m.inner.tokenizer().encode(prompt, true, true);
        let mut tokens = Vec::new();
        s.generate(
            &ids,
            &mut Sampler::new(SamplerOptions::greedy()),
            16,
            &mut |e| {
                if let Event::Token { id, .. } = e {
                    tokens.push(id);
                }
                Flow::Continue
            },
        )
        .unwrap();
        tokens
    }

    #[cfg(feature = "npu")]
    #[test]
    fn ort_cpu_gives_the_cpu_greedy_tokens_and_lists_its_decisions() {
        let Some(lib) = ort_library() else {
            return;
        };
        let path = model_path(
            "smollm2-135m-instruct-q4_0.gguf",
            "tern quantize -m models/smollm2-135m-instruct-q4_1.gguf \
             -o models/smollm2-135m-instruct-q4_0.gguf --type q4_0 (scripts/test-npu.sh does)",
        );
        let cpu = Model::new(path.clone(), ModelOptions::default()).unwrap();
        assert!(cpu.delegate_decisions().is_empty());
        let npu = Model::new(path, with_delegate(ort_cpu(Some(lib)))).unwrap();
        let decisions = npu.delegate_decisions();
        let layers = npu.inner.config().n_layers;
        // Per layer the FFN block and 7 matrices, then the head.
        assert_eq!(decisions.len(), layers * 8 + 1);
        for d in &decisions {
            assert_eq!(d.taken, d.reason.is_none(), "{d:?}");
            if d.projection != "output" {
                assert!(d.taken && d.format == "Q4_0", "{}", d.description);
            }
        }
        assert_eq!(
            decisions.iter().filter(|d| d.projection == "ffn").count(),
            layers
        );
        assert!(
            decisions[1]
                .description
                .starts_with("blk.0.attn_q Q4_0 576×576: delegated"),
            "{}",
            decisions[1].description
        );
        let prompt = "The capital of France is";
        let (a, b) = (greedy_tokens(&cpu, prompt), greedy_tokens(&npu, prompt));
        assert_eq!(a.len(), 16);
        assert_eq!(a, b);
    }

    fn decision(projection: Projection, outcome: Result<(), &str>) -> Decision {
        Decision {
            layer: 2,
            projection,
            format: Format::Q4_0,
            rows: 64,
            cols: 32,
            outcome: outcome.map_err(|r| Declined { reason: r.into() }),
            in_block: false,
        }
    }

    #[cfg(feature = "npu")]
    #[test]
    fn only_a_matrix_whose_graph_failed_is_an_error() {
        use tern_delegate_qnn::COMPILE_FAILED;
        let fine = [
            decision(Projection::Q, Ok(())),
            decision(
                Projection::K,
                Err("Q4_1: float minimums are not integer zero points"),
            ),
            // A block whose graph failed falls back to its matrices: not an error by itself.
            decision(
                Projection::FfnBlock,
                Err(format!("block {COMPILE_FAILED}: no").as_str()),
            ),
        ];
        assert_eq!(check(&fine), Ok(()));
        let mut bad = fine.to_vec();
        bad.push(decision(
            Projection::Up,
            Err(format!("{COMPILE_FAILED}: QNN refused MatMulNBits").as_str()),
        ));
        bad.push(decision(
            Projection::Down,
            Err(format!("{COMPILE_FAILED}: x").as_str()),
        ));
        let e = check(&bad).unwrap_err();
        assert!(
            matches!(&e, TernError::DelegateFailed { reason }
                if reason.starts_with("blk.2.ffn_up Q4_0 64×32: CPU (graph failed to compile: QNN")
                    && reason.ends_with("(and 1 more)")),
            "{e:?}"
        );
    }

    #[test]
    fn decisions_become_records() {
        let d = DelegateDecision::from(&decision(Projection::K, Err("no")));
        assert_eq!(
            d,
            DelegateDecision {
                layer: 2,
                projection: "attn_k".into(),
                format: "Q4_0".into(),
                taken: false,
                reason: Some("no".into()),
                description: "blk.2.attn_k Q4_0 64×32: CPU (no)".into(),
            }
        );
        let d = DelegateDecision::from(&decision(Projection::Output, Ok(())));
        assert!(d.taken && d.reason.is_none() && d.projection == "output");
    }
}
