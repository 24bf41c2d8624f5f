//! The forward pass over a batch of consecutive tokens.
//!
//! Reads top-down like a transformer: embed, then per block attention and feed-forward with
//! pre-norms and residuals, then the final norm and the output head. Which optional steps a
//! block has (biases, Q/K norms, post-norms, a sliding window, the gate activation) comes from
//! the model's per-layer description ([`crate::weights::LayerTensors`]), never from asking
//! which architecture runs. Every weight matrix is multiplied through one product,
//! [`crate::weights::Matrix`]'s `project` (`crate::matrix`), which dispatches on the
//! representation chosen at load; this file never asks how a matrix is stored. Buffers are
//! allocated once per session in [`Scratch`]; shapes are noted beside each.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use tern_kernels::{scalar, Format};

use crate::error::GenerateError;
use crate::feed::WeightFeed;
use crate::kv_cache::{try_filled, KvCache, Rows};
use crate::matrix::{project_fused, Exec};
use crate::model::Model;
use crate::parallel::{Parallel, SharedOut};
use crate::rope::RopeStyle;
use crate::weights::{FfnActivation, LayerTensors};

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
    /// RoPE cosines and sines per rotation table and token, `(n_ropes, n, rope_dim / 2)`.
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
        let ropes = model.tensors().ropes.len();
        let per_token = 2 * c.dim
            + 2 * c.q_dim()
            + 2 * c.kv_dim()
            + 2 * c.ffn_dim
            + ropes * c.rope_dim
            + c.vocab;
        4 * (n * per_token as u64 + (c.n_heads * ctx) as u64)
    }

    /// Buffers for `model` with a context of `ctx` positions and batches of `max_batch`; the
    /// allocator's refusal when they do not fit.
    pub fn new(model: &Model, ctx: usize, max_batch: usize) -> Result<Self, TryReserveError> {
        let c = model.config();
        let n = max_batch.max(1);
        let ropes = model.tensors().ropes.len();
        let z = |len: usize| try_filled(len, 0.0f32);
        Ok(Scratch {
            max_batch: n,
            x: z(n * c.dim)?,
            xb: z(n * c.dim)?,
            q: z(n * c.q_dim())?,
            k: z(n * c.kv_dim())?,
            v: z(n * c.kv_dim())?,
            att_out: z(n * c.q_dim())?,
            scores: z(c.n_heads * ctx)?,
            gate: z(n * c.ffn_dim)?,
            up: z(n * c.ffn_dim)?,
            cos: z(ropes * n * c.rope_dim / 2)?,
            sin: z(ropes * n * c.rope_dim / 2)?,
            logits: z(n * c.vocab)?,
        })
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

impl Model {
    /// Runs `tokens` (at most `s.max_batch()`, already checked against the vocabulary) at
    /// positions `pos0..`, appending their keys and values to `kv`, and leaves logits in `s`.
    /// Weights come from `feed`.
    #[expect(
        clippy::too_many_arguments,
        reason = "distinct borrows (scratch, cache, weight feed, executor) plus the batch and its position"
    )]
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
        // A tied head built into another representation at load released the embedding's
        // pages; the rows read back are released again, or they would pile up in memory no
        // estimate counts (on Linux a fault maps up to a 2 MB folio of the file per row).
        let release = t.tied_output && !t.output.reads_file();
        for (i, &tok) in tokens.iter().enumerate() {
            let rows = tok as usize..tok as usize + 1;
            let row = feed.rows(embd, rows.clone())?;
            let x = &mut s.x[i * dim..(i + 1) * dim];
            k.dequant(embd.format, row, x);
            if t.embd_scale != 1.0 {
                x.iter_mut().for_each(|v| *v *= t.embd_scale);
            }
            if release {
                feed.release(embd, rows);
            }
        }

        // RoPE angles of each token's position, per rotation table, shared by all heads and
        // the layers that use the table.
        let half = c.rope_dim / 2;
        let ctx = kv.capacity();
        for (r, rope) in t.ropes.iter().enumerate() {
            for i in 0..n {
                let at = (r * n + i) * half;
                let (cos, sin) = (&mut s.cos[at..at + half], &mut s.sin[at..at + half]);
                rope.angles(ctx, pos0 + i, cos, sin);
            }
        }

        // Rows before `skip` need no logits. Their keys and values are needed (every layer's
        // attention reads them), but after the last layer's attention nothing reads their
        // residual stream: that layer's output projection, feed-forward, the final norm and
        // the head run on the wanted rows alone (`m` below), as llama.cpp's graph does.
        let skip = match want {
            LogitsFor::Last => n - 1,
            LogitsFor::All => 0,
        };
        // Where the wanted rows are in `x` when the final norm reads them.
        let mut first = skip;
        let last_layer = t.layers.len().wrapping_sub(1);
        for (l, lt) in t.layers.iter().enumerate() {
            feed.begin_layer(l, t);
            // Attention: norm, project, rotate, cache, attend, project back, add.
            for i in 0..n {
                let r = i * dim..(i + 1) * dim;
                scalar::rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lt.attn_norm, c.norm_eps);
            }
            // Q, K and V in one parallel section where their representations allow
            // (`project_fused`; gate and up below too).
            let qkv = [
                (&lt.wq, &mut s.q[..]),
                (&lt.wk, &mut s.k[..]),
                (&lt.wv, &mut s.v[..]),
            ];
            project_fused(feed, ex, &s.xb, n, qkv)?;
            if let Some([bq, bk, bv]) = &lt.qkv_bias {
                add_rows(&mut s.q[..n * q_dim], bq);
                add_rows(&mut s.k[..n * kv_dim], bk);
                add_rows(&mut s.v[..n * kv_dim], bv);
            }
            if let Some([wq, wk]) = &lt.qk_norm {
                for h in s.q[..n * q_dim].chunks_exact_mut(hd) {
                    scalar::rmsnorm_in_place(h, wq, c.norm_eps);
                }
                for h in s.k[..n * kv_dim].chunks_exact_mut(hd) {
                    scalar::rmsnorm_in_place(h, wk, c.norm_eps);
                }
            }
            let neox = t.ropes[lt.rope].style == RopeStyle::Neox;
            for i in 0..n {
                let at = (lt.rope * n + i) * half;
                let (cos, sin) = (&s.cos[at..at + half], &s.sin[at..at + half]);
                for h in s.q[i * q_dim..(i + 1) * q_dim].chunks_exact_mut(hd) {
                    scalar::rope(h, cos, sin, neox);
                }
                for h in s.k[i * kv_dim..(i + 1) * kv_dim].chunks_exact_mut(hd) {
                    scalar::rope(h, cos, sin, neox);
                }
            }
            kv.store(k, l, pos0, &s.k[..n * kv_dim], &s.v[..n * kv_dim]);
            self.attend(s, kv, ex.par, l, lt, n, pos0);
            // Rows this layer carries on from here: all of them, except in the last layer,
            // which moves the wanted rows of the attention output and the residual to the front.
            let m = if l == last_layer && skip > 0 {
                s.att_out.copy_within(skip * q_dim..n * q_dim, 0);
                s.x.copy_within(skip * dim..n * dim, 0);
                first = 0;
                n - skip
            } else {
                n
            };
            if let Some(w) = &lt.attn_sub_norm {
                for o in s.att_out[..m * q_dim].chunks_exact_mut(q_dim) {
                    scalar::rmsnorm_in_place(o, w, c.norm_eps);
                }
            }
            lt.wo.project(feed, ex, &s.att_out, m, &mut s.xb)?;
            add_residual(
                &mut s.x[..m * dim],
                &mut s.xb[..m * dim],
                &lt.attn_post_norm,
                c.norm_eps,
            );

            // Feed-forward: norm, gated activation, project back, add.
            for i in 0..m {
                let r = i * dim..(i + 1) * dim;
                scalar::rmsnorm(&mut s.xb[r.clone()], &s.x[r], &lt.ffn_norm, c.norm_eps);
            }
            if let Some(ffn) = &lt.ffn_delegate {
                // The whole block on a delegate, one call (`crate::delegate::FfnOffer`); the
                // input rounded to int8 here, as for a delegated matrix.
                let x = &mut s.xb[..m * dim];
                if lt.w_gate.int8_activations {
                    x.chunks_exact_mut(dim)
                        .for_each(scalar::absmax_int8_roundtrip);
                }
                ffn.run(x, m).map_err(GenerateError::Delegate)?;
            } else {
                let gate_up = [(&lt.w_gate, &mut s.gate[..]), (&lt.w_up, &mut s.up[..])];
                project_fused(feed, ex, &s.xb, m, gate_up)?;
                let f = m * c.ffn_dim;
                match lt.activation {
                    // SiLU through the table exp (`tern_kernels::scalar::lut`, relative error
                    // ≤ 2·10⁻⁷, far inside the f32 path's tolerance).
                    FfnActivation::Silu => (k.swiglu.f)(&mut s.gate[..f], &s.up[..f]),
                    FfnActivation::ReluSquared => {
                        scalar::relu_squared_glu(&mut s.gate[..f], &s.up[..f])
                    }
                    // The tanh GELU as x·σ(2y) through the same table exp (the same function;
                    // within a few ulp of libm's tanhf form, and ten times faster).
                    FfnActivation::GeluTanh => (k.gelu.f)(&mut s.gate[..f], &s.up[..f]),
                }
                if let Some(w) = &lt.ffn_sub_norm {
                    for g in s.gate[..f].chunks_exact_mut(c.ffn_dim) {
                        scalar::rmsnorm_in_place(g, w, c.norm_eps);
                    }
                }
                lt.w_down.project(feed, ex, &s.gate, m, &mut s.xb)?;
            }
            add_residual(
                &mut s.x[..m * dim],
                &mut s.xb[..m * dim],
                &lt.ffn_post_norm,
                c.norm_eps,
            );
        }

        // Final norm and output head, for the rows that need logits.
        let rows = n - skip;
        for i in 0..rows {
            let src = (first + i) * dim..(first + i + 1) * dim;
            let dst = i * dim..(i + 1) * dim;
            scalar::rmsnorm(&mut s.xb[dst], &s.x[src], &t.output_norm, c.norm_eps);
        }
        t.output.project(feed, ex, &s.xb, rows, &mut s.logits)?;
        if let Some(cap) = t.logit_softcap {
            for v in &mut s.logits[..rows * c.vocab] {
                *v = cap * libm::tanhf(*v / cap);
            }
        }
        Ok(())
    }

    /// Causal grouped-query attention of the `n` new tokens over the positions each may see in
    /// layer `l` (all before it, or its window); one task per query head.
    #[expect(
        clippy::too_many_arguments,
        reason = "one layer's state: scratch, cache, executor, layer tensors and the batch's position"
    )]
    fn attend(
        &self,
        s: &mut Scratch,
        kv: &KvCache,
        par: &dyn Parallel,
        l: usize,
        lt: &LayerTensors,
        n: usize,
        pos0: usize,
    ) {
        let c = self.config();
        let k = self.kernels();
        let (q_dim, hd) = (c.q_dim(), c.head_dim);
        let group = c.n_heads / c.n_kv_heads;
        let ctx = kv.capacity();
        let scale = lt.attn_scale;
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
            // SAFETY: head h owns scores row h, of length ctx, inside the (n_heads, ctx) buffer.
            let sc = unsafe { scores.slice(h * ctx, ctx) };
            for i in 0..n {
                // Positions lo..=p: everything before p, or its window.
                let p = pos0 + i;
                let lo = lt.window.map_or(0, |w| (p + 1).saturating_sub(w));
                let runs = kv.slots(l, lo, p + 1);
                let len = p + 1 - lo;
                let qh = &q[i * q_dim + h * hd..][..hd];
                let sc = &mut sc[..len];
                // Scores: this head's keys (len, hd) · q, one kernel call per run of slots.
                let mut at = 0;
                for run in runs.iter().filter(|r| !r.is_empty()) {
                    let sc = &mut sc[at..at + run.len()];
                    match kv.keys(l, kvh, run.clone()) {
                        Rows::F32(keys) => {
                            for (p, s) in sc.iter_mut().enumerate() {
                                *s = (k.dot_f32.f)(qh, &keys[p * hd..][..hd]);
                            }
                        }
                        Rows::F16(keys) => dot_rows_f16(keys, qh, sc),
                    }
                    at += run.len();
                }
                sc.iter_mut().for_each(|s| *s *= scale);
                (k.softmax.f)(sc);
                // SAFETY: (token i, head h) owns this hd-wide slice of att_out (n, q_dim).
                let o = unsafe { out.slice(i * q_dim + h * hd, hd) };
                o.fill(0.0);
                // Output: the weighted sum of this head's values (len, hd).
                let mut at = 0;
                for run in runs.iter().filter(|r| !r.is_empty()) {
                    let w = &sc[at..at + run.len()];
                    match kv.values(l, kvh, run.clone()) {
                        Rows::F32(values) => {
                            for (p, &w) in w.iter().enumerate() {
                                (k.axpy.f)(o, w, &values[p * hd..][..hd]);
                            }
                        }
                        Rows::F16(values) => (k.axpy_rows_f16.f)(o, w, values),
                    }
                    at += run.len();
                }
            }
        });
    }
}

/// `x[t] += b` for every row `t` of `x` `(n, b.len())`.
fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
    }
}

/// The residual add `x += d`, with `d` RMS-normalized per row by `post_norm` first when the
/// block has one (Gemma 3's post-attention and post-FFN norms). `x` and `d` are `(n, dim)`.
fn add_residual(x: &mut [f32], d: &mut [f32], post_norm: &Option<Vec<f32>>, eps: f32) {
    if let Some(w) = post_norm {
        for row in d.chunks_exact_mut(w.len()) {
            scalar::rmsnorm_in_place(row, w, eps);
        }
    }
    x.iter_mut().zip(d.iter()).for_each(|(x, d)| *x += d);
}
