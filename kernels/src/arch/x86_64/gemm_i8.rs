//! The batched int8 GEMM on AVX512-VNNI: `scalar::gemm_i8` bit for bit, at `vpdpbusd` speed.
//!
//! Why hand-written, and why this shape: prompt processing spends most of its time in weight ×
//! activation products with many tokens. The per-format int8 tiles (`gemm.rs`) reduce each
//! (row, token, block) to eight lanes and pay a conversion and two float operations per 32
//! products; here the lanes are *rows* instead, so one float step serves 16 rows × 32 products:
//!
//! - Weights: per panel of up to 32 rows and [`KC`] columns, the format's `unpack_i8` writes
//!   codes, scales and biases once; codes are interleaved so that one 64-byte vector holds four
//!   consecutive codes of each of 16 rows ("VNNI layout": dword `lane` = row `lane`).
//! - Activations: four int8 codes of one token, broadcast to every dword, offset by 128 to the
//!   unsigned operand `vpdpbusd` wants (`a + 128` in 1..=255: an exclusive or of the sign
//!   bits, done once per tile into a small buffer).
//! - `vpdpbusd` (unsigned activations × signed weight codes, four products per dword, no
//!   saturation) accumulates each group's integer sum for 16 rows × one token in one
//!   register, started at the row's `−128·Σq` over the group (computed once per panel), so it
//!   ends at the exact `Σ q·a` of the reference.
//! - Per group: the reference's float step for 16 rows at once (convert, `scale·d_a`, fused
//!   multiply-add; the bias term likewise: Q2_K's biases on 16-weight groups meet each
//!   half-block's `d_a·Σa`, from `vpsadbw` sums of the offset codes, once per tile and token),
//!   in the reference's order; a register tile of `RV` × 16 rows by [`T`] tokens (up to 12
//!   integer and 12 float accumulators) keeps weight and activation loads below one per
//!   `vpdpbusd`.
//!
//! The panel, its row-major staging and a tile's offset activations live on the stack (about
//! 50 KiB: the crate has no allocator), reused for every panel of the call.
//!
//! Every output runs the same sequence of operations whatever the panel, tile or column chunk
//! it falls in (chunks resume from the stored partial sum), so results do not depend on `m`,
//! `n` or how the runtime splits rows between threads.

// Tiles index accumulators by row vector and token.
#![expect(
    clippy::needless_range_loop,
    reason = "indexed loops mirror the scalar reference and the intrinsics' offsets"
)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use crate::blocks::as_blocks;
use crate::format::Format;
use crate::scalar::{act_q8_bytes, BlockQ8Act, MAX_BLOCK_LEN};

/// Rows per vector (f32 or i32 lanes of a 512-bit register).
const LANES: usize = 16;
/// Row vectors per panel: panels are up to 32 rows.
const RV_MAX: usize = 2;
/// Rows per panel.
const PANEL_ROWS: usize = LANES * RV_MAX;
/// Weights per row of a panel (a column chunk): a multiple of every block length (256), so a
/// chunk is whole blocks of every format; 32 rows of it are 16 KiB of codes, L1-resident while
/// every token passes over them.
const KC: usize = 512;
/// Tokens per tile.
const T: usize = 6;
/// Most groups in a chunk (16-weight groups).
const MAX_GROUPS: usize = KC / 16;

/// One panel: codes in VNNI layout, per-group scales and biases, rows in lanes.
#[repr(C, align(64))]
struct Panel {
    /// Dword `(j·RV_MAX + v)·16 + lane` holds codes `4j..4j + 4` of row `16v + lane`.
    codes: [i8; PANEL_ROWS * KC],
    /// `sums[g·PANEL_ROWS + i] = −128·Σ q` over group `g` of row `i`: where its integer sums
    /// start, cancelling the activations' offset.
    sums: [i32; MAX_GROUPS * PANEL_ROWS],
    /// `scales[g·PANEL_ROWS + i]`: group `g`'s scale of row `i`.
    scales: [f32; MAX_GROUPS * PANEL_ROWS],
    /// Biases, as `scales` (formats with a bias).
    bias: [f32; MAX_GROUPS * PANEL_ROWS],
}

/// Bytes between rows of [`Rows`]: a chunk plus one 64-byte vector of slack, so the transpose
/// may read whole vectors past a chunk that ends half-way through one.
const ROW_STRIDE: usize = KC + 64;

/// A panel's rows as `unpack_i8` writes them (row-major), before [`transpose`] interleaves
/// them, with one row's scales and biases.
#[repr(C, align(64))]
struct Rows {
    codes: [i8; PANEL_ROWS * ROW_STRIDE],
    scales: [f32; MAX_GROUPS],
    bias: [f32; MAX_GROUPS],
}

/// The products' shape, checked once.
struct Shape {
    /// Weights per row.
    cols: usize,
    /// Bytes per row.
    rb: usize,
    /// Activation blocks per token.
    kb: usize,
}

/// Checks a [`GemmI8Fn`](crate::dispatch::GemmI8Fn) call as `scalar::gemm_i8` does.
fn shape(format: Format, w: &[u8], m: usize, xq: &[u8], n: usize, y: &[f32], ldy: usize) -> Shape {
    let (bl, bb) = (format.block_len(), format.block_bytes());
    assert!(bl <= MAX_BLOCK_LEN && KC.is_multiple_of(bl));
    let (rb, qb) = crate::scalar::gemm_shape(w, m, xq.len(), n, y, ldy);
    assert_eq!(rb % bb, 0, "rows are whole blocks");
    let cols = rb / bb * bl;
    assert_eq!(
        qb,
        act_q8_bytes(cols),
        "activation rows match the weight rows"
    );
    Shape {
        cols,
        rb,
        kb: cols / 32,
    }
}

/// `y[t·ldy + r] = row r · token t` (see the module docs), after `detected` confirmed AVX2,
/// FMA, F16C, AVX-512F and AVX512-VNNI (the wrapper's `SAFETY` argument).
#[expect(
    clippy::too_many_arguments,
    reason = "a kernel's shape as its callers hold it; a struct would be unpacked again"
)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
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
    let s = shape(format, w, m, xq, n, y, ldy);
    let acts: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
    let (bl, bb) = (format.block_len(), format.block_bytes());
    let mut p = Panel {
        codes: [0; PANEL_ROWS * KC],
        sums: [0; MAX_GROUPS * PANEL_ROWS],
        scales: [0.0; MAX_GROUPS * PANEL_ROWS],
        bias: [0.0; MAX_GROUPS * PANEL_ROWS],
    };
    let mut rb = Rows {
        codes: [0; PANEL_ROWS * ROW_STRIDE],
        scales: [0.0; MAX_GROUPS],
        bias: [0.0; MAX_GROUPS],
    };
    let g = l.group;
    for k0 in (0..s.cols).step_by(KC) {
        let kc = (s.cols - k0).min(KC);
        let groups = kc / g;
        let (c0, c1) = (k0 / bl * bb, (k0 + kc) / bl * bb);
        for r0 in (0..m).step_by(PANEL_ROWS) {
            let rows = (m - r0).min(PANEL_ROWS);
            for i in 0..rows {
                let wr = &w[(r0 + i) * s.rb + c0..(r0 + i) * s.rb + c1];
                let codes = &mut rb.codes[i * ROW_STRIDE..i * ROW_STRIDE + kc];
                unpack(wr, codes, &mut rb.scales[..groups], &mut rb.bias[..groups]);
                for gi in 0..groups {
                    p.scales[gi * PANEL_ROWS + i] = rb.scales[gi];
                    if l.bias {
                        p.bias[gi * PANEL_ROWS + i] = rb.bias[gi];
                    }
                }
            }
            for v in 0..rows.div_ceil(LANES) {
                transpose(&mut p, &rb, v, kc, g);
            }
            let mut t = 0;
            while t < n {
                let tile = Tile {
                    p: &p,
                    groups,
                    acts: &acts[t * s.kb + k0 / 32..],
                    kb: s.kb,
                    y: &mut y[t * ldy + r0..],
                    ldy,
                    rows,
                    first: k0 == 0,
                };
                tile.run(g, l.bias, (n - t).min(T));
                t += T;
            }
        }
    }
}

/// Interleaves rows `16v..16v + 16` of `rows` (columns `..kc`) into the panel's VNNI layout,
/// 64 columns at a time by a 16 × 16 transpose of dwords, and writes their `−128·Σq` per group
/// of `g` (rows past the panel's valid ones hold stale codes whose lanes no output reads).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
fn transpose(p: &mut Panel, rows: &Rows, v: usize, kc: usize, g: usize) {
    assert!(v < RV_MAX && kc <= KC && kc.is_multiple_of(g) && (g == 16 || g == 32));
    let src = rows.codes.as_ptr();
    let dst = p.codes.as_mut_ptr();
    let ones = _mm512_set1_epi32(0x0101_0101);
    let mut c = 0;
    while c < kc {
        // SAFETY: row 16v + i < 32 and c + 64 ≤ kc + 32 + 32 ≤ ROW_STRIDE: inside `codes`.
        let r: [__m512i; 16] = core::array::from_fn(|i| unsafe {
            _mm512_loadu_si512(src.add((v * LANES + i) * ROW_STRIDE + c).cast())
        });
        let a: [__m512i; 16] = core::array::from_fn(|k| {
            let (x, y) = (r[k & !1], r[k | 1]);
            if k % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        // b[4i + c] holds, in 128-bit lane L, column 4L + c of rows 4i..4i + 4.
        let b: [__m512i; 16] = core::array::from_fn(|k| {
            let (i, c) = (k / 4, k % 4);
            let (x, y) = (a[4 * i + c / 2], a[4 * i + 2 + c / 2]);
            if c % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        let mut o = [_mm512_setzero_si512(); 16];
        for c4 in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x44>(b[c4], b[4 + c4]);
            let x1 = _mm512_shuffle_i32x4::<0xEE>(b[c4], b[4 + c4]);
            let x2 = _mm512_shuffle_i32x4::<0x44>(b[8 + c4], b[12 + c4]);
            let x3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + c4], b[12 + c4]);
            o[c4] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
            o[4 + c4] = _mm512_shuffle_i32x4::<0xDD>(x0, x2);
            o[8 + c4] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
            o[12 + c4] = _mm512_shuffle_i32x4::<0xDD>(x1, x3);
        }
        // o[j]: dword j of the 64 columns (codes c + 4j..c + 4j + 4) of each of the 16 rows.
        let dwords = ((kc - c) / 4).min(16);
        for (j, o) in o.iter().enumerate().take(dwords) {
            let at = ((c / 4 + j) * RV_MAX + v) * LANES * 4;
            // SAFETY: c/4 + j < kc/4 ≤ KC/4, so the 64 bytes at `at` are inside `codes`
            // (64-byte aligned: the panel is, and `at` is a multiple of 64).
            unsafe { _mm512_store_si512(dst.add(at).cast(), *o) };
        }
        // Σq per row and group, four codes per `vpdpbusd` with ones.
        for (gi, group) in o[..dwords].chunks_exact(g / 4).enumerate() {
            let sum = group.iter().fold(_mm512_setzero_si512(), |s, &o| {
                _mm512_dpbusd_epi32(s, ones, o)
            });
            let neg = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(sum));
            let at = (c / g + gi) * PANEL_ROWS + v * LANES;
            // SAFETY: (c + g·gi)/g < kc/g ≤ MAX_GROUPS: the 16 lanes at `at` are inside `sums`,
            // 64-byte aligned.
            unsafe { _mm512_store_si512(p.sums.as_mut_ptr().add(at).cast(), neg) };
        }
        c += 64;
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
    /// Dispatches to the kernel for the format's group and bias, the panel's row vectors and
    /// `tokens` (1..=T).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
    fn run(self, g: usize, bias: bool, tokens: usize) {
        macro_rules! by_tokens {
            ($rv:literal, $g:literal, $b:literal) => {
                match tokens {
                    6 => self.kernel::<$rv, 6, $g, $b>(),
                    5 => self.kernel::<$rv, 5, $g, $b>(),
                    4 => self.kernel::<$rv, 4, $g, $b>(),
                    3 => self.kernel::<$rv, 3, $g, $b>(),
                    2 => self.kernel::<$rv, 2, $g, $b>(),
                    _ => self.kernel::<$rv, 1, $g, $b>(),
                }
            };
        }
        macro_rules! by_rows {
            ($g:literal, $b:literal) => {
                if self.rows > LANES {
                    by_tokens!(2, $g, $b)
                } else {
                    by_tokens!(1, $g, $b)
                }
            };
        }
        match (g, bias) {
            (16, false) => by_rows!(16, false),
            (16, true) => by_rows!(16, true),
            (_, false) => by_rows!(32, false),
            (_, true) => by_rows!(32, true),
        }
    }

    /// `RV` row vectors × `TT` tokens over the chunk's groups of `G` weights: integer sums by
    /// `vpdpbusd` from the panel's `−128·Σq`, then the reference's float step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
    fn kernel<const RV: usize, const TT: usize, const G: usize, const BIAS: bool>(self) {
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
        let mask: [__mmask16; RV] = core::array::from_fn(|v| {
            let valid = rows.saturating_sub(v * LANES).min(LANES);
            ((1u32 << valid) - 1) as __mmask16
        });
        let yp = y.as_mut_ptr();
        let mut facc = [[_mm512_setzero_ps(); RV]; TT];
        if !first {
            for t in 0..TT {
                for v in 0..RV {
                    // SAFETY: masked lanes < rows of token t's outputs (asserted above); masked
                    // loads do not touch the other lanes' memory.
                    facc[t][v] =
                        unsafe { _mm512_maskz_loadu_ps(mask[v], yp.add(t * ldy + v * LANES)) };
                }
            }
        }
        let codes = p.codes.as_ptr();
        let ap = acts.as_ptr();
        // The tile's activation codes plus 128 (`vpdpbusd`'s unsigned operand), once per tile
        // rather than once per broadcast.
        // Uninitialized: only the chunk's bytes are written, and only they are read.
        let mut shifted = [MaybeUninit::<[u8; KC]>::uninit(); TT];
        // With biases on 16-weight groups (Q2_K): each half-block's `d_a·Σa`
        // (`scalar::group_act_sum`), from the offset codes' byte sums.
        let mut half_sums = [[0.0f32; MAX_GROUPS]; TT];
        let signs = _mm256_set1_epi8(0x80u8 as i8);
        for (t, st) in shifted.iter_mut().enumerate() {
            let dst = st.as_mut_ptr().cast::<u8>();
            for b in 0..chunk_blocks {
                // SAFETY: token t's block b is inside `acts` (asserted above); 32·b + 32 ≤
                // groups·G ≤ KC bytes of `st`; both accesses are unaligned.
                let a = unsafe { &*ap.add(t * kb + b) };
                let u = _mm256_xor_si256(
                    // SAFETY: `qs` is 32 readable bytes; unaligned load.
                    unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) },
                    signs,
                );
                // SAFETY: as above.
                unsafe { _mm256_storeu_si256(dst.add(32 * b).cast(), u) };
                if G == 16 && BIAS {
                    half_sums_of(u, a.d(), &mut half_sums[t][2 * b..2 * b + 2]);
                }
            }
        }
        for gi in 0..groups {
            // SAFETY: gi < MAX_GROUPS: the 16 values at gi·32 + 16v are inside `sums`, `scales`
            // and `bias`; the panel is 64-byte aligned and so are these offsets.
            let sums: [__m512i; RV] = core::array::from_fn(|v| unsafe {
                _mm512_load_si512(p.sums.as_ptr().add(gi * PANEL_ROWS + v * LANES).cast())
            });
            let mut iacc = [sums; TT];
            let (blk, byte) = ((gi * G) / 32, (gi * G) % 32);
            for q in 0..G / 4 {
                let j = gi * G / 4 + q;
                // SAFETY: j < groups·G/4 ≤ KC/4, so (j·RV_MAX + v + 1)·64 ≤ the panel's codes.
                let wv: [__m512i; RV] = core::array::from_fn(|v| unsafe {
                    _mm512_load_si512(codes.add((j * RV_MAX + v) * LANES * 4).cast())
                });
                for t in 0..TT {
                    // SAFETY: 32·blk + byte + 4q + 4 ≤ groups·G = the bytes of `shifted[t]`
                    // written above; unaligned read.
                    let a4 = unsafe {
                        let src = shifted[t].as_ptr().cast::<u8>();
                        core::ptr::read_unaligned(src.add(32 * blk + byte + 4 * q).cast::<i32>())
                    };
                    let a = _mm512_set1_epi32(a4);
                    for v in 0..RV {
                        iacc[t][v] = _mm512_dpbusd_epi32(iacc[t][v], a, wv[v]);
                    }
                }
            }
            // SAFETY: as for `sums`.
            let dw: [__m512; RV] = core::array::from_fn(|v| unsafe {
                _mm512_load_ps(p.scales.as_ptr().add(gi * PANEL_ROWS + v * LANES))
            });
            let bw: [__m512; RV] = core::array::from_fn(|v| {
                if BIAS {
                    // SAFETY: as for `dw`.
                    unsafe { _mm512_load_ps(p.bias.as_ptr().add(gi * PANEL_ROWS + v * LANES)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            for t in 0..TT {
                // SAFETY: as for the codes above.
                let a = unsafe { &*ap.add(t * kb + blk) };
                let da = _mm512_set1_ps(a.d());
                let sa = _mm512_set1_ps(if G == 16 { half_sums[t][gi] } else { a.s() });
                for v in 0..RV {
                    let scale = _mm512_mul_ps(dw[v], da);
                    let i = _mm512_cvtepi32_ps(iacc[t][v]);
                    facc[t][v] = _mm512_fmadd_ps(i, scale, facc[t][v]);
                    if BIAS {
                        facc[t][v] = _mm512_fmadd_ps(bw[v], sa, facc[t][v]);
                    }
                }
            }
        }
        for t in 0..TT {
            for v in 0..RV {
                // SAFETY: as for the loads above.
                unsafe { _mm512_mask_storeu_ps(yp.add(t * ldy + v * LANES), mask[v], facc[t][v]) };
            }
        }
    }
}

/// `out = [d·Σ a, d·Σ a]` over the two 16-byte halves of one activation block, from its codes
/// offset by 128 (`u = a + 128`): `vpsadbw` sums each eight bytes of `u` exactly, two of them
/// make a half's `Σ u = Σ a + 16·128`, and the product is `scalar::group_act_sum`'s (the same
/// exact integer converted, times `d`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vnni,avx512vl")]
fn half_sums_of(u: __m256i, d: f32, out: &mut [f32]) {
    let eights = _mm256_sad_epu8(u, _mm256_setzero_si256());
    // [s0, s1, s2, s3] as i32 (each below 2¹¹), then [s0 + s1, s2 + s3, ..].
    let e = _mm256_cvtepi64_epi32(eights);
    let halves = _mm_sub_epi32(_mm_hadd_epi32(e, e), _mm_set1_epi32(16 * 128));
    let v = _mm_mul_ps(_mm_cvtepi32_ps(halves), _mm_set1_ps(d));
    out[0] = _mm_cvtss_f32(v);
    out[1] = _mm_cvtss_f32(_mm_movehdup_ps(v));
}
