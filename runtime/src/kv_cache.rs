//! The key/value cache: keys and values of every processed position, per layer.

use alloc::vec;
use alloc::vec::Vec;

/// Keys and values for `capacity` positions of `n_layers` layers, `kv_dim` wide, in f32.
///
/// Layout: `(n_layers, capacity, kv_dim)` for keys and the same for values, so one layer's
/// history is contiguous and attention streams through it in order.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_layers: usize,
    capacity: usize,
    kv_dim: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    /// An empty cache for `capacity` positions.
    pub fn new(n_layers: usize, capacity: usize, kv_dim: usize) -> Self {
        let n = n_layers * capacity * kv_dim;
        KvCache {
            n_layers,
            capacity,
            kv_dim,
            k: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// Positions the cache holds at most (the context length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the cache occupies.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * core::mem::size_of::<f32>()
    }

    /// Bytes one layer reads for attention at position `pos` (keys and values of `pos + 1`
    /// positions).
    pub fn bytes_read_at(&self, pos: usize) -> u64 {
        (2 * (pos + 1) * self.kv_dim * core::mem::size_of::<f32>() * self.n_layers) as u64
    }

    fn range(&self, layer: usize, pos: usize, len: usize) -> core::ops::Range<usize> {
        let start = (layer * self.capacity + pos) * self.kv_dim;
        start..start + len * self.kv_dim
    }

    /// Keys of positions `0..len` of `layer`, `(len, kv_dim)`.
    pub fn keys(&self, layer: usize, len: usize) -> &[f32] {
        &self.k[self.range(layer, 0, len)]
    }

    /// Values of positions `0..len` of `layer`, `(len, kv_dim)`.
    pub fn values(&self, layer: usize, len: usize) -> &[f32] {
        &self.v[self.range(layer, 0, len)]
    }

    /// Stores keys and values `(n, kv_dim)` of positions `pos..pos + n` of `layer`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let n = k.len() / self.kv_dim;
        let r = self.range(layer, pos, n);
        self.k[r.clone()].copy_from_slice(k);
        self.v[r].copy_from_slice(v);
    }

    /// Raw keys and values of positions `0..len` of every layer, for saving a session.
    pub fn layer_slices(&self, layer: usize, len: usize) -> (&[f32], &[f32]) {
        let r = self.range(layer, 0, len);
        (&self.k[r.clone()], &self.v[r])
    }
}
