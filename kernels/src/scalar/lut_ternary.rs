//! Lookup-table GEMV for ternary weights, in the style of T-MAC and bitnet.cpp's TL1.
//!
//! Instead of multiplying each weight by its activation, precompute, per pair of activations
//! `(a0, a1)`, the nine values any pair of ternary weights can select,
//!
//! ```text
//! T[3·c0 + c1] = (c0 − 1)·a0 + (c1 − 1)·a1        c0, c1 ∈ {0, 1, 2}
//! ```
//!
//! and store each weight pair as a 4-bit index into that table. A matrix-vector product is
//! then one table lookup and one addition per two weights, with no multiplication; the SIMD
//! bodies look up 32 rows at once (`vpshufb` on x86 with the table in both 128-bit lanes,
//! `tbl` on NEON), because a 16-entry table lives in one register.
//!
//! # Why pairs (g = 2) and 16-bit tables
//!
//! - With int8 activations an entry spans [−256, 256]: nine bits. Entries are kept exact as
//!   int16, split into a low-byte table and a high-byte table (two lookups per index, then an
//!   interleave rebuilds the int16 lanes). T-MAC instead rounds its tables to int8, which is
//!   faster but not exact; Tern's integer paths promise bit-identical results.
//! - g = 2 gives 9 entries, inside one 16-byte register table with no sign handling, at 2 bits
//!   per weight (the same as TQ2_0/I2_S: the index layout costs no memory over the GGUF bytes).
//!   g = 3 with sign folding (bitnet.cpp's TL2: 14 magnitudes + a sign bit, 1.67 bits per
//!   weight) saves 17% of the bytes but needs a sign pass per lookup and columns divisible by
//!   3 (4096 is not); g = 4 has 81 combinations (41 with sign folding), too many for one
//!   register table.
//! - The int16 accumulators take at most 64 pairs of |T| ≤ 256 (16384) before they are
//!   widened to int32, every 128 columns: no overflow for any activations in [−128, 127].
//!
//! # Layouts
//!
//! **Index tile** ([`lut_pack_tile`]): 32 rows (a tile; the last tile of a matrix is padded with
//! zero-weight rows) × `cols` columns, 2 bits per weight, `8·cols` bytes. Chunk `m` covers
//! columns `4m..4m+4` and is 32 bytes, one per row:
//!
//! ```text
//! tile[32·m + r] = idx(r, pair 2m) | idx(r, pair 2m+1) << 4      idx(r, p) = 3·c[r][2p] + c[r][2p+1]
//! ```
//!
//! so a 32-byte load gives the indices of 32 rows for two consecutive pairs.
//!
//! **Tables** ([`lut_tables`]): 32 bytes per activation pair `p` (`16·cols` bytes per token):
//! bytes `32p..32p+16` are the low bytes of `T[0..16]` (entries 9..16 are 0), bytes
//! `32p+16..32p+32` the high bytes (sign-extended: 0x00 or 0xFF).
//!
//! **Scales**: TQ1_0/TQ2_0 tiles come with `32 · cols/256` f32 block scales, block-major
//! (`scales[32·b + r]` is row `r`'s scale for columns `256b..256b+256`); I2_S tiles with none.
//!
//! # Result
//!
//! [`lut_gemv`] returns per row exactly what the integer dot kernels return
//! (see [`ternary_int8`](super::ternary_int8)'s exactness contract): TQ `Σ_b d_b·isum_b` with one
//! f32 multiply and add per block in block order, I2_S the exact integer as f32.

/// Rows per index tile.
pub const LUT_TILE_ROWS: usize = 32;

/// Table bytes per activation pair.
pub const LUT_TABLE_BYTES: usize = 32;

/// Columns whose lookups accumulate in int16 before widening (and the column granularity of
/// a tile).
pub const LUT_SPAN: usize = 128;

/// Bytes of one index tile of `cols` columns (a multiple of [`LUT_SPAN`]).
pub const fn lut_tile_bytes(cols: usize) -> usize {
    cols * LUT_TILE_ROWS / 4
}

/// Bytes of the tables of one token with `cols` activations.
pub const fn lut_tables_bytes(cols: usize) -> usize {
    cols / 2 * LUT_TABLE_BYTES
}

/// Packs up to 32 rows of codes (`codes`: `rows` rows of `cols` code bytes, row-major, from the
/// `unpack_*` kernels) into one index tile `out` ([`lut_tile_bytes`]`(cols)` bytes); rows
/// `rows..32` get zero weights. Returns `false` (leaving `out` unspecified) if a code is not in
/// 0..=2: the 2-bit code 3, which the f32 references read as +2, has no table entry.
pub fn lut_pack_tile(codes: &[u8], rows: usize, out: &mut [u8]) -> bool {
    assert!((1..=LUT_TILE_ROWS).contains(&rows) && codes.len().is_multiple_of(rows));
    let cols = codes.len() / rows;
    assert!(cols.is_multiple_of(LUT_SPAN) && out.len() == lut_tile_bytes(cols));
    let mut largest = 0u8;
    for r in 0..LUT_TILE_ROWS {
        let bytes = out[r..].iter_mut().step_by(LUT_TILE_ROWS);
        if r < rows {
            for (byte, c) in bytes.zip(codes[r * cols..(r + 1) * cols].chunks_exact(4)) {
                largest = largest.max(c[0].max(c[1]).max(c[2]).max(c[3]));
                // Wrapping: any byte may come in (the result is then refused, not a panic).
                let idx = |a: u8, b: u8| a.wrapping_mul(3).wrapping_add(b);
                *byte = idx(c[0], c[1]) | idx(c[2], c[3]) << 4;
            }
        } else {
            bytes.for_each(|b| *b = 4 | 4 << 4); // codes (1, 1): weights (0, 0)
        }
    }
    largest <= 2
}

/// Decodes an index tile back to codes: `codes` gets 32 rows of `cols` code bytes, row-major
/// (padding rows included, as code 1). The inverse of [`lut_pack_tile`]; batched prompt
/// processing runs the integer GEMM on it, so a repacked matrix needs no second copy.
pub fn lut_unpack_tile(tile: &[u8], codes: &mut [u8]) {
    let cols = tile.len() / 8;
    assert!(tile.len() == lut_tile_bytes(cols) && codes.len() == LUT_TILE_ROWS * cols);
    for (m, chunk) in tile.chunks_exact(LUT_TILE_ROWS).enumerate() {
        for (r, &byte) in chunk.iter().enumerate() {
            let (i0, i1) = (byte & 15, byte >> 4);
            let c = &mut codes[r * cols + 4 * m..r * cols + 4 * m + 4];
            c.copy_from_slice(&[i0 / 3, i0 % 3, i1 / 3, i1 % 3]);
        }
    }
}

/// Builds the tables of one token's activation codes `qs` (an even length) into `tables`
/// ([`lut_tables_bytes`]`(qs.len())` bytes).
pub fn lut_tables(qs: &[i8], tables: &mut [u8]) {
    assert!(qs.len().is_multiple_of(2) && tables.len() == lut_tables_bytes(qs.len()));
    for (a, t) in qs
        .chunks_exact(2)
        .zip(tables.chunks_exact_mut(LUT_TABLE_BYTES))
    {
        let (lo, hi) = t.split_at_mut(16);
        for i in 0..16 {
            let v = if i < 9 {
                (i as i32 / 3 - 1) * a[0] as i32 + (i as i32 % 3 - 1) * a[1] as i32
            } else {
                0
            };
            lo[i] = v as u8;
            hi[i] = (v >> 8) as u8;
        }
    }
}

/// Entry `i` of a table: its two bytes back as one integer.
#[inline(always)]
fn entry(table: &[u8], i: u8) -> i32 {
    table[i as usize] as i32 | ((table[16 + i as usize] as i8 as i32) << 8)
}

/// One index tile against one token's tables: `out[r]` = row `r` · the activation codes, per
/// the module's result contract. `scales` is `32 · cols/256` block scales (TQ) or empty (I2_S).
pub fn lut_gemv(tile: &[u8], tables: &[u8], scales: &[f32], out: &mut [f32; LUT_TILE_ROWS]) {
    let cols = check_lut(tile, tables, scales);
    let block = if scales.is_empty() { cols } else { 256 };
    let chunks = block / 4;
    let mut acc = [0.0f32; LUT_TILE_ROWS];
    let mut total = [0i32; LUT_TILE_ROWS];
    for (b, (tile, tables)) in tile
        .chunks_exact(chunks * LUT_TILE_ROWS)
        .zip(tables.chunks_exact(2 * chunks * LUT_TABLE_BYTES))
        .enumerate()
    {
        let mut isum = [0i32; LUT_TILE_ROWS];
        for (idx, t) in tile
            .chunks_exact(LUT_TILE_ROWS)
            .zip(tables.chunks_exact(2 * LUT_TABLE_BYTES))
        {
            let (t0, t1) = t.split_at(LUT_TABLE_BYTES);
            for (s, &i) in isum.iter_mut().zip(idx) {
                *s += entry(t0, i & 15) + entry(t1, i >> 4);
            }
        }
        for r in 0..LUT_TILE_ROWS {
            if scales.is_empty() {
                total[r] += isum[r];
            } else {
                acc[r] += scales[LUT_TILE_ROWS * b + r] * isum[r] as f32;
            }
        }
    }
    for r in 0..LUT_TILE_ROWS {
        out[r] = if scales.is_empty() {
            total[r] as f32
        } else {
            acc[r]
        };
    }
}

/// Checks the shapes of a [`lut_gemv`] call (shared with the SIMD wrappers); returns `cols`.
pub(crate) fn check_lut(tile: &[u8], tables: &[u8], scales: &[f32]) -> usize {
    let cols = tile.len() / 8;
    assert!(
        tile.len() == lut_tile_bytes(cols) && cols.is_multiple_of(LUT_SPAN) && cols > 0,
        "an index tile is 8 bytes per column, whole 128-column spans"
    );
    assert_eq!(
        tables.len(),
        lut_tables_bytes(cols),
        "tables match the tile"
    );
    assert!(
        scales.is_empty()
            || (cols.is_multiple_of(256) && scales.len() == LUT_TILE_ROWS * (cols / 256)),
        "32 scales per 256-column block, or none"
    );
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{gemm_codes_q8row, ActQ8Row};

    extern crate alloc;
    use alloc::vec;
    use alloc::vec::Vec;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Every table entry, for every pair of activation values, is the exact signed sum.
    #[test]
    fn tables_hold_every_pair_sum_exactly() {
        for a0 in -128i32..=127 {
            for a1 in [-128i32, -127, -1, 0, 1, 126, 127, a0] {
                let mut t = [0u8; 32];
                lut_tables(&[a0 as i8, a1 as i8], &mut t);
                for c0 in 0..3u8 {
                    for c1 in 0..3u8 {
                        let want = (c0 as i32 - 1) * a0 + (c1 as i32 - 1) * a1;
                        assert_eq!(entry(&t, 3 * c0 + c1), want);
                    }
                }
                assert!((9..16).all(|i| entry(&t, i) == 0));
            }
        }
    }

    /// The LUT GEMV equals the batched integer kernel on the same codes, bit for bit, with
    /// a partial tile and extreme activations.
    #[test]
    fn lut_equals_the_integer_kernel() {
        let mut rng = xorshift(3);
        for (rows, cols) in [(32usize, 256usize), (5, 512), (17, 768)] {
            let codes: Vec<u8> = (0..rows * cols).map(|_| (rng() % 3) as u8).collect();
            let scales: Vec<f32> = (0..rows * cols / 256)
                .map(|_| (rng() % 1000) as f32 / 997.0 - 0.5)
                .collect();
            let mut tile = vec![0u8; lut_tile_bytes(cols)];
            assert!(lut_pack_tile(&codes, rows, &mut tile));
            // Tile scales are block-major: scales[32·b + r].
            let nb = cols / 256;
            let mut tscales = vec![0.0f32; LUT_TILE_ROWS * nb];
            for r in 0..rows {
                for b in 0..nb {
                    tscales[LUT_TILE_ROWS * b + r] = scales[r * nb + b];
                }
            }
            for pattern in 0..3 {
                let qs: Vec<i8> = (0..cols)
                    .map(|j| match pattern {
                        0 => rng() as i8,
                        1 => -128,
                        _ => [127, -128][j % 2],
                    })
                    .collect();
                let sums: Vec<i32> = qs
                    .chunks(128)
                    .map(|c| c.iter().map(|&q| q as i32).sum())
                    .collect();
                let act = ActQ8Row::new(&qs, &sums);
                let mut tables = vec![0u8; lut_tables_bytes(cols)];
                lut_tables(&qs, &mut tables);
                for (sc, tsc) in [(&scales[..], &tscales[..]), (&[][..], &[][..])] {
                    let mut want = vec![0.0f32; rows];
                    gemm_codes_q8row(&codes, rows, sc, &[act], &mut want);
                    let mut got = [f32::NAN; 32];
                    lut_gemv(&tile, &tables, tsc, &mut got);
                    for r in 0..rows {
                        assert_eq!(got[r].to_bits(), want[r].to_bits(), "row {r}");
                    }
                    assert!(
                        got[rows..].iter().all(|&v| v == 0.0),
                        "padding rows are zero"
                    );
                }
            }
        }
    }

    #[test]
    fn unpack_inverts_pack() {
        let mut rng = xorshift(9);
        let (rows, cols) = (11usize, 384usize);
        let codes: Vec<u8> = (0..rows * cols).map(|_| (rng() % 3) as u8).collect();
        let mut tile = vec![0u8; lut_tile_bytes(cols)];
        assert!(lut_pack_tile(&codes, rows, &mut tile));
        let mut back = vec![9u8; LUT_TILE_ROWS * cols];
        lut_unpack_tile(&tile, &mut back);
        assert_eq!(&back[..rows * cols], &codes[..]);
        assert!(back[rows * cols..].iter().all(|&c| c == 1));
    }

    #[test]
    fn code_three_is_refused() {
        for bad in [3u8, 200, 255] {
            let mut codes = vec![1u8; 128];
            codes[77] = bad;
            assert!(!lut_pack_tile(&codes, 1, &mut vec![0; lut_tile_bytes(128)]));
        }
    }
}
