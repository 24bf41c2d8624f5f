//! Shared by the ONNX Runtime tests: random GGUF matrices, the f64 reference product, model
//! loading and the libraries from the environment.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of these helpers"
)]

use std::path::PathBuf;
use std::sync::Arc;

use half::f16;
use tern_kernels::{Format, Kernels};
use tern_runtime::delegate::{
    Declined, Delegate, DelegateError, DelegatedFfn, DelegatedMatrix, FfnOffer, Offer,
};
use tern_runtime::weights::FfnActivation;
use tern_runtime::{ActivationPrecision, Model, Session, SessionOptions};

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `rows × cols` random weights of `format` with block scales in ±(0.01..0.1) (every tenth
/// block scale 0, one ±65504 block when `extreme`), codes over their whole domain.
pub fn random_matrix(
    format: Format,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
    extreme: bool,
) -> Vec<u8> {
    let blocks = rows * cols / format.block_len();
    let mut out = Vec::with_capacity(blocks * format.block_bytes());
    for i in 0..blocks {
        let d = if i % 10 == 3 {
            0.0
        } else if extreme && i == 1 {
            65504.0
        } else {
            rng.unit() * 0.1
        };
        let dh = f16::from_f32(d).to_le_bytes();
        let mut b = vec![0u8; format.block_bytes()];
        match format {
            Format::Q4_0 | Format::Q8_0 => {
                b[..2].copy_from_slice(&dh);
                b[2..].iter_mut().for_each(|x| *x = rng.byte());
            }
            Format::TQ2_0 => {
                b[..64].iter_mut().for_each(|x| {
                    *x = (0..4).fold(0, |a, n| a | (rng.byte() % 3) << (2 * n));
                });
                b[64..].copy_from_slice(&dh);
            }
            Format::TQ1_0 => {
                b[..52].iter_mut().for_each(|x| *x = rng.byte());
                b[52..].copy_from_slice(&dh);
            }
            Format::I2_S => b.iter_mut().for_each(|x| {
                *x = (0..4).fold(0, |a, n| a | (rng.byte() % 3) << (2 * n));
            }),
            other => panic!("{other:?}"),
        }
        out.extend(b);
    }
    out
}

/// `(y, Σ|w·x|)` per output, in f64, with Tern's scalar dequantizer: the reference product.
pub fn reference(
    format: Format,
    rows: usize,
    cols: usize,
    w: &[u8],
    x: &[f32],
    n: usize,
) -> Vec<(f64, f64)> {
    let rb = w.len() / rows;
    let mut row = vec![0.0f32; cols];
    let mut out = vec![(0.0, 0.0); n * rows];
    for r in 0..rows {
        Kernels::scalar().dequant(format, &w[r * rb..(r + 1) * rb], &mut row);
        for t in 0..n {
            let (mut y, mut mag) = (0.0f64, 0.0f64);
            for (a, b) in row.iter().zip(&x[t * cols..(t + 1) * cols]) {
                y += *a as f64 * *b as f64;
                mag += (*a as f64 * *b as f64).abs();
            }
            out[t * rows + r] = (y, mag);
        }
    }
    out
}

/// `$name`, or `None` (with a note) when unset, unless `TERN_REQUIRE_NPU_TESTS` is set: then a
/// missing library fails the test instead of skipping it (`scripts/test-npu.sh` sets it).
pub fn env_path(name: &str) -> Option<PathBuf> {
    match std::env::var_os(name) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var_os("TERN_REQUIRE_NPU_TESTS").is_none(),
                "{name} is unset but TERN_REQUIRE_NPU_TESTS is"
            );
            eprintln!("skipped: {name} is unset (scripts/test-npu.sh sets it)");
            None
        }
    }
}

/// A model of `models/`, on the CPU's f32 activation path for ternary matrices; `None` (with a
/// note) when the file is absent.
pub fn model(name: &str) -> Option<Model> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return None;
    }
    let mut m = Model::open(&path, Kernels::best()).expect("model loads");
    m.set_ternary_kernel(tern_runtime::ternary::TernaryKernel::F32);
    Some(m)
}

/// A session with f32 activations.
pub fn session(m: Model) -> Session {
    Session::new(
        Arc::new(m),
        &SessionOptions {
            context: 64,
            precision: ActivationPrecision::F32,
            ..Default::default()
        },
    )
    .expect("session")
}

/// The index of the largest logit.
pub fn argmax(l: &[f32]) -> u32 {
    l.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0 as u32
}

/// `steps` greedy tokens after `prompt`.
pub fn greedy(m: Model, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut s = session(m);
    let mut next = argmax(s.feed(prompt).expect("prompt"));
    let mut out = vec![next];
    for _ in 1..steps {
        next = argmax(s.feed(&[next]).expect("token"));
        out.push(next);
    }
    out
}

/// FP16's unit roundoff, 2⁻¹¹.
pub const U16: f64 = 1.0 / 2048.0;

/// Bound of one `MatMulNBits` product on the HTP relative to `Σ|w·x|` (see `emulator.rs`):
/// `4·u₁₆ + γ_K`.
pub fn htp_product_bound(k: usize) -> f64 {
    let u32_ = 2f64.powi(-24);
    4.0 * U16 + k as f64 * u32_ / (1.0 - k as f64 * u32_)
}

/// A delegate that checks, at every call of the model's forward pass, what another delegate
/// returns against an f64 reference computed from the same inputs, within a derived bound
/// (below); it records the largest error as a fraction of its bound.
///
/// A matrix: `|y − y_exact| ≤ ε_K·Σ|w·x|`, `ε_K` = [`htp_product_bound`].
///
/// An FFN block (`tern_runtime::delegate::FfnOffer`), step by step, with `m_g = Σ|w_g·x|`
/// etc.: gate and up are products (`ε_K·m`) then scaled (`u₁₆·|g|`); the activation
/// `a(g)·u` moves by `L·|Δg|·|u| + |a(g)|·|Δu|` (`L` = the activation's largest slope on the
/// interval: 1.1 for SiLU, 1.13 for GELU-tanh, `2·(|g| + |Δg|)` for ReLU²) plus its own
/// evaluation in FP16, taken as `8·u₁₆·(|a(g)·u| + |Δ|)` (a few FP16 operations, each a
/// rounding); the sub-norm multiplies relative errors by at most `2` (`h / rms(h)`: the
/// error of `h` and of `rms(h)`, first order) plus `4·u₁₆`. The int8 rounding of `h` adds, per
/// element, `Δh` scaled, plus one code step `amax/127` where the exact `h·127/amax` lies within
/// `(Δh + Δamax)·127/amax + 2·u₁₆·128` of a rounding boundary (the HTP computes the rounding
/// in FP16), and `Δamax·|q|/127 + 2·u₁₆·amax` for the scale's error and the FP16 result. Down is a product on `h̃`: `ε_F·Σ|w_d·h̃| + Σ|w_d|·|Δh|`, then scaled.
pub struct Checked<D> {
    pub inner: D,
    /// Largest error / bound seen.
    pub worst: Arc<std::sync::Mutex<f64>>,
}

impl<D> Checked<D> {
    pub fn new(inner: D) -> Self {
        Checked {
            inner,
            worst: Arc::new(std::sync::Mutex::new(0.0)),
        }
    }
}

fn dequant(o: &Offer<'_>) -> Vec<f32> {
    let mut w = vec![0.0; o.t.rows * o.t.cols];
    Kernels::scalar().dequant(o.t.format, o.bytes, &mut w);
    w
}

/// `(y, Σ|w·x|)` per output of `w (rows, cols)` on one row `x`, in f64.
fn product(w: &[f32], rows: usize, x: &[f64]) -> Vec<(f64, f64)> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            let row = &w[r * cols..(r + 1) * cols];
            row.iter().zip(x).fold((0.0, 0.0), |(y, m), (a, b)| {
                (y + *a as f64 * b, m + (*a as f64 * b).abs())
            })
        })
        .collect()
}

struct CheckedMatrix {
    inner: Box<dyn DelegatedMatrix>,
    w: Vec<f32>,
    rows: usize,
    cols: usize,
    worst: Arc<std::sync::Mutex<f64>>,
}

impl std::fmt::Debug for CheckedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedMatrix({}×{})", self.rows, self.cols)
    }
}

impl DelegatedMatrix for CheckedMatrix {
    fn multiply(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), DelegateError> {
        self.inner.multiply(x, n, y)?;
        let eps = htp_product_bound(self.cols);
        let mut worst = self.worst.lock().unwrap();
        for t in 0..n {
            let xt: Vec<f64> = x[t * self.cols..(t + 1) * self.cols]
                .iter()
                .map(|&v| v as f64)
                .collect();
            for (r, (want, m)) in product(&self.w, self.rows, &xt).into_iter().enumerate() {
                let got = y[t * self.rows + r] as f64;
                let bound = eps * m + 1e-30;
                let ratio = (got - want).abs() / bound;
                assert!(ratio <= 1.0, "product row {r}: {got} vs {want} ± {bound}");
                *worst = worst.max(ratio);
            }
        }
        Ok(())
    }
}

struct CheckedFfn {
    inner: Box<dyn DelegatedFfn>,
    w: [Vec<f32>; 3],
    scales: [f32; 3],
    dim: usize,
    ffn: usize,
    activation: FfnActivation,
    sub_norm: Option<Vec<f32>>,
    eps: f32,
    int8: bool,
    worst: Arc<std::sync::Mutex<f64>>,
}

impl std::fmt::Debug for CheckedFfn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckedFfn({}, {})", self.dim, self.ffn)
    }
}

impl CheckedFfn {
    /// The exact block output on `x` and each output's bound.
    fn reference(&self, x: &[f64]) -> Vec<(f64, f64)> {
        let (dim, ffn) = (self.dim, self.ffn);
        let eps_d = htp_product_bound(dim);
        let g = product(&self.w[0], ffn, x);
        let u = product(&self.w[1], ffn, x);
        let (mut h, mut dh) = (vec![0.0f64; ffn], vec![0.0f64; ffn]);
        for j in 0..ffn {
            let (sg, su) = (self.scales[0] as f64, self.scales[1] as f64);
            let (gv, uv) = (g[j].0 * sg, u[j].0 * su);
            let eg = (eps_d * g[j].1 + U16 * g[j].1) * sg.abs();
            let eu = (eps_d * u[j].1 + U16 * u[j].1) * su.abs();
            let (a, slope) = match self.activation {
                FfnActivation::Silu => (gv / (1.0 + (-gv).exp()), 1.1),
                FfnActivation::GeluTanh => {
                    let k = (2.0 / std::f64::consts::PI).sqrt();
                    (
                        0.5 * gv * (1.0 + (k * (gv + 0.044715 * gv * gv * gv)).tanh()),
                        1.13,
                    )
                }
                FfnActivation::ReluSquared => (gv.max(0.0).powi(2), 2.0 * (gv.abs() + eg)),
            };
            h[j] = a * uv;
            let d = slope * eg * (uv.abs() + eu) + a.abs() * eu;
            dh[j] = d + 8.0 * U16 * (h[j].abs() + d);
        }
        if let Some(w) = &self.sub_norm {
            let ms = h.iter().map(|v| v * v).sum::<f64>() / ffn as f64;
            let inv = 1.0 / (ms + self.eps as f64).sqrt();
            // |Δ(h/rms)| ≤ |Δh|/rms + |h|·|Δrms|/rms², |Δrms| ≤ max|Δh| (a norm's change).
            let drms = dh.iter().fold(0.0f64, |a, b| a.max(*b));
            for j in 0..ffn {
                let wj = w[j] as f64;
                let v = h[j] * inv * wj;
                dh[j] =
                    (dh[j] * inv + h[j].abs() * drms * inv * inv) * wj.abs() + 4.0 * U16 * v.abs();
                h[j] = v;
            }
        }
        if self.int8 {
            let amax = h.iter().fold(0.0f64, |a, b| a.max(b.abs()));
            let damax = dh.iter().fold(0.0f64, |a, b| a.max(*b));
            if amax > 0.0 {
                let s = 127.0 / amax;
                for j in 0..ffn {
                    let v = h[j] * s;
                    let q = (v.abs() + 0.5).trunc().copysign(v).clamp(-128.0, 127.0);
                    let slack = (dh[j] + damax) * s + 2.0 * U16 * 128.0;
                    let frac = (v.abs() - v.abs().trunc() - 0.5).abs();
                    let flip = if frac <= slack { amax / 127.0 } else { 0.0 };
                    h[j] = q / s;
                    // `q·(amax/127)` with amax off by Δamax, rounded to FP16 twice.
                    dh[j] = flip + damax * q.abs() / 127.0 + 2.0 * U16 * amax;
                }
            }
        }
        let eps_f = htp_product_bound(ffn);
        let sd = self.scales[2] as f64;
        (0..dim)
            .map(|r| {
                let row = &self.w[2][r * ffn..(r + 1) * ffn];
                let (mut y, mut m, mut prop) = (0.0, 0.0, 0.0);
                for j in 0..ffn {
                    y += row[j] as f64 * h[j];
                    m += (row[j] as f64 * h[j]).abs();
                    prop += (row[j] as f64).abs() * dh[j];
                }
                (y * sd, ((eps_f + U16) * m + prop) * sd.abs())
            })
            .collect()
    }
}

impl DelegatedFfn for CheckedFfn {
    fn run(&self, x: &mut [f32], n: usize) -> Result<(), DelegateError> {
        let input: Vec<f64> = x[..n * self.dim].iter().map(|&v| v as f64).collect();
        self.inner.run(x, n)?;
        let mut worst = self.worst.lock().unwrap();
        for t in 0..n {
            let want = self.reference(&input[t * self.dim..(t + 1) * self.dim]);
            for (r, (want, bound)) in want.into_iter().enumerate() {
                let got = x[t * self.dim + r] as f64;
                let ratio = (got - want).abs() / (bound + 1e-30);
                assert!(ratio <= 1.0, "FFN block out {r}: {got} vs {want} ± {bound}");
                *worst = worst.max(ratio);
            }
        }
        Ok(())
    }
}

impl<D: Delegate> Delegate for Checked<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn offer(&self, o: &Offer<'_>) -> Result<Box<dyn DelegatedMatrix>, Declined> {
        let inner = self.inner.offer(o)?;
        Ok(Box::new(CheckedMatrix {
            inner,
            w: dequant(o),
            rows: o.t.rows,
            cols: o.t.cols,
            worst: self.worst.clone(),
        }))
    }

    fn offer_ffn(&self, o: &FfnOffer<'_>) -> Result<Box<dyn DelegatedFfn>, Declined> {
        let inner = self.inner.offer_ffn(o)?;
        Ok(Box::new(CheckedFfn {
            inner,
            w: [dequant(&o.gate), dequant(&o.up), dequant(&o.down)],
            scales: [o.gate.t.scale, o.up.t.scale, o.down.t.scale],
            dim: o.gate.t.cols,
            ffn: o.gate.t.rows,
            activation: o.activation,
            sub_norm: o.sub_norm.map(<[f32]>::to_vec),
            eps: o.norm_eps,
            int8: o.int8_activations,
            worst: self.worst.clone(),
        }))
    }
}

/// [`model`], but a missing file fails the test under `TERN_REQUIRE_NPU_TESTS` (the script
/// that sets it generates the file first).
pub fn required_model(name: &str) -> Option<Model> {
    let m = model(name);
    assert!(
        m.is_some() || std::env::var_os("TERN_REQUIRE_NPU_TESTS").is_none(),
        "models/{name} is missing but TERN_REQUIRE_NPU_TESTS is set"
    );
    m
}
