//! Small open-addressing hash tables (no_std has no `HashMap`): token string → id, and
//! token-id pair → BPE merge.
//!
//! Hand-written rather than `hashbrown`: `hashbrown::HashTable` with these same hash functions ran
//! 1–5% more instructions and was not measurably faster (issue 21: adopt it only if no slower).
//! Measured with `cargo bench -p tern-tokenizer --bench tokenize` (corpus: the GPL-3 text and the
//! README, 83,818 bytes), hashbrown 0.17 with `default-features = false`, 2026-12-07:
//!
//! | tokenizer        | instructions per encode | instructions, load     | MB/s (wall-clock)   |
//! |------------------|-------------------------|------------------------|---------------------|
//! | Qwen2.5 BPE 151k | 24.1 M → 25.3 M (+4.9%) | 421 M → 433 M (+2.7%)  | 6.0–10.3 → 6.6–10.6 |
//! | Gemma 3 SPM 262k | 93.1 M → 93.9 M (+0.9%) | 492 M → 495 M (+0.7%)  | 1.0–1.4 → 1.1–1.6   |
//! | SmolLM2 BPE 49k  | 24.9 M → 26.0 M (+4.4%) | 131 M → 136 M (+3.3%)  | 7.4–11.1 → 8.0–9.9  |
//!
//! Instructions: callgrind totals of `--fixed=0` and `--fixed=3` runs (load alone, load plus three
//! encodes; "load" includes reading the GGUF metadata). Wall-clock: ranges over 3 runs
//! (hand-written) and 4 (hashbrown), fastest of 7 passes each, on a shared 2-core machine under
//! heavy load (load average 12–15): the two overlap, as do the load times (Qwen 241–351 ms →
//! 179–314 ms). hashbrown's tables are about half the size (Qwen: about 5.5 MiB instead of 12 MiB:
//! 7/8 load factor and 4-byte string slots against this module's half-full tables of 8-byte slots),
//! which is the reason to revisit if memory rather than speed becomes the constraint.

use alloc::vec;
use alloc::vec::Vec;

/// Multiplier of the word mixing step (from FxHash).
const K: u64 = 0x517c_c1b7_2722_0a95;

/// 64-bit hash of a byte string: FxHash-style word mixing plus a final avalanche.
#[inline]
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finalizer.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Number of slots for `n` entries: a power of two, at most half full.
fn capacity_for(n: usize) -> usize {
    n.saturating_mul(2).max(16).next_power_of_two()
}

/// Strings stored back to back in one buffer, addressed by index.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arena {
    bytes: Vec<u8>,
    /// `ends[i]` is where string `i` ends; it starts where `i - 1` ends.
    ends: Vec<usize>,
}

impl Arena {
    /// Appends a string, returning its index.
    pub(crate) fn push(&mut self, s: &[u8]) -> usize {
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len());
        self.ends.len() - 1
    }

    /// String `i` (empty if out of range).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        match self.ends.get(i) {
            Some(&end) => {
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                &self.bytes[start..end]
            }
            None => &[],
        }
    }

    /// Number of strings.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Map from string (stored in an [`Arena`]) to its index in that arena.
#[derive(Clone, Debug)]
pub(crate) struct StrTable {
    /// Per slot: (high 32 bits of the hash, arena index + 1); 0 index = empty slot.
    slots: Vec<(u32, u32)>,
    mask: usize,
    len: usize,
}

impl StrTable {
    /// An empty table sized for about `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let cap = capacity_for(n);
        StrTable {
            slots: vec![(0, 0); cap],
            mask: cap - 1,
            len: 0,
        }
    }

    /// Looks `key` up, returning its arena index.
    #[inline]
    pub(crate) fn get(&self, arena: &Arena, key: &[u8]) -> Option<u32> {
        let h = hash_bytes(key);
        let tag = (h >> 32) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let (t, v) = self.slots[i];
            if v == 0 {
                return None;
            }
            if t == tag && arena.get(v as usize - 1) == key {
                return Some(v - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts arena string `index` unless an equal string is already present; returns
    /// the index now stored for that string.
    pub(crate) fn insert_if_absent(&mut self, arena: &Arena, index: u32) -> u32 {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow(arena);
        }
        let key = arena.get(index as usize);
        let h = hash_bytes(key);
        let tag = (h >> 32) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let (t, v) = self.slots[i];
            if v == 0 {
                self.slots[i] = (tag, index + 1);
                self.len += 1;
                return index;
            }
            if t == tag && arena.get(v as usize - 1) == key {
                return v - 1;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn grow(&mut self, arena: &Arena) {
        let old = core::mem::take(&mut self.slots);
        let cap = (old.len() * 2).max(16);
        self.slots = vec![(0, 0); cap];
        self.mask = cap - 1;
        for (tag, v) in old {
            if v == 0 {
                continue;
            }
            let h = hash_bytes(arena.get(v as usize - 1));
            let mut i = h as usize & self.mask;
            while self.slots[i].1 != 0 {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = (tag, v);
        }
    }
}

/// A BPE merge: its rank (lower merges first) and the symbol it produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Merge {
    /// Position in the merges list.
    pub(crate) rank: u32,
    /// Symbol id of the merged string.
    pub(crate) result: u32,
}

/// Map from a pair of symbol ids to the merge that joins them.
#[derive(Clone, Debug)]
pub(crate) struct PairTable {
    keys: Vec<u64>,
    vals: Vec<Merge>,
    mask: usize,
    len: usize,
}

/// Marks an empty slot (no symbol id is `u32::MAX`, so no key is all ones).
const EMPTY: u64 = u64::MAX;

#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn pair_hash(key: u64) -> usize {
    fmix64(key) as usize
}

impl PairTable {
    /// An empty table sized for about `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let cap = capacity_for(n);
        PairTable {
            keys: vec![EMPTY; cap],
            vals: vec![Merge { rank: 0, result: 0 }; cap],
            mask: cap - 1,
            len: 0,
        }
    }

    /// The merge joining symbols `a` and `b`, if any.
    #[inline]
    pub(crate) fn get(&self, a: u32, b: u32) -> Option<Merge> {
        let key = pair_key(a, b);
        let mut i = pair_hash(key) & self.mask;
        loop {
            let k = self.keys[i];
            if k == key {
                return Some(self.vals[i]);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts a merge unless the pair already has one (the first, lowest-rank one wins).
    pub(crate) fn insert_if_absent(&mut self, a: u32, b: u32, merge: Merge) {
        if (self.len + 1) * 2 > self.keys.len() {
            self.grow();
        }
        let key = pair_key(a, b);
        let mut i = pair_hash(key) & self.mask;
        loop {
            let k = self.keys[i];
            if k == key {
                return;
            }
            if k == EMPTY {
                self.keys[i] = key;
                self.vals[i] = merge;
                self.len += 1;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let old_keys = core::mem::take(&mut self.keys);
        let old_vals = core::mem::take(&mut self.vals);
        let cap = (old_keys.len() * 2).max(16);
        self.keys = vec![EMPTY; cap];
        self.vals = vec![Merge { rank: 0, result: 0 }; cap];
        self.mask = cap - 1;
        for (k, v) in old_keys.into_iter().zip(old_vals) {
            if k == EMPTY {
                continue;
            }
            let mut i = pair_hash(k) & self.mask;
            while self.keys[i] != EMPTY {
                i = (i + 1) & self.mask;
            }
            self.keys[i] = k;
            self.vals[i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn str_table_roundtrip() {
        let mut arena = Arena::default();
        let mut t = StrTable::with_capacity(1);
        for i in 0..1000 {
            let s = format!("tok{i}");
            let idx = arena.push(s.as_bytes()) as u32;
            assert_eq!(t.insert_if_absent(&arena, idx), idx);
        }
        // A duplicate keeps the first index.
        let dup = arena.push(b"tok7") as u32;
        assert_eq!(t.insert_if_absent(&arena, dup), 7);
        for i in 0..1000 {
            let s = format!("tok{i}");
            assert_eq!(t.get(&arena, s.as_bytes()), Some(i));
        }
        assert_eq!(t.get(&arena, b"tok1000"), None);
        assert_eq!(t.get(&arena, b""), None);
        assert_eq!(arena.get(5000), b"");
        assert_eq!(arena.len(), 1001);
    }

    #[test]
    fn pair_table_roundtrip() {
        let mut t = PairTable::with_capacity(0);
        for a in 0..100u32 {
            for b in 0..30u32 {
                let m = Merge {
                    rank: a * 30 + b,
                    result: a + b,
                };
                t.insert_if_absent(a, b, m);
            }
        }
        t.insert_if_absent(3, 4, Merge { rank: 0, result: 0 });
        assert_eq!(
            t.get(3, 4),
            Some(Merge {
                rank: 94,
                result: 7
            })
        );
        assert_eq!(t.get(99, 29).map(|m| m.rank), Some(2999));
        assert_eq!(t.get(4, 30), None);
        assert_eq!(t.get(u32::MAX - 1, 0), None);
    }

    #[test]
    fn hash_differs() {
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ba"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(hash_bytes(b"12345678"), hash_bytes(b"123456789"));
    }
}
