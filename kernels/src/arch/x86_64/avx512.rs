//! Decoding's rows · one f32 vector with AVX-512
//! (`dot_rows_{q4_0,q4_1,q8_0,iq4_nl,q5_0,q5_1}_f32/avx512`), for
//! the CPUs that have it (installed with the AVX512-VNNI backend). On the SmolLM2 shapes, with
//! the weights in L2, they take about 31 ns per 576-wide Q4 row and 34 ns per Q8_0 row,
//! against 38 ns for the previous AVX-512 Q4 kernels and 43 ns for the AVX2 Q8_0 one (`cargo
//! bench -p tern-kernels -- dot_rows`).
//!
//! With 512-bit vectors every FMA, conversion and permute shares two ports, so what counts is
//! the number of those instructions per block and row. Three choices keep it at seven for a
//! Q4 block (two shifts, two lookups, three FMAs) and nearly nothing per row:
//! - The block scales of a row group are converted up front, sixteen blocks per `vpgatherdd`
//!   and one `vcvtph2ps` per sixteen values, into a small f32 table; the main loop reads them
//!   as broadcast operands (no instruction of their own).
//! - A Q4 code becomes its value through a 16-entry table in one register (`vpermps` reads
//!   only the low four bits of each index), and the table already holds `d·q + m` for the
//!   block: one FMA builds it, so neither the scale nor Q4_1's offset costs anything more.
//!   Any 16-value codebook costs the same.
//! - The 16 code bytes are broadcast to all four 128-bit lanes by the load itself and moved
//!   into place with one variable shift; the lanes then hold the block's elements in the
//!   order of a 4 × 4 transpose, so `x` is permuted the same way once per call.
//!
//! The four rows of a group are summed with one shared reduction. Q8_0 blocks take seven such
//! instructions too (two widenings, two conversions, three FMAs). Q5_1 blocks take ten (one
//! widening and one shift, two table FMAs, four lookups of which two are masked by the
//! fifth bits, two FMAs): 56 ns per 576-wide row against 60 ns for the AVX2 kernel. Q5_0
//! blocks skip the tables: their codes `q − 16` are built with integer ops (which run on any
//! vector pipe, where the lookups compete for the shuffle pipes) as bytes in 256-bit vectors,
//! sign-extended and converted, and the block's dot is scaled once as for Q8_0: 39.0 ns per
//! row, against 42.6 ns building them in 512-bit i32 lanes, 48 ns looking the 5-bit codes up
//! in a two-register table (`vpermt2ps`), 50 ns with per-block tables and 52 ns for AVX2
//! (Zen 4, `cargo bench -p tern-kernels -- "Q5_0 dot_rows"`).

// Tiles index the scale tables and accumulators by the same row number.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::gemm::{prefetch_ahead, prefetch_head, PRESCALE_MAX, ROWS};
use crate::blocks::{BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::scalar::IQ4_NL_VALUES;

/// Most blocks in a row these kernels take (the wrappers send wider rows elsewhere).
pub(super) const MAX_BLOCKS: usize = PRESCALE_MAX / 32;

/// A row group's block scales as f32, block after block over its rows: `d` alone
/// (`PAIRS = false`), or `d, m` pairs for Q4_1. Only the entries [`Scales::load`] wrote are read.
struct Scales<const PAIRS: bool>([MaybeUninit<f32>; 2 * ROWS * MAX_BLOCKS]);

impl<const PAIRS: bool> Scales<PAIRS> {
    fn new() -> Self {
        Scales([MaybeUninit::uninit(); 2 * ROWS * MAX_BLOCKS])
    }

    /// Converts the scales of the `n ≤ ROWS · MAX_BLOCKS` blocks at `base` (`stride` bytes
    /// each, `d` at byte 0 and for pairs `m` at byte 2), sixteen blocks per gather.
    ///
    /// # Safety
    /// `base` must point at `n` blocks of `stride ≥ 4` bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn load(&mut self, base: *const u8, stride: usize, n: usize) {
        assert!(n <= ROWS * MAX_BLOCKS);
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
        let out = self.0.as_mut_ptr().cast::<f32>();
        let mut b = 0;
        while b < n {
            let k = (n - b).min(16);
            let mask = lane_mask(k);
            // SAFETY: lane i < k reads the 4 bytes at block b + i (d and the next two bytes:
            // `m` for Q4_1, codes otherwise), inside the caller's blocks; masked-off lanes
            // read nothing.
            let v = unsafe {
                _mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    mask,
                    offsets,
                    base.add(b * stride).cast(),
                )
            };
            if PAIRS {
                // The gathered words are `d, m` halves in order: two conversions give pairs.
                let lo = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
                let hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(v));
                // SAFETY: entries 2·b .. 2·(b + k) ≤ 2·n ≤ 2·ROWS·MAX_BLOCKS are inside the
                // table; masked-off lanes are not written.
                unsafe {
                    _mm512_mask_storeu_ps(out.add(2 * b), lane_mask(2 * k), lo);
                    _mm512_mask_storeu_ps(
                        out.add(2 * b + 16),
                        lane_mask((2 * k).saturating_sub(16)),
                        hi,
                    );
                }
            } else {
                let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
                // SAFETY: entries b .. b + k ≤ n ≤ ROWS·MAX_BLOCKS are inside the table;
                // masked-off lanes are not written.
                unsafe { _mm512_mask_storeu_ps(out.add(b), mask, d) };
            }
            b += k;
        }
    }

    /// Block `i`'s `d`, broadcast.
    ///
    /// # Safety
    /// Block `i` must be one [`Scales::load`] converted.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn d(&self, i: usize) -> __m512 {
        let at = if PAIRS { 2 * i } else { i };
        // SAFETY: written by `load` (the caller's contract).
        _mm512_set1_ps(unsafe { self.0.get_unchecked(at).assume_init() })
    }

    /// Block `i`'s `m` (pairs only), broadcast.
    ///
    /// # Safety
    /// As for [`Scales::d`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn m(&self, i: usize) -> __m512 {
        debug_assert!(PAIRS);
        // SAFETY: written by `load` (the caller's contract).
        _mm512_set1_ps(unsafe { self.0.get_unchecked(2 * i + 1).assume_init() })
    }
}

/// The first `k ≤ 16` lanes.
#[inline]
fn lane_mask(k: usize) -> __mmask16 {
    if k >= 16 {
        !0
    } else {
        (1u16 << k) - 1
    }
}

/// `x` (whole blocks, at most [`PRESCALE_MAX`]) with each 16-float half-block transposed as a
/// 4 × 4 matrix (element `4j + c` moves to lane `4c + j`), the order [`q4_codes`] leaves a
/// block's codes in. Written into `buf`, of which it returns the initialized part.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn transpose_quads<'a>(
    x: &[f32],
    buf: &'a mut [MaybeUninit<f32>; PRESCALE_MAX],
) -> &'a [f32] {
    assert!(x.len() <= PRESCALE_MAX && x.len().is_multiple_of(16));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let out = buf.as_mut_ptr().cast::<f32>();
    for (i, half) in x.chunks_exact(16).enumerate() {
        // SAFETY: `half` is 16 floats; 16·i + 16 ≤ x.len() ≤ PRESCALE_MAX keeps the store in
        // `buf`. Both accesses are unaligned.
        unsafe {
            let v = _mm512_loadu_ps(half.as_ptr());
            _mm512_storeu_ps(out.add(16 * i), _mm512_permutexvar_ps(order, v));
        }
    }
    // SAFETY: the loop wrote the first x.len() floats, and `buf` stays borrowed.
    unsafe { core::slice::from_raw_parts(out, x.len()) }
}

/// The 32 codes of a Q4 block (`qs`: element `j` in the low nibble of byte `j`, element
/// `j + 16` in the high one) as two vectors of indices, in the lane order of
/// [`transpose_quads`]: the 16 bytes are broadcast to every 128-bit lane and lane `4c + j`
/// shifted right by `8c`, which leaves byte `4j + c` in its low bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn q4_codes(qs: &[u8; 16]) -> [__m512i; 2] {
    let shifts = _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
    // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
    let bytes = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let v = _mm512_srlv_epi32(_mm512_broadcast_i32x4(bytes), shifts);
    [v, _mm512_srli_epi32::<4>(v)]
}

/// The 32 floats at `x` as two vectors.
///
/// # Safety
/// `x` must point at 32 readable floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) unsafe fn load32(x: *const f32) -> [__m512; 2] {
    // SAFETY: the caller's contract; the loads are unaligned.
    unsafe { [_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16))] }
}

/// The horizontal sums of four vectors, in order, with one shared reduction.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn sum4(a: [__m512; 4]) -> __m128 {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3], and the same for c and d.
    let ab = _mm512_add_ps(
        _mm512_unpacklo_ps(a[0], a[1]),
        _mm512_unpackhi_ps(a[0], a[1]),
    );
    let cd = _mm512_add_ps(
        _mm512_unpacklo_ps(a[2], a[3]),
        _mm512_unpackhi_ps(a[2], a[3]),
    );
    let (ab, cd) = (_mm512_castps_pd(ab), _mm512_castps_pd(cd));
    // Per 128-bit lane: [a, b, c, d].
    let s = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(ab, cd)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(ab, cd)),
    );
    let s = _mm512_add_ps(s, _mm512_shuffle_f32x4::<0b01_00_11_10>(s, s));
    let s = _mm512_add_ps(s, _mm512_shuffle_f32x4::<0b10_11_00_01>(s, s));
    _mm512_castps512_ps128(s)
}

/// Stores the sums of `R ≤ 4` accumulators in `y[..R]`, each summed in the same order
/// whatever `R` (a row's result must not depend on where a row group starts).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn store_sums<const R: usize>(acc: [__m512; R], y: &mut [f32]) {
    let s = sum4(core::array::from_fn(|i| {
        if i < R {
            acc[i]
        } else {
            _mm512_setzero_ps()
        }
    }));
    let mut out = [0.0f32; ROWS];
    // SAFETY: `out` holds four floats; the store is unaligned.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
    y[..R].copy_from_slice(&out[..R]);
}

/// The blocks these kernels read: at least 18 bytes, the f16 scale `d` first and, when
/// `HAS_M`, the f16 offset `m` right after it (what [`Scales::load`] gathers).
trait ScaledBlock {
    /// Whether the block has an offset `m` right after `d`.
    const HAS_M: bool;
}

impl ScaledBlock for BlockQ4_0 {
    const HAS_M: bool = false;
}

impl ScaledBlock for BlockQ4_1 {
    const HAS_M: bool = true;
}

impl ScaledBlock for BlockQ8_0 {
    const HAS_M: bool = false;
}

impl ScaledBlock for BlockIQ4_NL {
    const HAS_M: bool = false;
}

impl ScaledBlock for BlockQ5_0 {
    const HAS_M: bool = false;
}

impl ScaledBlock for BlockQ5_1 {
    const HAS_M: bool = true;
}

/// The 4-bit blocks: scales, then 16 code bytes.
trait Q4Block: ScaledBlock {
    /// The code bytes.
    fn qs(&self) -> &[u8; 16];
}

impl Q4Block for BlockQ4_0 {
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Q4Block for BlockQ4_1 {
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Q4Block for BlockIQ4_NL {
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

/// The loop both row drivers share: for each group of up to [`ROWS`] rows of `w` (`kb ≤
/// MAX_BLOCKS` blocks each, rows back to back), prefetch ahead, convert the group's scales,
/// then `group(blocks, scales, outputs)` with the group's rows and their `y` entries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn for_row_groups<B: ScaledBlock, const PAIRS: bool>(
    w: &[B],
    kb: usize,
    y: &mut [f32],
    mut group: impl FnMut(&[B], &Scales<PAIRS>, &mut [f32]),
) {
    assert!(kb <= MAX_BLOCKS && w.len() >= y.len() * kb && PAIRS == B::HAS_M);
    let size = core::mem::size_of::<B>();
    let mut s = Scales::<PAIRS>::new();
    prefetch_head(w.as_ptr().cast(), y.len() * kb * size);
    let mut r = 0;
    while r < y.len() {
        let rows = (y.len() - r).min(ROWS);
        let blocks = &w[r * kb..(r + rows) * kb];
        prefetch_ahead(blocks.as_ptr().cast(), rows * kb * size);
        // SAFETY: `blocks` is `rows · kb ≤ ROWS · MAX_BLOCKS` blocks laid out as
        // `ScaledBlock` says, and `PAIRS` asks for `m` only where it exists.
        unsafe { s.load(blocks.as_ptr().cast(), size, rows * kb) };
        group(blocks, &s, &mut y[r..r + rows]);
        r += rows;
    }
}

/// `R` rows of 4-bit blocks (`kb` each, back to back in `w`, scales in `s`) · `xt` (the
/// activations through [`transpose_quads`]): per block, the table `values·d + m` and two
/// lookups into it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q4<B: Q4Block, const PAIRS: bool, const R: usize>(
    w: &[B],
    kb: usize,
    xt: &[f32],
    s: &Scales<PAIRS>,
    values: __m512,
) -> [__m512; R] {
    assert!(w.len() >= R * kb && xt.len() >= 32 * kb && kb <= MAX_BLOCKS);
    // Raw pointers below: a bounds check per block and row would take the FMA port's slots.
    let (w, xt) = (w.as_ptr(), xt.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        // SAFETY: 32·b + 32 ≤ 32·kb ≤ xt.len() (asserted).
        let xv = unsafe { load32(xt.add(32 * b)) };
        for r in 0..R {
            let i = r * kb + b;
            // SAFETY: the driver converted the scales of all R·kb blocks of this group.
            let tbl = unsafe {
                if PAIRS {
                    _mm512_fmadd_ps(values, s.d(i), s.m(i))
                } else {
                    _mm512_mul_ps(values, s.d(i))
                }
            };
            // SAFETY: i < R·kb ≤ w.len() (asserted).
            let [lo, hi] = q4_codes(unsafe { (*w.add(i)).qs() });
            acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo, tbl), xv[0], acc[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi, tbl), xv[1], acc[r]);
        }
    }
    acc
}

/// `y[r] = row r · x` for Q4_0 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q4_0_f32(w: &[BlockQ4_0], kb: usize, x: &[f32], y: &mut [f32]) {
    dot_rows_q4::<BlockQ4_0, false>(w, kb, x, y, |i| i as f32 - 8.0);
}

/// `y[r] = row r · x` for Q4_1 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q4_1_f32(w: &[BlockQ4_1], kb: usize, x: &[f32], y: &mut [f32]) {
    dot_rows_q4::<BlockQ4_1, true>(w, kb, x, y, |i| i as f32);
}

/// `y[r] = row r · x` for IQ4_NL rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time: Q4_0's
/// kernel with IQ4_NL's codebook in the table.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_iq4_nl_f32(w: &[BlockIQ4_NL], kb: usize, x: &[f32], y: &mut [f32]) {
    dot_rows_q4::<BlockIQ4_NL, false>(w, kb, x, y, |i| IQ4_NL_VALUES[i] as f32);
}

/// The shared body of the 4-bit row kernels; `value(q)` is code `q`'s value before scaling.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn dot_rows_q4<B: Q4Block, const PAIRS: bool>(
    w: &[B],
    kb: usize,
    x: &[f32],
    y: &mut [f32],
    value: fn(usize) -> f32,
) {
    assert!(x.len() >= 32 * kb && kb <= MAX_BLOCKS);
    let table: [f32; 16] = core::array::from_fn(value);
    // SAFETY: `table` holds 16 floats; the load is unaligned.
    let values = unsafe { _mm512_loadu_ps(table.as_ptr()) };
    let mut buf = [MaybeUninit::uninit(); PRESCALE_MAX];
    let xt = transpose_quads(&x[..32 * kb], &mut buf);
    for_row_groups::<B, PAIRS>(w, kb, y, |g, s, yg| match yg.len() {
        4 => store_sums(rows_q4::<B, PAIRS, 4>(g, kb, xt, s, values), yg),
        3 => store_sums(rows_q4::<B, PAIRS, 3>(g, kb, xt, s, values), yg),
        2 => store_sums(rows_q4::<B, PAIRS, 2>(g, kb, xt, s, values), yg),
        _ => store_sums(rows_q4::<B, PAIRS, 1>(g, kb, xt, s, values), yg),
    });
}

/// `R` rows of Q8_0 blocks (`kb` each, back to back in `w`, scales in `s`) · `x`: per block,
/// two widenings and conversions, two FMAs and the scale's.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q8_0<const R: usize>(
    w: &[BlockQ8_0],
    kb: usize,
    x: &[f32],
    s: &Scales<false>,
) -> [__m512; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb && kb <= MAX_BLOCKS);
    // Raw pointers below, as in `rows_q4`.
    let (w, x) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        // SAFETY: 32·b + 32 ≤ 32·kb ≤ x.len() (asserted).
        let xv = unsafe { load32(x.add(32 * b)) };
        for r in 0..R {
            let i = r * kb + b;
            // SAFETY: i < R·kb ≤ w.len() (asserted), so `qs` is 32 readable bytes; the loads
            // are unaligned.
            let (lo, hi) = unsafe {
                let qs = (*w.add(i)).qs.as_ptr();
                (
                    _mm_loadu_si128(qs.cast()),
                    _mm_loadu_si128(qs.add(16).cast()),
                )
            };
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo));
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi));
            let p = _mm512_fmadd_ps(hi, xv[1], _mm512_mul_ps(lo, xv[0]));
            // SAFETY: the driver converted the scales of all R·kb blocks of this group.
            acc[r] = _mm512_fmadd_ps(p, unsafe { s.d(i) }, acc[r]);
        }
    }
    acc
}

/// `y[r] = row r · x` for Q8_0 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q8_0_f32(w: &[BlockQ8_0], kb: usize, x: &[f32], y: &mut [f32]) {
    assert!(x.len() >= 32 * kb);
    for_row_groups::<BlockQ8_0, false>(w, kb, y, |g, s, yg| match yg.len() {
        4 => store_sums(rows_q8_0::<4>(g, kb, x, s), yg),
        3 => store_sums(rows_q8_0::<3>(g, kb, x, s), yg),
        2 => store_sums(rows_q8_0::<2>(g, kb, x, s), yg),
        _ => store_sums(rows_q8_0::<1>(g, kb, x, s), yg),
    });
}

/// The 5-bit blocks with tables ([`rows_q5`]; Q5_0 takes [`rows_q5_0_int`]): scales, the
/// fifth bits, then 16 code bytes.
trait Q5Block: ScaledBlock {
    /// The fifth bits (bit `j` of the little-endian word: element `j`).
    fn qh(&self) -> u32;
    /// The code bytes (low four bits of element `j` and, high nibble, of `j + 16`).
    fn qs(&self) -> &[u8; 16];
}

impl Q5Block for BlockQ5_1 {
    #[inline(always)]
    fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

/// `R` rows of 5-bit blocks (`kb` each, back to back in `w`, scales in `s`) · `x` (in element
/// order: no transpose). Per block the 16 code bytes are zero-extended to the 16 lanes once
/// (lane `j` holds element `j` in its low nibble and element `j + 16` in the next), and each
/// half is looked up in two 16-entry tables: `lo` (codes 0..16) for every lane, then `hi`
/// (codes 16..32) for the lanes whose fifth bit is set, a masked permute with the half's 16
/// bits of `qh` as the mask. Both tables hold `d·q + m` (or `d·q`) for the block: every weight
/// is the value the reference dequantizes, with one rounding.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn rows_q5<B: Q5Block, const PAIRS: bool, const R: usize>(
    w: &[B],
    kb: usize,
    x: &[f32],
    s: &Scales<PAIRS>,
    values: [__m512; 2],
) -> [__m512; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb && kb <= MAX_BLOCKS);
    // Raw pointers below, as in `rows_q4`.
    let (w, x) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        // SAFETY: 32·b + 32 ≤ 32·kb ≤ x.len() (asserted).
        let xv = unsafe { load32(x.add(32 * b)) };
        for r in 0..R {
            let i = r * kb + b;
            // SAFETY: the driver converted the scales of all R·kb blocks of this group.
            let tbl = values.map(|v| unsafe {
                if PAIRS {
                    _mm512_fmadd_ps(v, s.d(i), s.m(i))
                } else {
                    _mm512_mul_ps(v, s.d(i))
                }
            });
            // SAFETY: i < R·kb ≤ w.len() (asserted).
            let blk = unsafe { &*w.add(i) };
            // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
            let codes = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(blk.qs().as_ptr().cast()) });
            let qh = blk.qh();
            let half = |idx: __m512i, bits: u32| {
                let v = _mm512_permutexvar_ps(idx, tbl[0]);
                _mm512_mask_permutexvar_ps(v, bits as __mmask16, idx, tbl[1])
            };
            let lo = half(codes, qh);
            let hi = half(_mm512_srli_epi32::<4>(codes), qh >> 16);
            acc[r] = _mm512_fmadd_ps(lo, xv[0], acc[r]);
            acc[r] = _mm512_fmadd_ps(hi, xv[1], acc[r]);
        }
    }
    acc
}

/// `y[r] = row r · x` for Q5_0 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time,
/// through [`rows_q5_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[target_feature(enable = "avx512bw,avx512vl")]
pub(super) fn dot_rows_q5_0_f32(w: &[BlockQ5_0], kb: usize, x: &[f32], y: &mut [f32]) {
    assert!(x.len() >= 32 * kb);
    for_row_groups::<BlockQ5_0, false>(w, kb, y, |g, s, yg| match yg.len() {
        4 => store_sums(rows_q5_0::<4>(g, kb, x, s), yg),
        3 => store_sums(rows_q5_0::<3>(g, kb, x, s), yg),
        2 => store_sums(rows_q5_0::<2>(g, kb, x, s), yg),
        _ => store_sums(rows_q5_0::<1>(g, kb, x, s), yg),
    });
}

/// `y[r] = row r · x` for Q5_1 rows (`kb ≤ MAX_BLOCKS` blocks each), [`ROWS`] at a time.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) fn dot_rows_q5_1_f32(w: &[BlockQ5_1], kb: usize, x: &[f32], y: &mut [f32]) {
    dot_rows_q5::<BlockQ5_1, true>(w, kb, x, y, |q| q as f32);
}

/// The shared body of the 5-bit row kernels; `value(q)` is code `q`'s value before scaling.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn dot_rows_q5<B: Q5Block, const PAIRS: bool>(
    w: &[B],
    kb: usize,
    x: &[f32],
    y: &mut [f32],
    value: fn(usize) -> f32,
) {
    assert!(x.len() >= 32 * kb && kb <= MAX_BLOCKS);
    let table: [f32; 32] = core::array::from_fn(value);
    // SAFETY: `table` holds 32 floats; the loads are unaligned.
    let values = unsafe {
        [
            _mm512_loadu_ps(table.as_ptr()),
            _mm512_loadu_ps(table.as_ptr().add(16)),
        ]
    };
    for_row_groups::<B, PAIRS>(w, kb, y, |g, s, yg| match yg.len() {
        4 => store_sums(rows_q5::<B, PAIRS, 4>(g, kb, x, s, values), yg),
        3 => store_sums(rows_q5::<B, PAIRS, 3>(g, kb, x, s, values), yg),
        2 => store_sums(rows_q5::<B, PAIRS, 2>(g, kb, x, s, values), yg),
        _ => store_sums(rows_q5::<B, PAIRS, 1>(g, kb, x, s, values), yg),
    });
}

/// `R` Q5_0 rows (`kb` blocks each, back to back in `w`, scales in `s`) · `x` (element order)
/// without tables: the 32 codes `q − 16` of a block are built as bytes in one 256-bit vector
/// (the 16 code bytes in both halves, the upper half's 16-bit words shifted right by four,
/// one `vpternlogd` for `nibble − 16`, one `vpaddb` of 16 under the 32 fifth bits as a mask),
/// sign-extended to i32 sixteen at a time and converted exactly; the block's dot is scaled
/// once, `acc += d·(Σ (q − 16)·x)`, as the Q8_0 kernel does. The byte work runs at 256 bits,
/// one pipe slot per operation where 512-bit integer operations on i32 lanes take two.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn rows_q5_0<const R: usize>(
    w: &[BlockQ5_0],
    kb: usize,
    x: &[f32],
    s: &Scales<false>,
) -> [__m512; R] {
    assert!(w.len() >= R * kb && x.len() >= 32 * kb && kb <= MAX_BLOCKS);
    let (w, x) = (w.as_ptr(), x.as_ptr());
    let shifts = _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    let low = _mm256_set1_epi8(0x0F);
    let minus16 = _mm256_set1_epi8(-16);
    let sixteen = _mm256_set1_epi8(16);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..kb {
        // SAFETY: 32·b + 32 ≤ 32·kb ≤ x.len() (asserted).
        let xv = unsafe { load32(x.add(32 * b)) };
        for r in 0..R {
            let i = r * kb + b;
            // SAFETY: i < R·kb ≤ w.len() (asserted).
            let blk = unsafe { &*w.add(i) };
            // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
            let q = unsafe { _mm_loadu_si128(blk.qs.as_ptr().cast()) };
            // Bytes 0..16: element j in the low nibble of byte j; bytes 16..32: element j + 16.
            let q = _mm256_srlv_epi16(_mm256_broadcastsi128_si256(q), shifts);
            // (q & 0x0F) | 0xF0 = nibble − 16; + 16 where the fifth bit is set.
            let v = _mm256_ternarylogic_epi32::<0xEA>(q, low, minus16);
            let v = _mm256_mask_add_epi8(v, u32::from_le_bytes(blk.qh), v, sixteen);
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(v)));
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256::<1>(v)));
            let p = _mm512_fmadd_ps(hi, xv[1], _mm512_mul_ps(lo, xv[0]));
            // SAFETY: the driver converted the scales of all R·kb blocks of this group.
            acc[r] = _mm512_fmadd_ps(p, unsafe { s.d(i) }, acc[r]);
        }
    }
    acc
}
