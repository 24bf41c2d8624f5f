//! Int8 dot products and GEMMs of Q3_K and Q2_K rows with quantized activations
//! ([`BlockQ8Act`](crate::scalar::BlockQ8Act)) on 256-bit registers, one copy per instruction
//! set generated from one macro: AVX2, AVX-VNNI and AVX512-VNNI/VL (the last with 32 registers;
//! the same `vpmaddubsw` bodies in each, since they sum in 16 bits, which `vpdpbusd` would not).
//!
//! Bit-identical to `scalar::dot_q3_k_q8` / `scalar::dot_q2_k_q8`. Activation block k meets 32
//! codes (sub-blocks 2k and 2k + 1, one per 128-bit lane) in one `vpmaddubsw`; the pair sums
//! of four blocks fold by unpacks and word adds to two words per sub-block ([`quad_words`]: a
//! `vphaddw`/`vphaddd` tree cost four times as much: on Zen 4 one issues every two cycles,
//! an unpack or add two to four per cycle), and one `vpmaddwd` with each sub-block's scale repeated over its two
//! words ([`dup_words`]) gives `sc_s·Σ q·a` exactly; the two lanes add to the exact integer of
//! each activation block. Every 16-bit sum is bounded by the codes (below 2¹⁵ in magnitude).
//! The float part is the reference's: one product by the block's scale, the eight-lane sum in
//! `sum8_tree`'s order, the super-block scale(s).
//!
//! Q2_K's codes are 0..=3 (unsigned as they are); its min term needs the activations' sum
//! over each 16-element sub-block, the same folds over `1·a`, times the four-bit mins.
//! [`prepare`] computes those sums with the loaded activations: the GEMMs (`low_gemm!`) once
//! per super-block of a token for 64 rows taken four at a time, the row dot per super-block.
//! With the sums at hand, Q3_K's GEMM drops the sign trick: its codes enter as `u = q + 4` in
//! 0..8 (the high bit one shift, mask and or), and `4·Σa` per sub-block comes off before the
//! scales multiply. Q3_K's AVX2 row dot keeps the sign trick (`|w|` times `a` carrying `w`'s
//! sign, a pair ≤ 2·4·127), which needs no activation sums and fewer registers.
//!
//! The row dots and the GEMM tiles are software-pipelined: super-block `i + 1`'s integers
//! come before super-block `i`'s float part, whose long dependency chain (conversion,
//! products, trees, scalar tail) otherwise held the scheduler while the next block waited
//! (AVX2, Zen 4, % of Q4_0's GB/s on the 576x1536 and 2048x2048 bench shapes, loaded machine:
//! Q2_K row dot 53 → 61 %, GEMMs Q2_K 68 → 72–75 %, Q3_K 66–69 → 75–78 %).

/// The int8 GEMM of one low k-quant over [`LowActs`]-prepared activations, inside
/// `kquant_low_int8_dots!`: `low_gemm!(features, gemm, tile, Block, block_fn, products_fn,
/// trees_fn)` defines `tile::<R>` (R rows against a run of prepared super-blocks, four at a
/// time through `products_fn` per row and `trees_fn` for the four, pipelined) and `gemm`, which prepares each super-block of a token's activations once per
/// [`ROW_BLOCK`](super::kquants_low512_int8::ROW_BLOCK) rows (in runs of
/// [`PREP`](super::kquants_low512_int8::PREP) super-blocks). Every row sums its super-blocks
/// in order (a run's partial sums wait in `y`, exactly), so each result equals the row dot's.
macro_rules! low_gemm {
    ($features:literal, $name:ident, $tile:ident, $block:ty, $per_block:ident, $products:ident,
        $trees:ident) => {
        /// Adds to `out` (or, for the first run, writes) the terms of `R` rows (`kb` blocks
        /// each, back to back in `w`) for super-blocks `b0..b0 + prepared.len()`.
        #[inline]
        #[target_feature(enable = $features)]
        fn $tile<const R: usize>(
            w: &[$block],
            kb: usize,
            b0: usize,
            prepared: &[LowActs],
            out: &mut [f32],
            first: bool,
        ) {
            assert!(w.len() >= R * kb && b0 + prepared.len() <= kb && out.len() >= R);
            let mut sums = [0.0f32; R];
            if !first {
                sums.copy_from_slice(&out[..R]);
            }
            if R == 4 && !prepared.is_empty() {
                // Pipelined: super-block i + 1's products before super-block i's trees.
                let rows = |i: usize| -> [&$block; 4] {
                    core::array::from_fn(|r| &w[r * kb + b0 + i])
                };
                let products = |i: usize| rows(i).map(|b| $products(b, &prepared[i]));
                let mut cur = products(0);
                for i in 0..prepared.len() {
                    let next = if i + 1 < prepared.len() { products(i + 1) } else { cur };
                    for (s, t) in sums.iter_mut().zip($trees(rows(i), cur)) {
                        *s += t;
                    }
                    cur = next;
                }
                out[..R].copy_from_slice(&sums);
                return;
            }
            for (i, p) in prepared.iter().enumerate() {
                for (r, s) in sums.iter_mut().enumerate() {
                    *s += $per_block(&w[r * kb + b0 + i], p);
                }
            }
            out[..R].copy_from_slice(&sums);
        }

        #[doc = concat!("`y[t·ldy + r] = row r · token t` for `m` rows (`kb` blocks each) and `n` ")]
        #[doc = concat!("tokens (`8·kb` activation blocks each), through [`", stringify!($per_block), "`].")]
        #[target_feature(enable = $features)]
        pub(crate) fn $name(
            w: &[$block],
            m: usize,
            kb: usize,
            acts: &[BlockQ8Act],
            n: usize,
            y: &mut [f32],
            ldy: usize,
        ) {
            use super::super::gemm::{prefetch_ahead, prefetch_head};
            use super::super::kquants_low512_int8::{PREP, ROW_BLOCK};
            assert!(w.len() == m * kb && acts.len() == n * 8 * kb);
            assert!(n == 0 || (ldy >= m && y.len() >= (n - 1) * ldy + m));
            let block_bytes = core::mem::size_of::<$block>();
            prefetch_head(w.as_ptr().cast(), m * kb * block_bytes);
            // SAFETY: `LowActs` holds only SIMD vectors, for which all-zero bits are valid;
            // every entry read below was written by `prepare` first.
            let mut prepared: [LowActs; PREP] = unsafe { core::mem::zeroed() };
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
                            let rows = (rb - r).min(4);
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

macro_rules! kquant_low_int8_dots {
    ($features:literal, $($helpers:ident)::+, q3_k_row: $q3_k_row:ident) => {
        use core::arch::x86_64::*;

        use $($helpers)::+::{add_halves, per_block};
        use super::super::avx2::{f16x8, hsum, load_i8x32};
        use super::super::kquants_low::{q3_k_codes, q3_k_codes_u, q3_k_scales_i8};
        use crate::blocks::{BlockQ2_K, BlockQ3_K};
        use crate::scalar::BlockQ8Act;

        /// Q3_K row · int8 activations (`acts` holds eight blocks per super-block),
        /// software-pipelined as [`dot_q2_k_q8`]: the integers of super-block `i + 1`
        /// ([`q3_k_ints`]) before the float part of super-block `i`.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q3_k_q8(blocks: &[BlockQ3_K], acts: &[BlockQ8Act]) -> f32 {
            let term = |(isum, d, db): (__m256i, __m256, f32)| {
                db * hsum(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)))
            };
            let mut pairs = blocks.iter().zip(acts.chunks_exact(8));
            let Some((b, a)) = pairs.next() else {
                return 0.0;
            };
            let mut cur = $q3_k_row(b, a);
            let mut sum = 0.0f32;
            for (b, a) in pairs {
                let next = $q3_k_row(b, a);
                sum += term(cur);
                cur = next;
            }
            sum + term(cur)
        }

        /// [`q3_k_ints`]' result through the GEMM's [`prepare`] and [`q3_k_products`]
        /// (unsigned codes, prepared activation sums) instead of the sign trick: faster with
        /// AVX-512VL's 32 registers (Q3_K 64 → 68 % of Q4_0's GB/s on the bench shapes, Zen 4),
        /// slower with AVX2's 16 (70 → 65 %).
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(dead_code, reason = "one of the two row bodies per instruction set")]
        fn q3_k_ints_prepared(b: &BlockQ3_K, a: &[BlockQ8Act]) -> (__m256i, __m256, f32) {
            let p = prepare(a);
            (q3_k_isum(b, &p), p.d, _mm256_cvtss_f32(f16x8(b.d)))
        }

        /// One Q3_K super-block against its activations: the exact `I_k = Σ_s sc_s·Σ q·a`
        /// over the two sub-blocks of each activation block `k` (eight lanes), the activation
        /// scales and the block's `d`. The codes (−4..=3) meet the activations through the
        /// sign trick (a `vpmaddubsw` pair at most 2·4·127); the pair sums fold to two words
        /// per sub-block ([`quad_words`]: sums at most 16·4·127), and one `vpmaddwd` with each
        /// signed scale repeated over its two words gives `sc_s·i_s` exactly.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(dead_code, reason = "one of the two row bodies per instruction set")]
        fn q3_k_ints(b: &BlockQ3_K, a: &[BlockQ8Act]) -> (__m256i, __m256, f32) {
            assert!(a.len() >= 8);
            let v: [__m256i; 8] = core::array::from_fn(|k| {
                let w = q3_k_codes(b, k / 4, k % 4);
                let x = load_i8x32(&a[k].qs);
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
            });
            // Each signed scale byte in both bytes of its words, then sign-extended.
            let sc = q3_k_scales_i8(b);
            let sc = _mm256_set_m128i(sc, sc);
            let scaled = |h: usize| {
                let words = dup_words::<true>(h);
                _mm256_madd_epi16(
                    quad_words([v[4 * h], v[4 * h + 1], v[4 * h + 2], v[4 * h + 3]]),
                    _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(sc, words)),
                )
            };
            (
                add_halves(scaled(0), scaled(1)),
                per_block::<0>(a),
                _mm256_cvtss_f32(f16x8(b.d)),
            )
        }

        /// The `vpmaddubsw` pair sums of four activation blocks `v` (sub-block `2k` in the low
        /// 128 bits of `v[k]`, `2k + 1` in the high) reduced to one dword per block and 128-bit
        /// lane: dword `k` of each lane holds two words whose sum is that sub-block's. Unpacks
        /// and word adds only (a `vphaddw` costs as much as four of them on Zen 4). Exact when
        /// every sub-block's absolute products sum below 2¹⁵, which the callers' codes
        /// guarantee: every partial sum is then in range.
        #[inline]
        #[target_feature(enable = $features)]
        fn quad_words(v: [__m256i; 4]) -> __m256i {
            let fold32 = |a: __m256i, b: __m256i| {
                _mm256_add_epi16(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b))
            };
            let (s01, s23) = (fold32(v[0], v[1]), fold32(v[2], v[3]));
            _mm256_add_epi16(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23))
        }

        /// `vpshufb` indices from sixteen sub-block bytes (both lanes) to the words that meet
        /// [`quad_words`] of blocks `4h..4h + 4` in `vpmaddwd`: dword `k` of the low lane takes
        /// byte `8h + 2k` twice (as words), of the high lane byte `8h + 2k + 1`. Each word's
        /// high byte is zero, or with `HIGH` the same byte again (a 16-bit arithmetic shift by
        /// 8 then sign-extends it).
        #[inline]
        #[target_feature(enable = $features)]
        fn dup_words<const HIGH: bool>(h: usize) -> __m256i {
            let b = |k: i8, odd: i8| 8 * h as i8 + 2 * k + odd;
            let z = |k: i8, odd: i8| if HIGH { b(k, odd) } else { -128 };
            _mm256_setr_epi8(
                b(0, 0), z(0, 0), b(0, 0), z(0, 0), b(1, 0), z(1, 0), b(1, 0), z(1, 0),
                b(2, 0), z(2, 0), b(2, 0), z(2, 0), b(3, 0), z(3, 0), b(3, 0), z(3, 0),
                b(0, 1), z(0, 1), b(0, 1), z(0, 1), b(1, 1), z(1, 1), b(1, 1), z(1, 1),
                b(2, 1), z(2, 1), b(2, 1), z(2, 1), b(3, 1), z(3, 1), b(3, 1), z(3, 1),
            )
        }

        /// `[d, dmin, d, dmin]` of a Q2_K block as f32.
        #[inline]
        #[target_feature(enable = $features)]
        fn d_dmin(b: &BlockQ2_K) -> __m128 {
            let bits = u32::from(u16::from_le_bytes(b.d.0))
                | u32::from(u16::from_le_bytes(b.dmin.0)) << 16;
            _mm_cvtph_ps(_mm_set1_epi32(bits as i32))
        }

        /// One super-block of activations as Q2_K's and Q3_K's rows meet it, prepared once for
        /// every row of a GEMM: the eight blocks' codes, their sub-block sums (the `1·a` pair
        /// sums folded by [`quad_words`]: Q2_K's min term and Q3_K's offset, before the mins or
        /// scales multiply them) and their scales: in order, and each half in both 128-bit lanes.
        #[derive(Clone, Copy)]
        pub(crate) struct LowActs {
            x: [__m256i; 8],
            /// [`quad_words`] of blocks 0..4 and 4..8.
            t: [__m256i; 2],
            d: __m256,
            /// `[d_0..4 | d_0..4]` and `[d_4..8 | d_4..8]`.
            d_dup: [__m256; 2],
        }

        /// Prepares the eight activation blocks of one super-block for [`q2_k_block`] and
        /// [`q3_k_block`].
        #[inline]
        #[target_feature(enable = $features)]
        fn prepare(a: &[BlockQ8Act]) -> LowActs {
            assert!(a.len() >= 8);
            let ones = _mm256_set1_epi8(1);
            let x: [__m256i; 8] = core::array::from_fn(|k| load_i8x32(&a[k].qs));
            let t = x.map(|x| _mm256_maddubs_epi16(ones, x));
            // Eight loads and inserts: a `vgatherdps` measured slower here (the row dot prepares
            // every super-block for one row only).
            let d4 = |k: usize| _mm_setr_ps(a[k].d(), a[k + 1].d(), a[k + 2].d(), a[k + 3].d());
            let (d03, d47) = (d4(0), d4(4));
            LowActs {
                x,
                t: [
                    quad_words([t[0], t[1], t[2], t[3]]),
                    quad_words([t[4], t[5], t[6], t[7]]),
                ],
                d: _mm256_set_m128(d47, d03),
                d_dup: [_mm256_set_m128(d03, d03), _mm256_set_m128(d47, d47)],
            }
        }

        /// One Q2_K super-block against its prepared activations, as far as `sum8_tree`'s first
        /// step of both its sums: `[t_i of (d_k·I_k) | t_i of (d_k·M_k)]`, the integers as
        /// [`q2_k_products`] forms them.
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_products(b: &BlockQ2_K, p: &LowActs) -> __m256 {
            let nib = _mm256_set1_epi8(0x0F);
            // Pairs 1 and 3 of each byte stay two bits up (`4·q`, at most 12: a `vpmaddubsw`
            // pair at most 2·12·127, a sub-block 16·12·127), one shift per half instead of three;
            // their blocks' scaled sums come back down by an exact arithmetic shift.
            // SAFETY: `qs` is 64 readable bytes; the loads are unaligned.
            let q = unsafe {
                [
                    _mm256_loadu_si256(b.qs.as_ptr().cast()),
                    _mm256_loadu_si256(b.qs.as_ptr().add(32).cast()),
                ]
            };
            let q = [q[0], _mm256_srli_epi16::<4>(q[0]), q[1], _mm256_srli_epi16::<4>(q[1])];
            let (low, high) = (_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
            let i: [__m256i; 8] = core::array::from_fn(|k| {
                let codes = _mm256_and_si256(q[k / 2], if k % 2 == 0 { low } else { high });
                _mm256_maddubs_epi16(codes, p.x[k])
            });
            // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
            let s = _mm256_broadcastsi128_si256(unsafe {
                _mm_loadu_si128(b.scales.as_ptr().cast())
            });
            let (sc, m) = (
                _mm256_and_si256(s, nib),
                _mm256_and_si256(_mm256_srli_epi16::<4>(s), nib),
            );
            let im = |h: usize| {
                let words = dup_words::<false>(h);
                let ii = _mm256_madd_epi16(
                    quad_words([i[4 * h], i[4 * h + 1], i[4 * h + 2], i[4 * h + 3]]),
                    _mm256_shuffle_epi8(sc, words),
                );
                let ii = _mm256_srav_epi32(ii, _mm256_setr_epi32(0, 2, 0, 2, 0, 2, 0, 2));
                add_halves(ii, _mm256_madd_epi16(p.t[h], _mm256_shuffle_epi8(m, words)))
            };
            _mm256_add_ps(
                _mm256_mul_ps(p.d_dup[0], _mm256_cvtepi32_ps(im(0))),
                _mm256_mul_ps(p.d_dup[1], _mm256_cvtepi32_ps(im(1))),
            )
        }

        /// One Q2_K super-block against its prepared activations: `d·P − dmin·M`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_block(b: &BlockQ2_K, p: &LowActs) -> f32 {
            q2_k_term(q2_k_products(b, p), d_dmin(b))
        }

        /// `sum8_tree`'s first step (`t_i = p_i + p_{i+4}`) of `a` and `b`: `[a's t | b's t]`.
        #[inline]
        #[target_feature(enable = $features)]
        fn first_step(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        }

        /// Four rows' Q2_K super-blocks from their [`q2_k_products`] `t` against the same
        /// prepared activations, the eight eight-lane sums (`hsum`'s, which is `sum8_tree`'s
        /// order) side by side so that each shuffle and add serves several of them: each result
        /// as [`q2_k_block`] gives it.
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_trees(b: [&BlockQ2_K; 4], t: [__m256; 4]) -> [f32; 4] {
            // (t_0 + t_2), (t_1 + t_3): per 128-bit lane, two of the first vector's, two of
            // the second's.
            let second = |a: __m256, b: __m256| {
                _mm256_add_ps(
                    _mm256_shuffle_ps::<0b01_00_01_00>(a, b),
                    _mm256_shuffle_ps::<0b11_10_11_10>(a, b),
                )
            };
            let (u01, u23) = (second(t[0], t[1]), second(t[2], t[3]));
            // (t_0 + t_2) + (t_1 + t_3) in lanes 0 and 2 of each 128-bit lane: rows 0 and 1
            // (P in the low half, M in the high half), then rows 2 and 3.
            let third = |u: __m256| _mm256_add_ps(u, _mm256_permute_ps::<0b10_11_00_01>(u));
            let mut s = [0.0f32; 16];
            // SAFETY: `s` holds 16 floats; the stores are unaligned.
            unsafe {
                _mm256_storeu_ps(s.as_mut_ptr(), third(u01));
                _mm256_storeu_ps(s.as_mut_ptr().add(8), third(u23));
            }
            core::array::from_fn(|r| {
                let (d, dmin) = (
                    _mm256_cvtss_f32(f16x8(b[r].d)),
                    _mm256_cvtss_f32(f16x8(b[r].dmin)),
                );
                let (pl, ml) = [(0, 4), (2, 6), (8, 12), (10, 14)][r];
                d * s[pl] - dmin * s[ml]
            })
        }

        /// Q2_K row · int8 activations (`acts` holds eight blocks per super-block).
        ///
        /// Software-pipelined: the products of super-block `i + 1` ([`q2_k_products`] of its
        /// [`prepare`]d activations) come before the float part of super-block `i`
        /// ([`q2_k_term`]), whose long dependency
        /// chain then finds its inputs ready instead of holding the scheduler while the next
        /// block's loads and trees wait behind it.
        #[target_feature(enable = $features)]
        pub(crate) fn dot_q2_k_q8(blocks: &[BlockQ2_K], acts: &[BlockQ8Act]) -> f32 {
            let mut pairs = blocks.iter().zip(acts.chunks_exact(8));
            let Some((b, a)) = pairs.next() else {
                return 0.0;
            };
            let products =
                |b: &BlockQ2_K, a: &[BlockQ8Act]| (q2_k_products(b, &prepare(a)), d_dmin(b));
            let mut cur = products(b, a);
            let mut sum = 0.0f32;
            for (b, a) in pairs {
                let next = products(b, a);
                sum += q2_k_term(cur.0, cur.1);
                cur = next;
            }
            sum + q2_k_term(cur.0, cur.1)
        }

        /// The float part of one Q2_K super-block from its [`q2_k_products`] `t` and its
        /// `[d, dmin, ..]`, the reference's: the rest of both `sum8_tree`s, then `d·P − dmin·M`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q2_k_term(t: __m256, dd: __m128) -> f32 {
            // (t_0 + t_2) + (t_1 + t_3), in each 128-bit lane.
            let u = _mm256_add_ps(t, _mm256_permute_ps::<0b01_00_11_10>(t));
            let w = _mm256_add_ps(u, _mm256_permute_ps::<0b10_11_00_01>(u));
            // [P, M] times [d, dmin].
            let pm = _mm_unpacklo_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps::<1>(w));
            let r = _mm_mul_ps(pm, dd);
            _mm_cvtss_f32(r) - _mm_cvtss_f32(_mm_movehdup_ps(r))
        }

        /// One Q3_K super-block's per-activation-block products `d_k·I_k` against its prepared
        /// activations, before their sum: the codes as `u = q + 4` in 0..8 meet the
        /// activations unsigned as they are (a `vpmaddubsw` pair at most 2·7·127), and after
        /// the folds ([`quad_words`]: two words per sub-block, each at most 8·7·127) the
        /// prepared `Σa` words, times 4, come off word by word (at most 8·4·127 each), which
        /// leaves the reference's exact `Σ q·a` as the sum of each pair; one `vpmaddwd` with
        /// each signed scale repeated over its pair gives `sc_s·Σ q·a`, as in [`q3_k_ints`].
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_isum(b: &BlockQ3_K, p: &LowActs) -> __m256i {
            let v: [__m256i; 8] = core::array::from_fn(|k| {
                _mm256_maddubs_epi16(q3_k_codes_u(b, k / 4, k % 4), p.x[k])
            });
            let sc = q3_k_scales_i8(b);
            let sc = _mm256_set_m128i(sc, sc);
            let scaled = |h: usize| {
                let sums = _mm256_sub_epi16(
                    quad_words([v[4 * h], v[4 * h + 1], v[4 * h + 2], v[4 * h + 3]]),
                    _mm256_slli_epi16::<2>(p.t[h]),
                );
                let words = dup_words::<true>(h);
                _mm256_madd_epi16(sums, _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(sc, words)))
            };
            add_halves(scaled(0), scaled(1))
        }

        /// [`q3_k_isum`] times the activation scales: `[d_k·I_k]`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_products(b: &BlockQ3_K, p: &LowActs) -> __m256 {
            _mm256_mul_ps(p.d, _mm256_cvtepi32_ps(q3_k_isum(b, p)))
        }

        /// One Q3_K super-block against its prepared activations: `d·P`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_block(b: &BlockQ3_K, p: &LowActs) -> f32 {
            _mm256_cvtss_f32(f16x8(b.d)) * hsum(q3_k_products(b, p))
        }

        /// Four rows' Q3_K super-blocks from their [`q3_k_products`] `v` against the same
        /// prepared activations, the four eight-lane sums (`hsum`'s order, which is
        /// `sum8_tree`'s) side by side: each result as [`q3_k_block`] gives it.
        #[inline]
        #[target_feature(enable = $features)]
        fn q3_k_trees(b: [&BlockQ3_K; 4], v: [__m256; 4]) -> [f32; 4] {
            // [row 0's t | row 1's t], [row 2's t | row 3's t].
            let (t01, t23) = (first_step(v[0], v[1]), first_step(v[2], v[3]));
            // (t_0 + t_2), (t_1 + t_3): per 128-bit lane, rows 0 and 2 (low), 1 and 3 (high).
            let u = _mm256_add_ps(
                _mm256_shuffle_ps::<0b01_00_01_00>(t01, t23),
                _mm256_shuffle_ps::<0b11_10_11_10>(t01, t23),
            );
            // (t_0 + t_2) + (t_1 + t_3): row r in lane [0, 4, 2, 6][r].
            let s = _mm256_add_ps(u, _mm256_permute_ps::<0b10_11_00_01>(u));
            let mut out = [0.0f32; 8];
            // SAFETY: `out` holds 8 floats; the store is unaligned.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
            core::array::from_fn(|r| _mm256_cvtss_f32(f16x8(b[r].d)) * out[[0, 4, 2, 6][r]])
        }

        low_gemm!(
            $features, gemm_q2_k_q8, q2_k_tile, BlockQ2_K, q2_k_block, q2_k_products, q2_k_trees
        );
        low_gemm!(
            $features, gemm_q3_k_q8, q3_k_tile, BlockQ3_K, q3_k_block, q3_k_products, q3_k_trees
        );
    };
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`.
pub(crate) mod avx2 {
    kquant_low_int8_dots!(
        "avx2,fma,f16c",
        super::super::kquants_int8::avx2,
        q3_k_row: q3_k_ints
    );
}

/// AVX-VNNI: `vpdpbusd` (VEX).
pub(crate) mod avxvnni {
    kquant_low_int8_dots!(
        "avx2,fma,f16c,avxvnni",
        super::super::kquants_int8::avxvnni,
        q3_k_row: q3_k_ints
    );
}

/// AVX512-VNNI with VL: the EVEX `vpdpbusd` on 256-bit registers.
pub(crate) mod avx512vnni {
    kquant_low_int8_dots!(
        "avx2,fma,f16c,avx512vnni,avx512vl",
        super::super::kquants_int8::avx512vnni,
        q3_k_row: q3_k_ints_prepared
    );
}
