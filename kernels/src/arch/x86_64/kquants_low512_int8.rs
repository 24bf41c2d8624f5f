//! The int8 GEMMs of Q2_K and Q3_K rows with quantized activations ([`BlockQ8Act`]) on 512-bit
//! registers: AVX512-VNNI `vpdpbusd` with AVX-512BW byte ops, installed with the AVX512-VNNI
//! backend (whose detection includes `avx512bw`). Their row dots are the 256-bit ones of
//! `kquants_low_int8.rs`, which measured faster without a GEMM's rows to share the preparation
//! (Q2_K: 8.2–8.5 against 7.8–7.9 GB/s, this module's row dot pipelined as those are).
//!
//! Hand-written because the 256-bit kernels (`kquants_low_int8.rs`) then spent, per activation block
//! of 32, a dot, a horizontal-add tree and an integer multiply on eight lanes, and the
//! scale-and-sum of the float part per super-block, for weights of only 2.6 or 3.4 bits. Here
//! one 64-byte load holds a whole super-block's 2-bit codes, and pair `j` of every byte (one
//! shift and one mask) is the 32 codes of activation block `j` in the low half and of block
//! `4 + j` in the high half: activation blocks `j` and `4 + j` side by side meet them in one
//! `vpdpbusd`. Four of those cover the super-block; one transpose-and-add tree turns the four
//! results into the sixteen sub-block sums. Q2_K's min term (`m_s·Σa` over each
//! sub-block) and Q3_K's offset (its codes are `u − 4` with `u = q_low + 4·h` in 0..8, so
//! `Σ (u − 4)·a = Σ u·a − 4·Σa`) use the activation sums of each sub-block, the same tree over
//! `1·a`. The GEMMs (`gemm_rows!`) prepare each super-block of a token's activations once
//! per 64 rows, in runs of 16 super-blocks kept on the stack, rather than once per four-row
//! tile (IQ4_XS from 13.5 to 16.0 GB/s, Q2_K 9.4 → 10.7, Q3_K 9.5 → 10.8 with its rows
//! then in pairs, Q5_K 14.0 → 15.0 on the 576x1536 bench shape, Zen 4). The float trees of a four-row
//! tile run side by side, every shuffle and add serving all four rows (`trees4`; Q3_K, which
//! has no min term, puts two rows in each register, `trees2`): Q2_K from 60 % to 69–70 % of
//! Q4_0's GB/s on the 576x1536 and 2048x2048 bench shapes (Zen 4, loaded machine). Q2_K's
//! sub-block sums and activation sums then fit in 16 bits, so one word permutation pairs the
//! sub-blocks of each activation block and one `vpmaddwd` with the scale and min nibbles gives
//! both per-block integers (`q2_k_products`), in place of two `vpmulld` and the shuffles that
//! paired the sub-blocks: 69–70 % → 78 % on the same shapes (gemm_q8, one token). Q3_K's
//! sub-block sums and its scales `sc − 32` fit in 16 bits too, so it pairs its two rows'
//! sub-blocks the same way (`q3_k_products`). Decoding reads the rows from memory once, so the
//! GEMMs prefetch the rows ahead on their first pass as the row kernels do (`gemm.rs`):
//! SmolLM2 decode at two threads (Zen 5, `tern bench -p 0 -n 128`, alternating binaries) Q3_K
//! 305 → 385 tok/s, Q5_K 236 → 280, Q2_K 386 → 408; the AVX2 bodies likewise (Q3_K 290 → 397).
//!
//! Bit-identical to `scalar::dot_q2_k_q8` / `scalar::dot_q3_k_q8`: every integer is exact, and
//! the float part is the reference's: per activation block one conversion and one product by
//! its scale, [`sum8_tree`](crate::scalar::sum8_tree)'s order (the two trees of Q2_K side by
//! side in one register), then `d·P − dmin·M` (Q3_K: `d·P`) added to the running sum.

use core::arch::x86_64::*;

use super::kquants_low::q3_k_scales_i8;
use crate::blocks::{BlockQ2_K, BlockQ3_K, F16Le};
use crate::scalar::BlockQ8Act;

/// Rows per tile of the GEMMs: the rows that meet each prepared super-block of activations while
/// it is in registers (the preparation itself is shared by `ROW_BLOCK` rows, see `gemm_rows!`).
const ROWS: usize = 4;

/// One super-block's activations, prepared once for every row that meets them.
#[derive(Clone, Copy)]
struct Acts {
    /// Activation blocks `j` (bytes 0..32) and `4 + j` (bytes 32..64), for `j` in 0..4.
    a: [__m512i; 4],
    /// `Σa` over each sub-block, in [`sums_tree`]'s lane order.
    t: __m512i,
    /// The eight activation-block scales, twice (for the two trees of Q2_K).
    d: __m512,
}

/// The sums of each 128-bit lane of four vectors: lane `4L + j` of the result is the sum of
/// lane `L` of `v[j]`. With `v[j]` the `vpdpbusd` of pair `j`, lane `L` of `v[j]` covers
/// sub-block `8·(L / 2) + 2j + L % 2`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn sums_tree(v: [__m512i; 4]) -> __m512i {
    let u01 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[0], v[1]),
        _mm512_unpackhi_epi32(v[0], v[1]),
    );
    let u23 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[2], v[3]),
        _mm512_unpackhi_epi32(v[2], v[3]),
    );
    _mm512_add_epi32(
        _mm512_unpacklo_epi64(u01, u23),
        _mm512_unpackhi_epi64(u01, u23),
    )
}

/// Prepares the eight activation blocks of one super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn prepare(a: &[BlockQ8Act]) -> Acts {
    assert!(a.len() >= 8);
    let load = |k: usize| {
        // SAFETY: `qs` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(a[k].qs.as_ptr().cast()) }
    };
    let pairs: [__m512i; 4] = core::array::from_fn(|j| {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load(j)), load(4 + j))
    });
    let ones = _mm512_set1_epi8(1);
    let t = sums_tree(pairs.map(|p| _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, p)));
    Acts {
        a: pairs,
        t,
        d: block_scales(a),
    }
}

/// The scales of the eight activation blocks `a[..8]`, twice: one gather (the blocks are 40
/// bytes apart) and one broadcast, rather than sixteen scalar stores read back as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_scales(a: &[BlockQ8Act]) -> __m512 {
    assert!(a.len() >= 8);
    let s = core::mem::size_of::<BlockQ8Act>() as i32;
    let idx = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
    // SAFETY: lane i reads the 4 bytes of `d` at offset 40·i ≤ 280 of `a`, inside its eight
    // blocks (asserted); unaligned f32 reads are allowed.
    let d = unsafe { _mm256_i32gather_ps::<1>(a.as_ptr().cast::<u8>().cast(), idx) };
    _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(d)))
}

/// The two `sum8_tree` sums of one super-block's products `p` (`[d_k·I_k, d_k·M_k]` for Q2_K,
/// `[d_k·I_k, unused]` for Q3_K, eight lanes each).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn tree_pair(p: __m512) -> (f32, f32) {
    // sum8_tree: t_i = p_i + p_{i+4}, then (t_0 + t_2) + (t_1 + t_3), in each 256-bit half.
    let t = _mm512_add_ps(p, _mm512_shuffle_f32x4::<0b10_11_00_01>(p, p));
    let u = _mm512_add_ps(t, _mm512_permute_ps::<0b01_00_11_10>(t));
    let v = _mm512_add_ps(u, _mm512_permute_ps::<0b10_11_00_01>(u));
    (
        _mm512_cvtss_f32(v),
        _mm_cvtss_f32(_mm512_extractf32x4_ps::<2>(v)),
    )
}

/// `t_i = p_i + p_{i+4}` (`sum8_tree`'s first step) of each eight lanes of `a` and `b`:
/// `[a's first, a's last, b's first, b's last]`, four lanes each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn first_step(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
    )
}

/// The sums of [`tree_pair`] for four [`q2_k_products`] `p` (rows `A, B, C, D`) at once, the
/// rows side by side so that every shuffle and add works for all of them (eleven operations
/// instead of twenty-four): the same sums in the same order, `Σ_tree` of the first eight lanes
/// of row `r` in lane `[0, 8, 2, 10][r]` and of its last eight in lane `[4, 12, 6, 14][r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn trees4(p: [__m512; 4]) -> __m512 {
    // [A first, A last, B first, B last] and C, D, four t_i each.
    let (ab, cd) = (first_step(p[0], p[1]), first_step(p[2], p[3]));
    // (t_0 + t_2), (t_1 + t_3): per 128-bit lane [AB's two, CD's two].
    let u = _mm512_add_ps(
        _mm512_shuffle_ps::<0b01_00_01_00>(ab, cd),
        _mm512_shuffle_ps::<0b11_10_11_10>(ab, cd),
    );
    // (t_0 + t_2) + (t_1 + t_3) in lanes 0 and 2 of each 128-bit lane.
    _mm512_add_ps(u, _mm512_permute_ps::<0b10_11_00_01>(u))
}

/// The sums of [`tree_pair`] for two [`q3_k_products`] `a` and `b` (each two eight-lane groups,
/// so four sums): the same sums in the same order, in lanes 0, 4 (`a`'s), 8 and 12 (`b`'s).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn trees2(a: __m512, b: __m512) -> __m512 {
    let t = first_step(a, b);
    let u = _mm512_add_ps(t, _mm512_permute_ps::<0b01_00_11_10>(t));
    _mm512_add_ps(u, _mm512_permute_ps::<0b10_11_00_01>(u))
}

/// `d` and `dmin` as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn f16_pair(d: F16Le, dmin: F16Le) -> (f32, f32) {
    let bits = u32::from(u16::from_le_bytes(d.0)) | u32::from(u16::from_le_bytes(dmin.0)) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// Word `p` of [`q2_k_products`]' operand: sub-block `p % 16`'s sum from the code sums (`p <
/// 16`) or the activation sums (`p ≥ 16`, the second source), both in [`sums_tree`]'s lanes
/// (sub-block `s` in dword `4L + j`, `L = 2·(s / 8) + s % 2`, `j = (s % 8) / 2`; its low word).
const Q2_K_WORDS: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut p = 0;
    while p < 32 {
        let s = p % 16;
        let (l, j) = (2 * (s / 8) + s % 2, (s % 8) / 2);
        idx[p] = (2 * (4 * l + j) + 32 * (p / 16)) as u16;
        p += 1;
    }
    idx
};

/// One Q2_K super-block's per-activation-block products `[d_k·I_k (k = 0..8), d_k·M_k]`
/// against its prepared activations (the reference's conversions and products).
///
/// Pair `j` of each code byte is kept in place (`q & (3 << 2j)` = `4^j·q_j`, at most 192, one
/// mask and no shift), so `vpdpbusd` gives `4^j` times pair `j`'s sums (exact: below 2¹⁹ per
/// lane); after the tree, lane `4L + j` holds pair `j`, and one variable arithmetic shift by
/// `2j` divides the scaled sums back exactly (they are multiples of `4^j`). Every sub-block
/// sum `i_s = Σ q·a` (at most 16·3·127) and activation sum `t_s = Σ a` (at most 16·127) fits in
/// 16 bits, so one word permutation puts the pairs `(i_2k, i_2k+1)` and `(t_2k, t_2k+1)` side by
/// side and one `vpmaddwd` with the scale and min nibbles (widened to words in sub-block
/// order) gives `I_k = sc_2k·i_2k + sc_2k+1·i_2k+1` and `M_k` likewise, exactly, in the
/// order of the activation scales: no dword multiplies and no shuffles to pair sub-blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q2_k_products(b: &BlockQ2_K, acts: &Acts) -> __m512 {
    // SAFETY: `qs` is 64 readable bytes; the load is unaligned.
    let q = unsafe { _mm512_loadu_si512(b.qs.as_ptr().cast()) };
    let zero = _mm512_setzero_si512();
    let v: [__m512i; 4] = core::array::from_fn(|j| {
        let codes = _mm512_and_si512(q, _mm512_set1_epi8((3u8 << (2 * j)) as i8));
        _mm512_dpbusd_epi32(zero, codes, acts.a[j])
    });
    // Lane 4L + j: pair j's sums, 4^j times too large.
    let unscale = _mm512_set4_epi32(6, 4, 2, 0);
    let sums = _mm512_srav_epi32(sums_tree(v), unscale);
    // SAFETY: `Q2_K_WORDS` is 64 readable bytes; the load is unaligned.
    let idx = unsafe { _mm512_loadu_si512(Q2_K_WORDS.as_ptr().cast()) };
    let pairs = _mm512_permutex2var_epi16(sums, idx, acts.t);
    // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
    let s = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) });
    let sc = _mm256_and_si256(s, _mm256_set1_epi16(0x0F));
    let m = _mm256_srli_epi16::<4>(s);
    let weights = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(sc), m);
    _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_madd_epi16(pairs, weights)),
        acts.d,
    )
}

/// One Q2_K super-block against its prepared activations: `d·P − dmin·M`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q2_k_block(b: &BlockQ2_K, acts: &Acts) -> f32 {
    let (p, pm) = tree_pair(q2_k_products(b, acts));
    let (d, dmin) = f16_pair(b.d, b.dmin);
    d * p - dmin * pm
}

/// Four rows' Q2_K super-blocks against the same prepared activations, their float trees
/// side by side ([`trees4`]): each result as [`q2_k_block`] gives it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q2_k_quad(b: [&BlockQ2_K; 4], acts: &Acts) -> [f32; 4] {
    let p = b.map(|b| q2_k_products(b, acts));
    let mut v = [0.0f32; 16];
    // SAFETY: `v` holds 16 floats; the store is unaligned.
    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), trees4(p)) };
    core::array::from_fn(|r| {
        let (d, dmin) = f16_pair(b[r].d, b[r].dmin);
        d * v[[0, 8, 2, 10][r]] - dmin * v[[4, 12, 6, 14][r]]
    })
}

/// One Q3_K super-block's sub-block sums `Σ (u − 4)·a`, in [`sums_tree`]'s lanes (each at most
/// 16·4·127 in magnitude, so exact in its low word).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q3_k_sums(b: &BlockQ3_K, acts: &Acts) -> __m512i {
    // SAFETY: `qs` is 64 and `hmask` 32 readable bytes; the loads are unaligned.
    let (q, hm) = unsafe {
        (
            _mm512_loadu_si512(b.qs.as_ptr().cast()),
            _mm256_loadu_si256(b.hmask.as_ptr().cast()),
        )
    };
    // The high bit of element 32k + l is bit k of hmask[l]: for pair j, bit j in the low half
    // (activation block j) and bit 4 + j in the high half (block 4 + j).
    let hm = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(hm), hm);
    let (three, four) = (_mm512_set1_epi8(3), _mm512_set1_epi8(4));
    let zero = _mm512_setzero_si512();
    let v: [__m512i; 4] = core::array::from_fn(|j| {
        let low = match j {
            0 => q,
            1 => _mm512_srli_epi16::<2>(q),
            2 => _mm512_srli_epi16::<4>(q),
            _ => _mm512_srli_epi16::<6>(q),
        };
        let low = _mm512_and_si512(low, three);
        let bits = _mm512_inserti64x4::<1>(
            _mm512_set1_epi8((1u8 << j) as i8),
            _mm256_set1_epi8((1u8 << (4 + j)) as i8),
        );
        let u = _mm512_mask_add_epi8(low, _mm512_test_epi8_mask(hm, bits), low, four);
        _mm512_dpbusd_epi32(zero, u, acts.a[j])
    });
    _mm512_sub_epi32(sums_tree(v), _mm512_slli_epi32::<2>(acts.t))
}

/// Two rows' Q3_K super-blocks against the same prepared activations:
/// `[d_k·I_k (row 0, k = 0..8), d_k·I_k (row 1)]`, with `I_k = Σ (sc − 32)·Σ (u − 4)·a` over
/// activation block `k`'s two sub-blocks (the reference's integers, conversions and products).
///
/// As Q2_K's [`q2_k_products`]: the sub-block sums and the scales `sc − 32` fit in 16 bits, so
/// one word permutation ([`Q2_K_WORDS`], the second row in place of Q2_K's activation sums)
/// pairs each activation block's two sub-blocks of both rows and one `vpmaddwd` with the
/// scales (widened to words in sub-block order) gives every `I_k`, exactly: per two rows one
/// permutation, one insert and one `vpmaddwd` where scaling in dwords took two `vpmulld`, two
/// byte shuffles to the tree's lane order, two lane shuffles and an add.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q3_k_products(b: [&BlockQ3_K; 2], acts: &Acts) -> __m512 {
    let (s0, s1) = (q3_k_sums(b[0], acts), q3_k_sums(b[1], acts));
    // SAFETY: `Q2_K_WORDS` is 64 readable bytes; the load is unaligned.
    let idx = unsafe { _mm512_loadu_si512(Q2_K_WORDS.as_ptr().cast()) };
    let pairs = _mm512_permutex2var_epi16(s0, idx, s1);
    let sc = |b: &BlockQ3_K| _mm256_cvtepi8_epi16(q3_k_scales_i8(b));
    let weights = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(sc(b[0])), sc(b[1]));
    _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_madd_epi16(pairs, weights)),
        acts.d,
    )
}

/// One Q3_K super-block against its prepared activations: `d·P`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q3_k_block(b: &BlockQ3_K, acts: &Acts) -> f32 {
    let (p, _) = tree_pair(q3_k_products([b, b], acts));
    f16_pair(b.d, b.d).0 * p
}

/// Four rows' Q3_K super-blocks against the same prepared activations, two rows per
/// [`q3_k_products`] and their trees side by side ([`trees2`]): each result as [`q3_k_block`]
/// gives it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q3_k_quad(b: [&BlockQ3_K; 4], acts: &Acts) -> [f32; 4] {
    let (p01, p23) = (
        q3_k_products([b[0], b[1]], acts),
        q3_k_products([b[2], b[3]], acts),
    );
    let mut v = [0.0f32; 16];
    // SAFETY: `v` holds 16 floats; the store is unaligned.
    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), trees2(p01, p23)) };
    let (d0, d1) = f16_pair(b[0].d, b[1].d);
    let (d2, d3) = f16_pair(b[2].d, b[3].d);
    [d0 * v[0], d1 * v[4], d2 * v[8], d3 * v[12]]
}

/// Super-blocks of one token's activations prepared at once by the GEMMs (4096 weights: a few
/// KiB of stack, however long the rows).
pub(super) const PREP: usize = 16;

/// Rows that meet each prepared run of activations before the next token's: their weights
/// (at most `ROW_BLOCK · PREP` super-blocks, 90 KiB of Q3_K) stay in L2 across the tokens.
pub(super) const ROW_BLOCK: usize = 64;

/// `y[t·ldy + r] = row r · token t` for the `m` rows of `w` (`kb` blocks each) and the `n`
/// tokens of `acts` (`8·kb` blocks each). The invoking module's `prepare` turns each
/// super-block of a token's activations into its `Acts` once per [`ROW_BLOCK`] rows (in runs of
/// [`PREP`] super-blocks), and `ROWS` rows at a time meet them; every row sums its super-blocks
/// in order (a run's partial sums wait in `y`, exactly, between runs), so each result equals
/// the row dot's. `$per_block(block, &prepared)` gives one super-block's term; with a trailing
/// `$ctx` expression (evaluated once per call, e.g. a lookup table) it is called as
/// `$per_block(block, &prepared, ctx)`; with a trailing `quad: $quad` instead,
/// `$quad([block0, block1, block2, block3], &prepared)` gives four rows' terms at once (each as
/// `$per_block` would) for the tiles of four rows. The 512-bit
/// int8 GEMMs of IQ4_XS and Q5_K use it too.
macro_rules! gemm_rows {
    (@call $f:path, $w:expr, $p:expr, $c:ident) => {
        $f($w, $p)
    };
    (@call $f:path, $w:expr, $p:expr, $c:ident, $_ctx:expr) => {
        $f($w, $p, $c)
    };
    ($name:ident, $tile:ident, $block:ty, $per_block:path, quad: $quad:path) => {
        gemm_rows!(@rows $name, $tile, $block, $per_block, [$quad, 4]);
    };
    ($name:ident, $tile:ident, $block:ty, $per_block:path $(, $ctx:expr)?) => {
        gemm_rows!(@rows $name, $tile, $block, $per_block, [] $(, $ctx)?);
    };
    (@rows $name:ident, $tile:ident, $block:ty, $per_block:path,
        [$($group:path, $width:literal)?]
        $(, $ctx:expr)?) => {
        /// Adds to `out` (or, for the first run, `first`, writes) the terms of `R` rows
        /// (`kb` blocks each, back to back in `w`) for super-blocks `b0..b0 + prepared.len()`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn $tile<const R: usize>(
            w: &[$block],
            kb: usize,
            b0: usize,
            prepared: &[Acts],
            out: &mut [f32],
            first: bool,
        ) {
            assert!(w.len() >= R * kb && b0 + prepared.len() <= kb && out.len() >= R);
            #[allow(
                unused_variables,
                clippy::let_unit_value,
                clippy::unused_unit,
                reason = "formats without a per-block context give `()`, which only some bodies read"
            )]
            let ctx = ($($ctx)?);
            let mut sums = [0.0f32; R];
            if !first {
                sums.copy_from_slice(&out[..R]);
            }
            for (i, p) in prepared.iter().enumerate() {
                #[allow(unused_mut, reason = "formats without a pair kernel never advance `r` before the tail loop")]
                let mut r = 0;
                $(
                    while r + $width <= R {
                        let blocks: [&$block; $width] =
                            core::array::from_fn(|g| &w[(r + g) * kb + b0 + i]);
                        let terms = $group(blocks, p);
                        for g in 0..$width {
                            sums[r + g] += terms[g];
                        }
                        r += $width;
                    }
                )?
                while r < R {
                    sums[r] += gemm_rows!(
                        @call $per_block, &w[r * kb + b0 + i], p, ctx $(, $ctx)?
                    );
                    r += 1;
                }
            }
            out[..R].copy_from_slice(&sums);
        }

        #[doc = concat!("`y[t·ldy + r] = row r · token t` through [`", stringify!($per_block), "`].")]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) fn $name(
            w: &[$block],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            use super::gemm::{prefetch_ahead, prefetch_head};
            use super::kquants_low512_int8::{PREP, ROW_BLOCK};
            assert!(w.len() == m * kb && acts.len() == n * 8 * kb);
            assert!(n == 0 || (ldy >= m && y.len() >= (n - 1) * ldy + m));
            let block_bytes = core::mem::size_of::<$block>();
            prefetch_head(w.as_ptr().cast(), m * kb * block_bytes);
            // SAFETY: `Acts` holds only SIMD vectors, for which all-zero bits are valid; every
            // entry read below was written by `prepare` first.
            let mut prepared: [Acts; PREP] = unsafe { core::mem::zeroed() };
            let mut rb0 = 0;
            while rb0 < m {
                let rb = (m - rb0).min(ROW_BLOCK);
                for t in 0..n {
                    let at = &acts[t * 8 * kb..(t + 1) * 8 * kb];
                    let out = &mut y[t * ldy + rb0..t * ldy + rb0 + rb];
                    let mut b0 = 0;
                    while b0 < kb {
                        let run = (kb - b0).min(PREP);
                        for (i, p) in prepared[..run].iter_mut().enumerate() {
                            *p = prepare(&at[8 * (b0 + i)..]);
                        }
                        let prep = &prepared[..run];
                        let mut r = 0;
                        while r < rb {
                            let rows = (rb - r).min(ROWS);
                            let wg = &w[(rb0 + r) * kb..];
                            if t == 0 && b0 == 0 {
                                // The first pass over these rows reads them from memory.
                                prefetch_ahead(wg.as_ptr().cast(), rows * kb * block_bytes);
                            }
                            let o = &mut out[r..];
                            match rows {
                                4 => $tile::<4>(wg, kb, b0, prep, o, b0 == 0),
                                3 => $tile::<3>(wg, kb, b0, prep, o, b0 == 0),
                                2 => $tile::<2>(wg, kb, b0, prep, o, b0 == 0),
                                _ => $tile::<1>(wg, kb, b0, prep, o, b0 == 0),
                            }
                            r += rows;
                        }
                        b0 += run;
                    }
                }
                rb0 += rb;
            }
        }
    };
}
pub(super) use gemm_rows;

gemm_rows!(gemm_q2_k_q8, tile_q2_k, BlockQ2_K, q2_k_block, quad: q2_k_quad);
gemm_rows!(gemm_q3_k_q8, tile_q3_k, BlockQ3_K, q3_k_block, quad: q3_k_quad);
