//! The key/value cache: keys and values of every processed position, per layer and KV head.

use alloc::vec;
use alloc::vec::Vec;

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

impl Store {
    fn new(ty: KvType, len: usize) -> Self {
        match ty {
            KvType::F32 => Store::F32(vec![0.0; len]),
            KvType::F16 => Store::F16(vec![[0; 2]; len]),
        }
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

/// Keys and values for `capacity` positions of `n_layers` layers and `n_kv_heads` heads of
/// `head_dim` values, stored as [`KvType`] says.
///
/// Layout: `(n_layers, n_kv_heads, capacity, head_dim)` for keys and the same for values, so
/// one head's history is contiguous: attention reads it as one matrix of rows (scores) and
/// one weighted sum of rows (values), a kernel call each.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_layers: usize,
    capacity: usize,
    n_kv_heads: usize,
    head_dim: usize,
    ty: KvType,
    k: Store,
    v: Store,
}

impl KvCache {
    /// An empty cache for `capacity` positions.
    pub fn new(
        n_layers: usize,
        capacity: usize,
        n_kv_heads: usize,
        head_dim: usize,
        ty: KvType,
    ) -> Self {
        let n = n_layers * n_kv_heads * capacity * head_dim;
        KvCache {
            n_layers,
            capacity,
            n_kv_heads,
            head_dim,
            ty,
            k: Store::new(ty, n),
            v: Store::new(ty, n),
        }
    }

    /// Bytes a cache of these dimensions occupies (what [`KvCache::new`] allocates); with
    /// `capacity` = `pos + 1`, the bytes attention reads at position `pos`.
    pub fn bytes_for(n_layers: usize, capacity: usize, kv_dim: usize, ty: KvType) -> u64 {
        2 * (n_layers * capacity * kv_dim * ty.bytes()) as u64
    }

    /// Positions the cache holds at most (the context length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How keys and values are stored.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Bytes the cache occupies.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * self.ty.bytes()
    }

    /// Bytes attention reads at position `pos` over all layers (keys and values of `pos + 1`
    /// positions).
    pub fn bytes_read_at(&self, pos: usize) -> u64 {
        Self::bytes_for(
            self.n_layers,
            pos + 1,
            self.n_kv_heads * self.head_dim,
            self.ty,
        )
    }

    /// Index of `(layer, head, pos, 0)`.
    fn at(&self, layer: usize, head: usize, pos: usize) -> usize {
        ((layer * self.n_kv_heads + head) * self.capacity + pos) * self.head_dim
    }

    /// Keys of positions `0..len` of `head` in `layer`, `(len, head_dim)`.
    pub fn keys(&self, layer: usize, head: usize, len: usize) -> Rows<'_> {
        self.k.rows(self.at(layer, head, 0), len * self.head_dim)
    }

    /// Values of positions `0..len` of `head` in `layer`, `(len, head_dim)`.
    pub fn values(&self, layer: usize, head: usize, len: usize) -> Rows<'_> {
        self.v.rows(self.at(layer, head, 0), len * self.head_dim)
    }

    /// Stores keys and values `(n, kv_dim)` (heads side by side, as the projections write
    /// them) of positions `pos..pos + n` of `layer`; an f16 cache rounds them with `kernels`'
    /// `quantize_f16`.
    pub fn store(&mut self, kernels: &Kernels, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        let kv_dim = self.n_kv_heads * hd;
        for (i, (kr, vr)) in k
            .chunks_exact(kv_dim)
            .zip(v.chunks_exact(kv_dim))
            .enumerate()
        {
            for h in 0..self.n_kv_heads {
                let at = self.at(layer, h, pos + i);
                self.k.write(kernels, at, &kr[h * hd..][..hd]);
                self.v.write(kernels, at, &vr[h * hd..][..hd]);
            }
        }
    }

    /// Appends the keys and values of positions `0..len` of `layer` to `k` and `v` as f32,
    /// `(len, kv_dim)` each: the layout [`KvCache::store`] takes, for saving a session.
    pub fn read_layer(&self, layer: usize, len: usize, k: &mut Vec<f32>, v: &mut Vec<f32>) {
        for pos in 0..len {
            for h in 0..self.n_kv_heads {
                let at = self.at(layer, h, pos);
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
            let mut kv = KvCache::new(layers, cap, heads, hd, ty);
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
            let got: Vec<f32> = match kv.keys(1, 1, 4) {
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
                KvCache::bytes_for(layers, cap, kv_dim, ty)
            );
        }
    }
}
