//! One-token (decoding) products over repacked Q4_0 / Q4_1 / Q8_0 / IQ4_NL / Q5_0 / Q5_1 /
//! IQ4_XS (`scalar::repack` defines the layout and the arithmetic), on AVX512-VNNI and AVX2.
//!
//! Why hand-written, and why apart from the GEMM's tiles (`repacked.rs`): a decoded token reads
//! every weight once from memory, so its product waits on loads, not on multiplies. Profiled
//! (SmolLM2-135M Q4_0, one thread), the 32 × 6 tile run with one token stalled on the first
//! load of each block group. Here the next chunk of row groups (64 rows on AVX-512, 32 on
//! AVX2) is prefetched into L2 block by block while this one is computed, and the per-call work
//! of the GEMM driver (its stack buffers, token tiles, partial-tile copies) is gone. Measured
//! (`cargo bench -p tern-kernels --bench repacked -- dram`, one token over 96 MB, this loaded
//! 2-core Zen 4 VM, medians of alternating rounds): AVX-512 about 17 GB/s against the tile's
//! 8; prefetching into L1 instead, or reading one row group at a time without prefetches, was
//! slower or less steady.
//!
//! - AVX-512: one 64-byte load is codes `4j..4j + 4` (lanes 0..8) and `4(j + 1)..` (lanes
//!   8..16) of one row group's eight rows, so one group fills a vector with no inserts; the
//!   activation dwords are permuted once per block into the matching pairs and shared by all
//!   the chunk's groups. Per block and group: four `vpdpbusd` from `−c·Σa` (in the low half
//!   only), then the halves of two groups are added into one vector of 16 rows' exact sums.
//! - AVX2: one row group per 256-bit vector; codes of at most 15 go through `vpmaddubsw`
//!   (several summed in 16 bits while that cannot saturate) and `vpmaddwd` from `−c·Σa`;
//!   wider codes are turned back into signed `q` and use the sign trick (`|q| ≤ 128`,
//!   `|a| ≤ 127`), summing `Σ q·a` directly.
//!
//! Both end each block with the reference's float step in its order:
//! `acc = fma(i as f32, d_w·d_a, acc)`, then for Q4_1 `acc = fma(m_w, s_a, acc)`, so every output
//! equals `scalar::gemm_repacked` bit for bit.
//!
//! A format is one [`Codes512`] / [`Codes256`] impl: where its codes sit in the block group,
//! their offset, and how one block group's bytes become unsigned (or signed) code vectors in
//! activation-dword order. IQ4_NL is Q4_0's nibbles through a `vpshufb` of its 16-entry
//! codebook (`T[q] + 128`, offset 128, on AVX-512; signed `T[q]` on AVX2); Q5_0 and Q5_1 are
//! Q4_0's and Q4_1's nibbles with each code's fifth bit shifted in from the group's `qh`.
//! IQ4_XS is IQ4_NL's codes after eight f32 row scales ([`Group::F32_SCALES`]): the scale
//! load (`repacked::scales16`, `scales8`) is its only difference.

use core::arch::x86_64::*;

use super::repacked::{codebook, scales16, scales8};
use crate::arch::repacked::SCALE_BYTES;
use crate::scalar::{act_q8_bytes, BlockQ8Act, REPACK_ROWS};

/// Most blocks of one column chunk: bounds the stack array of per-block activation sums.
const KC: usize = 256;

/// Checks a one-token call's shapes; returns the activation blocks.
fn check<'a>(
    gb: usize,
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &'a [u8],
    y: &[f32],
) -> &'a [BlockQ8Act] {
    assert!(cols.is_multiple_of(32) && m > 0, "whole blocks, some rows");
    assert_eq!(
        w.len(),
        m.div_ceil(REPACK_ROWS) * (cols / 32) * gb,
        "a repacked matrix"
    );
    assert_eq!(xq.len(), act_q8_bytes(cols), "one activation row");
    assert!(y.len() >= m, "an output per row");
    crate::blocks::as_blocks(xq).expect("whole activation blocks")
}

/// `−c·Σa` of each of `acts`' blocks into `off`.
fn offsets(c: i32, acts: &[BlockQ8Act], off: &mut [i32]) {
    for (o, a) in off.iter_mut().zip(acts) {
        *o = -c * a.qs.iter().map(|&q| q as i32).sum::<i32>();
    }
}

/// Where one format's codes sit in its block group, shared by both widths' code unpacking.
pub(super) trait Group {
    /// Bytes of one block group.
    const GB: usize;
    /// Where the codes start in a block group.
    const CODES: usize;
    /// The codes' offset `c` (the product starts from `−c·Σa`; unused by signed codes).
    const C: i32;
    /// Whether the block group has per-row f16 offsets `m` after the scales (Q4_1's
    /// `fma(m_w, s_a, acc)`).
    const BIAS: bool;
    /// Whether the row scales are f32 (IQ4_XS's eight, 32 bytes) rather than f16.
    const F32_SCALES: bool;
}

/// How one format's block groups become code vectors for the AVX-512 path.
pub(super) trait Codes512: Group {
    /// The unsigned codes of the block group whose codes start at `p`, as four vectors: vector
    /// `i`'s lanes 0..8 are codes `8i..8i + 4` of rows 0..8, lanes 8..16 codes `8i + 4..8i + 8`
    /// (activation dwords `2i` and `2i + 1`).
    ///
    /// # Safety
    /// `p..p + GB − CODES` is readable; the CPU has AVX-512F.
    unsafe fn codes(p: *const u8) -> [__m512i; 4];
}

/// Repacked Q4_0: nibbles, offset 8.
pub(super) struct Q4_0;
/// Repacked Q4_1: nibbles, no offset, a bias per row and block.
pub(super) struct Q4_1;
/// Repacked Q8_0: bytes stored plus 128, offset 128.
pub(super) struct Q8_0;
/// Repacked IQ4_NL: Q4_0's nibbles, each standing for the codebook's `T[q]` (offset 128 on
/// AVX-512, where the lookup gives `T[q] + 128`; signed on AVX2).
pub(super) struct Iq4Nl;
/// Repacked Q5_0: Q4_0's nibbles plus a fifth bit from the group's regrouped `qh`, offset 16.
pub(super) struct Q5_0;
/// Repacked Q5_1: as Q5_0, no offset, a bias per row and block.
pub(super) struct Q5_1;
/// Repacked IQ4_XS: IQ4_NL's codes after eight f32 row scales.
pub(super) struct Iq4Xs;

/// Bit `B` of every byte of `qh` moved to bit 4, as `0x10` or 0 per byte (512 bits). A 16-bit
/// shift moves it; bits crossing from the neighbouring byte land below bit 4 (left shifts of
/// at most 4) or above it (right shifts of at most 3), and the mask drops them.
#[inline(always)]
fn fifth512<const B: u32>(qh: __m512i) -> __m512i {
    // SAFETY: inlined into the `codes` of a caller with the needed features (AVX-512BW / AVX2).
    unsafe {
        let at4 = if B <= 4 {
            _mm512_sll_epi16(qh, _mm_cvtsi32_si128((4 - B) as i32))
        } else {
            _mm512_srl_epi16(qh, _mm_cvtsi32_si128((B - 4) as i32))
        };
        _mm512_and_si512(at4, _mm512_set1_epi8(0x10))
    }
}

/// As [`fifth512`] on 256 bits.
#[inline(always)]
fn fifth256<const B: u32>(qh: __m256i) -> __m256i {
    // SAFETY: inlined into the `codes` of a caller with the needed features (AVX-512BW / AVX2).
    unsafe {
        let at4 = if B <= 4 {
            _mm256_sll_epi16(qh, _mm_cvtsi32_si128((4 - B) as i32))
        } else {
            _mm256_srl_epi16(qh, _mm_cvtsi32_si128((B - 4) as i32))
        };
        _mm256_and_si256(at4, _mm256_set1_epi8(0x10))
    }
}

impl Group for Q4_0 {
    const GB: usize = 144;
    const CODES: usize = SCALE_BYTES;
    const C: i32 = 8;
    const BIAS: bool = false;
    const F32_SCALES: bool = false;
}

impl Group for Q4_1 {
    const GB: usize = 160;
    const CODES: usize = 2 * SCALE_BYTES;
    const C: i32 = 0;
    const BIAS: bool = true;
    const F32_SCALES: bool = false;
}

impl Group for Q8_0 {
    const GB: usize = 272;
    const CODES: usize = SCALE_BYTES;
    const C: i32 = 128;
    const BIAS: bool = false;
    const F32_SCALES: bool = false;
}

impl Group for Iq4Nl {
    const GB: usize = 144;
    const CODES: usize = SCALE_BYTES;
    const C: i32 = 128;
    const BIAS: bool = false;
    const F32_SCALES: bool = false;
}

impl Group for Iq4Xs {
    const GB: usize = 160;
    const CODES: usize = 32;
    const C: i32 = 128;
    const BIAS: bool = false;
    const F32_SCALES: bool = true;
}

impl Group for Q5_0 {
    const GB: usize = 176;
    const CODES: usize = SCALE_BYTES;
    const C: i32 = 16;
    const BIAS: bool = false;
    const F32_SCALES: bool = false;
}

impl Group for Q5_1 {
    const GB: usize = 192;
    const CODES: usize = 2 * SCALE_BYTES;
    const C: i32 = 0;
    const BIAS: bool = true;
    const F32_SCALES: bool = false;
}

/// Low and high nibbles of two 64-byte loads: the low nibbles are codes `4j + k` (dwords
/// `j`), the high ones `16 + 4j + k` (dwords `4 + j`).
#[inline(always)]
fn nibbles512(p: *const u8) -> [__m512i; 4] {
    // SAFETY: the caller of `codes` guarantees the 128 code bytes and AVX-512F.
    unsafe {
        let nib = _mm512_set1_epi8(0x0F);
        let c0 = _mm512_loadu_si512(p.cast());
        let c1 = _mm512_loadu_si512(p.add(64).cast());
        [
            _mm512_and_si512(c0, nib),
            _mm512_and_si512(c1, nib),
            _mm512_and_si512(_mm512_srli_epi32::<4>(c0), nib),
            _mm512_and_si512(_mm512_srli_epi32::<4>(c1), nib),
        ]
    }
}

impl Codes512 for Q4_0 {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        nibbles512(p)
    }
}

impl Codes512 for Q4_1 {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        nibbles512(p)
    }
}

impl Codes512 for Q8_0 {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        // SAFETY: the caller guarantees the 256 code bytes and AVX-512F.
        core::array::from_fn(|i| unsafe { _mm512_loadu_si512(p.add(64 * i).cast()) })
    }
}

/// IQ4_NL's and IQ4_XS's codes on AVX-512: the nibbles through the codebook, `T[q] + 128`.
#[inline(always)]
fn codebook512(p: *const u8) -> [__m512i; 4] {
    // SAFETY: the caller of `codes` guarantees the 128 code bytes and AVX-512F; `gemv512`
    // enables AVX-512BW for `vpshufb` (the backend's detection requires it).
    unsafe {
        let lut = _mm512_broadcast_i32x4(codebook(128));
        nibbles512(p).map(|v| _mm512_shuffle_epi8(lut, v))
    }
}

impl Codes512 for Iq4Nl {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        codebook512(p)
    }
}

impl Codes512 for Iq4Xs {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        codebook512(p)
    }
}

/// Repacked Q5_0/Q5_1's codes on AVX-512: the 32 `qh` bytes (at `p`) in both halves; vector
/// `i`'s halves are nibble groups `2i mod 4`, `2i + 1 mod 4` of the low (i < 2) or high nibbles,
/// whose fifth bits are `qh` bits `2i` and `2i + 1`.
#[inline(always)]
fn q5_codes512(p: *const u8) -> [__m512i; 4] {
    // SAFETY: the caller of `codes` guarantees the 32 + 128 code bytes; AVX-512F and BW.
    unsafe {
        let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.cast()));
        let [n0, n1, n2, n3] = nibbles512(p.add(32));
        // Lanes 0..8 (the low 256 bits) take bit 2i, lanes 8..16 bit 2i + 1.
        let pair = |lo: __m512i, hi: __m512i| _mm512_mask_blend_epi64(0xF0, lo, hi);
        [
            _mm512_or_si512(n0, pair(fifth512::<0>(qh), fifth512::<1>(qh))),
            _mm512_or_si512(n1, pair(fifth512::<2>(qh), fifth512::<3>(qh))),
            _mm512_or_si512(n2, pair(fifth512::<4>(qh), fifth512::<5>(qh))),
            _mm512_or_si512(n3, pair(fifth512::<6>(qh), fifth512::<7>(qh))),
        ]
    }
}

impl Codes512 for Q5_0 {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        q5_codes512(p)
    }
}

impl Codes512 for Q5_1 {
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m512i; 4] {
        q5_codes512(p)
    }
}

/// Row groups per chunk on AVX-512 (64 rows): eight streams in flight, each activation
/// permute shared by eight groups.
const G512: usize = 8;

/// `y[r] = row r · x` for the `m` rows of a repacked matrix (`F`'s layout) and one token's
/// int8 activations `xq`.
///
/// # Safety
/// The CPU has AVX2, FMA, F16C, AVX-512F, AVX512-VNNI and AVX512-VL.
pub(super) unsafe fn gemv512<F: Codes512>(
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    y: &mut [f32],
) {
    let acts = check(F::GB, w, m, cols, xq, y);
    // SAFETY: the caller guarantees the features; shapes checked.
    unsafe { gemv512_body::<F>(w, m, cols / 32, acts, y) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn gemv512_body<F: Codes512>(w: &[u8], m: usize, nb: usize, acts: &[BlockQ8Act], y: &mut [f32]) {
    const { assert!(G512.is_multiple_of(2)) };
    let gstride = nb * F::GB;
    let n_groups = m.div_ceil(REPACK_ROWS);
    let wp = w.as_ptr();
    let yp = y.as_mut_ptr();
    // Activation dword pairs (2i, 2i + 1) spread over the two halves, as `codes` pairs them.
    let idx: [__m512i; 4] = core::array::from_fn(|i| {
        let (a, b) = (2 * i as i32, 2 * i as i32 + 1);
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
    });
    let mut off = [0i32; KC];
    for b0 in (0..nb).step_by(KC) {
        let blocks = (nb - b0).min(KC);
        let acts = &acts[b0..b0 + blocks];
        offsets(F::C, acts, &mut off[..blocks]);
        for g0 in (0..n_groups).step_by(G512) {
            // Groups past the matrix read its last group; their rows are not stored.
            let base: [usize; G512] =
                core::array::from_fn(|g| (g0 + g).min(n_groups - 1) * gstride + b0 * F::GB);
            // The next chunk's groups, prefetched into L2 block by block (a chunk ahead: too far
            // for L1). Addresses past `w` are formed with wrapping arithmetic and never read.
            let next: [*const u8; G512] =
                core::array::from_fn(|g| wp.wrapping_add((g0 + G512 + g) * gstride + b0 * F::GB));
            let mut facc = [_mm512_setzero_ps(); G512 / 2];
            let mut mask = [0u16; G512 / 2];
            for v in 0..G512 / 2 {
                let r0 = (g0 + 2 * v) * REPACK_ROWS;
                let rows = m.saturating_sub(r0).min(16);
                mask[v] = ((1u32 << rows) - 1) as u16;
                if b0 > 0 {
                    // SAFETY: the masked lanes are rows r0..r0 + rows < m, inside y.
                    facc[v] = unsafe { _mm512_maskz_loadu_ps(mask[v], yp.add(r0.min(m))) };
                }
            }
            for b in 0..blocks {
                let a = &acts[b];
                // SAFETY: the 32 code bytes follow the 8 scale bytes of the 40-byte block.
                let q = unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) };
                let q = _mm512_castsi256_si512(q);
                let x: [__m512i; 4] = core::array::from_fn(|i| _mm512_permutexvar_epi32(idx[i], q));
                let start = if F::C != 0 {
                    _mm512_maskz_set1_epi32(0x00FF, off[b])
                } else {
                    _mm512_setzero_si512()
                };
                let mut isum = [start; G512];
                for g in 0..G512 {
                    let p = base[g] + b * F::GB;
                    for l in (0..F::GB).step_by(64) {
                        // A hint: it cannot fault, so addresses past `w` are harmless.
                        _mm_prefetch::<_MM_HINT_T1>(next[g].wrapping_add(b * F::GB + l).cast());
                    }
                    // SAFETY: p + GB ≤ w.len(): group ≤ n_groups − 1 and block < nb (checked).
                    let c = unsafe { F::codes(wp.add(p + F::CODES)) };
                    for i in 0..4 {
                        isum[g] = _mm512_dpbusd_epi32(isum[g], c[i], x[i]);
                    }
                }
                let da = _mm512_set1_ps(a.d());
                for v in 0..G512 / 2 {
                    let (s0, s1) = (isum[2 * v], isum[2 * v + 1]);
                    // Low halves + high halves: rows 0..8 of group 2v, then of 2v + 1.
                    let i = _mm512_add_epi32(
                        _mm512_shuffle_i64x2::<0x44>(s0, s1),
                        _mm512_shuffle_i64x2::<0xEE>(s0, s1),
                    );
                    let (p0, p1) = (base[2 * v] + b * F::GB, base[2 * v + 1] + b * F::GB);
                    let (lo, hi) = (wp.wrapping_add(p0), wp.wrapping_add(p1));
                    // SAFETY: the scales open each block group, inside w as above; AVX-512F
                    // is enabled here.
                    let dw = unsafe { scales16(F::F32_SCALES, lo, hi) };
                    let scale = _mm512_mul_ps(dw, da);
                    facc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), scale, facc[v]);
                    if F::BIAS {
                        // SAFETY: Q4_1's and Q5_1's eight f16 offsets follow their f16 scales.
                        let mw =
                            unsafe { scales16(false, lo.add(SCALE_BYTES), hi.add(SCALE_BYTES)) };
                        facc[v] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s()), facc[v]);
                    }
                }
            }
            for v in 0..G512 / 2 {
                let r0 = (g0 + 2 * v) * REPACK_ROWS;
                if mask[v] != 0 {
                    // SAFETY: the masked lanes are rows r0..r0 + rows < m, inside y.
                    unsafe { _mm512_mask_storeu_ps(yp.add(r0), mask[v], facc[v]) };
                }
            }
        }
    }
}

/// How one format's block groups become code vectors for the AVX2 path.
pub(super) trait Codes256: Group {
    /// Whether `codes` returns signed `q` (any i8; the sign trick) rather than unsigned codes
    /// of at most `MAX_U`.
    const SIGNED: bool;
    /// The largest unsigned code (bounds how many `vpmaddubsw` sums add in 16 bits).
    const MAX_U: i32;

    /// The codes of the block group whose codes start at `p`, as eight vectors: vector `j`'s
    /// lane `r` is codes `4j..4j + 4` of row `r` (activation dword `j`).
    ///
    /// # Safety
    /// `p..p + GB − CODES` is readable; the CPU has AVX2.
    unsafe fn codes(p: *const u8) -> [__m256i; 8];
}

/// Low nibbles (codes `4j + k`, dwords `j`) then high ones (dwords `4 + j`) of four 32-byte
/// loads.
#[inline(always)]
fn nibbles256(p: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller of `codes` guarantees the 128 code bytes and AVX2.
    unsafe {
        let nib = _mm256_set1_epi8(0x0F);
        let raw: [__m256i; 4] = core::array::from_fn(|j| _mm256_loadu_si256(p.add(32 * j).cast()));
        core::array::from_fn(|j| {
            if j < 4 {
                _mm256_and_si256(raw[j], nib)
            } else {
                _mm256_and_si256(_mm256_srli_epi16::<4>(raw[j - 4]), nib)
            }
        })
    }
}

impl Codes256 for Q4_0 {
    const SIGNED: bool = false;
    const MAX_U: i32 = 15;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        nibbles256(p)
    }
}

impl Codes256 for Q4_1 {
    const SIGNED: bool = false;
    const MAX_U: i32 = 15;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        nibbles256(p)
    }
}

impl Codes256 for Q8_0 {
    const SIGNED: bool = true;
    const MAX_U: i32 = 255;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        // SAFETY: the caller guarantees the 256 code bytes and AVX2; stored u = q + 128.
        unsafe {
            let flip = _mm256_set1_epi8(0x80u8 as i8);
            core::array::from_fn(|j| {
                _mm256_xor_si256(_mm256_loadu_si256(p.add(32 * j).cast()), flip)
            })
        }
    }
}

/// IQ4_NL's and IQ4_XS's codes on AVX2: the nibbles through the codebook, signed `T[q]`
/// (|T| ≤ 127, within the sign trick's bound).
#[inline(always)]
fn codebook256(p: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller of `codes` guarantees the 128 code bytes and AVX2.
    unsafe {
        let lut = _mm256_broadcastsi128_si256(codebook(0));
        nibbles256(p).map(|v| _mm256_shuffle_epi8(lut, v))
    }
}

impl Codes256 for Iq4Nl {
    const SIGNED: bool = true;
    const MAX_U: i32 = 255;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        codebook256(p)
    }
}

impl Codes256 for Iq4Xs {
    const SIGNED: bool = true;
    const MAX_U: i32 = 255;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        codebook256(p)
    }
}

/// Repacked Q5_0/Q5_1's codes on AVX2: vector `j`'s fifth bits are `qh` bit `j` (nibble group
/// `j mod 4`, low nibbles for j < 4, high ones after).
#[inline(always)]
fn q5_codes256(p: *const u8) -> [__m256i; 8] {
    // SAFETY: the caller of `codes` guarantees the 32 + 128 code bytes and AVX2.
    unsafe {
        let qh = _mm256_loadu_si256(p.cast());
        let n = nibbles256(p.add(32));
        [
            _mm256_or_si256(n[0], fifth256::<0>(qh)),
            _mm256_or_si256(n[1], fifth256::<1>(qh)),
            _mm256_or_si256(n[2], fifth256::<2>(qh)),
            _mm256_or_si256(n[3], fifth256::<3>(qh)),
            _mm256_or_si256(n[4], fifth256::<4>(qh)),
            _mm256_or_si256(n[5], fifth256::<5>(qh)),
            _mm256_or_si256(n[6], fifth256::<6>(qh)),
            _mm256_or_si256(n[7], fifth256::<7>(qh)),
        ]
    }
}

impl Codes256 for Q5_0 {
    const SIGNED: bool = false;
    const MAX_U: i32 = 31;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        q5_codes256(p)
    }
}

impl Codes256 for Q5_1 {
    const SIGNED: bool = false;
    const MAX_U: i32 = 31;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> [__m256i; 8] {
        q5_codes256(p)
    }
}

/// Row groups per chunk on AVX2 (32 rows).
const G256: usize = 4;

/// As [`gemv512`] on AVX2.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
pub(super) unsafe fn gemv256<F: Codes256>(
    w: &[u8],
    m: usize,
    cols: usize,
    xq: &[u8],
    y: &mut [f32],
) {
    let acts = check(F::GB, w, m, cols, xq, y);
    // SAFETY: the caller guarantees the features; shapes checked.
    unsafe { gemv256_body::<F>(w, m, cols / 32, acts, y) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn gemv256_body<F: Codes256>(w: &[u8], m: usize, nb: usize, acts: &[BlockQ8Act], y: &mut [f32]) {
    // `vpmaddubsw` sums of unsigned codes that add in 16 bits without saturating.
    let per16: usize = if F::SIGNED {
        1
    } else {
        (32767 / (2 * 127 * F::MAX_U)).clamp(1, 8) as usize
    };
    let gstride = nb * F::GB;
    let n_groups = m.div_ceil(REPACK_ROWS);
    let wp = w.as_ptr();
    let yp = y.as_mut_ptr();
    let ones = _mm256_set1_epi16(1);
    let mut off = [0i32; KC];
    for b0 in (0..nb).step_by(KC) {
        let blocks = (nb - b0).min(KC);
        let acts = &acts[b0..b0 + blocks];
        if !F::SIGNED {
            offsets(F::C, acts, &mut off[..blocks]);
        }
        for g0 in (0..n_groups).step_by(G256) {
            let base: [usize; G256] =
                core::array::from_fn(|g| (g0 + g).min(n_groups - 1) * gstride + b0 * F::GB);
            // The next chunk's groups, prefetched into L2 as on AVX-512.
            let next: [*const u8; G256] =
                core::array::from_fn(|g| wp.wrapping_add((g0 + G256 + g) * gstride + b0 * F::GB));
            let rows: [usize; G256] =
                core::array::from_fn(|g| m.saturating_sub((g0 + g) * REPACK_ROWS).min(8));
            let mut facc = [_mm256_setzero_ps(); G256];
            if b0 > 0 {
                for g in 0..G256 {
                    if rows[g] == 8 {
                        // SAFETY: rows (g0 + g)·8.. + 8 ≤ m, inside y.
                        facc[g] = unsafe { _mm256_loadu_ps(yp.add((g0 + g) * REPACK_ROWS)) };
                    } else {
                        let mut part = [0f32; 8];
                        let r0 = ((g0 + g) * REPACK_ROWS).min(m);
                        part[..rows[g]].copy_from_slice(&y[r0..r0 + rows[g]]);
                        // SAFETY: a local array of eight floats.
                        facc[g] = unsafe { _mm256_loadu_ps(part.as_ptr()) };
                    }
                }
            }
            for b in 0..blocks {
                let a = &acts[b];
                let x: [__m256i; 8] = core::array::from_fn(|j| {
                    let d = &a.qs[4 * j..4 * j + 4];
                    _mm256_set1_epi32(i32::from_le_bytes([
                        d[0] as u8, d[1] as u8, d[2] as u8, d[3] as u8,
                    ]))
                });
                let da = _mm256_set1_ps(a.d());
                for g in 0..G256 {
                    let p = base[g] + b * F::GB;
                    for l in (0..F::GB).step_by(64) {
                        // A hint: it cannot fault, so addresses past `w` are harmless.
                        _mm_prefetch::<_MM_HINT_T1>(next[g].wrapping_add(b * F::GB + l).cast());
                    }
                    // SAFETY: p + GB ≤ w.len(): group ≤ n_groups − 1 and block < nb (checked).
                    let c = unsafe { F::codes(wp.add(p + F::CODES)) };
                    let mut isum = if F::SIGNED {
                        _mm256_setzero_si256()
                    } else {
                        _mm256_set1_epi32(off[b])
                    };
                    for j0 in (0..8).step_by(per16) {
                        let mut s16 = _mm256_setzero_si256();
                        for j in j0..(j0 + per16).min(8) {
                            let p16 = if F::SIGNED {
                                let aq = _mm256_sign_epi8(c[j], c[j]);
                                _mm256_maddubs_epi16(aq, _mm256_sign_epi8(x[j], c[j]))
                            } else {
                                _mm256_maddubs_epi16(c[j], x[j])
                            };
                            s16 = _mm256_add_epi16(s16, p16);
                        }
                        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(s16, ones));
                    }
                    // SAFETY: the scales open the block group, inside w as above; AVX2 and F16C
                    // are enabled here.
                    let dw = unsafe { scales8(F::F32_SCALES, wp.add(p)) };
                    facc[g] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), facc[g]);
                    if F::BIAS {
                        // SAFETY: Q4_1's 16 offset bytes follow its f16 scales, as above.
                        let mw = unsafe { scales8(false, wp.add(p + SCALE_BYTES)) };
                        facc[g] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s()), facc[g]);
                    }
                }
            }
            for g in 0..G256 {
                let r0 = (g0 + g) * REPACK_ROWS;
                if rows[g] == 8 {
                    // SAFETY: rows r0..r0 + 8 ≤ m, inside y.
                    unsafe { _mm256_storeu_ps(yp.add(r0), facc[g]) };
                } else if rows[g] > 0 {
                    let mut part = [0f32; 8];
                    // SAFETY: a local array of eight floats.
                    unsafe { _mm256_storeu_ps(part.as_mut_ptr(), facc[g]) };
                    y[r0..r0 + rows[g]].copy_from_slice(&part[..rows[g]]);
                }
            }
        }
    }
}
