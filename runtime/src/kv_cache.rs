//! The key/value cache: keys and values of every processed position, per layer and KV head.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::ops::Range;

use tern_kernels::Kernels;

/// How the KV cache stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// IEEE half precision (the default, as in llama.cpp): half the memory of f32 and half the
    /// bytes attention reads per token. Keys and values are rounded once, when stored
    /// (relative error ≤ 2⁻¹¹; values beyond ±65504 become infinite).
    #[default]
    F16,
    /// f32: the computed keys and values exactly (the reference for accuracy tests).
    F32,
}

impl KvType {
    /// The name the CLI accepts (`f16`, `f32`).
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        }
    }

    /// Parses [`KvType::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "f16" => Some(KvType::F16),
            "f32" => Some(KvType::F32),
            _ => None,
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// Storage of one of keys or values.
#[derive(Clone, Debug)]
enum Store {
    F32(Vec<f32>),
    /// Little-endian f16 bit patterns: the byte layout of a GGUF F16 row, so the F16 weight
    /// kernels read it as is.
    F16(Vec<[u8; 2]>),
}

/// `len` copies of `value`, or the allocator's refusal instead of an abort.
pub(crate) fn try_filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    v.resize(len, value);
    Ok(v)
}

impl Store {
    fn new(ty: KvType, len: usize) -> Result<Self, TryReserveError> {
        Ok(match ty {
            KvType::F32 => Store::F32(try_filled(len, 0.0)?),
            KvType::F16 => Store::F16(try_filled(len, [0; 2])?),
        })
    }

    fn len(&self) -> usize {
        match self {
            Store::F32(v) => v.len(),
            Store::F16(v) => v.len(),
        }
    }

    fn write(&mut self, k: &Kernels, at: usize, src: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Store::F16(v) => (k.quantize_f16.f)(src, v[at..at + src.len()].as_flattened_mut()),
        }
    }

    fn read(&self, at: usize, len: usize, out: &mut Vec<f32>) {
        match self {
            Store::F32(v) => out.extend_from_slice(&v[at..at + len]),
            Store::F16(v) => out.extend(
                v[at..at + len]
                    .iter()
                    .map(|&b| half::f16::from_bits(u16::from_le_bytes(b)).to_f32()),
            ),
        }
    }

    fn rows(&self, at: usize, len: usize) -> Rows<'_> {
        match self {
            Store::F32(v) => Rows::F32(&v[at..at + len]),
            Store::F16(v) => Rows::F16(v[at..at + len].as_flattened()),
        }
    }
}

/// Consecutive positions of one KV head, `(len, head_dim)`.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// Little-endian f16 values, two bytes each (the layout of GGUF F16 rows).
    F16(&'a [u8]),
}

/// Keys and values of a session's positions, per layer and KV head, stored as [`KvType`] says.
///
/// A full-attention layer holds every position of the context. A sliding-window layer (Gemma 3's
/// local layers) holds only the last `window + batch − 1` positions in a ring — position `p`
/// in slot `p mod capacity` — which is all its attention reads, so its memory does not grow with
/// the context.
///
/// Layout per layer: `(n_kv_heads, capacity, head_dim)` for keys and the same for values, so
/// one head's history is contiguous: attention reads it as one matrix of rows (scores) and
/// one weighted sum of rows (values), a kernel call per contiguous run of slots.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Positions of the session's context.
    ctx: usize,
    /// Per layer: slots held, and the window (`None`: full attention).
    layers: Vec<LayerSpan>,
    n_kv_heads: usize,
    head_dim: usize,
    ty: KvType,
    k: Store,
    v: Store,
}

/// Where one layer's keys and values are.
#[derive(Clone, Copy, Debug)]
struct LayerSpan {
    /// First element of the layer in each store.
    base: usize,
    /// Positions held (the context, or a window's ring).
    capacity: usize,
    window: Option<usize>,
}

/// Positions a layer with `window` holds in a session of `ctx` positions and batches of
/// `batch` tokens (see [`KvCache`]).
pub fn layer_capacity(ctx: usize, window: Option<usize>, batch: usize) -> usize {
    match window {
        Some(w) => ctx.min(w + batch.max(1) - 1),
        None => ctx,
    }
}

impl KvCache {
    /// An empty cache for a context of `ctx` positions, one layer per entry of `windows`,
    /// batches of up to `batch` tokens; the allocator's refusal when it does not fit.
    pub fn new(
        ctx: usize,
        windows: &[Option<usize>],
        batch: usize,
        n_kv_heads: usize,
        head_dim: usize,
        ty: KvType,
    ) -> Result<Self, TryReserveError> {
        let mut base = 0;
        let layers: Vec<LayerSpan> = windows
            .iter()
            .map(|&window| {
                let capacity = layer_capacity(ctx, window, batch);
                let span = LayerSpan {
                    base,
                    capacity,
                    window,
                };
                base += n_kv_heads * capacity * head_dim;
                span
            })
            .collect();
        Ok(KvCache {
            ctx,
            layers,
            n_kv_heads,
            head_dim,
            ty,
            k: Store::new(ty, base)?,
            v: Store::new(ty, base)?,
        })
    }

    /// Bytes a cache of these dimensions occupies (what [`KvCache::new`] allocates).
    pub fn bytes_for(
        ctx: usize,
        windows: &[Option<usize>],
        batch: usize,
        kv_dim: usize,
        ty: KvType,
    ) -> u64 {
        let positions: usize = windows.iter().map(|&w| layer_capacity(ctx, w, batch)).sum();
        2 * (positions * kv_dim * ty.bytes()) as u64
    }

    /// Bytes attention reads over all layers for the token at position `pos`: keys and values
    /// of `pos + 1` positions, or of the window where that is fewer.
    pub fn bytes_read_for(windows: &[Option<usize>], pos: usize, kv_dim: usize, ty: KvType) -> u64 {
        let positions: usize = windows
            .iter()
            .map(|w| w.map_or(pos + 1, |w| w.min(pos + 1)))
            .sum();
        2 * (positions * kv_dim * ty.bytes()) as u64
    }

    /// Positions the context holds at most.
    pub fn capacity(&self) -> usize {
        self.ctx
    }

    /// How keys and values are stored.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes the cache occupies.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * self.ty.bytes()
    }

    /// Bytes attention reads at position `pos` over all layers.
    pub fn bytes_read_at(&self, pos: usize) -> u64 {
        let windows: Vec<Option<usize>> = self.layers.iter().map(|l| l.window).collect();
        Self::bytes_read_for(&windows, pos, self.n_kv_heads * self.head_dim, self.ty)
    }

    /// Whether, with `len` positions stored, every layer still holds what the token at
    /// position `n` attends to (positions before it, within its window), so the session can
    /// rewind to `n` and go on. Always true without sliding windows; false when a window's
    /// ring has already overwritten them.
    pub fn can_rewind(&self, len: usize, n: usize) -> bool {
        n == 0
            || self.layers.iter().all(|l| match l.window {
                None => true,
                Some(w) => (n + 1).saturating_sub(w) >= len.saturating_sub(l.capacity),
            })
    }

    /// Index of `(layer, head, slot, 0)`.
    fn at(&self, layer: usize, head: usize, slot: usize) -> usize {
        let l = &self.layers[layer];
        l.base + (head * l.capacity + slot) * self.head_dim
    }

    /// The slots of `layer` holding positions `lo..hi` (at most its capacity of them, all
    /// stored): one run of slots, or two where the ring wraps.
    pub fn slots(&self, layer: usize, lo: usize, hi: usize) -> [Range<usize>; 2] {
        let cap = self.layers[layer].capacity;
        debug_assert!(lo <= hi && hi - lo <= cap);
        let (s, e) = (lo % cap, lo % cap + (hi - lo));
        if e <= cap {
            [s..e, 0..0]
        } else {
            [s..cap, 0..e - cap]
        }
    }

    /// Keys of `slots` of `head` in `layer`, `(slots.len(), head_dim)`.
    pub fn keys(&self, layer: usize, head: usize, slots: Range<usize>) -> Rows<'_> {
        self.k.rows(
            self.at(layer, head, slots.start),
            slots.len() * self.head_dim,
        )
    }

    /// Values of `slots` of `head` in `layer`, `(slots.len(), head_dim)`.
    pub fn values(&self, layer: usize, head: usize, slots: Range<usize>) -> Rows<'_> {
        self.v.rows(
            self.at(layer, head, slots.start),
            slots.len() * self.head_dim,
        )
    }

    /// Stores keys and values `(n, kv_dim)` (heads side by side, as the projections write
    /// them) of positions `pos..pos + n` of `layer`; an f16 cache rounds them with `kernels`'
    /// `quantize_f16`. A ring keeps the last of them where they outnumber its slots.
    pub fn store(&mut self, kernels: &Kernels, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        let kv_dim = self.n_kv_heads * hd;
        let cap = self.layers[layer].capacity;
        for (i, (kr, vr)) in k
            .chunks_exact(kv_dim)
            .zip(v.chunks_exact(kv_dim))
            .enumerate()
        {
            for h in 0..self.n_kv_heads {
                let at = self.at(layer, h, (pos + i) % cap);
                self.k.write(kernels, at, &kr[h * hd..][..hd]);
                self.v.write(kernels, at, &vr[h * hd..][..hd]);
            }
        }
    }

    /// Appends the keys and values of positions `0..len` of `layer` to `k` and `v` as f32,
    /// `(len, kv_dim)` each: the layout [`KvCache::store`] takes, for saving a session.
    /// Positions a ring no longer holds (never read again) come out as zeros.
    pub fn read_layer(&self, layer: usize, len: usize, k: &mut Vec<f32>, v: &mut Vec<f32>) {
        let cap = self.layers[layer].capacity;
        let held = len.saturating_sub(cap);
        for pos in 0..len {
            for h in 0..self.n_kv_heads {
                if pos < held {
                    k.extend(core::iter::repeat_n(0.0, self.head_dim));
                    v.extend(core::iter::repeat_n(0.0, self.head_dim));
                    continue;
                }
                let at = self.at(layer, h, pos % cap);
                self.k.read(at, self.head_dim, k);
                self.v.read(at, self.head_dim, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored rows come back per head in position order, and `read_layer` restores the
    /// projections' `(pos, kv_dim)` layout: exactly for f32, rounded once for f16.
    #[test]
    fn store_and_read_back_both_types() {
        for ty in [KvType::F32, KvType::F16] {
            let (layers, cap, heads, hd) = (2, 5, 3, 4);
            let mut kv = KvCache::new(cap, &[None; 2], 1, heads, hd, ty).unwrap();
            let kv_dim = heads * hd;
            let k: Vec<f32> = (0..3 * kv_dim).map(|i| i as f32 * 0.5 + 0.1).collect();
            let v: Vec<f32> = k.iter().map(|x| -x).collect();
            kv.store(&Kernels::best(), 1, 2, &k, &v);
            let round = |x: f32| match ty {
                KvType::F32 => x,
                KvType::F16 => half::f16::from_f32(x).to_f32(),
            };
            let (mut rk, mut rv) = (Vec::new(), Vec::new());
            kv.read_layer(1, 5, &mut rk, &mut rv);
            assert_eq!(rk.len(), 5 * kv_dim);
            assert!(rk[..2 * kv_dim].iter().all(|&x| x == 0.0));
            for (i, (&a, &b)) in rk[2 * kv_dim..].iter().zip(&k).enumerate() {
                assert_eq!(a, round(b), "{ty:?} key {i}");
                assert_eq!(rv[2 * kv_dim + i], round(-b), "{ty:?} value {i}");
            }
            // Head 1's keys at position 3 = token 1's kv slice of head 1.
            let want: Vec<f32> = k[kv_dim + hd..kv_dim + 2 * hd]
                .iter()
                .map(|&x| round(x))
                .collect();
            let got: Vec<f32> = match kv.keys(1, 1, 0..4) {
                Rows::F32(r) => r[3 * hd..].to_vec(),
                Rows::F16(r) => r[2 * 3 * hd..]
                    .chunks_exact(2)
                    .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                    .collect(),
            };
            assert_eq!(got, want, "{ty:?}");
            assert_eq!(kv.bytes(), 2 * layers * cap * kv_dim * ty.bytes());
            assert_eq!(
                kv.bytes() as u64,
                KvCache::bytes_for(cap, &[None; 2], 1, kv_dim, ty)
            );
        }
    }
}
