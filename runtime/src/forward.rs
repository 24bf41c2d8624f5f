//! The Llama-family forward pass over a batch of consecutive tokens.
//!
//! Reads top-down like the architecture: embed, then per block attention and feed-forward
//! with pre-norms and residuals, then the final norm and the output head. Buffers are allocated
//! once per session in [`Scratch`]; shapes are noted beside each.

use alloc::vec;
use alloc::vec::Vec;

use tern_kernels::{scalar, Format};

use crate::config::{FfnActivation, RopeStyle};
use crate::error::GenerateError;
use crate::feed::WeightFeed;
use crate::kv_cache::{KvCache, Rows};
use crate::matmul::{matmul, matmul_many, ActivationPrecision, Output, MAX_FUSED};
use crate::model::Model;
use crate::parallel::{Parallel, SharedOut};
use crate::weights::{QMatrix, TensorRef};

/// Which positions of a batch need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (generation).
    Last,
    /// Every token (perplexity, scoring).
    All,
}

/// Activation buffers for batches of up to `max_batch` tokens.
#[derive(Clone, Debug)]
pub struct Scratch {
    max_batch: usize,
    /// Residual stream, `(n, dim)`.
    x: Vec<f32>,
    /// Normed input / projection output, `(n, dim)`.
    xb: Vec<f32>,
    /// Queries, `(n, q_dim)`.
    q: Vec<f32>,
    /// New keys, `(n, kv_dim)`.
    k: Vec<f32>,
    /// New values, `(n, kv_dim)`.
    v: Vec<f32>,
    /// Attention output, `(n, q_dim)`.
    att_out: Vec<f32>,
    /// Attention scores, one context-long row per head: `(n_heads, ctx)`.
    scores: Vec<f32>,
    /// Feed-forward gate and up projections, `(n, ffn_dim)` each.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// RoPE cosines and sines per token, `(n, rope_dim / 2)`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Logits, `(n, vocab)` (only the first row is used for [`LogitsFor::Last`]).
    logits: Vec<f32>,
}

impl Scratch {
    /// Bytes [`Scratch::new`] allocates for these arguments (keep the two in step).
    pub(crate) fn bytes_for(model: &Model, ctx: usize, max_batch: usize) -> u64 {
        let c = model.config();
        let n = max_batch.max(1) as u64;
        let per_token =
            2 * c.dim + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn_dim + c.rope_dim + c.vocab;
        4 * (n * per_token as u64 + (c.n_heads * ctx) as u64)
    }

    /// Buffers for `model` with a context of `ctx` positions and batches of `max_batch`.
    pub fn new(model: &Model, ctx: usize, max_batch: usize) -> Self {
        let c = model.config();
        let n = max_batch.max(1);
        Scratch {
            max_batch: n,
            x: vec![0.0; n * c.dim],
            xb: vec![0.0; n * c.dim],
            q: vec![0.0; n * c.q_dim()],
            k: vec![0.0; n * c.kv_dim()],
            v: vec![0.0; n * c.kv_dim()],
            att_out: vec![0.0; n * c.q_dim()],
            scores: vec![0.0; c.n_heads * ctx],
            gate: vec![0.0; n * c.ffn_dim],
            up: vec![0.0; n * c.ffn_dim],
            cos: vec![0.0; n * c.rope_dim / 2],
            sin: vec![0.0; n * c.rope_dim / 2],
            logits: vec![0.0; n * c.vocab],
        }
    }

    /// Largest batch these buffers hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Logits of the last forward call: `(rows, vocab)` where rows is 1 for
    /// [`LogitsFor::Last`] and the batch size for [`LogitsFor::All`].
    pub fn logits(&self, rows: usize, vocab: usize) -> &[f32] {
        &self.logits[..rows * vocab]
    }
}

/// What one forward call computes with: kernels, threads and activation precision.
#[derive(Clone, Copy)]
pub(crate) struct Exec<'a> {
    pub par: &'a dyn Parallel,
    pub precision: ActivationPrecision,
}

impl Model {
    /// Runs `tokens` (at most `s.max_batch()`, already checked against the vocabulary) at
    /// positions `pos0..`, appending their keys and values to `kv`, and leaves logits in `s`.
    /// Weights come from `feed`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        s: &mut Scratch,
        kv: &mut KvCache,
        feed: &mut dyn WeightFeed,
        ex: Exec<'_>,
        tokens: &[u32],
        pos0: usize,
        want: LogitsFor,
    ) -> Result<(), GenerateError> {
        let c = self.config();
        let k = self.kernels();
        let n = tokens.len();
        assert!(n >= 1 && n <= s.max_batch && pos0 + n <= kv.capacity());
        let (dim, q_dim, kv_dim, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);
        let t = self.tensors();

        // Token embeddings → residual stream x (n, dim).
        let embd = &t.token_embd;
        for (i, &tok) in tokens.iter().enumerate() {
            let row = feed.rows(embd, tok as usize..tok as usize + 1)?;
            k.dequant(embd.format, row, &mut s.x[i * dim..(i + 1) * dim]);
        }

        // RoPE angles of each token's position, shared by all heads and layers.
        let half = c.rope_dim / 2;
        for i in 0..n {
            let pos = (pos0 + i) as f32;
            for (j, &f) in self.rope_inv_freq().iter().enumerate() {
                let a = pos * f;
                s.cos[i * half + j] = libm::cosf(a);
                s.sin[i * half + j] = libm::sinf(a);
            }
        }
        let neox = c.rope_style == RopeStyle::Neox;

        for (l, lt) in t.layers.iter().enumerate() {
            feed.begin_layer(l, t);
            // Attention: norm, project, rotate, cache, attend, project back, add.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                scalar::rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lt.attn_norm, c.norm_eps);
            }
            // Q, K and V in one parallel section (`project_fused`; gate and up below too).
            let qkv = [
                (&lt.wq, &mut s.q[..]),
                (&lt.wk, &mut s.k[..]),
                (&lt.wv, &mut s.v[..]),
            ];
            self.project_fused(feed, ex, &s.xb, n, qkv)?;
            for i in 0..n {
                let (cos, sin) = (&s.cos[i * half..][..half], &s.sin[i * half..][..half]);
                for h in s.q[i * q_dim..(i + 1) * q_dim].chunks_exact_mut(hd) {
                    scalar::rope(h, cos, sin, neox);
                }
                for h in s.k[i * kv_dim..(i + 1) * kv_dim].chunks_exact_mut(hd) {
                    scalar::rope(h, cos, sin, neox);
                }
            }
            kv.store(k, l, pos0, &s.k[..n * kv_dim], &s.v[..n * kv_dim]);
            self.attend(s, kv, ex.par, l, n, pos0);
            if let Some(w) = &lt.attn_sub_norm {
                for o in s.att_out[..n * q_dim].chunks_exact_mut(q_dim) {
                    scalar::rmsnorm_in_place(o, w, c.norm_eps);
                }
            }
            self.project(feed, ex, &lt.wo, &s.att_out, n, &mut s.xb)?;
            for (x, d) in s.x[..n * dim].iter_mut().zip(&s.xb) {
                *x += d;
            }

            // Feed-forward: norm, SwiGLU, project back, add.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                scalar::rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lt.ffn_norm, c.norm_eps);
            }
            let gate_up = [(&lt.w_gate, &mut s.gate[..]), (&lt.w_up, &mut s.up[..])];
            self.project_fused(feed, ex, &s.xb, n, gate_up)?;
            let f = n * c.ffn_dim;
            match c.ffn_activation {
                // SiLU through the table exp (`tern_kernels::scalar::lut`, relative error
                // ≤ 2·10⁻⁷, far inside the f32 path's tolerance).
                FfnActivation::Silu => (k.swiglu.f)(&mut s.gate[..f], &s.up[..f]),
                FfnActivation::ReluSquared => {
                    scalar::relu_squared_glu(&mut s.gate[..f], &s.up[..f])
                }
            }
            if let Some(w) = &lt.ffn_sub_norm {
                for g in s.gate[..f].chunks_exact_mut(c.ffn_dim) {
                    scalar::rmsnorm_in_place(g, w, c.norm_eps);
                }
            }
            self.project(feed, ex, &lt.w_down, &s.gate, n, &mut s.xb)?;
            for (x, d) in s.x[..n * dim].iter_mut().zip(&s.xb) {
                *x += d;
            }
        }

        // Final norm and output head, for the rows that need logits.
        let first = match want {
            LogitsFor::Last => n - 1,
            LogitsFor::All => 0,
        };
        let rows = n - first;
        for i in 0..rows {
            let src = (first + i) * dim..(first + i + 1) * dim;
            let dst = i * dim..(i + 1) * dim;
            scalar::rmsnorm(&mut s.xb[dst], &s.x[src], &t.output_norm, c.norm_eps);
        }
        self.project(feed, ex, &t.output, &s.xb, rows, &mut s.logits)
    }

    /// `y (n, w.rows) = x (n, w.cols) · Wᵀ`, in as many slices of rows as the feed hands out.
    fn project(
        &self,
        feed: &mut dyn WeightFeed,
        ex: Exec<'_>,
        w: &TensorRef,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), GenerateError> {
        // Ternary matrices with per-token int8 activations (BitNet, or `--precision int8`):
        // integer and lookup-table kernels, see `crate::ternary`.
        if let Some(done) = crate::ternary::project(self, feed, ex, w, x, n, y) {
            return done;
        }
        // BitNet b1.58 feeds ternary matrices int8 activations (per-token absmax); emulated in
        // f32 here when the integer path declined (non-finite activations).
        let quantized;
        let x = if self.config().arch.is_bitnet() && w.format.is_ternary() {
            let mut q = x[..n * w.cols].to_vec();
            q.chunks_exact_mut(w.cols)
                .for_each(scalar::absmax_int8_roundtrip);
            quantized = q;
            &quantized[..]
        } else {
            x
        };
        let step = feed.max_rows(w);
        let rb = w.row_bytes();
        let mut r0 = 0;
        while r0 < w.rows {
            let r1 = (r0 + step).min(w.rows);
            let data = feed.rows(w, r0..r1)?;
            let part = TensorRef {
                rows: r1 - r0,
                len: (r1 - r0) * rb,
                ..*w
            };
            let m = QMatrix { t: part, data };
            matmul(self.kernels(), ex.par, ex.precision, m, x, n, y, w.rows, r0);
            r0 = r1;
        }
        if w.scale != 1.0 {
            for v in &mut y[..n * w.rows] {
                *v *= w.scale;
            }
        }
        Ok(())
    }

    /// [`Model::project`] for several matrices of the same input, as one parallel section
    /// when the feed has every matrix whole and none needs [`Model::project`]'s special cases
    /// (ternary kernels, BitNet scales): the activations are quantized once and the threads
    /// synchronize once per group instead of once per matrix (see `matmul::matmul_many`).
    fn project_fused<const N: usize>(
        &self,
        feed: &mut dyn WeightFeed,
        ex: Exec<'_>,
        x: &[f32],
        n: usize,
        mats: [(&TensorRef, &mut [f32]); N],
    ) -> Result<(), GenerateError> {
        // One token through ternary matrices (BitNet): one section of integer GEMVs.
        let mut mats = mats;
        if crate::ternary::project_fused(self, &*feed, ex, x, n, &mut mats).is_some() {
            return Ok(());
        }
        let plain = |w: &TensorRef| !w.format.is_ternary() && w.scale == 1.0;
        let fusable = N <= MAX_FUSED
            && mats
                .iter()
                .all(|(w, _)| plain(w) && feed.whole(w).is_some());
        if !fusable {
            for (w, y) in mats {
                self.project(feed, ex, w, x, n, y)?;
            }
            return Ok(());
        }
        let feed = &*feed;
        let mut outs = mats.map(|(w, y)| Output {
            // Checked just above: the feed has every matrix whole.
            w: QMatrix {
                t: *w,
                data: feed.whole(w).unwrap_or_default(),
            },
            y,
            y_stride: w.rows,
            col0: 0,
        });
        matmul_many(self.kernels(), ex.par, ex.precision, x, n, &mut outs);
        Ok(())
    }

    /// Causal grouped-query attention of the `n` new tokens over positions `0..pos0 + n` of
    /// layer `l`; one task per query head.
    fn attend(
        &self,
        s: &mut Scratch,
        kv: &KvCache,
        par: &dyn Parallel,
        l: usize,
        n: usize,
        pos0: usize,
    ) {
        let c = self.config();
        let k = self.kernels();
        let (q_dim, hd) = (c.q_dim(), c.head_dim);
        let group = c.n_heads / c.n_kv_heads;
        let ctx = kv.capacity();
        let scale = 1.0 / libm::sqrtf(hd as f32);
        let dot_rows_f16 = k
            .format(Format::F16)
            .dot_rows
            .expect("Kernels::scalar sets the F16 row kernel, backends only replace it")
            .f;
        let q = &s.q;
        let scores = SharedOut::new(&mut s.scores);
        let out = SharedOut::new(&mut s.att_out[..n * q_dim]);
        par.run(c.n_heads, &|h| {
            let kvh = h / group;
            let (keys, values) = (kv.keys(l, kvh, pos0 + n), kv.values(l, kvh, pos0 + n));
            // SAFETY: head h owns scores row h, of length ctx, inside the (n_heads, ctx) buffer.
            let sc = unsafe { scores.slice(h * ctx, ctx) };
            for i in 0..n {
                let len = pos0 + i + 1;
                let qh = &q[i * q_dim + h * hd..][..hd];
                let sc = &mut sc[..len];
                // Scores: this head's keys (len, hd) · q.
                match keys {
                    Rows::F32(keys) => {
                        for (p, s) in sc.iter_mut().enumerate() {
                            *s = (k.dot_f32.f)(qh, &keys[p * hd..][..hd]) * scale;
                        }
                    }
                    Rows::F16(keys) => {
                        dot_rows_f16(&keys[..2 * len * hd], qh, sc);
                        sc.iter_mut().for_each(|s| *s *= scale);
                    }
                }
                (k.softmax.f)(sc);
                // SAFETY: (token i, head h) owns this hd-wide slice of att_out (n, q_dim).
                let o = unsafe { out.slice(i * q_dim + h * hd, hd) };
                o.fill(0.0);
                // Output: the weighted sum of this head's values (len, hd).
                match values {
                    Rows::F32(values) => {
                        for (p, &w) in sc.iter().enumerate() {
                            (k.axpy.f)(o, w, &values[p * hd..][..hd]);
                        }
                    }
                    Rows::F16(values) => (k.axpy_rows_f16.f)(o, sc, &values[..2 * len * hd]),
                }
            }
        });
    }
}
