//! Register tiles of the int8 GEMM over repacked Q4_0 / Q4_1 / Q8_0 / IQ4_NL / Q5_0 / Q5_1 /
//! IQ4_XS (`scalar::repack` defines the layout and the arithmetic; `arch::repacked` drives the tiles).
//!
//! Why hand-written: one 32-byte load of a repacked block group is the same four codes of
//! eight rows, so an unsigned-by-signed dot of it with one broadcast activation dword leaves
//! each row's partial sum in its own lane, with no transpose and no horizontal sum.
//!
//! - [`Avx512`]: 32 rows (two 512-bit vectors, each two row groups) × 6 tokens; `vpdpbusd`
//!   adds the unsigned codes × signed activations, each block's integer sum starting from
//!   `−c·Σa` so it ends at the reference's exact `Σ q·a`.
//! - [`Avx2`]: 8 rows (one row group) × 4 tokens; Q4_0 nibbles (≤ 15) go through
//!   `vpmaddubsw` (no saturation: 4·15·127 < 2¹⁵) and `vpmaddwd`; Q8_0 codes are turned back
//!   into signed `q` and meet the activations by the sign trick (`|q| ≤ 128`, `|a| ≤ 127`:
//!   2·128·127 < 2¹⁵), summing `Σ q·a` directly.
//!
//! IQ4_NL's nibbles are Q4_0's, each looked up with `vpshufb` in a 16-byte table: on AVX512 as
//! the layout's unsigned `T[q] + 128` (`vpdpbusd` from `−128·Σa`, as Q8_0), on AVX2 as the
//! signed `T[q]`, which meet the activations by Q8_0's sign trick (`|T| ≤ 127`), each nibble
//! half through its own `vpmaddwd` (two halves' pairs would overflow 2¹⁵). IQ4_XS is IQ4_NL's
//! codes under f32 row scales: only the scale load ([`scales16`], [`scales8`]) differs.
//!
//! Q5_0 and Q5_1 take Q4's path with each nibble's fifth bit added as bit 4 (codes 0..=31;
//! AVX2: 4·31·127 < 2¹⁵ still): the block group's 32 `qh` bytes, shifted right by one more bit
//! per nibble group, hold the high codes' fifth bits at bit 4 and, shifted left by 4 first,
//! the low codes' (`scalar::repack`'s layout); a mask with `0x10` and an or (AVX-512: one
//! `vpternlogd`) put them on the nibbles. Q5_0's sums start from `−16·Σa`.
//!
//! Both end each block with the reference's float step in its order:
//! `acc = fma(i as f32, d_w·d_a, acc)`, then for Q4_1 and Q5_1 (sums from 0)
//! `acc = fma(m_w, s_a, acc)`.

// Tiles index accumulators by token and row vector.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;

use crate::arch::repacked::{
    codes_offset, group_bytes, has_codebook, has_f32_scales, has_min, has_qh, RepackedTile,
    TileArgs, IQ4_NL, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, QH_BYTES, SCALE_BYTES,
};
use crate::scalar::{BlockQ8Act, IQ4_NL_VALUES};

/// The AVX512-VNNI tile.
pub(super) struct Avx512;

impl RepackedTile for Avx512 {
    const ROWS: usize = 32;
    const TOKENS: usize = 6;

    unsafe fn tile(a: TileArgs<'_>) {
        macro_rules! by_tokens {
            ($f:ident) => {
                // SAFETY: the caller guarantees AVX512-VNNI's features (the trait's contract).
                unsafe {
                    match a.tokens {
                        6 => tile512::<6, $f>(a),
                        5 => tile512::<5, $f>(a),
                        4 => tile512::<4, $f>(a),
                        3 => tile512::<3, $f>(a),
                        2 => tile512::<2, $f>(a),
                        _ => tile512::<1, $f>(a),
                    }
                }
            };
        }
        match a.fmt {
            Q4_0 => by_tokens!(Q4_0),
            Q4_1 => by_tokens!(Q4_1),
            Q8_0 => by_tokens!(Q8_0),
            IQ4_NL => by_tokens!(IQ4_NL),
            Q5_0 => by_tokens!(Q5_0),
            Q5_1 => by_tokens!(Q5_1),
            IQ4_XS => by_tokens!(IQ4_XS),
            _ => unreachable!("the driver passes a repacked format"),
        }
    }
}

/// Byte offsets of the four row groups of a 32-row tile in `a.w` (missing ones read the last
/// present group; their lanes are discarded) and the block group size.
fn group_offsets(a: &TileArgs<'_>, gb: usize) -> [usize; 4] {
    assert!(a.groups >= 1 && a.blocks >= 1);
    let last = (a.groups - 1) * a.gstride;
    assert!(
        a.w.len() >= last + a.blocks * gb,
        "the tile's block groups are inside w"
    );
    core::array::from_fn(|g| (g * a.gstride).min(last))
}

/// Checks the activation, sum and output bounds the tiles read and write unchecked.
fn check_tile(a: &TileArgs<'_>, tt: usize, rows: usize) {
    assert!(a.tokens == tt && a.asum.len() >= tt * a.blocks);
    assert!(a.acts.len() >= (tt - 1) * a.kb + a.blocks && a.blocks <= a.kb);
    assert!(a.y.len() >= (tt - 1) * a.ldy + rows);
}

/// Token `t`'s activation dword `j` of block `b` (codes `4j..4j + 4`), broadcast.
#[inline(always)]
fn act_dword(acts: &[BlockQ8Act], i: usize, j: usize) -> i32 {
    let q = &acts[i].qs;
    i32::from_le_bytes([
        q[4 * j] as u8,
        q[4 * j + 1] as u8,
        q[4 * j + 2] as u8,
        q[4 * j + 3] as u8,
    ])
}

/// 32 rows × `TT` tokens over the chunk (see [`Avx512`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl,avx512bw")]
fn tile512<const TT: usize, const F: u8>(a: TileArgs<'_>) {
    let gb = const { group_bytes(F) };
    // Codes after the scales (and the offsets, fifth bits of the formats with them).
    let qs = codes_offset(F);
    let off = group_offsets(&a, gb);
    check_tile(&a, TT, 32);
    let wp = a.w.as_ptr();
    let yp = a.y.as_mut_ptr();
    let mut facc = [[_mm512_setzero_ps(); 2]; TT];
    if !a.first {
        for t in 0..TT {
            for v in 0..2 {
                // SAFETY: token t's 32 outputs are inside y (checked).
                facc[t][v] = unsafe { _mm512_loadu_ps(yp.add(t * a.ldy + 16 * v)) };
            }
        }
    }
    let nib = _mm512_set1_epi8(0x0F);
    // IQ4_NL, IQ4_XS: nibble q → T[q] + 128, the table in every 128-bit lane.
    let lut = _mm512_broadcast_i32x4(codebook(128));
    let bit4 = _mm512_set1_epi8(0x10);
    for b in 0..a.blocks {
        // Row vector v holds row groups 2v (low half) and 2v + 1 (high half).
        let base: [[*const u8; 2]; 2] =
            // SAFETY: off[g] + b·gb + gb ≤ w.len() (group_offsets' assertion).
            core::array::from_fn(|v| core::array::from_fn(|h| unsafe { wp.add(off[2 * v + h] + b * gb) }));
        let load2 = |v: usize, at: usize| {
            // SAFETY: at + 32 ≤ gb: inside the block group of both halves; unaligned loads.
            unsafe {
                let lo = _mm256_loadu_si256(base[v][0].add(at).cast());
                let hi = _mm256_loadu_si256(base[v][1].add(at).cast());
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
            }
        };
        let mut iacc = [[_mm512_setzero_si512(); 2]; TT];
        for t in 0..TT {
            let s = _mm512_set1_epi32(-a.asum[t * a.blocks + b]);
            iacc[t] = [s, s];
        }
        if F == Q8_0 {
            for j in 0..8 {
                let w: [__m512i; 2] = core::array::from_fn(|v| load2(v, qs + 32 * j));
                for t in 0..TT {
                    let x = _mm512_set1_epi32(act_dword(a.acts, t * a.kb + b, j));
                    for v in 0..2 {
                        iacc[t][v] = _mm512_dpbusd_epi32(iacc[t][v], w[v], x);
                    }
                }
            }
        } else {
            // Q5: the fifth bits, for nibble group j at bit 4 of qh >> j (high codes) and of
            // (qh << 4) >> j (low codes); unused (zero) for Q4.
            let mut qh: [[__m512i; 2]; 2] = [[_mm512_setzero_si512(); 2]; 2];
            if has_qh(F) {
                for v in 0..2 {
                    let h = load2(v, qs - QH_BYTES);
                    qh[v] = [_mm512_slli_epi32::<4>(h), h];
                }
            }
            for j in 0..4 {
                let raw: [__m512i; 2] = core::array::from_fn(|v| load2(v, qs + 32 * j));
                let mut lo: [__m512i; 2] = core::array::from_fn(|v| _mm512_and_si512(raw[v], nib));
                let mut hi: [__m512i; 2] =
                    core::array::from_fn(|v| _mm512_and_si512(_mm512_srli_epi32::<4>(raw[v]), nib));
                if has_codebook(F) {
                    lo = lo.map(|v| _mm512_shuffle_epi8(lut, v));
                    hi = hi.map(|v| _mm512_shuffle_epi8(lut, v));
                }
                if has_qh(F) {
                    for v in 0..2 {
                        if j > 0 {
                            qh[v] = qh[v].map(|x| _mm512_srli_epi32::<1>(x));
                        }
                        // (fifth & 0x10) | nibble
                        lo[v] = _mm512_ternarylogic_epi32::<0xEC>(qh[v][0], lo[v], bit4);
                        hi[v] = _mm512_ternarylogic_epi32::<0xEC>(qh[v][1], hi[v], bit4);
                    }
                }
                for t in 0..TT {
                    let i = t * a.kb + b;
                    let xl = _mm512_set1_epi32(act_dword(a.acts, i, j));
                    let xh = _mm512_set1_epi32(act_dword(a.acts, i, 4 + j));
                    for v in 0..2 {
                        iacc[t][v] = _mm512_dpbusd_epi32(iacc[t][v], lo[v], xl);
                        iacc[t][v] = _mm512_dpbusd_epi32(iacc[t][v], hi[v], xh);
                    }
                }
            }
        }
        let dw: [__m512; 2] = core::array::from_fn(|v| {
            // SAFETY: the scales open each block group; AVX-512F is enabled here.
            unsafe { scales16(has_f32_scales(F), base[v][0], base[v][1]) }
        });
        let mw: [__m512; 2] = core::array::from_fn(|v| {
            if !has_min(F) {
                return _mm512_setzero_ps();
            }
            let (lo, hi) = (base[v][0], base[v][1]);
            // SAFETY: Q4_1's and Q5_1's eight f16 offsets follow their f16 scales.
            unsafe { scales16(false, lo.add(SCALE_BYTES), hi.add(SCALE_BYTES)) }
        });
        for t in 0..TT {
            let act = &a.acts[t * a.kb + b];
            let da = _mm512_set1_ps(act.d());
            for v in 0..2 {
                let scale = _mm512_mul_ps(dw[v], da);
                facc[t][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t][v]), scale, facc[t][v]);
                if has_min(F) {
                    facc[t][v] = _mm512_fmadd_ps(mw[v], _mm512_set1_ps(act.s()), facc[t][v]);
                }
            }
        }
    }
    for t in 0..TT {
        for v in 0..2 {
            // SAFETY: as for the loads above.
            unsafe { _mm512_storeu_ps(yp.add(t * a.ldy + 16 * v), facc[t][v]) };
        }
    }
}

/// The AVX2 tile.
pub(super) struct Avx2;

impl RepackedTile for Avx2 {
    const ROWS: usize = 8;
    const TOKENS: usize = 4;

    unsafe fn tile(a: TileArgs<'_>) {
        macro_rules! by_tokens {
            ($f:ident) => {
                // SAFETY: the caller guarantees AVX2, FMA and F16C (the trait's contract).
                unsafe {
                    match a.tokens {
                        4 => tile256::<4, $f>(a),
                        3 => tile256::<3, $f>(a),
                        2 => tile256::<2, $f>(a),
                        _ => tile256::<1, $f>(a),
                    }
                }
            };
        }
        match a.fmt {
            Q4_0 => by_tokens!(Q4_0),
            Q4_1 => by_tokens!(Q4_1),
            Q8_0 => by_tokens!(Q8_0),
            IQ4_NL => by_tokens!(IQ4_NL),
            Q5_0 => by_tokens!(Q5_0),
            Q5_1 => by_tokens!(Q5_1),
            IQ4_XS => by_tokens!(IQ4_XS),
            _ => unreachable!("the driver passes a repacked format"),
        }
    }
}

/// 8 rows × `TT` tokens over the chunk (see [`Avx2`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile256<const TT: usize, const F: u8>(a: TileArgs<'_>) {
    let gb = const { group_bytes(F) };
    // Codes after the scales (and the offsets, fifth bits of the formats with them).
    let qs = codes_offset(F);
    let off = group_offsets(&a, gb);
    check_tile(&a, TT, 8);
    let wp = a.w.as_ptr();
    let yp = a.y.as_mut_ptr();
    let mut facc = [_mm256_setzero_ps(); TT];
    if !a.first {
        for t in 0..TT {
            // SAFETY: token t's 8 outputs are inside y (checked).
            facc[t] = unsafe { _mm256_loadu_ps(yp.add(t * a.ldy)) };
        }
    }
    let nib = _mm256_set1_epi8(0x0F);
    // IQ4_NL, IQ4_XS: nibble q → T[q] (signed), the table in both 128-bit lanes.
    let lut = _mm256_broadcastsi128_si256(codebook(0));
    let bit4 = _mm256_set1_epi8(0x10);
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    let ones = _mm256_set1_epi16(1);
    for b in 0..a.blocks {
        // SAFETY: off[0] + b·gb + gb ≤ w.len() (group_offsets' assertion).
        let base = unsafe { wp.add(off[0] + b * gb) };
        // SAFETY: at + 32 ≤ gb: inside the block group; unaligned load.
        let load = |at: usize| unsafe { _mm256_loadu_si256(base.add(at).cast()) };
        let mut iacc = [_mm256_setzero_si256(); TT];
        if F == Q8_0 {
            // Σ q·a directly: the codes are turned back into q, so no −128·Σa.
            for j in 0..8 {
                let q = _mm256_xor_si256(load(qs + 32 * j), flip);
                let aq = _mm256_sign_epi8(q, q);
                for t in 0..TT {
                    let x = _mm256_set1_epi32(act_dword(a.acts, t * a.kb + b, j));
                    let p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(x, q));
                    iacc[t] = _mm256_add_epi32(iacc[t], _mm256_madd_epi16(p, ones));
                }
            }
        } else if has_codebook(F) {
            // Σ T[q]·a directly, by the sign trick as Q8_0's.
            for j in 0..4 {
                let raw = load(qs + 32 * j);
                let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, nib));
                let hi =
                    _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nib));
                let (alo, ahi) = (_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(hi, hi));
                for t in 0..TT {
                    let i = t * a.kb + b;
                    let xl = _mm256_set1_epi32(act_dword(a.acts, i, j));
                    let xh = _mm256_set1_epi32(act_dword(a.acts, i, 4 + j));
                    let pl = _mm256_maddubs_epi16(alo, _mm256_sign_epi8(xl, lo));
                    let ph = _mm256_maddubs_epi16(ahi, _mm256_sign_epi8(xh, hi));
                    let s =
                        _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones));
                    iacc[t] = _mm256_add_epi32(iacc[t], s);
                }
            }
        } else {
            for t in 0..TT {
                iacc[t] = _mm256_set1_epi32(-a.asum[t * a.blocks + b]);
            }
            // Q5's fifth bits, as in the 512-bit tile (zero for Q4).
            let mut qh = [_mm256_setzero_si256(); 2];
            if has_qh(F) {
                let h = load(qs - QH_BYTES);
                qh = [_mm256_slli_epi16::<4>(h), h];
            }
            for j in 0..4 {
                let raw = load(qs + 32 * j);
                let mut lo = _mm256_and_si256(raw, nib);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nib);
                if has_qh(F) {
                    if j > 0 {
                        qh = qh.map(|x| _mm256_srli_epi16::<1>(x));
                    }
                    lo = _mm256_or_si256(lo, _mm256_and_si256(qh[0], bit4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(qh[1], bit4));
                }
                for t in 0..TT {
                    let i = t * a.kb + b;
                    let xl = _mm256_set1_epi32(act_dword(a.acts, i, j));
                    let xh = _mm256_set1_epi32(act_dword(a.acts, i, 4 + j));
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, xl),
                        _mm256_maddubs_epi16(hi, xh),
                    );
                    iacc[t] = _mm256_add_epi32(iacc[t], _mm256_madd_epi16(p, ones));
                }
            }
        }
        // SAFETY: the scales open the block group; AVX2 and F16C are enabled here.
        let dw = unsafe { scales8(has_f32_scales(F), base) };
        let mw = if has_min(F) {
            // SAFETY: Q4_1's and Q5_1's eight f16 offsets follow their f16 scales.
            unsafe { scales8(false, base.add(SCALE_BYTES)) }
        } else {
            _mm256_setzero_ps()
        };
        for t in 0..TT {
            let act = &a.acts[t * a.kb + b];
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(act.d()));
            facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[t]), scale, facc[t]);
            if has_min(F) {
                facc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(act.s()), facc[t]);
            }
        }
    }
    for t in 0..TT {
        // SAFETY: as for the loads above.
        unsafe { _mm256_storeu_ps(yp.add(t * a.ldy), facc[t]) };
    }
}

/// The row scales of two row groups' block groups at `lo` and `hi` as 16 f32 lanes (eight
/// each): IQ4_XS's f32 as stored (`f32_scales`), the other formats' f16 widened (exact); also
/// Q4_1's and Q5_1's f16 offsets, which follow their scales.
///
/// # Safety
/// `lo` and `hi` each point at eight such values inside a block group; the CPU has AVX-512F
/// (and F16C).
#[inline(always)]
pub(super) unsafe fn scales16(f32_scales: bool, lo: *const u8, hi: *const u8) -> __m512 {
    // SAFETY: the scales (32 bytes f32, 16 f16) are inside the block groups; unaligned loads.
    unsafe {
        if f32_scales {
            let lo = _mm256_loadu_si256(lo.cast());
            let hi = _mm256_loadu_si256(hi.cast());
            _mm512_castsi512_ps(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi))
        } else {
            let lo = _mm_loadu_si128(lo.cast());
            let hi = _mm_loadu_si128(hi.cast());
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi))
        }
    }
}

/// The eight row scales of the block group at `p` as f32, as [`scales16`].
///
/// # Safety
/// `p` points at eight such values inside a block group; the CPU has AVX2 and F16C.
#[inline(always)]
pub(super) unsafe fn scales8(f32_scales: bool, p: *const u8) -> __m256 {
    // SAFETY: the scales are inside the block group; unaligned loads.
    unsafe {
        if f32_scales {
            _mm256_loadu_ps(p.cast())
        } else {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }
    }
}

/// IQ4_NL's codebook plus `bias` as 16 bytes (`vpshufb`'s table).
#[inline(always)]
pub(super) fn codebook(bias: i32) -> __m128i {
    let t: [u8; 16] = core::array::from_fn(|q| (IQ4_NL_VALUES[q] as i32 + bias) as u8);
    // SAFETY: `t` holds 16 bytes; unaligned load.
    unsafe { _mm_loadu_si128(t.as_ptr().cast()) }
}
