//! `--delegate`: hand a loaded model's projections to an NPU delegate (`tern-delegate-qnn`),
//! and say what it took.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tern_delegate_qnn::{Backend, QnnDelegate, QnnOptions};
use tern_runtime::delegate::Decision;
use tern_runtime::Model;

use crate::error::{Context, Error, Result};

/// Where the layer projections run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DelegateKind {
    /// Tern's CPU kernels only (the default and the reference).
    #[default]
    Cpu,
    /// Qualcomm's HTP through ONNX Runtime's QNN provider (docs/npu.md).
    Qnn,
    /// The same graphs on ONNX Runtime's CPU provider (checks the delegate off the NPU).
    OrtCpu,
}

/// The NPU delegate's options.
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "NPU delegate")]
pub struct DelegateOpts {
    /// Run the projections the delegate accepts on it: cpu (no delegate), qnn, or ort-cpu.
    #[arg(long, value_enum, default_value_t = DelegateKind::Cpu)]
    pub delegate: DelegateKind,
    /// ONNX Runtime's library (libonnxruntime.so) [default: $ORT_DYLIB_PATH].
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// The QNN provider plugin library (PyPI onnxruntime-qnn); omit when QNN is built into
    /// ONNX Runtime (Android's onnxruntime-android-qnn).
    #[arg(long, value_name = "FILE")]
    pub qnn_provider: Option<PathBuf>,
    /// QNN's HTP backend library (libQnnHtp.so).
    #[arg(long, value_name = "FILE")]
    pub qnn_backend: Option<PathBuf>,
    /// The SoC model QNN compiles for (57: Snapdragon 8 Gen 3).
    #[arg(long, value_name = "N", default_value = "57")]
    pub qnn_soc: String,
    /// Directory for compiled graphs (EP context files), reused by the next load.
    #[arg(long, value_name = "DIR")]
    pub delegate_cache: Option<PathBuf>,
}

/// Offers `model`'s projections to the delegate `opts` names; returns its decisions (empty for
/// `--delegate cpu`). A missing library is an error; a matrix the delegate cannot run stays on
/// the CPU, with the reason in its decision.
pub fn apply(opts: &DelegateOpts, model: &mut Model) -> Result<Vec<Decision>> {
    let backend = match opts.delegate {
        DelegateKind::Cpu => return Ok(Vec::new()),
        DelegateKind::OrtCpu => Backend::Cpu,
        DelegateKind::Qnn => Backend::Qnn {
            provider_library: opts.qnn_provider.clone(),
            backend_library: opts
                .qnn_backend
                .clone()
                .ok_or_else(|| Error::usage("--delegate qnn needs --qnn-backend FILE"))?,
            soc_model: opts.qnn_soc.clone(),
        },
    };
    let delegate = QnnDelegate::new(QnnOptions {
        ort_library: opts.ort_library.clone(),
        backend,
        cache_dir: opts.delegate_cache.clone(),
        ..QnnOptions::default()
    })
    .context("--delegate")?;
    Ok(model.set_delegate(&delegate).to_vec())
}

/// How many matrices the delegate took: `3 of 7 matrices taken`.
pub fn summary(decisions: &[Decision]) -> String {
    let matrices = decisions
        .iter()
        .filter(|d| d.projection != tern_runtime::delegate::Projection::FfnBlock);
    let (taken, all) = matrices.fold((0, 0), |(t, a), d| (t + d.taken() as usize, a + 1));
    format!("{taken} of {all} matrices taken")
}
