//! `tern quantize`: rewrite a GGUF model's weight matrices in another type.
//!
//! Every tensor is read (dequantized with the scalar reference kernels), and 2-D (or higher)
//! tensors are requantized with the kernels' quantizers; 1-D tensors (norms, biases, BitNet's
//! `.scale` tensors) are copied byte for byte, as is any tensor whose type does not change. All
//! metadata is copied; `general.file_type` is set to the llama.cpp file type of `--type`.
//!
//! Which type each tensor gets:
//! - `token_embd.weight` and `output.weight` (the embedding and the output head) get
//!   `--embedding-type`, Q8_0 unless told otherwise (`keep` leaves them as they are): a
//!   ternarized or 4-bit embedding costs far more quality than the bytes it saves, and llama.cpp's
//!   quantizer likewise keeps the output head at higher precision.
//! - every other tensor of 2+ dimensions gets `--type`, unless its rows do not divide into that
//!   type's blocks (256 weights for TQ1_0/TQ2_0/Q2_K/Q3_K/Q4_K/Q5_K/Q6_K, 128 for I2_S, 32 for
//!   Q4_0/Q4_1/Q8_0/Q5_0/Q5_1/IQ4_NL). Those fall
//!   back to `--fallback-type`, Q4_0 by default as in llama.cpp's quantizer for TQ1_0/TQ2_0
//!   (`llama-quant.cpp`), and to F16 if even that does not divide. The summary names each one.
//!
//! Every quantizer except the ternary ones is ggml's reference quantizer, reproduced exactly
//! (`quantize_row_*_ref` for Q4_0, Q4_1, Q8_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; IQ4_NL's
//! without importance weights), which is what llama.cpp runs without an importance matrix: each
//! tensor holds the bytes `llama-quantize` writes for the same f32 input. The input is the
//! source tensor dequantized by the scalar kernels, which equal ggml's `dequantize_row_*` bit for
//! bit. A single k-quant `--type`'s `general.file_type` is llama.cpp's `MOSTLY_Q4_K_S` (14),
//! `MOSTLY_Q5_K_S` (16), `MOSTLY_Q6_K` (18), `MOSTLY_Q3_K_S` (11) or `MOSTLY_Q2_K` (10).
//!
//! llama.cpp's mixes (`--type q4_k_m|q4_k_s|q5_k_m|q5_k_s|q3_k_m|q3_k_s|q3_k_l`, and
//! `--mix --type q2_k|q6_k`, which are single types without `--mix`) choose each tensor's type by
//! llama.cpp's own rules instead of `--embedding-type` / `--fallback-type`: the table and rules
//! are in `quantize/mix.rs`. In short: the output head (or the tied embedding) Q6_K, or Q8_0 when
//! its rows do not divide into 256; `attn_v` and `ffn_down` Q6_K on the "more bits" layers for
//! the _M mixes (Q5_K/Q4_K on the first layers for Q3_K_M and Q4_K_S); `attn_output` Q3_K /
//! Q4_K / Q5_K for Q2_K / Q3_K_M / Q3_K_L; rows that do not divide into 256 fall back
//! Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0. `general.file_type` is the mix's
//! `llama_ftype`. The files equal llama.cpp's tensor for tensor (`tests/quantize.rs` checks
//! every tensor's type and bytes against llama.cpp's `llama_model_quantize` on SmolLM2).
//! `--type iq4_xs` is llama.cpp's IQ4_XS mix (IQ4_XS's quantizer is ggml's `quantize_iq4_xs`
//! without importance weights).
//!
//! Ternary types (`--type tq1_0|tq2_0|i2_s`) use BitNet b1.58's absmean rule per tensor: with
//! `γ = mean |w|`, each weight becomes `t = round(clamp(w/γ, −1, 1))` (so |w| > γ/2 → ±1). The
//! scale stored is the mean |w| over the weights that became ±1, the least-squares scale for those
//! codes, rather than γ itself: on weights that are already ternary (`w = t·s`, some zero) it
//! returns exactly `s` (γ would be `s` times the nonzero fraction), so converting between
//! TQ1_0, TQ2_0 and I2_S is lossless. TQ1_0/TQ2_0 store that scale in every block's f16 `d`;
//! I2_S stores it once as f32 after the codes (bitnet.cpp's layout: `n/4` code bytes, the scale,
//! zero padding to `n/4 + 32`). A tensor that is already TQ1_0/TQ2_0 going to TQ1_0/TQ2_0 skips
//! the absmean step: ggml's per-block rule (`d = max |w|`) re-encodes each block exactly, keeping
//! per-block scales. A ternarized model that was not trained ternary talks nonsense, but it is a
//! real file for every kernel.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use tern_kernels::blocks::F16Le;
use tern_kernels::{scalar, Format, Kernels};
use tern_runtime::fs::MappedFile;
use tern_runtime::gguf::write::GgufWriter;
use tern_runtime::gguf::{GgmlType, Gguf, TensorInfo, Value};
use tern_runtime::model::WeightBytes;
use tern_runtime::parallel::Parallel;
use tern_runtime::pool::ThreadPool;

use crate::error::{Context, Error, Result};

mod mix;

use mix::{Mix, ModelFacts};

/// `tern quantize`'s options.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The model to read.
    #[arg(short, long, value_name = "IN.gguf")]
    pub model: PathBuf,
    /// The file to write (through OUT.gguf.part, renamed when complete).
    #[arg(short, long, value_name = "OUT.gguf")]
    pub output: Option<PathBuf>,
    /// The type: tq2_0, tq1_0, i2_s, q4_0, q4_1, q5_0, q5_1, iq4_nl, q8_0, q4_k, q5_k, q6_k,
    /// q3_k, q2_k; or one of llama.cpp's mixes q4_k_m, q4_k_s, q5_k_m, q5_k_s, q3_k_m, q3_k_s,
    /// q3_k_l, iq4_xs.
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: String,
    /// The type of the embedding and output head, or keep [default: q8_0].
    #[arg(long, value_name = "TYPE")]
    pub embedding_type: Option<String>,
    /// The type of matrices whose rows do not divide into --type's blocks [default: q4_0].
    #[arg(long, value_name = "TYPE")]
    pub fallback_type: Option<String>,
    /// Read --type q2_k or q6_k as llama.cpp's mix of that name, not as a single type.
    #[arg(long)]
    pub mix: bool,
    /// Print one JSON object (every tensor's old and new type and size) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Bytes after an I2_S tensor's packed codes: its f32 scale, then zero padding.
const I2_S_TRAILER: usize = 32;

/// The types `tern quantize` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    non_camel_case_types,
    reason = "GGUF's names (Q4_0, I2_S), as in `Format`"
)]
enum Target {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    IQ4_NL,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
    Q3_K,
    Q2_K,
    /// Only as a mix's choice (`iq4_xs`), not a `--type` of its own.
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    I2_S,
}

impl Target {
    const ALL: [Target; 16] = [
        Target::TQ2_0,
        Target::TQ1_0,
        Target::I2_S,
        Target::Q4_0,
        Target::Q4_1,
        Target::Q5_0,
        Target::Q5_1,
        Target::IQ4_NL,
        Target::Q8_0,
        Target::Q4_K,
        Target::Q5_K,
        Target::Q6_K,
        Target::Q3_K,
        Target::Q2_K,
        Target::F16,
        Target::F32,
    ];

    fn format(self) -> Format {
        match self {
            Target::F32 => Format::F32,
            Target::F16 => Format::F16,
            Target::Q4_0 => Format::Q4_0,
            Target::Q4_1 => Format::Q4_1,
            Target::Q5_0 => Format::Q5_0,
            Target::Q5_1 => Format::Q5_1,
            Target::IQ4_NL => Format::IQ4_NL,
            Target::Q8_0 => Format::Q8_0,
            Target::Q4_K => Format::Q4_K,
            Target::Q5_K => Format::Q5_K,
            Target::Q6_K => Format::Q6_K,
            Target::Q3_K => Format::Q3_K,
            Target::Q2_K => Format::Q2_K,
            Target::IQ4_XS => Format::IQ4_XS,
            Target::TQ1_0 => Format::TQ1_0,
            Target::TQ2_0 => Format::TQ2_0,
            Target::I2_S => Format::I2_S,
        }
    }

    fn ggml_type(self) -> GgmlType {
        GgmlType(self.format().ggml_type())
    }

    /// The `general.file_type` (llama.cpp's `llama_ftype`) of a model mostly in this type.
    /// I2_S's 40 is bitnet.cpp's `LLAMA_FTYPE_MOSTLY_I2_S`.
    fn file_type(self) -> u32 {
        match self {
            Target::F32 => 0,
            Target::F16 => 1,
            Target::Q4_0 => 2,
            Target::Q4_1 => 3,
            Target::Q8_0 => 7,
            Target::Q5_0 => 8,
            Target::Q5_1 => 9,
            Target::IQ4_NL => 25,
            Target::Q4_K => 14,
            Target::Q5_K => 16,
            Target::Q6_K => 18,
            Target::Q3_K => 11,
            Target::Q2_K => 10,
            Target::IQ4_XS => 30,
            Target::TQ1_0 => 36,
            Target::TQ2_0 => 37,
            Target::I2_S => 40,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::F32 => "f32",
            Target::F16 => "f16",
            Target::Q4_0 => "q4_0",
            Target::Q4_1 => "q4_1",
            Target::Q5_0 => "q5_0",
            Target::Q5_1 => "q5_1",
            Target::IQ4_NL => "iq4_nl",
            Target::Q8_0 => "q8_0",
            Target::Q4_K => "q4_k",
            Target::Q5_K => "q5_k",
            Target::Q6_K => "q6_k",
            Target::Q3_K => "q3_k",
            Target::Q2_K => "q2_k",
            Target::IQ4_XS => "iq4_xs",
            Target::TQ1_0 => "tq1_0",
            Target::TQ2_0 => "tq2_0",
            Target::I2_S => "i2_s",
        }
    }

    fn parse(s: &str, option: &str) -> std::result::Result<Target, String> {
        let lower = s.to_ascii_lowercase();
        Target::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                format!("unknown {option} '{s}' (one of {})", names.join(", "))
            })
    }

    /// Whether rows of `row_len` weights divide into this type's blocks.
    fn fits(self, row_len: u64) -> bool {
        row_len.is_multiple_of(self.format().block_len() as u64)
    }
}

/// What happens to one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Bytes copied unchanged.
    Copy,
    /// Dequantized and requantized to this type.
    Convert(Target),
}

/// Why a tensor got the type it got, for the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    OneDim,
    SameType,
    Embedding,
    Target,
    Fallback {
        row_len: u64,
        wanted: Target,
    },
    /// Chosen by llama.cpp's rules for the mix (`mix.rs`).
    Mix,
    /// Not quantized by llama.cpp's rules (norms, routers, …): copied.
    NotQuantized,
}

/// Runs `tern quantize`.
pub fn main(args: QuantizeArgs) -> Result<()> {
    let input = args.model.clone();
    let output = args
        .output
        .clone()
        .ok_or_else(|| Error::usage("missing --output (-o OUT.gguf)"))?;
    let type_name = args.ty.to_ascii_lowercase();
    let pool = ThreadPool::new(
        args.threads
            .unwrap_or_else(ThreadPool::available_threads)
            .max(1),
    )
    .context("--threads")?;
    let out = Out {
        json: args.json,
        pool: &pool,
    };
    let mix = match Mix::named(&type_name) {
        // q2_k and q6_k are also single types: the mix only when asked for.
        Some(m) if args.mix || Target::parse(&type_name, "--type").is_err() => Some(m),
        None if args.mix => {
            let names: Vec<&str> = mix::MIXES.iter().map(|m| m.name).collect();
            return Err(Error::usage(format!(
                "--mix: '{type_name}' is not a llama.cpp mix (one of {})",
                names.join(", ")
            )));
        }
        _ => None,
    };
    if let Some(m) = mix {
        let given = [
            ("embedding-type", &args.embedding_type),
            ("fallback-type", &args.fallback_type),
        ];
        if let Some((o, _)) = given.iter().find(|(_, v)| v.is_some()) {
            return Err(Error::usage(format!(
                "--{o} does not apply to --type {}: llama.cpp's rules choose every tensor's type",
                m.name
            )));
        }
        return main_mix(&input, &output, m, &out);
    }
    let target = Target::parse(&type_name, "--type").map_err(Error::usage)?;
    let embedding = match args.embedding_type.as_deref().unwrap_or("q8_0") {
        "keep" => None,
        s => Some(Target::parse(s, "--embedding-type").map_err(Error::usage)?),
    };
    let fallback = Target::parse(
        args.fallback_type.as_deref().unwrap_or("q4_0"),
        "--fallback-type",
    )
    .map_err(Error::usage)?;
    if same_file(&input, &output) {
        return Err(Error::usage(format!(
            "{}: output would overwrite the input",
            output.display()
        )));
    }

    let map = MappedFile::open(&input).context(input.display())?;
    let file = map.bytes();
    let src = Gguf::parse(file, file.len() as u64).context(input.display())?;

    let plans: Vec<(Plan, Reason)> = src
        .tensors()
        .iter()
        .map(|t| plan(t, target, embedding, fallback))
        .collect();
    let quantized = target.format().block_len() > 1;
    let w = write_file(
        &src,
        file,
        &plans,
        target.file_type(),
        quantized,
        &output,
        &out,
    )?;
    if out.json {
        let summary = json!({
            "type": target.name(),
            "file_type": target.file_type(),
            "embedding_type": embedding.map(Target::name),
            "fallback_type": fallback.name(),
        });
        print_json(&src, &w, &plans, &input, &output, summary);
    } else {
        report(
            &src, &w, &plans, &input, &output, target, embedding, fallback,
        );
    }
    Ok(())
}

/// How to report and with which workers.
struct Out<'a> {
    /// JSON instead of the table.
    json: bool,
    /// Workers for dequantizing and quantizing.
    pool: &'a ThreadPool,
}

/// The JSON report: `summary`'s fields, the files, and every tensor's old and new type and
/// size.
fn print_json(
    src: &Gguf<'_>,
    w: &GgufWriter<'_>,
    plans: &[(Plan, Reason)],
    input: &Path,
    output: &Path,
    mut summary: serde_json::Value,
) {
    let tensors: Vec<serde_json::Value> = src
        .tensors()
        .iter()
        .zip(w.tensors())
        .zip(plans)
        .map(|((t, d), (p, reason))| {
            json!({
                "name": t.name,
                "shape": &t.dims[..t.n_dims as usize],
                "old_type": t.ggml_type.to_string(),
                "new_type": d.ggml_type.to_string(),
                "old_bytes": t.size,
                "new_bytes": d.size,
                "converted": matches!(p, Plan::Convert(_)),
                "fallback": matches!(reason, Reason::Fallback { .. }),
            })
        })
        .collect();
    summary["input"] = json!(input.display().to_string());
    summary["output"] = json!(output.display().to_string());
    summary["old_bytes"] = json!(src.tensors().iter().map(|t| t.size).sum::<u64>());
    summary["new_bytes"] = json!(w.tensors().iter().map(|t| t.size).sum::<u64>());
    summary["tensors"] = json!(tensors);
    println!("{summary}");
}

/// `tern quantize --type MIX`: every tensor's type by llama.cpp's rules for the mix.
fn main_mix(input: &Path, output: &Path, m: &Mix, out: &Out<'_>) -> Result<()> {
    if same_file(input, output) {
        return Err(Error::usage(format!(
            "{}: output would overwrite the input",
            output.display()
        )));
    }
    let map = MappedFile::open(input).context(input.display())?;
    let file = map.bytes();
    let src = Gguf::parse(file, file.len() as u64).context(input.display())?;
    let facts =
        ModelFacts::of(&src).map_err(|e| Error::from(format!("{}: {e}", input.display())))?;
    let chosen = m.choose(src.tensors(), facts);
    let plans: Vec<(Plan, Reason)> = src
        .tensors()
        .iter()
        .zip(chosen)
        .map(|(t, c)| match c {
            None => (Plan::Copy, Reason::NotQuantized),
            Some(to) if to.ggml_type() == t.ggml_type => (Plan::Copy, Reason::SameType),
            Some(to) => (Plan::Convert(to), Reason::Mix),
        })
        .collect();
    let w = write_file(&src, file, &plans, m.ftype, true, output, out)?;
    if out.json {
        let summary = json!({
            "type": m.name,
            "file_type": m.ftype,
            "n_layer": facts.n_layer,
            "n_gqa": facts.n_gqa,
        });
        print_json(&src, &w, &plans, input, output, summary);
    } else {
        report_mix(&src, &w, &plans, input, output, m, facts);
    }
    Ok(())
}

/// Writes `output` (through `OUT.part`, so a failure never leaves a half file at OUT): `src`'s
/// metadata with `general.file_type` set (and `general.quantization_version` 2 if `quantized`),
/// then every tensor as `plans` says. Returns the writer, which knows the new tensor sizes.
fn write_file<'a>(
    src: &'a Gguf<'a>,
    file: &[u8],
    plans: &[(Plan, Reason)],
    file_type: u32,
    quantized: bool,
    output: &Path,
    out: &Out<'_>,
) -> Result<GgufWriter<'a>> {
    let mut w = GgufWriter::with_metadata_of(src).map_err(Error::from_err)?;
    w.set("general.file_type", Value::U32(file_type))
        .map_err(Error::from_err)?;
    if quantized {
        w.set("general.quantization_version", Value::U32(2))
            .map_err(Error::from_err)?;
    }
    for (t, (p, _)) in src.tensors().iter().zip(plans) {
        let ty = match p {
            Plan::Copy => t.ggml_type,
            Plan::Convert(to) => to.ggml_type(),
        };
        w.add_tensor(t.name, &t.dims[..t.n_dims as usize], ty)
            .map_err(Error::from_err)?;
    }
    let part = part_path(output);
    let result = write(src, file, &w, plans, &part, out.pool);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, output).context(output.display())?;
    Ok(w)
}

/// Decides what happens to tensor `t`.
fn plan(
    t: &TensorInfo<'_>,
    target: Target,
    embedding: Option<Target>,
    fallback: Target,
) -> (Plan, Reason) {
    let keep_or = |to: Target, reason: Reason| {
        if to.ggml_type() == t.ggml_type {
            (Plan::Copy, Reason::SameType)
        } else {
            (Plan::Convert(to), reason)
        }
    };
    if t.n_dims < 2 {
        return (Plan::Copy, Reason::OneDim);
    }
    if t.name == "token_embd.weight" || t.name == "output.weight" {
        return match embedding {
            None => (Plan::Copy, Reason::Embedding),
            Some(e) if e.fits(t.row_len()) => keep_or(e, Reason::Embedding),
            Some(e) => keep_or(
                fallback_for(t.row_len(), fallback),
                Reason::Fallback {
                    row_len: t.row_len(),
                    wanted: e,
                },
            ),
        };
    }
    if target.fits(t.row_len()) {
        keep_or(target, Reason::Target)
    } else {
        keep_or(
            fallback_for(t.row_len(), fallback),
            Reason::Fallback {
                row_len: t.row_len(),
                wanted: target,
            },
        )
    }
}

/// `fallback` if rows of `row_len` divide into its blocks, else F16 (any row length).
fn fallback_for(row_len: u64, fallback: Target) -> Target {
    if fallback.fits(row_len) {
        fallback
    } else {
        Target::F16
    }
}

/// Writes the output file: header, then each tensor copied or converted, in source order,
/// with a progress line per tensor on stderr as llama-quantize prints them.
fn write(
    src: &Gguf<'_>,
    file: &[u8],
    w: &GgufWriter<'_>,
    plans: &[(Plan, Reason)],
    path: &Path,
    pool: &ThreadPool,
) -> Result<()> {
    let out = File::create(path).context(path.display())?;
    let mut stream = w
        .stream(BufWriter::with_capacity(1 << 20, out))
        .context(path.display())?;
    let kernels = Kernels::scalar();
    let n = src.tensors().len();
    let width = n.to_string().len();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (i, ((t, d), (p, _))) in src.tensors().iter().zip(w.tensors()).zip(plans).enumerate() {
        // Ranges were checked against the file length by the parser.
        let bytes = t
            .data(file)
            .ok_or_else(|| format!("tensor '{}' lies outside the file", t.name))?;
        let shape: Vec<String> = t.dims[..t.n_dims as usize]
            .iter()
            .map(|d| format!("{d:>5}"))
            .collect();
        let head = format!(
            "[{:>width$}/{n:>width$}] {:>36} - [{}], type = {:>6}",
            i + 1,
            t.name,
            shape.join(", "),
            t.ggml_type.to_string()
        );
        match p {
            Plan::Copy => {
                eprintln!("{head}, size = {:>8.3} MiB", mib(t.size));
                stream.write_tensor(bytes)
            }
            Plan::Convert(to) => {
                eprint!("{head}, converting to {} .. ", to.name());
                let values = dequantize(&kernels, t, bytes, pool)?;
                let q = quantize(t, &values, *to, pool);
                eprintln!(
                    "size = {:>8.2} MiB -> {:>8.2} MiB",
                    mib(t.size),
                    mib(d.size)
                );
                stream.write_tensor(&q)
            }
        }
        .context(path.display())?;
    }
    stream.finish().context(path.display())?;
    Ok(())
}

/// Rows per parallel task: enough work per task to amortize the hand-off, and at least a
/// few tasks per thread so uneven rows balance.
fn rows_per_task(rows: usize, pool: &ThreadPool) -> usize {
    rows.div_ceil(4 * pool.threads()).max(1)
}

/// Every weight of `t` as f32, row after row, rows dequantized in parallel on `pool`.
fn dequantize(
    kernels: &Kernels,
    t: &TensorInfo<'_>,
    bytes: &[u8],
    pool: &ThreadPool,
) -> Result<Vec<f32>> {
    let format = t.ggml_type.format().ok_or_else(|| {
        format!(
            "tensor '{}' has type {}, which tern quantize cannot read (it reads {})",
            t.name,
            t.ggml_type,
            Format::ALL.map(|f| f.name()).join(", ")
        )
    })?;
    let n =
        usize::try_from(t.n_elements()).map_err(|_| format!("tensor '{}' is too large", t.name))?;
    let row_len = t.row_len() as usize;
    let row_bytes = format.row_bytes(row_len).ok_or_else(|| {
        format!(
            "tensor '{}': rows of {row_len} do not divide into {} blocks",
            t.name,
            format.name()
        )
    })?;
    let (packed, scale) = if format == Format::I2_S {
        // bitnet.cpp's trailer: the f32 tensor scale right after the n/4 code bytes.
        let packed = bytes
            .get(..n / 4)
            .ok_or_else(|| format!("tensor '{}' is truncated", t.name))?;
        let s = bytes
            .get(n / 4..n / 4 + 4)
            .ok_or_else(|| format!("tensor '{}' has no I2_S scale", t.name))?;
        (packed, f32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    } else {
        (bytes, 1.0)
    };
    let mut out = vec![0.0f32; n];
    if row_len > 0 && format != Format::I2_S {
        let per = rows_per_task(n / row_len, pool);
        let inputs: Vec<&[u8]> = packed.chunks(per * row_bytes).collect();
        let outputs: Vec<Mutex<&mut [f32]>> =
            out.chunks_mut(per * row_len).map(Mutex::new).collect();
        pool.run(outputs.len().min(inputs.len()), &|i| {
            // Each task locks only its own chunk: never contended.
            let mut o = outputs[i].lock().unwrap_or_else(|e| e.into_inner());
            for (row, o) in inputs[i]
                .chunks_exact(row_bytes)
                .zip(o.chunks_exact_mut(row_len))
            {
                kernels.dequant(format, row, o);
            }
        });
    } else if row_len > 0 {
        // I2_S packs codes across the whole tensor: one pass.
        for (row, o) in packed
            .chunks_exact(row_bytes)
            .zip(out.chunks_exact_mut(row_len))
        {
            kernels.dequant(format, row, o);
        }
    }
    if format == Format::I2_S {
        out.iter_mut().for_each(|v| *v *= scale);
    }
    Ok(out)
}

/// The bytes of `values` (all of tensor `t`) in `to`.
fn quantize(t: &TensorInfo<'_>, values: &[f32], to: Target, pool: &ThreadPool) -> Vec<u8> {
    let n = values.len();
    let row_len = (t.row_len() as usize).max(1);
    // Rows divide into blocks (checked by `plan`), so every row is whole blocks and the rows
    // quantize independently, in parallel.
    let par = |values: &[f32], f: Format, q: fn(&[f32], &mut [u8])| {
        let row_bytes = f.row_bytes(row_len).unwrap_or(0);
        let mut out = vec![0u8; n / f.block_len() * f.block_bytes()];
        if row_bytes == 0 || !n.is_multiple_of(row_len) {
            q(values, &mut out);
            return out;
        }
        let per = rows_per_task(n / row_len, pool);
        let inputs: Vec<&[f32]> = values.chunks(per * row_len).collect();
        let outputs: Vec<Mutex<&mut [u8]>> =
            out.chunks_mut(per * row_bytes).map(Mutex::new).collect();
        pool.run(outputs.len().min(inputs.len()), &|i| {
            // Each task locks only its own chunk: never contended.
            let mut o = outputs[i].lock().unwrap_or_else(|e| e.into_inner());
            q(inputs[i], &mut o);
        });
        out
    };
    match to {
        Target::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Target::F16 => values.iter().flat_map(|&v| F16Le::from_f32(v).0).collect(),
        Target::Q4_0 => par(values, Format::Q4_0, scalar::quantize_q4_0),
        Target::Q4_1 => par(values, Format::Q4_1, scalar::quantize_q4_1),
        Target::Q5_0 => par(values, Format::Q5_0, scalar::quantize_q5_0),
        Target::Q5_1 => par(values, Format::Q5_1, scalar::quantize_q5_1),
        Target::IQ4_NL => par(values, Format::IQ4_NL, scalar::quantize_iq4_nl),
        Target::Q8_0 => par(values, Format::Q8_0, scalar::quantize_q8_0),
        Target::Q4_K => par(values, Format::Q4_K, scalar::quantize_q4_k),
        Target::Q5_K => par(values, Format::Q5_K, scalar::quantize_q5_k),
        Target::Q6_K => par(values, Format::Q6_K, scalar::quantize_q6_k),
        Target::Q3_K => par(values, Format::Q3_K, scalar::quantize_q3_k),
        Target::Q2_K => par(values, Format::Q2_K, scalar::quantize_q2_k),
        Target::IQ4_XS => par(values, Format::IQ4_XS, scalar::quantize_iq4_xs),
        Target::TQ1_0 | Target::TQ2_0 => {
            let q = if matches!(t.ggml_type, GgmlType::TQ1_0 | GgmlType::TQ2_0) {
                // Already ternary per block: ggml's per-block max rule re-encodes it exactly.
                values.to_vec()
            } else {
                let (codes, scale) = absmean_ternary(values);
                codes.iter().map(|&c| c * scale).collect()
            };
            if to == Target::TQ1_0 {
                par(&q, Format::TQ1_0, scalar::quantize_tq1_0)
            } else {
                par(&q, Format::TQ2_0, scalar::quantize_tq2_0)
            }
        }
        Target::I2_S => {
            let (codes, scale) = absmean_ternary(values);
            let mut out = vec![0u8; n / 4 + I2_S_TRAILER];
            // The kernel packs the codes (inputs in {−1, 0, 1}: its absmean threshold keeps them);
            // its returned scale is theirs, not ours, so the trailer gets `scale`.
            scalar::quantize_i2_s(&codes, &mut out[..n / 4]);
            out[n / 4..n / 4 + 4].copy_from_slice(&scale.to_le_bytes());
            out
        }
    }
}

/// BitNet b1.58's absmean ternarization of a whole tensor: codes `t = round(clamp(w/γ, −1, 1))`
/// with `γ = mean |w|` (exact halves round to 0, as `torch.round` does), and the scale
/// `mean |w|` over the weights whose code is ±1 (see the module docs). Sums are in f64. A tensor
/// that is all zeros, or whose mean |w| is not finite (a NaN or infinite weight), gets all-zero
/// codes and scale 0.
fn absmean_ternary(w: &[f32]) -> (Vec<f32>, f32) {
    if w.is_empty() {
        return (Vec::new(), 0.0);
    }
    let gamma = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
    if !gamma.is_finite() || gamma == 0.0 {
        return (vec![0.0; w.len()], 0.0);
    }
    let (mut sum, mut count) = (0.0f64, 0u64);
    let codes = w
        .iter()
        .map(|&v| {
            let t = v as f64 / gamma;
            if t.abs() > 0.5 {
                sum += v.abs() as f64;
                count += 1;
                if t > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            } else {
                0.0
            }
        })
        .collect();
    let scale = if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
    };
    (codes, scale)
}

/// Prints one line per tensor and what fell back.
#[expect(
    clippy::too_many_arguments,
    reason = "the run's settings, each printed in the report; a struct for one call would add a type"
)]
fn report(
    src: &Gguf<'_>,
    w: &GgufWriter<'_>,
    plans: &[(Plan, Reason)],
    input: &Path,
    output: &Path,
    target: Target,
    embedding: Option<Target>,
    fallback: Target,
) {
    let mut fell_back = Vec::new();
    print_tensors(src, w, plans, |name, reason| match reason {
        Reason::OneDim => String::from("1-D: copied"),
        Reason::SameType => String::from("already this type: copied"),
        Reason::Embedding if embedding.is_none() => {
            String::from("embedding/output: kept (--embedding-type keep)")
        }
        Reason::Embedding => String::from("embedding/output: --embedding-type"),
        Reason::Target => String::new(),
        Reason::Mix | Reason::NotQuantized => String::new(),
        Reason::Fallback { row_len, wanted } => {
            fell_back.push(name);
            format!(
                "FALLBACK: rows of {row_len} do not divide into {} blocks of {}",
                wanted.name(),
                wanted.format().block_len()
            )
        }
    });
    let emb = embedding.map_or("kept as is", |e| e.name());
    println!(
        "\n{} -> {}: --type {} (general.file_type {}), embedding/output {emb}, fallback {}",
        input.display(),
        output.display(),
        target.name(),
        target.file_type(),
        fallback.name()
    );
    if target.format().is_ternary() {
        println!("ternary rule: per-tensor absmean codes (|w| > mean|w|/2 -> ±1), scale = mean |w| of the ±1 weights");
    }
    if fell_back.is_empty() {
        println!("fallback tensors: none");
    } else {
        println!(
            "fallback tensors ({}): {}",
            fell_back.len(),
            fell_back.join(", ")
        );
    }
}

/// The table both reports print: one line per tensor (name, old and new type and bytes, the
/// note `note(name, reason)` gives) and the totals.
fn print_tensors<'a, N: Into<String>>(
    src: &Gguf<'a>,
    w: &GgufWriter<'_>,
    plans: &[(Plan, Reason)],
    mut note: impl FnMut(&'a str, &Reason) -> N,
) {
    println!(
        "{:<36} {:<6} {:<6} {:>12} {:>12}  note",
        "tensor", "old", "new", "old bytes", "new bytes"
    );
    let (mut old_total, mut new_total) = (0u64, 0u64);
    for ((t, d), (_, reason)) in src.tensors().iter().zip(w.tensors()).zip(plans) {
        let note: String = note(t.name, reason).into();
        println!(
            "{:<36} {:<6} {:<6} {:>12} {:>12}  {note}",
            t.name,
            t.ggml_type.to_string(),
            d.ggml_type.to_string(),
            t.size,
            d.size
        );
        old_total += t.size;
        new_total += d.size;
    }
    println!(
        "{:<36} {:<6} {:<6} {:>12} {:>12}",
        "total", "", "", old_total, new_total
    );
}

/// Prints the tensor table of [`report`] and the mix's summary.
fn report_mix(
    src: &Gguf<'_>,
    w: &GgufWriter<'_>,
    plans: &[(Plan, Reason)],
    input: &Path,
    output: &Path,
    m: &Mix,
    facts: ModelFacts,
) {
    print_tensors(src, w, plans, |_, reason| match reason {
        Reason::NotQuantized => "not quantized by llama.cpp: copied",
        Reason::SameType => "already this type: copied",
        _ => "",
    });
    println!(
        "\n{} -> {}: llama.cpp mix {} (general.file_type {}), {} layers, gqa {}",
        input.display(),
        output.display(),
        m.name,
        m.ftype,
        facts.n_layer,
        facts.n_gqa
    );
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `OUT.part`, next to `OUT`.
fn part_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absmean_keeps_ternary_weights_and_their_scale() {
        // 0.375 · {−1, 0, 1} with a third zeros: γ = 0.25, codes unchanged, scale 0.375 exactly.
        let w: Vec<f32> = (0..300).map(|i| [-0.375, 0.0, 0.375][i % 3]).collect();
        let (codes, scale) = absmean_ternary(&w);
        assert_eq!(scale, 0.375);
        for (c, v) in codes.iter().zip(&w) {
            assert_eq!(c * scale, *v);
        }
    }

    #[test]
    fn absmean_rule_on_real_values() {
        // γ = mean |w| = 1: |w| > 0.5 → ±1, exact halves → 0; scale = mean of the ±1 magnitudes.
        let w = [0.5f32, -0.5, 0.75, -1.25, 0.0, 4.0, 0.25, -0.75];
        let (codes, scale) = absmean_ternary(&w);
        assert_eq!(codes, [0.0, 0.0, 1.0, -1.0, 0.0, 1.0, 0.0, -1.0]);
        assert_eq!(scale, (0.75 + 1.25 + 4.0 + 0.75) / 4.0);
        assert_eq!(absmean_ternary(&[0.0; 4]), (vec![0.0; 4], 0.0));
        assert_eq!(absmean_ternary(&[]), (vec![], 0.0));
        let (codes, _) = absmean_ternary(&[f32::NAN, 1.0]);
        assert_eq!(codes, [0.0, 0.0]);
    }

    #[test]
    fn fallbacks_follow_block_sizes() {
        let t = |name: &'static str, dims: [u64; 4], n_dims: u32, ty: GgmlType| TensorInfo {
            name,
            dims,
            n_dims,
            ggml_type: ty,
            offset: 0,
            size: 0,
        };
        let q8 = Some(Target::Q8_0);
        let smol_q = t("blk.0.attn_q.weight", [576, 576, 1, 1], 2, GgmlType::Q4_1);
        assert_eq!(
            plan(&smol_q, Target::TQ2_0, q8, Target::Q4_0),
            (
                Plan::Convert(Target::Q4_0),
                Reason::Fallback {
                    row_len: 576,
                    wanted: Target::TQ2_0
                }
            )
        );
        let down = t(
            "blk.0.ffn_down.weight",
            [1536, 576, 1, 1],
            2,
            GgmlType::Q4_1,
        );
        assert_eq!(
            plan(&down, Target::TQ2_0, q8, Target::Q4_0),
            (Plan::Convert(Target::TQ2_0), Reason::Target)
        );
        assert_eq!(
            plan(&down, Target::I2_S, q8, Target::Q4_0),
            (Plan::Convert(Target::I2_S), Reason::Target)
        );
        // Fallback that does not fit either: F16.
        let odd = t("x.weight", [100, 4, 1, 1], 2, GgmlType::F32);
        assert_eq!(
            plan(&odd, Target::Q4_0, q8, Target::Q8_0),
            (
                Plan::Convert(Target::F16),
                Reason::Fallback {
                    row_len: 100,
                    wanted: Target::Q4_0
                }
            )
        );
        // Norms copy; embeddings take --embedding-type or stay; same type copies.
        let norm = t("blk.0.attn_norm.weight", [576, 1, 1, 1], 1, GgmlType::F32);
        assert_eq!(
            plan(&norm, Target::TQ2_0, q8, Target::Q4_0),
            (Plan::Copy, Reason::OneDim)
        );
        let emb = t("token_embd.weight", [576, 49152, 1, 1], 2, GgmlType::Q4_1);
        assert_eq!(
            plan(&emb, Target::TQ2_0, q8, Target::Q4_0),
            (Plan::Convert(Target::Q8_0), Reason::Embedding)
        );
        assert_eq!(
            plan(&emb, Target::TQ2_0, None, Target::Q4_0),
            (Plan::Copy, Reason::Embedding)
        );
        assert_eq!(
            plan(&emb, Target::Q4_1, Some(Target::Q4_1), Target::Q4_0),
            (Plan::Copy, Reason::SameType)
        );
    }

    #[test]
    fn type_names_parse() {
        for t in Target::ALL {
            assert_eq!(Target::parse(t.name(), "--type"), Ok(t));
            assert_eq!(
                Target::parse(&t.name().to_ascii_uppercase(), "--type"),
                Ok(t)
            );
        }
        assert!(Target::parse("q7_k", "--type")
            .unwrap_err()
            .contains("tq2_0, tq1_0, i2_s"));
        // Mix names are not single types (IQ4_XS only exists as a mix's choice).
        for m in mix::MIXES {
            let single = Target::parse(m.name, "--type").is_ok();
            assert_eq!(single, matches!(m.name, "q2_k" | "q6_k"), "{}", m.name);
        }
    }
}
