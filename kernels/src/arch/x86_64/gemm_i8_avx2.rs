//! The batched int8 GEMM on AVX2: `scalar::gemm_i8` bit for bit, for CPUs without VNNI.
//!
//! Why hand-written: without it an AVX2 CPU's int8 prompts run the per-format `gemm_q8`,
//! which decodes every block inside its dot products once per token; for Q4_K, Q5_0, Q6_K and
//! the other formats the runtime does not repack at load that made the int8 prefill slower
//! than the f32 one. This is the shape of the AVX512-VNNI GEMM (`gemm_i8.rs`) in 256-bit
//! registers, with the sign trick in place of `vpdpbusd`:
//!
//! - Weights: per panel of up to 16 rows and [`KC`] columns, the format's `unpack_i8` writes
//!   signed codes, scales and biases once; an 8 × 8 dword transpose interleaves them so that
//!   one 32-byte vector holds four consecutive codes of each of 8 rows (dword `lane` = row
//!   `lane`), reused by every token of the call.
//! - Products of codes in −32..=31 ([`small_codes`]: the 4-, 5- and 6-bit formats but IQ4):
//!   the activations offset by 128 (`a + 128` in 1..=255, `vpmaddubsw`'s unsigned operand)
//!   meet the signed codes, a pair at most 2·255·32 = 16320, so two `vpmaddubsw` add in 16
//!   bits (≤ 32640 < 2¹⁵: no saturation) before `vpmaddwd` with ones widens them; each group's
//!   sum starts at the row's `−128·Σq` (computed once per panel) and ends at the exact `Σ q·a`.
//!   Two dword steps per widening: about 2.5 operations per row vector, token and four codes.
//! - Other codes (Q8_0, IQ4_NL, IQ4_XS, up to ±128): the sign trick, `vpmaddubsw(|q|,
//!   sign(a, q))` (`|q| ≤ 128`, `|a| ≤ 127`: a pair is at most 2·128·127 < 2¹⁵), widened by
//!   `vpmaddwd` every step: four operations.
//! - Per group: the reference's float step for 8 rows at once (convert, `scale·d_a`, fused
//!   multiply-add, the bias term likewise; Q2_K's biases on 16-weight groups meet each
//!   half-block's `d_a·Σa`, summed by `vpsadbw`), in the reference's order; a register tile of
//!   `RV` × 8 rows by `TT` ≤ [`T`] tokens.
//!
//! Every output runs the same operations whatever the panel, tile or column chunk it falls in
//! (chunks resume from the stored partial sum), so results do not depend on `m`, `n` or how
//! the runtime splits rows between threads.

// Tiles index accumulators by row vector and token.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;

use crate::blocks::as_blocks;
use crate::format::Format;
use crate::scalar::{act_q8_bytes, BlockQ8Act, MAX_BLOCK_LEN};

/// Rows per vector (f32 or i32 lanes of a 256-bit register).
const LANES: usize = 8;
/// Row vectors per panel: panels are up to 16 rows.
const RV_MAX: usize = 2;
/// Rows per panel.
const PANEL_ROWS: usize = LANES * RV_MAX;
/// Weights per row of a panel (a column chunk): a multiple of every block length (256), so a
/// chunk is whole blocks of every format; 16 rows of it are 8 KiB of codes, L1-resident while
/// every token passes over them.
const KC: usize = 512;
/// Tokens per tile.
const T: usize = 4;
/// Most groups in a chunk (16-weight groups).
const MAX_GROUPS: usize = KC / 16;

/// One panel: codes interleaved by rows, per-group scales and biases, rows in lanes.
#[repr(C, align(32))]
struct Panel {
    /// Dword `(j·RV_MAX + v)·8 + lane` holds codes `4j..4j + 4` of row `8v + lane`.
    codes: [i8; PANEL_ROWS * KC],
    /// `sums[g·PANEL_ROWS + i] = −128·Σ q` over group `g` of row `i` ([`small_codes`] formats):
    /// where its integer sums start, cancelling the activations' offset.
    sums: [i32; MAX_GROUPS * PANEL_ROWS],
    /// `scales[g·PANEL_ROWS + i]`: group `g`'s scale of row `i`.
    scales: [f32; MAX_GROUPS * PANEL_ROWS],
    /// Biases, as `scales` (formats with a bias).
    bias: [f32; MAX_GROUPS * PANEL_ROWS],
}

/// Whether every code `unpack_i8` writes for `format` is in −32..=31 (Q6_K's `q − 32`, Q5_0's
/// `q − 16`, Q4_0's `q − 8`, Q3_K's −4..=3, the unsigned 2-, 4- and 5-bit codes of Q2_K, Q4_1,
/// Q5_1, Q4_K, Q5_K), so the
/// offset-activation products of the module docs cannot saturate.
fn small_codes(format: Format) -> bool {
    matches!(
        format,
        Format::Q4_0
            | Format::Q4_1
            | Format::Q5_0
            | Format::Q5_1
            | Format::Q4_K
            | Format::Q5_K
            | Format::Q6_K
            | Format::Q3_K
            | Format::Q2_K
    )
}

/// A panel's rows as `unpack_i8` writes them (row-major, [`KC`] bytes apart), before
/// [`transpose`] interleaves them, with one row's scales and biases.
#[repr(C, align(32))]
struct Rows {
    codes: [i8; PANEL_ROWS * KC],
    scales: [f32; MAX_GROUPS],
    bias: [f32; MAX_GROUPS],
}

/// `y[t·ldy + r] = row r · token t` with the arithmetic of `scalar::gemm_i8` (see the module
/// docs), after `detected` confirmed AVX2, FMA and F16C (the wrapper's `SAFETY` argument).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gemm_i8(
    format: Format,
    unpack: crate::dispatch::UnpackI8Fn,
    w: &[u8],
    m: usize,
    xq: &[u8],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let l = format.int8().expect("the int8 GEMM takes the format");
    let (bl, bb, g) = (format.block_len(), format.block_bytes(), l.group);
    assert!(bl <= MAX_BLOCK_LEN && KC.is_multiple_of(bl) && (g == 16 || g == 32));
    let (rb, qb) = crate::scalar::gemm_shape(w, m, xq.len(), n, y, ldy);
    assert_eq!(rb % bb, 0, "rows are whole blocks");
    let cols = rb / bb * bl;
    assert_eq!(
        qb,
        act_q8_bytes(cols),
        "activation rows match the weight rows"
    );
    let kb = cols / 32;
    let acts: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
    let small = small_codes(format);
    let mut p = Panel {
        codes: [0; PANEL_ROWS * KC],
        sums: [0; MAX_GROUPS * PANEL_ROWS],
        scales: [0.0; MAX_GROUPS * PANEL_ROWS],
        bias: [0.0; MAX_GROUPS * PANEL_ROWS],
    };
    let mut rows_buf = Rows {
        codes: [0; PANEL_ROWS * KC],
        scales: [0.0; MAX_GROUPS],
        bias: [0.0; MAX_GROUPS],
    };
    for k0 in (0..cols).step_by(KC) {
        let kc = (cols - k0).min(KC);
        let groups = kc / g;
        let (c0, c1) = (k0 / bl * bb, (k0 + kc) / bl * bb);
        for r0 in (0..m).step_by(PANEL_ROWS) {
            let rows = (m - r0).min(PANEL_ROWS);
            let rbuf = &mut rows_buf;
            for i in 0..rows {
                let wr = &w[(r0 + i) * rb + c0..(r0 + i) * rb + c1];
                let codes = &mut rbuf.codes[i * KC..i * KC + kc];
                unpack(
                    wr,
                    codes,
                    &mut rbuf.scales[..groups],
                    &mut rbuf.bias[..groups],
                );
                for gi in 0..groups {
                    p.scales[gi * PANEL_ROWS + i] = rbuf.scales[gi];
                    if l.bias {
                        p.bias[gi * PANEL_ROWS + i] = rbuf.bias[gi];
                    }
                }
            }
            for v in 0..rows.div_ceil(LANES) {
                transpose(&mut p, rbuf, v, kc, g, small);
            }
            let mut t = 0;
            while t < n {
                let tile = Tile {
                    p: &p,
                    groups,
                    acts: &acts[t * kb + k0 / 32..],
                    kb,
                    y: &mut y[t * ldy + r0..],
                    ldy,
                    rows,
                    first: k0 == 0,
                };
                tile.run(g, l.bias, small, (n - t).min(T));
                t += T;
            }
        }
    }
}

/// Interleaves rows `8v..8v + 8` of `rows` (columns `..kc`, a multiple of 32) into the
/// panel's layout, 32 columns at a time by an 8 × 8 transpose of dwords, and with `small`
/// writes their `−128·Σq` per group of `g` (rows past the panel's valid ones hold stale codes
/// whose lanes no output reads).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose(p: &mut Panel, rows: &Rows, v: usize, kc: usize, g: usize, small: bool) {
    assert!(v < RV_MAX && kc <= KC && kc.is_multiple_of(32) && (g == 16 || g == 32));
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    let src = rows.codes.as_ptr();
    let dst = p.codes.as_mut_ptr();
    for c in (0..kc).step_by(32) {
        // SAFETY: row 8v + i < 16 and c + 32 ≤ kc ≤ KC: inside `codes`; unaligned loads.
        let r: [__m256i; 8] = core::array::from_fn(|i| unsafe {
            _mm256_loadu_si256(src.add((v * LANES + i) * KC + c).cast())
        });
        // t[2i], t[2i + 1]: dwords (0, 1, 4, 5) and (2, 3, 6, 7) of rows 2i and 2i + 1.
        let t: [__m256i; 8] = core::array::from_fn(|k| {
            let (x, y) = (r[k & !1], r[k | 1]);
            if k % 2 == 0 {
                _mm256_unpacklo_epi32(x, y)
            } else {
                _mm256_unpackhi_epi32(x, y)
            }
        });
        // u[4h + d] holds dword d (low lane) and d + 4 (high lane) of rows 4h..4h + 4.
        let u: [__m256i; 8] = core::array::from_fn(|k| {
            let (h, d) = (k / 4, k % 4);
            let (x, y) = (t[4 * h + d / 2], t[4 * h + 2 + d / 2]);
            if d % 2 == 0 {
                _mm256_unpacklo_epi64(x, y)
            } else {
                _mm256_unpackhi_epi64(x, y)
            }
        });
        // o[j]: dword j of the 32 columns (codes c + 4j..c + 4j + 4) of each of the 8 rows.
        let o: [__m256i; 8] = core::array::from_fn(|j| {
            if j < 4 {
                _mm256_permute2x128_si256::<0x20>(u[j], u[4 + j])
            } else {
                _mm256_permute2x128_si256::<0x31>(u[j - 4], u[j])
            }
        });
        for (j, o) in o.iter().enumerate() {
            let at = ((c / 4 + j) * RV_MAX + v) * LANES * 4;
            // SAFETY: c/4 + j < kc/4 ≤ KC/4, so the 32 bytes at `at` are inside `codes`
            // (32-byte aligned: the panel is, and `at` is a multiple of 32).
            unsafe { _mm256_store_si256(dst.add(at).cast(), *o) };
        }
        if !small {
            continue;
        }
        // Σq per row and group: four codes per `vpmaddubsw` with ones and `vpmaddwd`.
        for (gi, group) in o.chunks_exact(g / 4).enumerate() {
            let sum = group.iter().fold(_mm256_setzero_si256(), |s, &o| {
                _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, o), ones16))
            });
            let neg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sum));
            let at = (c / g + gi) * PANEL_ROWS + v * LANES;
            // SAFETY: (c + g·gi)/g < kc/g ≤ MAX_GROUPS: the 8 lanes at `at` are inside `sums`,
            // 32-byte aligned.
            unsafe { _mm256_store_si256(p.sums.as_mut_ptr().add(at).cast(), neg) };
        }
    }
}

/// One tile's operands: a panel, the first activation block of its chunk for its first token,
/// and where its outputs go.
struct Tile<'a> {
    p: &'a Panel,
    /// Groups in the chunk.
    groups: usize,
    /// Token 0's activation blocks from the chunk's first; token `t` is `kb` blocks on.
    acts: &'a [BlockQ8Act],
    kb: usize,
    /// Token 0's outputs from the panel's first row; token `t` is `ldy` on.
    y: &'a mut [f32],
    ldy: usize,
    /// Valid rows of the panel.
    rows: usize,
    /// Whether this is the first chunk (outputs start at zero rather than from `y`).
    first: bool,
}

impl Tile<'_> {
    /// Dispatches to the kernel for the format's group, bias and code range, the panel's row
    /// vectors and `tokens` (1..=T).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn run(self, g: usize, bias: bool, small: bool, tokens: usize) {
        macro_rules! by_tokens {
            ($rv:literal, $g:literal, $b:literal, $s:literal) => {
                match tokens {
                    4 => self.kernel::<$rv, 4, $g, $b, $s>(),
                    3 => self.kernel::<$rv, 3, $g, $b, $s>(),
                    2 => self.kernel::<$rv, 2, $g, $b, $s>(),
                    _ => self.kernel::<$rv, 1, $g, $b, $s>(),
                }
            };
        }
        macro_rules! by_rows {
            ($g:literal, $b:literal, $s:literal) => {
                if self.rows > LANES {
                    by_tokens!(2, $g, $b, $s)
                } else {
                    by_tokens!(1, $g, $b, $s)
                }
            };
        }
        match (g, bias, small) {
            (16, false, true) => by_rows!(16, false, true),
            (16, false, false) => by_rows!(16, false, false),
            (16, true, true) => by_rows!(16, true, true),
            (16, true, false) => by_rows!(16, true, false),
            (_, false, true) => by_rows!(32, false, true),
            (_, false, false) => by_rows!(32, false, false),
            (_, true, true) => by_rows!(32, true, true),
            (_, true, false) => by_rows!(32, true, false),
        }
    }

    /// `RV` row vectors × `TT` tokens over the chunk's groups of `G` weights: exact integer
    /// sums (offset activations from the panel's `−128·Σq` if `SMALL`, else the sign trick),
    /// then the reference's float step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn kernel<
        const RV: usize,
        const TT: usize,
        const G: usize,
        const BIAS: bool,
        const SMALL: bool,
    >(
        self,
    ) {
        let Tile {
            p,
            groups,
            acts,
            kb,
            y,
            ldy,
            rows,
            first,
        } = self;
        // Bounds for the unchecked reads below: every token's blocks of the chunk, and its
        // outputs.
        let chunk_blocks = (groups * G).div_ceil(32);
        assert!(acts.len() >= (TT - 1) * kb + chunk_blocks);
        assert!(y.len() >= (TT - 1) * ldy + rows && rows <= RV * LANES && groups <= MAX_GROUPS);
        // Lane masks of the valid rows (all bits set in a lane that is loaded and stored).
        let mask: [__m256i; RV] = core::array::from_fn(|v| {
            let valid = rows.saturating_sub(v * LANES).min(LANES) as i32;
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane)
        });
        let yp = y.as_mut_ptr();
        let mut facc = [[_mm256_setzero_ps(); RV]; TT];
        if !first {
            for t in 0..TT {
                for v in 0..RV {
                    // SAFETY: masked lanes < rows of token t's outputs (asserted above); masked
                    // loads do not touch the other lanes' memory.
                    facc[t][v] =
                        unsafe { _mm256_maskload_ps(yp.add(t * ldy + v * LANES), mask[v]) };
                }
            }
        }
        let codes = p.codes.as_ptr();
        let ap = acts.as_ptr();
        let ones = _mm256_set1_epi16(1);
        // Token t's activation dword `q` of the group at (block, byte), raw or offset by 128.
        let act4 = |t: usize, blk: usize, byte: usize, q: usize| {
            // SAFETY: token t's block blk of the chunk is inside `acts` (asserted above), and
            // byte + 4q + 4 ≤ 32 of its codes; unaligned read.
            unsafe {
                let src = (*ap.add(t * kb + blk)).qs.as_ptr().add(byte + 4 * q);
                core::ptr::read_unaligned(src.cast::<i32>())
            }
        };
        for gi in 0..groups {
            let (blk, byte) = ((gi * G) / 32, (gi * G) % 32);
            let iacc = if SMALL {
                // SAFETY: gi < MAX_GROUPS: the 8 lanes at gi·16 + 8v are inside `sums`,
                // 32-byte aligned.
                let sums: [__m256i; RV] = core::array::from_fn(|v| unsafe {
                    _mm256_load_si256(p.sums.as_ptr().add(gi * PANEL_ROWS + v * LANES).cast())
                });
                let mut iacc = [sums; TT];
                for q in (0..G / 4).step_by(2) {
                    let j = gi * G / 4 + q;
                    let w: [[__m256i; 2]; RV] = core::array::from_fn(|v| {
                        // SAFETY: j + 1 < groups·G/4 ≤ KC/4 (G/4 is even), so the 32 bytes at
                        // ((j + h)·RV_MAX + v)·32 are inside the panel's codes; 32-byte aligned.
                        core::array::from_fn(|h| unsafe {
                            _mm256_load_si256(codes.add(((j + h) * RV_MAX + v) * LANES * 4).cast())
                        })
                    });
                    for t in 0..TT {
                        let flip = |a: i32| _mm256_set1_epi32(a ^ 0x8080_8080u32 as i32);
                        let a0 = flip(act4(t, blk, byte, q));
                        let a1 = flip(act4(t, blk, byte, q + 1));
                        for v in 0..RV {
                            let pairs = _mm256_add_epi16(
                                _mm256_maddubs_epi16(a0, w[v][0]),
                                _mm256_maddubs_epi16(a1, w[v][1]),
                            );
                            iacc[t][v] =
                                _mm256_add_epi32(iacc[t][v], _mm256_madd_epi16(pairs, ones));
                        }
                    }
                }
                iacc
            } else {
                let mut iacc = [[_mm256_setzero_si256(); RV]; TT];
                for q in 0..G / 4 {
                    let j = gi * G / 4 + q;
                    // SAFETY: j < groups·G/4 ≤ KC/4, so (j·RV_MAX + v + 1)·32 ≤ the panel's codes;
                    // 32-byte aligned.
                    let wv: [__m256i; RV] = core::array::from_fn(|v| unsafe {
                        _mm256_load_si256(codes.add((j * RV_MAX + v) * LANES * 4).cast())
                    });
                    let aw: [__m256i; RV] =
                        core::array::from_fn(|v| _mm256_sign_epi8(wv[v], wv[v]));
                    for t in 0..TT {
                        let a = _mm256_set1_epi32(act4(t, blk, byte, q));
                        for v in 0..RV {
                            let pairs = _mm256_maddubs_epi16(aw[v], _mm256_sign_epi8(a, wv[v]));
                            iacc[t][v] =
                                _mm256_add_epi32(iacc[t][v], _mm256_madd_epi16(pairs, ones));
                        }
                    }
                }
                iacc
            };
            // SAFETY: gi < MAX_GROUPS: the 8 values at gi·16 + 8v are inside `scales` and
            // `bias`; the panel is 32-byte aligned and so are these offsets.
            let dw: [__m256; RV] = core::array::from_fn(|v| unsafe {
                _mm256_load_ps(p.scales.as_ptr().add(gi * PANEL_ROWS + v * LANES))
            });
            let bw: [__m256; RV] = core::array::from_fn(|v| {
                if BIAS {
                    // SAFETY: as for `dw`.
                    unsafe { _mm256_load_ps(p.bias.as_ptr().add(gi * PANEL_ROWS + v * LANES)) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            for t in 0..TT {
                // SAFETY: as for the codes above.
                let a = unsafe { &*ap.add(t * kb + blk) };
                let da = _mm256_set1_ps(a.d());
                let sa = _mm256_set1_ps(if G == 16 && BIAS {
                    half_sum(a, byte)
                } else {
                    a.s()
                });
                for v in 0..RV {
                    let scale = _mm256_mul_ps(dw[v], da);
                    let i = _mm256_cvtepi32_ps(iacc[t][v]);
                    facc[t][v] = _mm256_fmadd_ps(i, scale, facc[t][v]);
                    if BIAS {
                        facc[t][v] = _mm256_fmadd_ps(bw[v], sa, facc[t][v]);
                    }
                }
            }
        }
        for t in 0..TT {
            for v in 0..RV {
                // SAFETY: as for the loads above.
                unsafe { _mm256_maskstore_ps(yp.add(t * ldy + v * LANES), mask[v], facc[t][v]) };
            }
        }
    }
}

/// `d·Σ a` over the 16 codes of `a` from `at` (`scalar::group_act_sum` of a 16-weight group):
/// `vpsadbw` on the codes offset by 128 sums each eight exactly; the two sums less 16·128 are
/// the exact `Σ a`, converted and multiplied by `d` as the reference does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_sum(a: &BlockQ8Act, at: usize) -> f32 {
    let codes = &a.qs[at..at + 16];
    // SAFETY: `codes` is 16 readable bytes; the load is unaligned.
    let v = unsafe { _mm_loadu_si128(codes.as_ptr().cast()) };
    let u = _mm_xor_si128(v, _mm_set1_epi8(0x80u8 as i8));
    let eights = _mm_sad_epu8(u, _mm_setzero_si128());
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(eights, _mm_unpackhi_epi64(eights, eights)));
    a.d() * (sum - 16 * 128) as f32
}
