//! Elementwise and reduction math of a transformer layer, in f32.

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) · weight[i]`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    assert!(out.len() == x.len() && x.len() == weight.len());
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / libm::sqrtf(ss + eps);
    for ((o, &xi), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = xi * scale * w;
    }
}

/// Numerically stable softmax in place: subtracts the maximum before exponentiating, so no
/// input overflows; an all-`-inf` row (fully masked) becomes all zeros instead of NaN.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SiLU-gated product of the SwiGLU feed-forward: `gate[i] = silu(gate[i]) · up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + libm::expf(-*g)) * u;
    }
}

/// Rotates one head vector by the angles whose cosines and sines are given, pair by pair.
///
/// `neox == false` (GGML's "normal" mode, used by `llama`) rotates adjacent pairs
/// `(x[2i], x[2i+1])`; `neox == true` rotates `(x[i], x[i + n/2])` where `n = 2·cos.len()`.
/// Only the first `2·cos.len()` dimensions rotate (partial RoPE); the rest pass through.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    let half = cos.len();
    assert!(sin.len() == half && 2 * half <= x.len());
    for i in 0..half {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// `y[i] += a · x[i]`.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Dot product of two f32 vectors.
///
/// Eight running sums (then the tail) instead of one: the order is fixed, so the result is
/// reproducible, and the compiler can keep the sums in one vector register.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| x * y).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Squared-ReLU-gated product (BitNet b1.58 2B4T): `gate[i] = max(gate[i], 0)² · up[i]`.
pub fn relu_squared_glu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        let r = g.max(0.0);
        *g = r * r * u;
    }
}

/// GELU-gated product with GELU's tanh approximation (Gemma's `gelu_pytorch_tanh`):
/// `gate[i] = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))) · up[i]`. Exact `tanhf`, not a table:
/// llama.cpp rounds its GELU through a 65536-entry f16 table, which Tern's tolerances absorb.
pub fn gelu_tanh_glu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    // √(2/π)
    const K: f32 = 0.797_884_6;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = 0.5 * x * (1.0 + libm::tanhf(K * (x + 0.044_715 * x * x * x))) * u;
    }
}

/// BitNet b1.58's activation quantizer applied in place: the vector is scaled by
/// `127 / max|x|`, rounded to integers in [−128, 127] and scaled back, so what follows computes
/// with exactly the int8 values the trained model expects (per-token absmax, as in the paper and
/// bitnet.cpp). An all-zero vector stays zero.
pub fn absmax_int8_roundtrip(x: &mut [f32]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return;
    }
    let (s, inv) = (127.0 / amax, amax / 127.0);
    for v in x.iter_mut() {
        *v = super::q8::round_half_away(*v * s).clamp(-128.0, 127.0) * inv;
    }
}

/// RMSNorm in place: `x[i] = x[i] / sqrt(mean(x²) + eps) · weight[i]`.
pub fn rmsnorm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    assert_eq!(x.len(), weight.len());
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / libm::sqrtf(ss + eps);
    for (xi, &w) in x.iter_mut().zip(weight) {
        *xi *= scale * w;
    }
}
