//! Tern's NPU delegate: a model's layer projections, FFN blocks and output head run as ONNX
//! Runtime graphs on Qualcomm's Hexagon NPU (the QNN HTP execution provider), the rest of the
//! forward pass on the CPU.
//!
//! Each layer's FFN is first taken whole when its three matrices pack ([`FfnBlock`]: gate, up,
//! activation, BitNet's sub-norm and int8 rounding, down in one graph, one call per layer
//! instead of three); otherwise its matrices are taken one by one. The graphs are written
//! here, node by node, because the runtime's definition (`tern_runtime::delegate::FfnOffer`)
//! must be reproduced exactly, and no exporter knows it.
//!
//! It implements `tern_runtime::delegate::Delegate`: at load each projection (Q, K, V, O, FFN
//! gate, up, down) is offered with its GGUF bytes; this crate repacks the blocks, without
//! dequantizing, as the weights of one `com.microsoft.MatMulNBits` node ([`pack`]: Q4_0 4-bit,
//! Q8_0 8-bit, TQ2_0/TQ1_0/I2_S 2-bit) and builds two static-shape graphs per matrix, decode
//! (`A (1, 1, K)`) and a fixed prefill chunk (`A (1, C, K)`), through ONNX Runtime's model
//! editor API (so no ONNX protobuf is written here). Other formats, and matrices whose graph
//! the backend refuses, are declined with the reason, and stay on the CPU.
//!
//! # Using it (the CLI and FFI wiring)
//!
//! ```no_run
//! use tern_delegate_qnn::{Backend, QnnDelegate, QnnOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mut model = tern_runtime::Model::open(std::path::Path::new("m.gguf"),
//! #     tern_kernels::Kernels::best())?;
//! let delegate = QnnDelegate::new(QnnOptions {
//!     ort_library: Some("libonnxruntime.so".into()), // None: $ORT_DYLIB_PATH
//!     backend: Backend::Qnn {
//!         provider_library: None, // Some(path) for the PyPI wheel's plugin provider
//!         backend_library: "libQnnHtp.so".into(),
//!         soc_model: "57".into(), // Snapdragon 8 Gen 3
//!     },
//!     cache_dir: Some("/data/local/tmp/tern-qnn".into()),
//!     ..QnnOptions::default()
//! })?; // QnnError::{OrtLibrary, ProviderLibrary, BackendLibrary, NoDevice, Ort}
//! for d in model.set_delegate(&delegate) {
//!     println!("blk.{}.{}: {:?}", d.layer, d.projection.gguf_name(), d.outcome);
//! }
//! # Ok(()) }
//! ```
//!
//! On a phone the app bundles Microsoft's `onnxruntime-android-qnn` package, whose
//! `libonnxruntime.so` has the QNN provider built in and ships Qualcomm's `libQnnHtp*.so`
//! (`provider_library: None`). Qualcomm's libraries are never vendored in this repository:
//! their licence allows redistribution only inside an application; tests install the PyPI
//! wheel `onnxruntime-qnn`, whose provider is a plugin library (`provider_library:
//! Some(.../libonnxruntime_providers_qnn.so)`) and whose `libQnnHtp.so` on x86-64 is the HTP
//! *emulator*: its timings are host timings, never NPU speed (`docs/npu.md`).
//!
//! # Compiled graphs are cached
//!
//! With a `cache_dir`, each graph compiled by QNN is saved as an EP context model
//! (`ep.context_enable`, embedded context binary) named by a hash of its packed weights,
//! shape, SoC model and backend; the next load reads that file instead of compiling
//! ([`QnnDelegate::stats`] counts both).
//!
//! # Numbers
//!
//! The packing is exact: the operator's definition applied to the packed weights gives Tern's
//! dequantized values bit for bit (`pack`'s tests). The products differ from the CPU's only in
//! summation order and in the backend's own arithmetic (HTP: FP16 accumulation of blocks;
//! tests derive their bounds).

#![deny(missing_docs)]

pub mod pack;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::editor::{Graph, Model as OnnxModel, Node, Opset, ONNX_DOMAIN};
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};

use tern_runtime::delegate::{
    Declined, Delegate, DelegateError, DelegatedFfn, DelegatedMatrix, FfnOffer, Offer, Projection,
};
use tern_runtime::weights::FfnActivation;

use crate::pack::Packed;

/// Where products run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ONNX Runtime's CPU provider: the same graphs checked off the NPU (tests, and a
    /// reference on machines without one).
    Cpu,
    /// Qualcomm's QNN provider on the HTP, with CPU fallback disabled: a graph the HTP cannot
    /// run fails to compile (the matrix is declined) rather than quietly running on the CPU.
    Qnn {
        /// The QNN provider as a plugin library (`libonnxruntime_providers_qnn.so` of the PyPI
        /// wheel `onnxruntime-qnn`), registered with the environment; `None` when it is built
        /// into `libonnxruntime.so` (Android's `onnxruntime-android-qnn`).
        provider_library: Option<PathBuf>,
        /// QNN's HTP backend, `libQnnHtp.so`.
        backend_library: PathBuf,
        /// QNN's SoC model number (`"57"`: Snapdragon 8 Gen 3; block-quantized INT4 needs
        /// 57 or an HTP architecture of at least 73).
        soc_model: String,
    },
}

/// How [`QnnDelegate::new`] finds ONNX Runtime and what it offloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QnnOptions {
    /// `libonnxruntime.so`; `None`: the `ORT_DYLIB_PATH` environment variable. One process
    /// loads one ONNX Runtime: later delegates must name the same library.
    pub ort_library: Option<PathBuf>,
    /// Where products run.
    pub backend: Backend,
    /// Directory of compiled-graph caches (QNN only); `None`: compile at every load.
    pub cache_dir: Option<PathBuf>,
    /// Tokens per prefill graph: batches run in chunks of this many (the last padded with
    /// zeros); `None`: no prefill graph, batches run token by token on the decode graph.
    pub prefill_chunk: Option<usize>,
    /// The projections offered that are taken (others are declined): all seven and
    /// [`Projection::Output`] by default.
    pub projections: Vec<Projection>,
    /// The layers whose projections are taken; `None`: every layer.
    pub layers: Option<Vec<usize>>,
    /// Whether a layer's FFN is taken as one block graph (gate, up, activation, sub-norm,
    /// int8 rounding, down; `tern_runtime::delegate::FfnOffer`) when gate, up and down are
    /// all selected; `false`, or a block that fails to compile: one graph per matrix.
    pub ffn_blocks: bool,
}

impl Default for QnnOptions {
    /// `$ORT_DYLIB_PATH`, the CPU provider, no cache, prefill chunks of 16, every projection
    /// of every layer and the output head, FFNs as block graphs.
    fn default() -> Self {
        QnnOptions {
            ort_library: None,
            backend: Backend::Cpu,
            cache_dir: None,
            prefill_chunk: Some(16),
            projections: Projection::ALL
                .into_iter()
                .chain([Projection::Output])
                .collect(),
            layers: None,
            ffn_blocks: true,
        }
    }
}

/// Why the delegate could not be created: an app shows it and runs on the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QnnError {
    /// ONNX Runtime's library is missing or failed to load (`None`: no path given and
    /// `ORT_DYLIB_PATH` unset).
    OrtLibrary {
        /// The path tried.
        path: Option<PathBuf>,
        /// What failed.
        message: String,
    },
    /// The QNN provider plugin library is missing or refused.
    ProviderLibrary {
        /// The path tried.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// QNN's HTP backend library is missing.
    BackendLibrary {
        /// The path tried.
        path: PathBuf,
    },
    /// The QNN provider found no device to run on.
    NoDevice,
    /// ONNX Runtime refused something else.
    Ort {
        /// What it reported.
        message: String,
    },
}

impl fmt::Display for QnnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QnnError::OrtLibrary {
                path: None,
                message,
            } => {
                write!(f, "no ONNX Runtime library given ({message})")
            }
            QnnError::OrtLibrary {
                path: Some(p),
                message,
            } => write!(f, "ONNX Runtime at {}: {message}", p.display()),
            QnnError::ProviderLibrary { path, message } => {
                write!(f, "QNN provider at {}: {message}", path.display())
            }
            QnnError::BackendLibrary { path } => {
                write!(f, "QNN backend library {} is missing", path.display())
            }
            QnnError::NoDevice => write!(f, "the QNN provider found no device"),
            QnnError::Ort { message } => write!(f, "ONNX Runtime: {message}"),
        }
    }
}

impl std::error::Error for QnnError {}

/// The one ONNX Runtime of the process: the library it came from and its environment.
static ORT: OnceLock<(PathBuf, Environment)> = OnceLock::new();
/// Plugin provider libraries registered with [`ORT`]'s environment.
static PLUGINS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How a decline's reason starts when the backend refused a matrix's graph (a block's reads
/// `block graph failed to compile: ...`): a caller that treats a refused graph as an error
/// (the FFI does) tells it from a decline by format with this.
pub const COMPILE_FAILED: &str = "graph failed to compile";

/// The provider name of QNN, as a plugin and as built in.
const QNN_EP: &str = "QNNExecutionProvider";

/// Graphs compiled and graphs read from the cache since the delegate was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Graphs built and compiled.
    pub compiled: usize,
    /// Graphs loaded from an EP context file.
    pub from_cache: usize,
}

/// The delegate: see the crate docs.
pub struct QnnDelegate {
    options: QnnOptions,
    env: &'static Environment,
    stats: Mutex<CacheStats>,
}

impl fmt::Debug for QnnDelegate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QnnDelegate")
            .field("options", &self.options)
            .finish()
    }
}

impl QnnDelegate {
    /// Loads ONNX Runtime (once per process) and, for [`Backend::Qnn`], registers the provider
    /// and checks it has a device; compiles nothing yet.
    pub fn new(options: QnnOptions) -> Result<Self, QnnError> {
        let lib = options
            .ort_library
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
            .ok_or_else(|| QnnError::OrtLibrary {
                path: None,
                message: "set QnnOptions::ort_library or ORT_DYLIB_PATH".into(),
            })?;
        let env = environment(&lib)?;
        if let Backend::Qnn {
            provider_library,
            backend_library,
            ..
        } = &options.backend
        {
            if !backend_library.exists() {
                return Err(QnnError::BackendLibrary {
                    path: backend_library.clone(),
                });
            }
            if let Some(p) = provider_library {
                register_plugin(env, p)?;
                if !env.devices().any(|d| d.ep().is_ok_and(|e| e == QNN_EP)) {
                    return Err(QnnError::NoDevice);
                }
            }
        }
        Ok(QnnDelegate {
            options,
            env,
            stats: Mutex::new(CacheStats::default()),
        })
    }

    /// Graphs compiled and read from the cache so far.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The options it was created with.
    pub fn options(&self) -> &QnnOptions {
        &self.options
    }

    /// A prepared product for `packed` on this delegate's backend: the matrix without going
    /// through a model (tests, benchmarks).
    pub fn prepare(&self, packed: &Packed) -> Result<OrtMatrix, String> {
        let decode = self.session(packed, 1)?;
        let prefill = match self.options.prefill_chunk {
            Some(c) if c > 1 => Some((c, Mutex::new(self.session(packed, c)?))),
            _ => None,
        };
        Ok(OrtMatrix {
            rows: packed.n,
            cols: packed.k,
            decode: Mutex::new(decode),
            prefill,
        })
    }

    /// Builds the decode graph of `packed` with a rank-2 input, which the QNN provider
    /// refuses: `Err` proves that the backend's CPU fallback is off (with it on, the graph
    /// would quietly run on the CPU). For tests.
    #[doc(hidden)]
    pub fn prepare_rank2(&self, packed: &Packed) -> Result<(), String> {
        let builder = self.builder().map_err(|e| e.to_string())?;
        let model = graph(packed, 1, false).map_err(|e| e.to_string())?;
        model.into_session(&builder).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// A session running `packed` on `m` rows of activations: from the cache when it has the
    /// graph, else built and compiled (and cached).
    fn session(&self, packed: &Packed, m: usize) -> Result<Session, String> {
        self.session_of(self.cache_key(&[packed], &[], m), || graph(packed, m, true))
    }

    /// A session of the graph `build` makes, known to the cache as `key`: from the cache when
    /// it has the graph, else built and compiled (and cached).
    fn session_of(
        &self,
        key: u64,
        build: impl FnOnce() -> ort::Result<OnnxModel>,
    ) -> Result<Session, String> {
        let mut builder = self.builder().map_err(|e| e.to_string())?;
        let cache = match (&self.options.backend, &self.options.cache_dir) {
            (Backend::Qnn { .. }, Some(dir)) => Some(dir.join(format!("tern-qnn-{key:016x}.onnx"))),
            _ => None,
        };
        if let Some(path) = &cache {
            if path.exists() {
                match builder.commit_from_file(path) {
                    Ok(s) => {
                        self.bump(|s| s.from_cache += 1);
                        return Ok(s);
                    }
                    // A damaged or stale cache file (another ONNX Runtime, another QNN): compile
                    // again and overwrite it.
                    Err(_) => {
                        let _ = std::fs::remove_file(path);
                        builder = self.builder().map_err(|e| e.to_string())?;
                    }
                }
            }
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                .map_err(|e| format!("cache directory: {e}"))?;
            for (key, value) in [
                ("ep.context_enable", "1".into()),
                ("ep.context_embed_mode", "1".into()),
                ("ep.context_file_path", path.to_string_lossy()),
            ] {
                builder = builder
                    .with_config_entry(key, value)
                    .map_err(|e| e.to_string())?;
            }
        }
        let model = build().map_err(|e| e.to_string())?;
        let s = model.into_session(&builder).map_err(|e| e.to_string())?;
        self.bump(|s| s.compiled += 1);
        Ok(s)
    }

    /// A prepared FFN block ([`FfnBlock`]) on this delegate's backend, without a model.
    pub fn prepare_ffn(&self, b: &FfnBlock) -> Result<OrtFfn, String> {
        let (params, _) = b.params();
        let key = |m| self.cache_key(&[&b.gate, &b.up, &b.down], &params, m);
        let decode = self.session_of(key(1), || ffn_graph(b, 1))?;
        let prefill = match self.options.prefill_chunk {
            Some(c) if c > 1 => Some((c, Mutex::new(self.session_of(key(c), || ffn_graph(b, c))?))),
            _ => None,
        };
        Ok(OrtFfn(OrtMatrix {
            rows: b.down.n,
            cols: b.gate.k,
            decode: Mutex::new(decode),
            prefill,
        }))
    }

    /// `absmax_int8_roundtrip` of each row of `x (n, cols)` as the FFN block's graph computes
    /// it, alone: for tests against `tern_kernels::scalar` (bit for bit on the CPU provider).
    #[doc(hidden)]
    pub fn int8_roundtrip(&self, x: &[f32], n: usize, cols: usize) -> Result<Vec<f32>, String> {
        let build = || {
            let mut g = Graph::new()?;
            g.set_inputs([f32_outlet("X", &[1, n, cols])])?;
            g.set_outputs([f32_outlet("Y", &[1, n, cols])])?;
            let mut b = Builder { g, next: 0 };
            let y = b.int8_roundtrip("X")?;
            b.op_in("Identity", ONNX_DOMAIN, &[&y], &[], Some("Y"))?;
            model_of(b.g)
        };
        let s = self.session_of(
            self.cache_key(&[], &[-1.0, n as f32, cols as f32], n),
            build,
        )?;
        let m = OrtMatrix {
            rows: cols,
            cols,
            decode: Mutex::new(s),
            prefill: None,
        };
        let mut y = vec![0.0; n * cols];
        m.run(&m.decode, x, n, &mut y).map_err(|e| e.to_string())?;
        Ok(y)
    }

    /// A session builder pinned to the backend.
    fn builder(&self) -> ort::Result<SessionBuilder> {
        let b = Session::builder(self.env)?.with_log_level(ort::logging::LogLevel::Error)?;
        Ok(match &self.options.backend {
            // Named explicitly: with the QNN plugin registered in the process's environment,
            // a session that names no device is offered to it too.
            Backend::Cpu => b.with_intra_threads(1)?.with_devices(
                self.env
                    .devices()
                    .filter(|d| d.ep().is_ok_and(|e| e == "CPUExecutionProvider")),
                None,
            )?,
            Backend::Qnn {
                provider_library,
                backend_library,
                soc_model,
            } => {
                let b = b.with_config_entry("session.disable_cpu_ep_fallback", "1")?;
                let backend = backend_library.to_string_lossy().into_owned();
                if provider_library.is_some() {
                    let opts = [
                        (format!("{QNN_EP}.backend_path"), backend),
                        (format!("{QNN_EP}.soc_model"), soc_model.clone()),
                    ];
                    let qnn = self
                        .env
                        .devices()
                        .filter(|d| d.ep().is_ok_and(|e| e == QNN_EP));
                    b.with_devices(qnn, Some(&opts))?
                } else {
                    b.with_execution_providers([ort::ep::QNN::default()
                        .with_backend_path(backend)
                        .with_soc_model(soc_model)
                        .build()
                        .error_on_failure()])?
                }
            }
        })
    }

    /// FNV-1a over what makes a compiled graph: weights, shapes, other parameters, rows,
    /// backend and SoC.
    fn cache_key(&self, packed: &[&Packed], params: &[f32], m: usize) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(&(m as u64).to_le_bytes());
        eat(format!("{:?}", self.options.backend).as_bytes());
        for p in packed {
            for v in [p.bits as usize, p.block, p.k, p.n] {
                eat(&(v as u64).to_le_bytes());
            }
            eat(&p.b);
            for s in &p.scales {
                eat(&s.to_le_bytes());
            }
        }
        eat(&(params.len() as u64).to_le_bytes());
        for v in params {
            eat(&v.to_le_bytes());
        }
        h
    }

    fn bump(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Delegate for QnnDelegate {
    fn name(&self) -> &str {
        match self.options.backend {
            Backend::Cpu => "onnxruntime-cpu",
            Backend::Qnn { .. } => "qnn",
        }
    }

    fn offer(&self, o: &Offer<'_>) -> Result<Box<dyn DelegatedMatrix>, Declined> {
        let declined = |reason: String| Declined { reason };
        if !self.options.projections.contains(&o.projection) {
            return Err(declined(format!(
                "{} not selected for the delegate",
                o.projection.gguf_name()
            )));
        }
        if let Some(layers) = &self.options.layers {
            if o.projection == Projection::Output {
                return Err(declined(format!("only layers {layers:?} selected")));
            }
            if !layers.contains(&o.layer) {
                return Err(declined(format!("layer {} not selected", o.layer)));
            }
        }
        let packed = pack::pack(o.t.format, o.t.rows, o.t.cols, o.bytes).map_err(declined)?;
        let m = self
            .prepare(&packed)
            .map_err(|e| declined(format!("{COMPILE_FAILED}: {e}")))?;
        Ok(Box::new(m))
    }

    fn offer_ffn(&self, o: &FfnOffer<'_>) -> Result<Box<dyn DelegatedFfn>, Declined> {
        let declined = |reason: String| Declined { reason };
        if !self.options.ffn_blocks {
            return Err(declined("FFN blocks not selected".into()));
        }
        let ffn = [Projection::Gate, Projection::Up, Projection::Down];
        if !ffn.iter().all(|p| self.options.projections.contains(p)) {
            return Err(declined("gate, up and down not all selected".into()));
        }
        if let Some(layers) = &self.options.layers {
            if !layers.contains(&o.layer) {
                return Err(declined(format!("layer {} not selected", o.layer)));
            }
        }
        let pack = |m: &Offer<'_>| {
            pack::pack(m.t.format, m.t.rows, m.t.cols, m.bytes)
                .map_err(|e| declined(format!("{}: {e}", m.projection.gguf_name())))
        };
        let block = FfnBlock {
            gate: pack(&o.gate)?,
            up: pack(&o.up)?,
            down: pack(&o.down)?,
            scales: [o.gate.t.scale, o.up.t.scale, o.down.t.scale],
            activation: o.activation,
            sub_norm: o.sub_norm.map(<[f32]>::to_vec),
            norm_eps: o.norm_eps,
            int8_activations: o.int8_activations,
        };
        let f = self
            .prepare_ffn(&block)
            .map_err(|e| declined(format!("block {COMPILE_FAILED}: {e}")))?;
        Ok(Box::new(f))
    }
}

/// ONNX Runtime loaded from `lib`, once per process.
fn environment(lib: &Path) -> Result<&'static Environment, QnnError> {
    let err = |message: String| QnnError::OrtLibrary {
        path: Some(lib.to_path_buf()),
        message,
    };
    if let Some((loaded, env)) = ORT.get() {
        return if loaded == lib {
            Ok(env)
        } else {
            Err(err(format!(
                "this process already loaded ONNX Runtime from {}",
                loaded.display()
            )))
        };
    }
    if !lib.exists() {
        return Err(err("no such file".into()));
    }
    let env = ort::init_from(lib)
        .map_err(|e| err(e.to_string()))?
        .with_name("tern")
        .build()
        .map_err(|e| err(e.to_string()))?;
    let (_, env) = ORT.get_or_init(|| (lib.to_path_buf(), env));
    Ok(env)
}

/// Registers the QNN plugin provider at `path` once.
fn register_plugin(env: &Environment, path: &Path) -> Result<(), QnnError> {
    let mut done = PLUGINS.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|p| p == path) {
        return Ok(());
    }
    if !path.exists() {
        return Err(QnnError::ProviderLibrary {
            path: path.to_path_buf(),
            message: "no such file".into(),
        });
    }
    env.register_ep_library(QNN_EP, path)
        .map_err(|e| QnnError::ProviderLibrary {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    done.push(path.to_path_buf());
    Ok(())
}

/// One `MatMulNBits` node: `Y (1, m, N) = A (1, m, K) · Wᵀ` (rank 3: QNN refuses rank-2 `A`;
/// `rank3 = false` builds `(m, K)`, only to prove that refusal in tests).
fn graph(p: &Packed, m: usize, rank3: bool) -> ort::Result<OnnxModel> {
    let shape = |last: usize| {
        if rank3 {
            vec![1, m, last]
        } else {
            vec![m, last]
        }
    };
    let mut g = Graph::new()?;
    g.set_inputs([f32_outlet("A", &shape(p.k))])?;
    g.set_outputs([f32_outlet("Y", &shape(p.n))])?;
    let mut b = Builder { g, next: 0 };
    b.matmul(p, "A", Some("Y"))?;
    model_of(b.g)
}

/// A float32 graph input or output of this shape.
fn f32_outlet(name: &str, dims: &[usize]) -> Outlet {
    let shape = Shape::new(dims.iter().map(|&d| d as i64));
    let n = shape.len();
    Outlet::new(
        name,
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            dimension_symbols: SymbolicDimensions::empty(n),
        },
    )
}

/// The model around `g`: ONNX opset 21 and Microsoft's contrib operators.
fn model_of(g: Graph) -> ort::Result<OnnxModel> {
    let mut model = OnnxModel::new([
        Opset::new(ONNX_DOMAIN, 21)?,
        Opset::new("com.microsoft", 1)?,
    ])?;
    model.set_graph(g)?;
    Ok(model)
}

/// A graph under construction, naming each new value `v<i>`.
struct Builder {
    g: Graph,
    next: usize,
}

impl Builder {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("v{}", self.next)
    }

    /// A fresh value `op(inputs)` (ONNX domain).
    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, i64)]) -> ort::Result<String> {
        self.op_in(op, ONNX_DOMAIN, inputs, attrs, None)
    }

    /// `op(inputs)` of `domain` into the value `out`, or a fresh one.
    fn op_in(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        attrs: &[(&str, i64)],
        out: Option<&str>,
    ) -> ort::Result<String> {
        let y = match out {
            Some(n) => n.to_string(),
            None => self.fresh(),
        };
        let attributes = attrs
            .iter()
            .map(|(n, v)| Attribute::new(n, *v))
            .collect::<ort::Result<Vec<_>>>()?;
        let name = self.fresh();
        self.g.add_node(Node::new(
            op,
            domain,
            name,
            inputs,
            [y.as_str()],
            attributes,
        )?)?;
        Ok(y)
    }

    /// A float32 constant of this shape.
    fn constant(&mut self, dims: &[usize], data: &[f32]) -> ort::Result<String> {
        let name = self.fresh();
        let mut t = Tensor::<f32>::new(
            &Allocator::default(),
            dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        )?;
        t.extract_tensor_mut().1.copy_from_slice(data);
        self.g.add_initializer(&name, t, false)?;
        Ok(name)
    }

    fn scalar(&mut self, v: f32) -> ort::Result<String> {
        self.constant(&[1], &[v])
    }

    /// The axes `[-1]` of a reduction.
    fn last_axis(&mut self) -> ort::Result<String> {
        let name = self.fresh();
        let mut t = Tensor::<i64>::new(&Allocator::default(), [1i64])?;
        t.extract_tensor_mut().1[0] = -1;
        self.g.add_initializer(&name, t, false)?;
        Ok(name)
    }

    /// `x (…, K) · Wᵀ` as one `MatMulNBits` node on `p`'s packed weights.
    fn matmul(&mut self, p: &Packed, x: &str, out: Option<&str>) -> ort::Result<String> {
        let (bn, sn) = (self.fresh(), self.fresh());
        let nb = p.blocks_per_row();
        let mut b = Tensor::<u8>::new(
            &Allocator::default(),
            [p.n as i64, nb as i64, p.blob_bytes() as i64],
        )?;
        b.extract_tensor_mut().1.copy_from_slice(&p.b);
        self.g.add_initializer(&bn, b, false)?;
        let mut sc = Tensor::<f32>::new(&Allocator::default(), [p.scales.len() as i64])?;
        sc.extract_tensor_mut().1.copy_from_slice(&p.scales);
        self.g.add_initializer(&sn, sc, false)?;
        self.op_in(
            "MatMulNBits",
            "com.microsoft",
            &[x, &bn, &sn],
            &[
                ("K", p.k as i64),
                ("N", p.n as i64),
                ("bits", p.bits as i64),
                ("block_size", p.block as i64),
            ],
            out,
        )
    }

    /// `x · s`, or `x` when `s` is 1.
    fn scaled(&mut self, x: String, s: f32) -> ort::Result<String> {
        if s == 1.0 {
            return Ok(x);
        }
        let c = self.scalar(s)?;
        self.op("Mul", &[&x, &c], &[])
    }

    /// RMSNorm over the last axis: `x / sqrt(mean(x²) + eps) · w`.
    fn rmsnorm(&mut self, x: &str, w: &[f32], eps: f32) -> ort::Result<String> {
        let sq = self.op("Mul", &[x, x], &[])?;
        let axes = self.last_axis()?;
        let ms = self.op("ReduceMean", &[&sq, &axes], &[("keepdims", 1)])?;
        let e = self.scalar(eps)?;
        let ms = self.op("Add", &[&ms, &e], &[])?;
        let rt = self.op("Sqrt", &[&ms], &[])?;
        let one = self.scalar(1.0)?;
        let inv = self.op("Div", &[&one, &rt], &[])?;
        let wn = self.constant(&[w.len()], w)?;
        let s = self.op("Mul", &[&inv, &wn], &[])?;
        self.op("Mul", &[x, &s], &[])
    }

    /// `tern_kernels::scalar::absmax_int8_roundtrip` over the last axis, op for op in f32:
    /// `a = max|x|`, `q = trunc(|x·(127/a)| + 0.5)·sign(x·(127/a))` clamped to
    /// `[−128, 127]`, then `q·(a/127)`. `a` is raised to 2⁻¹²⁰ (so that `127/a` is finite):
    /// an all-zero row stays zero as in Tern, and only rows whose largest value is below
    /// 2⁻¹²⁰ differ from Tern's (which then overflows the scale).
    fn int8_roundtrip(&mut self, x: &str) -> ort::Result<String> {
        let ab = self.op("Abs", &[x], &[])?;
        let axes = self.last_axis()?;
        let a = self.op("ReduceMax", &[&ab, &axes], &[("keepdims", 1)])?;
        let tiny = self.scalar(2f32.powi(-120))?;
        let a = self.op("Max", &[&a, &tiny], &[])?;
        let c127 = self.scalar(127.0)?;
        let s = self.op("Div", &[&c127, &a], &[])?;
        let inv = self.op("Div", &[&a, &c127], &[])?;
        let y = self.op("Mul", &[x, &s], &[])?;
        let ya = self.op("Abs", &[&y], &[])?;
        let half = self.scalar(0.5)?;
        let ya = self.op("Add", &[&ya, &half], &[])?;
        let t = self.op("Floor", &[&ya], &[])?;
        let sg = self.op("Sign", &[&y], &[])?;
        let q = self.op("Mul", &[&t, &sg], &[])?;
        let lo = self.scalar(-128.0)?;
        let q = self.op("Max", &[&q, &lo], &[])?;
        let q = self.op("Min", &[&q, &c127], &[])?;
        self.op("Mul", &[&q, &inv], &[])
    }
}

/// A layer's gated FFN as the delegate runs it in one graph (`tern_runtime::delegate::FfnOffer`
/// is the definition): the three matrices packed, their tensor scales, the activation, the
/// sub-norm and whether `h` is rounded to int8.
#[derive(Clone, Debug, PartialEq)]
pub struct FfnBlock {
    /// Gate projection, `(ffn_dim, dim)`.
    pub gate: Packed,
    /// Up projection, `(ffn_dim, dim)`.
    pub up: Packed,
    /// Down projection, `(dim, ffn_dim)`.
    pub down: Packed,
    /// Tensor scales of gate, up and down (applied to their outputs).
    pub scales: [f32; 3],
    /// The gate's nonlinearity.
    pub activation: FfnActivation,
    /// RMSNorm weight of `h` before down (BitNet), `(ffn_dim)`.
    pub sub_norm: Option<Vec<f32>>,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Whether `h` is rounded to int8 per token before down (BitNet b1.58).
    pub int8_activations: bool,
}

impl FfnBlock {
    /// Everything but the packed weights, as numbers for the cache key; and the sub-norm.
    fn params(&self) -> (Vec<f32>, Option<&[f32]>) {
        let act = match self.activation {
            FfnActivation::Silu => 0.0,
            FfnActivation::ReluSquared => 1.0,
            FfnActivation::GeluTanh => 2.0,
        };
        let mut p = vec![
            self.scales[0],
            self.scales[1],
            self.scales[2],
            act,
            self.norm_eps,
            self.int8_activations as u8 as f32,
            self.sub_norm.is_some() as u8 as f32,
        ];
        p.extend(self.sub_norm.iter().flatten());
        (p, self.sub_norm.as_deref())
    }
}

/// The FFN block graph on `m` rows: `X (1, m, dim)` → `Y (1, m, dim)`.
fn ffn_graph(f: &FfnBlock, m: usize) -> ort::Result<OnnxModel> {
    let (dim, ffn) = (f.gate.k, f.gate.n);
    let mut g = Graph::new()?;
    g.set_inputs([f32_outlet("X", &[1, m, dim])])?;
    g.set_outputs([f32_outlet("Y", &[1, m, dim])])?;
    let mut b = Builder { g, next: 0 };
    let gate = b.matmul(&f.gate, "X", None)?;
    let gate = b.scaled(gate, f.scales[0])?;
    let up = b.matmul(&f.up, "X", None)?;
    let up = b.scaled(up, f.scales[1])?;
    let act = match f.activation {
        FfnActivation::Silu => {
            let sig = b.op("Sigmoid", &[&gate], &[])?;
            b.op("Mul", &[&gate, &sig], &[])?
        }
        FfnActivation::ReluSquared => {
            let r = b.op("Relu", &[&gate], &[])?;
            b.op("Mul", &[&r, &r], &[])?
        }
        // gelu_tanh(x) = x·σ(2·√(2/π)·(x + 0.044715·x³)), the form Tern's kernel computes.
        FfnActivation::GeluTanh => {
            let x2 = b.op("Mul", &[&gate, &gate], &[])?;
            let x3 = b.op("Mul", &[&x2, &gate], &[])?;
            let c = b.scalar(tern_kernels::scalar::GELU_TANH_C)?;
            let t = b.op("Mul", &[&x3, &c], &[])?;
            let t = b.op("Add", &[&t, &gate], &[])?;
            let k2 = b.scalar(2.0 * tern_kernels::scalar::GELU_TANH_K)?;
            let z = b.op("Mul", &[&t, &k2], &[])?;
            let sig = b.op("Sigmoid", &[&z], &[])?;
            b.op("Mul", &[&gate, &sig], &[])?
        }
    };
    let mut h = b.op("Mul", &[&act, &up], &[])?;
    if let Some(w) = &f.sub_norm {
        debug_assert_eq!(w.len(), ffn);
        h = b.rmsnorm(&h, w, f.norm_eps)?;
    }
    if f.int8_activations {
        h = b.int8_roundtrip(&h)?;
    }
    if f.scales[2] == 1.0 {
        b.matmul(&f.down, &h, Some("Y"))?;
    } else {
        let d = b.matmul(&f.down, &h, None)?;
        let c = b.scalar(f.scales[2])?;
        b.op_in("Mul", ONNX_DOMAIN, &[&d, &c], &[], Some("Y"))?;
    }
    model_of(b.g)
}

/// An FFN block prepared on ONNX Runtime: `(n, dim)` in, `(n, dim)` out, through a decode and
/// optionally a prefill session.
#[derive(Debug)]
pub struct OrtFfn(OrtMatrix);

impl DelegatedFfn for OrtFfn {
    fn run(&self, x: &mut [f32], n: usize) -> Result<(), DelegateError> {
        let input = x[..n * self.0.cols].to_vec();
        self.0.multiply(&input, n, x)
    }
}

/// A matrix prepared on ONNX Runtime: a decode session and, optionally, a prefill one.
pub struct OrtMatrix {
    rows: usize,
    cols: usize,
    decode: Mutex<Session>,
    prefill: Option<(usize, Mutex<Session>)>,
}

impl fmt::Debug for OrtMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("prefill_chunk", &self.prefill.as_ref().map(|p| p.0))
            .finish()
    }
}

impl OrtMatrix {
    /// `y (m, rows) = x (m, cols) · Wᵀ` on a session for exactly `m` rows.
    fn run(
        &self,
        s: &Mutex<Session>,
        x: &[f32],
        m: usize,
        y: &mut [f32],
    ) -> Result<(), DelegateError> {
        let backend = |e: ort::Error| DelegateError::Backend {
            message: e.to_string(),
        };
        let a = Tensor::from_array(([1usize, m, self.cols], x[..m * self.cols].to_vec()))
            .map_err(backend)?;
        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![a]).map_err(backend)?;
        let (_, data) = out[0].try_extract_tensor::<f32>().map_err(backend)?;
        if data.len() != m * self.rows {
            return Err(DelegateError::Shape {
                expected: m * self.rows,
                found: data.len(),
            });
        }
        y[..m * self.rows].copy_from_slice(data);
        Ok(())
    }
}

impl DelegatedMatrix for OrtMatrix {
    fn multiply(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), DelegateError> {
        let (k, r) = (self.cols, self.rows);
        match &self.prefill {
            Some((c, s)) if n > 1 => {
                let mut padded = vec![0.0f32; c * k];
                let mut out = vec![0.0f32; c * r];
                for t0 in (0..n).step_by(*c) {
                    let len = (n - t0).min(*c);
                    padded[..len * k].copy_from_slice(&x[t0 * k..(t0 + len) * k]);
                    padded[len * k..].fill(0.0);
                    self.run(s, &padded, *c, &mut out)?;
                    y[t0 * r..(t0 + len) * r].copy_from_slice(&out[..len * r]);
                }
            }
            _ => {
                for t in 0..n {
                    self.run(&self.decode, &x[t * k..], 1, &mut y[t * r..])?;
                }
            }
        }
        Ok(())
    }
}
