//! Ternary weights × per-token int8 activations on x86_64 (see `scalar::ternary_int8` for the
//! arithmetic and the bit-exactness contract, `scalar::lut_ternary` for the table layout).
//! The length checks, the batched kernel's tiling loop and the installation are the driver
//! shared with the other architecture (`arch/wrappers.rs`: `ternary_wrappers!`,
//! `gemm_codes_driver!`); this file holds the intrinsic bodies.
//!
//! - Integer dots (`dot_*_q8row`) and the batched kernel (`gemm_codes_q8row`): codes `c` are
//!   unsigned bytes 0..=3, so `vpmaddubsw` (AVX2) or `vpdpbusd` (VNNI) multiply them straight
//!   into signed activation bytes, no sign trick: a `vpmaddubsw` pair is at most
//!   2·3·128 = 768, and a 256-weight block accumulates 8 of them in int16 (6144) before one
//!   `vpmaddwd` widens to int32. Exact for any codes and any activation in [−128, 127].
//! - Per block the eight int32 lanes are reduced exactly, then scaled in the scalar order of
//!   the reference, so results are bit-identical to it.
//! - TQ1_0 trits: `t = byte·3^n mod 256` is byte arithmetic (`t·3 = t + t + t`, wrapping), and
//!   the digit `(3t) >> 8` is `[t ≥ 86] + [t ≥ 171]`: two signed compares after flipping the
//!   top bit.
//! - The lookup-table GEMV: one 32-byte load holds the 4-bit indices of 32 rows for two
//!   activation pairs; each pair's 16-byte low and high tables are broadcast to both lanes and
//!   `vpshufb` looks up 32 rows at once; `vpunpck{l,h}bw` rebuild the int16 entries.

use core::arch::x86_64::*;

use crate::blocks::{BlockI2_S, BlockTQ1_0, BlockTQ2_0};
use crate::dispatch::{Backend, Kernels};
use crate::scalar::LUT_TILE_ROWS;

use super::gemm::PREFETCH_AHEAD;

// ---- shared AVX2 helpers ---------------------------------------------------------------------

/// 32 bytes from `p`.
#[inline]
#[target_feature(enable = "avx2")]
fn load32(p: &[u8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: the assertion guarantees 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Exact sum of eight int32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
}

/// Byte-wise `t·3 mod 256`.
#[inline]
#[target_feature(enable = "avx2")]
fn times3(t: __m256i) -> __m256i {
    _mm256_add_epi8(_mm256_add_epi8(t, t), t)
}

/// The leading base-3 digit `(3t) >> 8` of each byte: `[t ≥ 86] + [t ≥ 171]`.
#[inline]
#[target_feature(enable = "avx2")]
fn trit(t: __m256i) -> __m256i {
    let x = _mm256_xor_si256(t, _mm256_set1_epi8(-128));
    let ge86 = _mm256_cmpgt_epi8(x, _mm256_set1_epi8((85u8 ^ 0x80) as i8));
    let ge171 = _mm256_cmpgt_epi8(x, _mm256_set1_epi8((170u8 ^ 0x80) as i8));
    _mm256_sub_epi8(_mm256_setzero_si256(), _mm256_add_epi8(ge86, ge171))
}

/// Calls `f(codes, first)` for the eight 32-code vectors of a TQ1_0 block, `first` being the
/// element index of the vector's first code.
#[inline]
#[target_feature(enable = "avx2")]
fn tq1_0_codes(b: &BlockTQ1_0, mut f: impl FnMut(__m256i, usize)) {
    // Bytes 0..32: trit n of byte m is element m + 32n.
    let mut t = load32(&b.qs);
    for n in 0..5 {
        f(trit(t), 32 * n);
        t = times3(t);
    }
    // Bytes 32..48: trit n of byte m is element 160 + m + 16n; two trits per vector.
    // SAFETY: qs has 48 bytes, so bytes 32..48 are readable; the load is unaligned.
    let w = unsafe { _mm_loadu_si128(b.qs[32..].as_ptr().cast()) };
    let w3 = _mm_add_epi8(_mm_add_epi8(w, w), w);
    let mut x = _mm256_set_m128i(w3, w);
    f(trit(x), 160);
    x = times3(times3(x));
    f(trit(x), 192);
    x = times3(times3(x));
    // qh: trit n of byte j is element 240 + j + 4n: the four bytes repeated, group n times 3^n.
    let h = _mm_set1_epi32(i32::from_le_bytes(b.qh));
    let h3 = _mm_add_epi8(_mm_add_epi8(h, h), h);
    let h9 = _mm_add_epi8(_mm_add_epi8(h3, h3), h3);
    let h27 = _mm_add_epi8(_mm_add_epi8(h9, h9), h9);
    let h = _mm_blend_epi32::<0b0010>(h, h3);
    let h = _mm_blend_epi32::<0b0100>(h, h9);
    let h = _mm_blend_epi32::<0b1000>(h, h27);
    f(trit(_mm256_set_m128i(h, _mm256_castsi256_si128(x))), 224);
}

/// Calls `f(codes, first)` for the eight 32-code vectors of a TQ2_0 block.
#[inline]
#[target_feature(enable = "avx2")]
fn tq2_0_codes(b: &BlockTQ2_0, mut f: impl FnMut(__m256i, usize)) {
    let m3 = _mm256_set1_epi8(3);
    for h in 0..2 {
        let v = load32(&b.qs[32 * h..]);
        f(_mm256_and_si256(v, m3), 128 * h);
        f(
            _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3),
            128 * h + 32,
        );
        f(
            _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3),
            128 * h + 64,
        );
        f(
            _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3),
            128 * h + 96,
        );
    }
}

/// Calls `f(codes, first)` for the four 32-code vectors of an I2_S block.
#[inline]
#[target_feature(enable = "avx2")]
fn i2_s_codes(b: &BlockI2_S, mut f: impl FnMut(__m256i, usize)) {
    let m3 = _mm256_set1_epi8(3);
    let v = load32(&b.qs);
    f(_mm256_and_si256(_mm256_srli_epi16::<6>(v), m3), 0);
    f(_mm256_and_si256(_mm256_srli_epi16::<4>(v), m3), 32);
    f(_mm256_and_si256(_mm256_srli_epi16::<2>(v), m3), 64);
    f(_mm256_and_si256(v, m3), 96);
}

/// Prefetches into L2 the line [`PREFETCH_AHEAD`] bytes past `p`: the row dots call it once
/// per 54–66 bytes of row, so the rows after the current one are in flight while it is summed
/// (a matrix is read once per token; see `gemm::PREFETCH_AHEAD`).
#[inline]
#[target_feature(enable = "avx2")]
fn prefetch_row_ahead(p: *const u8) {
    // PREFETCH never faults; `wrapping_add` keeps the pointer arithmetic defined past the end
    // of the row.
    _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(PREFETCH_AHEAD).cast());
}

/// Stores 32 code bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn store32(out: &mut [u8], v: __m256i) {
    assert!(out.len() >= 32);
    // SAFETY: the assertion guarantees 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

// ---- unpack (AVX2, every x86 backend) --------------------------------------------------------

#[target_feature(enable = "avx2")]
fn unpack_tq2_0_body(blocks: &[BlockTQ2_0], codes: &mut [u8], scales: &mut [f32]) {
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        tq2_0_codes(b, |v, i| store32(&mut c[i..], v));
        *s = b.d.to_f32();
    }
}

#[target_feature(enable = "avx2")]
fn unpack_tq1_0_body(blocks: &[BlockTQ1_0], codes: &mut [u8], scales: &mut [f32]) {
    for ((b, c), s) in blocks.iter().zip(codes.chunks_exact_mut(256)).zip(scales) {
        tq1_0_codes(b, |v, i| store32(&mut c[i..], v));
        *s = b.d.to_f32();
    }
}

#[target_feature(enable = "avx2")]
fn unpack_i2_s_body(blocks: &[BlockI2_S], codes: &mut [u8]) {
    for (b, c) in blocks.iter().zip(codes.chunks_exact_mut(128)) {
        i2_s_codes(b, |v, i| store32(&mut c[i..], v));
    }
}

// ---- integer dots and the batched kernel, per instruction set --------------------------------

/// The integer kernels over an accumulator type: `$acc_add(acc, codes, acts)` adds
/// `Σ codes·acts` to the accumulator, `$acc_i32` turns it into eight int32 partial sums. At
/// most 8 additions (one 256-weight block) go into one accumulator.
macro_rules! ternary_int8 {
    ($features:literal, $acc_add:ident, $acc_i32:ident) => {
        use core::arch::x86_64::*;

        use super::{hsum_i32, i2_s_codes, prefetch_row_ahead, tq1_0_codes, tq2_0_codes};
        use crate::blocks::{BlockI2_S, BlockTQ1_0, BlockTQ2_0};
        use crate::scalar::ActQ8Row;

        /// TQ1_0 row · activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_tq1_0_q8row(blocks: &[BlockTQ1_0], act: &ActQ8Row<'_>) -> f32 {
            let mut sum = 0.0f32;
            for (i, b) in blocks.iter().enumerate() {
                let q = act.qs[256 * i..256 * (i + 1)].as_ptr();
                prefetch_row_ahead((b as *const BlockTQ1_0).cast());
                // Four independent accumulators: `vpdpbusd`'s latency, not its throughput,
                // would bound one chain.
                let mut acc = [_mm256_setzero_si256(); 4];
                tq1_0_codes(b, |c, j| {
                    // SAFETY: the block's 256 activations are at q; j ≤ 224 for every vector.
                    let qv = unsafe { _mm256_loadu_si256(q.add(j).cast()) };
                    acc[j / 32 % 4] = $acc_add(acc[j / 32 % 4], c, qv);
                });
                let acc = add4([
                    $acc_i32(acc[0]),
                    $acc_i32(acc[1]),
                    $acc_i32(acc[2]),
                    $acc_i32(acc[3]),
                ]);
                let isum = hsum_i32(acc) - (act.sums[2 * i] + act.sums[2 * i + 1]);
                sum += b.d.to_f32() * isum as f32;
            }
            sum
        }

        /// TQ2_0 row · activations.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_tq2_0_q8row(blocks: &[BlockTQ2_0], act: &ActQ8Row<'_>) -> f32 {
            let mut sum = 0.0f32;
            for (i, b) in blocks.iter().enumerate() {
                let q = act.qs[256 * i..256 * (i + 1)].as_ptr();
                prefetch_row_ahead((b as *const BlockTQ2_0).cast());
                // Four independent accumulators: `vpdpbusd`'s latency, not its throughput,
                // would bound one chain.
                let mut acc = [_mm256_setzero_si256(); 4];
                tq2_0_codes(b, |c, j| {
                    // SAFETY: the block's 256 activations are at q; j ≤ 224 for every vector.
                    let qv = unsafe { _mm256_loadu_si256(q.add(j).cast()) };
                    acc[j / 32 % 4] = $acc_add(acc[j / 32 % 4], c, qv);
                });
                let acc = add4([
                    $acc_i32(acc[0]),
                    $acc_i32(acc[1]),
                    $acc_i32(acc[2]),
                    $acc_i32(acc[3]),
                ]);
                let isum = hsum_i32(acc) - (act.sums[2 * i] + act.sums[2 * i + 1]);
                sum += b.d.to_f32() * isum as f32;
            }
            sum
        }

        /// I2_S row · activations: one int32 accumulation over the whole row.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_i2_s_q8row(blocks: &[BlockI2_S], act: &ActQ8Row<'_>) -> f32 {
            // Four independent accumulators, each taking at most 2 additions (the int16 bound
            // of `vpmaddubsw`) before it is widened into the int32 totals.
            let mut total = [_mm256_setzero_si256(); 4];
            for (pair, q) in blocks.chunks(2).zip(act.qs.chunks(256)) {
                prefetch_row_ahead(pair.as_ptr().cast());
                let mut acc = [_mm256_setzero_si256(); 4];
                for (h, b) in pair.iter().enumerate() {
                    let q = q[128 * h..128 * (h + 1)].as_ptr();
                    i2_s_codes(b, |c, j| {
                        // SAFETY: the block's 128 activations are at q; j ≤ 96 for every vector.
                        let qv = unsafe { _mm256_loadu_si256(q.add(j).cast()) };
                        acc[j / 32] = $acc_add(acc[j / 32], c, qv);
                    });
                }
                for i in 0..4 {
                    total[i] = _mm256_add_epi32(total[i], $acc_i32(acc[i]));
                }
            }
            (hsum_i32(add4(total)) - act.sums.iter().sum::<i32>()) as f32
        }

        /// The lane-wise sum of four int32 vectors.
        #[inline]
        #[target_feature(enable = $features)]
        fn add4(v: [__m256i; 4]) -> __m256i {
            _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]))
        }

        /// Eight int32 vectors → one vector of their eight lane sums (exact).
        #[inline]
        #[target_feature(enable = $features)]
        fn reduce8(v: [__m256i; 8]) -> __m256i {
            let h01 = _mm256_hadd_epi32(v[0], v[1]);
            let h23 = _mm256_hadd_epi32(v[2], v[3]);
            let h45 = _mm256_hadd_epi32(v[4], v[5]);
            let h67 = _mm256_hadd_epi32(v[6], v[7]);
            let h0123 = _mm256_hadd_epi32(h01, h23);
            let h4567 = _mm256_hadd_epi32(h45, h67);
            _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(h0123, h4567),
                _mm256_permute2x128_si256::<0x31>(h0123, h4567),
            )
        }

        /// `R` rows × `T` tokens (R ≤ 4, T ≤ 2) of `k` codes each: lane `2r + t` of the
        /// results, written to `out[t][r]` (`out[t]` being token `t`'s output row).
        #[inline]
        #[target_feature(enable = $features)]
        fn micro<const R: usize, const T: usize>(
            codes: [&[u8]; R],
            scales: [&[f32]; R],
            acts: [&ActQ8Row<'_>; T],
            out: [&mut [f32]; T],
        ) {
            let k = acts[0].qs.len();
            for r in 0..R {
                assert!(
                    codes[r].len() == k && (scales[r].is_empty() || scales[r].len() == k / 256)
                );
            }
            for t in 0..T {
                assert!(acts[t].qs.len() == k && out[t].len() == R);
            }
            // Plain loops, not `array::map`/`from_fn`: those generic helpers are not compiled
            // with this function's features and would pass the vectors through memory.
            let mut c = [core::ptr::null::<u8>(); R];
            for r in 0..R {
                c[r] = codes[r].as_ptr();
            }
            let mut q = [core::ptr::null::<i8>(); T];
            for t in 0..T {
                q[t] = acts[t].qs.as_ptr();
            }
            let integer = scales[0].is_empty();
            // I2_S: int32 accumulators over the whole row (widened every 128 columns for
            // AVX2's int16 lanes); TQ: one 256-weight block at a time, reduced and scaled.
            let span = if integer { 128 } else { 256 };
            let mut whole = [[_mm256_setzero_si256(); T]; R];
            let mut fsum = _mm256_setzero_ps(); // TQ: running float sum per lane
            for s in 0..k / span {
                let mut acc = [[_mm256_setzero_si256(); T]; R];
                for j in (span * s..span * (s + 1)).step_by(32) {
                    let mut qv = [_mm256_setzero_si256(); T];
                    for t in 0..T {
                        // SAFETY: j + 32 ≤ k = the length of every token's codes (asserted).
                        qv[t] = unsafe { _mm256_loadu_si256(q[t].add(j).cast()) };
                    }
                    for r in 0..R {
                        // SAFETY: j + 32 ≤ k = the length of every row's codes (asserted).
                        let cv = unsafe { _mm256_loadu_si256(c[r].add(j).cast()) };
                        for t in 0..T {
                            acc[r][t] = $acc_add(acc[r][t], cv, qv[t]);
                        }
                    }
                }
                if integer {
                    for r in 0..R {
                        for t in 0..T {
                            whole[r][t] = _mm256_add_epi32(whole[r][t], $acc_i32(acc[r][t]));
                        }
                    }
                } else {
                    let mut lanes = [_mm256_setzero_si256(); 8];
                    for r in 0..R {
                        for t in 0..T {
                            lanes[2 * r + t] = $acc_i32(acc[r][t]);
                        }
                    }
                    let isum = reduce8(lanes);
                    let corr = |t: usize| {
                        if t < T {
                            acts[t].sums[2 * s] + acts[t].sums[2 * s + 1]
                        } else {
                            0
                        }
                    };
                    let d = |r: usize| if r < R { scales[r][s] } else { 0.0 };
                    let (c0, c1) = (corr(0), corr(1));
                    let corr = _mm256_setr_epi32(c0, c1, c0, c1, c0, c1, c0, c1);
                    let d = _mm256_setr_ps(d(0), d(0), d(1), d(1), d(2), d(2), d(3), d(3));
                    let isum = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, corr));
                    // Multiply, then add: the reference's two roundings, never fused.
                    fsum = _mm256_add_ps(fsum, _mm256_mul_ps(d, isum));
                }
            }
            let mut res = [0.0f32; 8];
            if integer {
                let mut lanes = [_mm256_setzero_si256(); 8];
                for r in 0..R {
                    for t in 0..T {
                        lanes[2 * r + t] = whole[r][t];
                    }
                }
                let mut t32 = [0i32; 8];
                // SAFETY: `t32` holds eight int32; the store is unaligned.
                unsafe { _mm256_storeu_si256(t32.as_mut_ptr().cast(), reduce8(lanes)) };
                for t in 0..T {
                    let all: i32 = acts[t].sums.iter().sum();
                    for r in 0..R {
                        res[2 * r + t] = (t32[2 * r + t] - all) as f32;
                    }
                }
            } else {
                // SAFETY: `res` holds eight f32; the store is unaligned.
                unsafe { _mm256_storeu_ps(res.as_mut_ptr(), fsum) };
            }
            for (t, o) in out.into_iter().enumerate() {
                for r in 0..R {
                    o[r] = res[2 * r + t];
                }
            }
        }

        gemm_codes_driver!($features);
    };
}

/// AVX2: `vpmaddubsw` into int16 pairs (at most 768 each, 8 per accumulator), widened by
/// `vpmaddwd` with ones.
pub(crate) mod avx2 {
    ternary_int8!("avx2", acc_add, acc_i32);

    #[inline]
    #[target_feature(enable = "avx2")]
    fn acc_add(acc: __m256i, c: __m256i, q: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(c, q))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn acc_i32(acc: __m256i) -> __m256i {
        _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
    }
}

/// AVX-VNNI: `vpdpbusd` (VEX) straight into int32.
pub(crate) mod avxvnni {
    ternary_int8!("avx2,avxvnni", acc_add, acc_i32);

    #[inline]
    #[target_feature(enable = "avx2,avxvnni")]
    fn acc_add(acc: __m256i, c: __m256i, q: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, c, q)
    }

    #[inline]
    #[target_feature(enable = "avx2,avxvnni")]
    fn acc_i32(acc: __m256i) -> __m256i {
        acc
    }
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
pub(crate) mod avx512vnni {
    ternary_int8!("avx2,avx512vnni,avx512vl", acc_add, acc_i32);

    #[inline]
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn acc_add(acc: __m256i, c: __m256i, q: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, c, q)
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn acc_i32(acc: __m256i) -> __m256i {
        acc
    }
}

// ---- lookup tables (AVX2, every x86 backend) -------------------------------------------------

/// One token's tables: per activation pair, the sixteen int16 entries `(i/3 − 1)·a0 +
/// (i%3 − 1)·a1` (zero from 9 on) as `vpsignw` of the broadcast activations, then split into
/// a low-byte and a high-byte half by one in-lane shuffle and one 64-bit permute.
#[target_feature(enable = "avx2")]
fn lut_tables_body(qs: &[i8], tables: &mut [u8]) {
    // Sign patterns of a0 and a1 per entry: −1, 0, +1 (0 beyond entry 8).
    let p0 = _mm256_setr_epi16(-1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0);
    let p1 = _mm256_setr_epi16(-1, 0, 1, -1, 0, 1, -1, 0, 1, 0, 0, 0, 0, 0, 0, 0);
    // Per lane: low bytes of the eight int16, then their high bytes.
    let split = _mm256_setr_epi8(
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, //
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
    );
    for (a, t) in qs.chunks_exact(2).zip(tables.chunks_exact_mut(32)) {
        let v = _mm256_add_epi16(
            _mm256_sign_epi16(_mm256_set1_epi16(a[0] as i16), p0),
            _mm256_sign_epi16(_mm256_set1_epi16(a[1] as i16), p1),
        );
        // [lo 0..8 | hi 0..8 | lo 8..16 | hi 8..16] → [lo 0..16 | hi 0..16].
        let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, split));
        store32(t, v);
    }
}

/// Int16 entries of 32 rows for one pair's tables at `t` (low bytes at 0, high at 16) and
/// indices `idx`: `(rows 0..8 ∪ 16..24, rows 8..16 ∪ 24..32)`.
///
/// # Safety
/// `t` points to 32 readable bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lookup(t: *const u8, idx: __m256i) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees 32 readable bytes at t; the loads are unaligned.
    let (tl, th) = unsafe { (_mm_loadu_si128(t.cast()), _mm_loadu_si128(t.add(16).cast())) };
    let lo = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(tl), idx);
    let hi = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(th), idx);
    (_mm256_unpacklo_epi8(lo, hi), _mm256_unpackhi_epi8(lo, hi))
}

/// One index tile · one token's tables; `block` columns per scale (or the whole row).
#[target_feature(enable = "avx2")]
fn lut_gemv_body(tile: &[u8], tables: &[u8], scales: &[f32], out: &mut [f32; LUT_TILE_ROWS]) {
    let cols = tile.len() / 8;
    assert!(tables.len() == 16 * cols && cols.is_multiple_of(128));
    let (ti, tt) = (tile.as_ptr(), tables.as_ptr());
    let mask = _mm256_set1_epi8(0x0F);
    // int32 sums of rows 0..8, 8..16, 16..24, 24..32.
    let mut total = [_mm256_setzero_si256(); 4];
    let mut fsum = [_mm256_setzero_ps(); 4];
    let block = if scales.is_empty() { cols } else { 256 };
    for b in 0..cols / block {
        let mut isum = [_mm256_setzero_si256(); 4];
        for s in (block * b..block * (b + 1)).step_by(128) {
            // One 128-column span: 32 chunks, at most 64 entries of |T| ≤ 256 per int16 lane.
            let (mut a, mut c) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for m in s / 4..s / 4 + 32 {
                if m % 2 == 0 {
                    // The next tiles' indices into L2 (see `gemm::PREFETCH_AHEAD`): one line
                    // per two chunks. PREFETCH never faults; `wrapping_add` keeps the pointer
                    // arithmetic defined past the end of the tile.
                    _mm_prefetch::<_MM_HINT_T1>(ti.wrapping_add(32 * m + PREFETCH_AHEAD).cast());
                }
                // SAFETY: chunk m < cols/4: its 32 index bytes end at 32·cols/4 = tile.len(),
                // its two pairs' 64 table bytes at 16·cols = tables.len() (both checked by
                // `check_lut` and above).
                let (v, t) = unsafe { (_mm256_loadu_si256(ti.add(32 * m).cast()), tt.add(64 * m)) };
                let i0 = _mm256_and_si256(v, mask);
                let i1 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
                // SAFETY: t..t + 64 lies inside the tables (above).
                let ((a0, c0), (a1, c1)) = unsafe { (lookup(t, i0), lookup(t.add(32), i1)) };
                a = _mm256_add_epi16(a, _mm256_add_epi16(a0, a1));
                c = _mm256_add_epi16(c, _mm256_add_epi16(c0, c1));
            }
            let wide = [
                _mm256_cvtepi16_epi32(_mm256_castsi256_si128(a)),
                _mm256_cvtepi16_epi32(_mm256_castsi256_si128(c)),
                _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(a)),
                _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(c)),
            ];
            for q in 0..4 {
                isum[q] = _mm256_add_epi32(isum[q], wide[q]);
            }
        }
        for q in 0..4 {
            if scales.is_empty() {
                total[q] = _mm256_add_epi32(total[q], isum[q]);
            } else {
                let d = &scales[LUT_TILE_ROWS * b + 8 * q..][..8];
                // SAFETY: `d` holds eight f32; the load is unaligned.
                let d = unsafe { _mm256_loadu_ps(d.as_ptr()) };
                // Multiply, then add: the reference's two roundings, never fused.
                fsum[q] = _mm256_add_ps(fsum[q], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[q])));
            }
        }
    }
    for q in 0..4 {
        let v = if scales.is_empty() {
            _mm256_cvtepi32_ps(total[q])
        } else {
            fsum[q]
        };
        // SAFETY: `out` has 32 f32, so 8q..8q+8 is writable; the store is unaligned.
        unsafe { _mm256_storeu_ps(out[8 * q..].as_mut_ptr(), v) };
    }
}

/// One index tile → 32 rows of codes. Per 32-byte chunk (32 rows × 4 columns), `vpshufb` maps
/// each 4-bit index to its two codes (`i/3`, `i%3`) and byte/word interleaves give four
/// vectors of one u32 (four codes) per row, rows 0..4 16..20 | 4..8 20..24 | 8..12 24..28 |
/// 12..16 28..32. Eight chunks (32 columns) are then transposed 8×8 in u32, so each row gets
/// its 32 codes as one contiguous store.
#[target_feature(enable = "avx2")]
fn lut_unpack_body(tile: &[u8], codes: &mut [u8]) {
    let cols = tile.len() / 8;
    assert!(codes.len() == LUT_TILE_ROWS * cols && cols.is_multiple_of(32));
    let div3 = _mm256_setr_epi8(
        0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0,
    );
    let mod3 = _mm256_setr_epi8(
        0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, //
        0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0,
    );
    let mask = _mm256_set1_epi8(0x0F);
    // Row held by u32 lane l of quad vector g.
    const ROW: [[usize; 8]; 4] = [
        [0, 1, 2, 3, 16, 17, 18, 19],
        [4, 5, 6, 7, 20, 21, 22, 23],
        [8, 9, 10, 11, 24, 25, 26, 27],
        [12, 13, 14, 15, 28, 29, 30, 31],
    ];
    let out = codes.as_mut_ptr();
    for group in 0..cols / 32 {
        // quads[g][m]: quad vector g of chunk 8·group + m.
        let mut quads = [[_mm256_setzero_si256(); 8]; 4];
        for m in 0..8 {
            let v = load32(&tile[32 * (8 * group + m)..]);
            let lo = _mm256_and_si256(v, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
            let (c0, c1) = (_mm256_shuffle_epi8(div3, lo), _mm256_shuffle_epi8(mod3, lo));
            let (c2, c3) = (_mm256_shuffle_epi8(div3, hi), _mm256_shuffle_epi8(mod3, hi));
            let (p01l, p23l) = (_mm256_unpacklo_epi8(c0, c1), _mm256_unpacklo_epi8(c2, c3));
            let (p01h, p23h) = (_mm256_unpackhi_epi8(c0, c1), _mm256_unpackhi_epi8(c2, c3));
            quads[0][m] = _mm256_unpacklo_epi16(p01l, p23l);
            quads[1][m] = _mm256_unpackhi_epi16(p01l, p23l);
            quads[2][m] = _mm256_unpacklo_epi16(p01h, p23h);
            quads[3][m] = _mm256_unpackhi_epi16(p01h, p23h);
        }
        for (g, v) in quads.iter().enumerate() {
            // 8×8 transpose of u32: row vector l gets lane l of the eight chunk vectors.
            let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
            let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
            let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
            let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
            let t4 = _mm256_unpacklo_epi32(v[4], v[5]);
            let t5 = _mm256_unpackhi_epi32(v[4], v[5]);
            let t6 = _mm256_unpacklo_epi32(v[6], v[7]);
            let t7 = _mm256_unpackhi_epi32(v[6], v[7]);
            let u0 = _mm256_unpacklo_epi64(t0, t2);
            let u1 = _mm256_unpackhi_epi64(t0, t2);
            let u2 = _mm256_unpacklo_epi64(t1, t3);
            let u3 = _mm256_unpackhi_epi64(t1, t3);
            let u4 = _mm256_unpacklo_epi64(t4, t6);
            let u5 = _mm256_unpackhi_epi64(t4, t6);
            let u6 = _mm256_unpacklo_epi64(t5, t7);
            let u7 = _mm256_unpackhi_epi64(t5, t7);
            let rows = [
                _mm256_permute2x128_si256::<0x20>(u0, u4),
                _mm256_permute2x128_si256::<0x20>(u1, u5),
                _mm256_permute2x128_si256::<0x20>(u2, u6),
                _mm256_permute2x128_si256::<0x20>(u3, u7),
                _mm256_permute2x128_si256::<0x31>(u0, u4),
                _mm256_permute2x128_si256::<0x31>(u1, u5),
                _mm256_permute2x128_si256::<0x31>(u2, u6),
                _mm256_permute2x128_si256::<0x31>(u3, u7),
            ];
            for (l, row) in rows.into_iter().enumerate() {
                // SAFETY: row ROW[g][l] < 32 and 32·group + 32 ≤ cols, so the 32 bytes lie
                // inside `codes` (32 rows of `cols`, asserted); the store is unaligned.
                unsafe { _mm256_storeu_si256(out.add(ROW[g][l] * cols + 32 * group).cast(), row) };
            }
        }
    }
}

/// One token's activations → int8 codes with one scale: the reference's arithmetic lane by
/// lane (`x·s`, `trunc(|·| + 0.5)` with the sign put back, clamp to [−128, 127]; NaN → 0, ±∞
/// saturates), so the bytes are identical. `max` skips NaN as `f32::max` does (the accumulator is the second
/// operand of `vmaxps`, which it returns when the first is NaN).
#[target_feature(enable = "avx2")]
fn quantize_act_row_body(x: &[f32], qs: &mut [i8], sums: &mut [i32]) -> Option<f32> {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = [_mm256_setzero_ps(); 4];
    for c in x.chunks_exact(32) {
        for (i, m) in m.iter_mut().enumerate() {
            // SAFETY: the chunk holds 32 f32, so 8i..8i+8 is readable; the load is unaligned.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * i)) };
            *m = _mm256_max_ps(_mm256_andnot_ps(sign, v), *m);
        }
    }
    let m = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds eight f32; the store is unaligned.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let amax = lanes.iter().fold(0.0f32, |a, &v| a.max(v));
    if !amax.is_finite() {
        return None;
    }
    if amax == 0.0 {
        qs.fill(0);
        sums.fill(0);
        return Some(0.0);
    }
    let (s, d) = (127.0 / amax, amax / 127.0);
    let (vs, half) = (_mm256_set1_ps(s), _mm256_set1_ps(0.5));
    let (lo, hi) = (_mm256_set1_epi32(-128), _mm256_set1_epi32(127));
    for ((x, q), sum) in x
        .chunks_exact(128)
        .zip(qs.chunks_exact_mut(128))
        .zip(sums.iter_mut())
    {
        let mut acc = _mm256_setzero_si256();
        for (x, q) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)) {
            let code = |i: usize| {
                // SAFETY: the chunk holds 32 f32; the load is unaligned.
                let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) };
                let p = _mm256_mul_ps(v, vs);
                let p = _mm256_and_ps(p, _mm256_cmp_ps::<_CMP_ORD_Q>(p, p)); // NaN → 0
                                                                             // ±∞ (a subnormal maximum overflows `s`) → ±256, which still clamps to
                                                                             // 127 / −128 as the reference's saturating conversion does.
                let p = _mm256_min_ps(
                    _mm256_max_ps(p, _mm256_set1_ps(-256.0)),
                    _mm256_set1_ps(256.0),
                );
                let t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_andnot_ps(sign, p), half));
                let t = _mm256_sign_epi32(t, _mm256_castps_si256(p));
                _mm256_max_epi32(_mm256_min_epi32(t, hi), lo)
            };
            let v = [code(0), code(1), code(2), code(3)];
            acc = _mm256_add_epi32(
                acc,
                _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3])),
            );
            // Packing works per 128-bit lane; the permutation restores element order.
            let p = _mm256_packs_epi16(
                _mm256_packs_epi32(v[0], v[1]),
                _mm256_packs_epi32(v[2], v[3]),
            );
            let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: `q` holds 32 bytes, exclusively borrowed; the store is unaligned.
            unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), p) };
        }
        *sum = hsum_i32(acc);
    }
    Some(d)
}

// ---- safe wrappers and installation ----------------------------------------------------------
// Wrapper notes: `install_ternary` (made below by `ternary_wrappers!`, the driver shared with the
// other architecture in `arch/wrappers.rs`) is the only code that names these private
// wrappers, and the architecture's `install` calls it only after `detected(backend)` returned
// true. Every body
// here enables `avx2`, which every x86 backend requires; the VNNI integer bodies additionally
// enable `avxvnni` or `avx512vnni,avx512vl`, and `install` picks them only for the backend
// whose detection checked exactly those.

ternary_wrappers!("avx2"; {
    Backend::AvxVnni => w_avxvnni => avxvnni "avxvnni",
    Backend::Avx512Vnni => w_avx512vnni => avx512vnni "avx512vnni",
    _ => w_avx2 => avx2 "avx2",
});

/// Puts the ternary kernels of `backend` (an x86 backend whose features were detected) in `k`.
pub(super) fn install(backend: Backend, k: &mut Kernels) {
    install_ternary(backend, k);
}
