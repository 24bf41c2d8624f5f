//! Shared by the ONNX Runtime tests: random GGUF matrices, the f64 reference product, model
//! loading and the libraries from the environment.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use half::f16;
use tern_kernels::{Format, Kernels};
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
