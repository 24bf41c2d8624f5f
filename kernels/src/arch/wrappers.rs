//! The safe wrappers every architecture puts in the table, generated per body module.
//!
//! Each wrapper checks lengths exactly as the scalar reference does (so it panics on the same
//! inputs), gives its body whole blocks or whole lanes, hands any tail to the scalar
//! reference, and calls the body in an `unsafe` block. The invoking module must keep the
//! wrappers private and put them in a table only after detecting every feature their body
//! enables; that is the `SAFETY` argument of each call.

/// `dot_f32`, `axpy` and `quantize_act_q8` around `$body::{dot_f32, axpy, quantize_act_q8}`
/// and its `DOT_F32_LANES` / `AXPY_LANES`.
macro_rules! vec_wrappers {
    ($body:ident) => {
        /// `a · b`: the body takes the whole lanes, the scalar reference the tail.
        fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
            assert_eq!(a.len(), b.len());
            let n = a.len() - a.len() % $body::DOT_F32_LANES;
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            let head = unsafe { $body::dot_f32(&a[..n], &b[..n]) };
            head + $crate::scalar::dot_f32(&a[n..], &b[n..])
        }

        /// `y += a·x`: the body takes the whole lanes, the scalar reference the tail.
        fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
            assert_eq!(y.len(), x.len());
            let n = y.len() - y.len() % $body::AXPY_LANES;
            let (head, tail) = y.split_at_mut(n);
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            unsafe { $body::axpy(head, a, &x[..n]) };
            $crate::scalar::axpy(tail, a, &x[n..]);
        }

        /// f32 → int8 activation blocks (whole blocks only, like the reference).
        fn quantize_act_q8(x: &[f32], out: &mut [u8]) {
            let blocks: &mut [$crate::scalar::BlockQ8Act] =
                $crate::blocks::as_blocks_mut(out).expect("output is whole act blocks");
            assert_eq!(blocks.len() * 32, x.len());
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            unsafe { $body::quantize_act_q8(x, blocks) }
        }
    };
}

/// The f16 KV cache's kernels around `$body::{axpy_rows_f16, quantize_f16}` and its
/// `AXPY_ROWS_LANES` / `QUANTIZE_F16_LANES`: attention's weighted sum of f16 value rows and
/// the f32 → f16 stores.
macro_rules! kv_f16_wrappers {
    ($body:ident) => {
        /// `y += Σ a[p]·row p` over F16 rows: whole lanes of every row by the body, the tail
        /// columns by the scalar reference.
        fn axpy_rows_f16(y: &mut [f32], a: &[f32], rows: &[u8]) {
            let stride = 2 * y.len();
            assert_eq!(rows.len(), a.len() * stride, "one F16 row per weight");
            if a.is_empty() {
                return;
            }
            let n = y.len() - y.len() % $body::AXPY_ROWS_LANES;
            let (head, tail) = y.split_at_mut(n);
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes); the rows are `stride = 2·y.len() ≥
            // 2·n` bytes apart and `rows` holds all of them.
            unsafe { $body::axpy_rows_f16(head, a, rows, stride) };
            $crate::scalar::axpy_rows_f16_cols(tail, a, &rows[2 * n..], stride);
        }

        /// f32 → F16 row: whole lanes by the body, the tail by the scalar reference.
        fn quantize_f16(x: &[f32], out: &mut [u8]) {
            assert_eq!(out.len(), 2 * x.len());
            let n = x.len() - x.len() % $body::QUANTIZE_F16_LANES;
            let (head, tail) = out.split_at_mut(2 * n);
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes); the head holds whole lanes with
            // out.len() == 2·x.len().
            unsafe { $body::quantize_f16(&x[..n], head) };
            $crate::scalar::quantize_f16(&x[n..], tail);
        }
    };
}

/// Row · f32 and row → f32 around `$body::{$dot, $dequant}` for one block type of `$per_block`
/// weights (32 unless given: the k-quants' blocks hold 256).
macro_rules! f32_wrappers {
    ($body:ident, $block:ty, $what:literal, $dot:ident, $dequant:ident) => {
        f32_wrappers!($body, $block, $what, 32, $dot, $dequant);
    };
    ($body:ident, $block:ty, $what:literal, $per_block:literal, $dot:ident, $dequant:ident) => {
        fn $dot(row: &[u8], x: &[f32]) -> f32 {
            let blocks: &[$block] =
                $crate::blocks::as_blocks(row).expect(concat!($what, " row is whole blocks"));
            assert_eq!(blocks.len() * $per_block, x.len());
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            unsafe { $body::$dot(blocks, x) }
        }

        fn $dequant(row: &[u8], out: &mut [f32]) {
            let blocks: &[$block] =
                $crate::blocks::as_blocks(row).expect(concat!($what, " row is whole blocks"));
            assert_eq!(blocks.len() * $per_block, out.len());
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            unsafe { $body::$dequant(blocks, out) }
        }
    };
}

/// Module `$wrapper` of row · int8-activation wrappers around `$body::dot_*_q8` for the
/// 32-weight block formats (Q4_0, Q4_1, Q8_0, Q5_0, Q5_1, IQ4_NL).
macro_rules! int8_wrappers {
    ($wrapper:ident => $($body:ident)::+) => {
        mod $wrapper {
            use $crate::blocks::{
                as_blocks, BlockIQ4_NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
            };
            use $crate::scalar::BlockQ8Act;

            fn acts(xq: &[u8], n_blocks: usize) -> &[BlockQ8Act] {
                let a: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
                assert_eq!(a.len(), n_blocks, "activation blocks match the row");
                a
            }

            macro_rules! one {
                ($name:ident, $block:ty, $what:literal) => {
                    pub(super) fn $name(row: &[u8], xq: &[u8]) -> f32 {
                        let blocks: &[$block] =
                            as_blocks(row).expect(concat!($what, " row is whole blocks"));
                        let acts = acts(xq, blocks.len());
                        // SAFETY: installed only by `install`, for this body's backend, after
                        // `detected` confirmed its features (see the module's wrapper notes).
                        unsafe { super::$($body)::+::$name(blocks, acts) }
                    }
                };
            }
            one!(dot_q4_0_q8, BlockQ4_0, "Q4_0");
            one!(dot_q4_1_q8, BlockQ4_1, "Q4_1");
            one!(dot_q8_0_q8, BlockQ8_0, "Q8_0");
            one!(dot_q5_0_q8, BlockQ5_0, "Q5_0");
            one!(dot_q5_1_q8, BlockQ5_1, "Q5_1");
            one!(dot_iq4_nl_q8, BlockIQ4_NL, "IQ4_NL");
        }
    };
}

/// The multi-row wrapper `$name` around `$body(blocks, kb, x, y)` for one block type of
/// `$per_block` weights (rows of `kb` whole blocks, one per output). With
/// `above MAX => reference`, rows wider than `MAX` activations (more than the body's stack
/// buffer holds) go to the invoking module's `scalar_rows` over the single-row `reference`.
macro_rules! dot_rows_wrapper {
    (
        $name:ident, $block:ty, $what:literal, $per_block:literal, $body:path
        $(, above $max_cols:expr => $reference:path)? $(,)?
    ) => {
        fn $name(w: &[u8], x: &[f32], y: &mut [f32]) {
            let rows = y.len();
            if rows == 0 {
                return;
            }
            assert_eq!(w.len() % rows, 0, "weights are whole rows");
            let kb = $crate::scalar::row_blocks(w.len() / rows, core::mem::size_of::<$block>());
            let blocks: &[$block] =
                $crate::blocks::as_blocks(w).expect(concat!($what, " rows are whole blocks"));
            assert_eq!(kb * $per_block, x.len(), "activations match the rows");
            $(
                if x.len() > $max_cols {
                    return scalar_rows(w, x, y, $reference);
                }
            )?
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes); `blocks` holds `y.len()` rows of `kb`
            // blocks and `x` their activations.
            unsafe { $body(blocks, kb, x, y) }
        }
    };
}

/// Module `$wrapper` of int8 wrappers for 256-weight formats: for each `$dot, $gemm: $block
/// $what`, the row · int8 wrapper around `$body::$dot` (eight activation blocks per
/// super-block) and its GEMM, the reference's loop over the row dot (`scalar::gemm_q8`), which
/// keeps each row in L1 while it meets every token. With `prefetch = f`, the GEMM calls
/// `f(row)` before each row dot (a hint for the rows ahead: decoding streams every matrix from
/// memory once per token).
macro_rules! kquant_int8_wrappers {
    (
        $wrapper:ident => $($body:ident)::+ $(, prefetch = $prefetch:ident)?
        { $($dot:ident, $gemm:ident: $block:ident $what:literal;)* }
    ) => {
        mod $wrapper {
            use super::$($body)::+ as body;
            use $crate::blocks::{as_blocks, $($block),*};
            use $crate::scalar::BlockQ8Act;

            fn acts(xq: &[u8], n_blocks: usize) -> &[BlockQ8Act] {
                let a: &[BlockQ8Act] = as_blocks(xq).expect("activations are whole act blocks");
                assert_eq!(a.len(), 8 * n_blocks, "activation blocks match the row");
                a
            }

            /// The prefetch hint before each row dot of the GEMMs, if the invocation gave one.
            #[inline(always)]
            #[allow(unused_variables, reason = "`row` is unused by the invocations that give no prefetch hint")]
            fn prefetch(row: &[u8]) {
                $(super::$prefetch(row);)?
            }

            $(
                pub(super) fn $dot(row: &[u8], xq: &[u8]) -> f32 {
                    let blocks: &[$block] =
                        as_blocks(row).expect(concat!($what, " row is whole blocks"));
                    let acts = acts(xq, blocks.len());
                    // SAFETY: installed only by `install`, for this body's backend, after
                    // `detected` confirmed its features (see the module's wrapper notes).
                    unsafe { body::$dot(blocks, acts) }
                }

                pub(super) fn $gemm(
                    w: &[u8],
                    m: usize,
                    xq: &[u8],
                    n: usize,
                    y: &mut [f32],
                    ldy: usize,
                ) {
                    $crate::scalar::gemm_q8(w, m, xq, n, y, ldy, |row, xt| {
                        prefetch(row);
                        $dot(row, xt)
                    })
                }
            )*
        }
    };
}

/// Puts each listed 256-weight format's int8 dot and GEMM (`Format: dot, gemm;`) from the
/// wrapper module (made by [`kquant_int8_wrappers`]) that `$backend` matches into the table
/// `$k`, named `dot/isa` and `gemm/isa`.
macro_rules! install_kquant_int8 {
    (
        $k:ident, $backend:expr,
        { $($pat:pat => $wrapper:ident $isa:literal),* $(,)? },
        $formats:tt
    ) => {
        match $backend {
            $($pat => install_kquant_int8!(@one $k, $wrapper, $isa, $formats),)*
        }
    };
    (@one $k:ident, $wrapper:ident, $isa:literal, [$($format:ident: $dot:ident, $gemm:ident;)*]) => {{
        $(
            let f = $k.format_mut($crate::format::Format::$format);
            f.dot_q8 = Some($crate::dispatch::Named {
                f: $wrapper::$dot,
                name: concat!(stringify!($dot), "/", $isa),
            });
            f.gemm_q8 = Some($crate::dispatch::Named {
                f: $wrapper::$gemm,
                name: concat!(stringify!($gemm), "/", $isa),
            });
        )*
    }};
}

/// `Named { f, name }`.
macro_rules! named {
    ($f:path, $name:literal) => {
        $crate::dispatch::Named { f: $f, name: $name }
    };
}

/// `exp_lut`, `softmax_lut` and `swiglu_lut` around `$body::{exp, max, exp_sub_sum, scale,
/// swiglu}` and its `LUT_LANES`: the bodies take whole lanes, the scalar reference the tail.
macro_rules! lut_wrappers {
    ($body:ident) => {
        /// `x[i] = exp(x[i])` with the table exp (see `scalar::exp_lut_f32`).
        fn exp_lut(x: &mut [f32]) {
            let n = x.len() - x.len() % $body::LUT_LANES;
            let (head, tail) = x.split_at_mut(n);
            // SAFETY: installed only by `install` after `detected` confirmed the body's
            // features (see the module's wrapper notes).
            unsafe { $body::exp(head) };
            $crate::scalar::exp_lut_f32_in_place(tail);
        }

        /// Softmax with the table exp (see `scalar::softmax_lut_f32`).
        fn softmax_lut(x: &mut [f32]) {
            let n = x.len() - x.len() % $body::LUT_LANES;
            let (head, tail) = x.split_at_mut(n);
            // SAFETY: this and every body call below: installed only by `install` after
            // `detected` confirmed the body's features (see the module's wrapper notes).
            let head_max = unsafe { $body::max(head) };
            let max = tail.iter().copied().fold(head_max, f32::max);
            if max == f32::NEG_INFINITY {
                x.fill(0.0);
                return;
            }
            // SAFETY: as above.
            let mut sum = unsafe { $body::exp_sub_sum(head, max) };
            for v in tail.iter_mut() {
                *v = $crate::scalar::exp_lut_f32(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            // SAFETY: as above.
            unsafe { $body::scale(head, inv) };
            for v in tail.iter_mut() {
                *v *= inv;
            }
        }

        /// SwiGLU with the table exp (see `scalar::swiglu_lut_f32`).
        fn swiglu_lut(gate: &mut [f32], up: &[f32]) {
            assert_eq!(gate.len(), up.len());
            let n = gate.len() - gate.len() % $body::LUT_LANES;
            let (head, tail) = gate.split_at_mut(n);
            // SAFETY: as above.
            unsafe { $body::swiglu(head, &up[..n]) };
            $crate::scalar::swiglu_lut_f32(tail, &up[n..]);
        }

        /// GeGLU with the table exp (see `scalar::gelu_tanh_glu_lut_f32`).
        fn gelu_lut(gate: &mut [f32], up: &[f32]) {
            assert_eq!(gate.len(), up.len());
            let n = gate.len() - gate.len() % $body::LUT_LANES;
            let (head, tail) = gate.split_at_mut(n);
            // SAFETY: as above.
            unsafe { $body::gelu(head, &up[..n]) };
            $crate::scalar::gelu_tanh_glu_lut_f32(tail, &up[n..]);
        }
    };
}

/// Defines `$vis fn $name(w: &[$block], kb: usize, x: &[f32], y: &mut [f32])` enabling
/// `$features`: `y[r] = row r · x` for the rows of `w` (`kb` blocks each), `ROWS` at a time,
/// prefetching the rows ahead. `$rows::<R>(w, kb, x)` is the `R`-row body and
/// `$store(acc, y)` writes its `R` results; with `prescale = f`, the body runs on
/// `f(x, &mut buf)` (a stack buffer of `PRESCALE_MAX` floats, or `$max` with
/// `prescale = f[$max]`) instead of `x`. `ROWS`,
/// `prefetch_head` and `prefetch_ahead` are the invoking module's (each architecture
/// prefetches its own way).
macro_rules! dot_rows_driver {
    (
        $features:literal, $vis:vis $name:ident, $block:ty, $rows:ident, $store:ident
        , prescale = $prescale:ident
    ) => {
        dot_rows_driver!(
            $features, $vis $name, $block, $rows, $store, prescale = $prescale[PRESCALE_MAX]
        );
    };
    (
        $features:literal, $vis:vis $name:ident, $block:ty, $rows:ident, $store:ident
        $(, prescale = $prescale:ident[$max:expr])?
    ) => {
        #[target_feature(enable = $features)]
        $vis fn $name(w: &[$block], kb: usize, x: &[f32], y: &mut [f32]) {
            $(
                let mut buf = [core::mem::MaybeUninit::<f32>::uninit(); $max];
                let x = $prescale(x, &mut buf);
            )?
            let row_bytes = kb * core::mem::size_of::<$block>();
            prefetch_head(w.as_ptr().cast(), y.len() * row_bytes);
            let mut groups = y.chunks_exact_mut(ROWS);
            let mut r = 0;
            for yg in &mut groups {
                prefetch_ahead(w[r * kb..].as_ptr().cast(), ROWS * row_bytes);
                $store($rows::<ROWS>(&w[r * kb..], kb, x), yg);
                r += ROWS;
            }
            for yr in groups.into_remainder() {
                $store($rows::<1>(&w[r * kb..], kb, x), core::slice::from_mut(yr));
                r += 1;
            }
        }
    };
}

/// Defines a multi-row F16 kernel `$name` enabling `$features` over the `R`-row body `$rows`
/// (`unsafe fn $rows::<R>(p: *const u8, stride, x) -> [f32; R]`): `y[r] = row r · x` for the
/// `y.len()` rows of `w`, `stride` bytes apart, over the first `x.len()` halves of each (a
/// multiple of `$lanes`), [`ROWS`] rows per step, so the rows share each activation load, and
/// prefetching the rows ahead (the output head is read once per token). `ROWS`,
/// `prefetch_head` and `prefetch_ahead` are the invoking module's.
macro_rules! dot_rows_f16 {
    ($(#[$doc:meta])* $name:ident, $rows:ident, $lanes:expr, $features:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU supports the features this function enables; `w.len() ≥ y.len()·stride`
        /// and `stride ≥ 2·x.len()`.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name(w: &[u8], stride: usize, x: &[f32], y: &mut [f32]) {
            debug_assert!(w.len() >= y.len() * stride && stride >= 2 * x.len());
            debug_assert!(x.len().is_multiple_of($lanes));
            prefetch_head(w.as_ptr(), y.len() * stride);
            let mut r = 0;
            while r < y.len() {
                let rows = (y.len() - r).min(ROWS);
                let p = w[r * stride..].as_ptr();
                prefetch_ahead(p, rows * stride);
                let yg = &mut y[r..r + rows];
                // SAFETY: `rows` rows of `stride ≥ 2·x.len()` bytes start at p, inside `w`
                // (the caller's contract); `x.len()` is a multiple of `$lanes`.
                unsafe {
                    match rows {
                        4 => yg.copy_from_slice(&$rows::<4>(p, stride, x)),
                        3 => yg.copy_from_slice(&$rows::<3>(p, stride, x)),
                        2 => yg.copy_from_slice(&$rows::<2>(p, stride, x)),
                        _ => yg.copy_from_slice(&$rows::<1>(p, stride, x)),
                    }
                }
                r += rows;
            }
        }
    };
}

/// Defines `axpy_rows_f16` enabling `$features`: `y[i] += Σ_p a[p]·row p[i]` for `y.len()` a
/// multiple of `LANES` (8) and f16 rows `stride` bytes apart (attention's weighted sum of
/// values): 32 columns at a time stay in registers while every row passes, then the rest 8 at
/// a time, through the invoking module's `axpy_cols::<V>` (columns `c..c + 8·V`).
macro_rules! axpy_rows_f16 {
    ($(#[$doc:meta])* $features:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU supports the features this function enables; `stride ≥ 2·y.len()` and, when
        /// `a` is not empty, `rows.len() ≥ (a.len() − 1)·stride + 2·y.len()`.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn axpy_rows_f16(y: &mut [f32], a: &[f32], rows: &[u8], stride: usize) {
            debug_assert!(y.len().is_multiple_of(LANES) && stride >= 2 * y.len());
            debug_assert!(a.is_empty() || rows.len() >= (a.len() - 1) * stride + 2 * y.len());
            let mut c = 0;
            while c + 4 * LANES <= y.len() {
                // SAFETY: columns c..c+32 ≤ y.len() of every row (the caller's contract).
                unsafe { axpy_cols::<4>(y, c, a, rows, stride) };
                c += 4 * LANES;
            }
            while c < y.len() {
                // SAFETY: columns c..c+8 ≤ y.len(), y.len() being a multiple of 8.
                unsafe { axpy_cols::<1>(y, c, a, rows, stride) };
                c += LANES;
            }
        }
    };
}

/// The ternary kernels' wrappers, shared by every architecture (see `scalar::ternary_int8` and
/// `scalar::lut_ternary`): for each `$wrapper => $body` a module `$wrapper` of the row ·
/// int8-row dots of TQ1_0, TQ2_0 and I2_S and the batched `gemm_codes_q8row` around the
/// integer body module `$body`; then the single-body wrappers (unpack of each format, the LUT
/// tables, tile unpack and GEMV, the per-row activation quantizer) around the invoking
/// module's `*_body` functions; then `install_ternary`, which puts them in the table: the
/// integer kernels of the wrapper module that `backend` matches (`$pat => $wrapper $isa`,
/// named `kernel/isa`) and the single-body ones named `kernel/$isa0`.
///
/// The wrappers check lengths as the scalar reference does (so they panic on the same inputs)
/// and call the body in an `unsafe` block; the invoking module's `install` calls
/// `install_ternary` only for a backend whose features it detected.
macro_rules! ternary_wrappers {
    (
        $isa0:literal;
        { $($pat:pat => $wrapper:ident => $body:ident $isa:literal),* $(,)? }
    ) => {
        $(
            mod $wrapper {
                use $crate::blocks::{as_blocks, BlockI2_S, BlockTQ1_0, BlockTQ2_0};
                use $crate::scalar::ActQ8Row;

                fn check(act: &ActQ8Row<'_>, n: usize) {
                    assert_eq!(act.qs.len(), n, "activations match the row");
                    assert_eq!(act.sums.len(), n / 128, "one activation sum per 128");
                }

                pub(super) fn dot_tq1_0_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
                    let b: &[BlockTQ1_0] = as_blocks(row).expect("TQ1_0 row is whole blocks");
                    check(act, b.len() * 256);
                    // SAFETY: see the wrapper notes: installed only after detection.
                    unsafe { super::$body::dot_tq1_0_q8row(b, act) }
                }

                pub(super) fn dot_tq2_0_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
                    let b: &[BlockTQ2_0] = as_blocks(row).expect("TQ2_0 row is whole blocks");
                    check(act, b.len() * 256);
                    // SAFETY: see the wrapper notes: installed only after detection.
                    unsafe { super::$body::dot_tq2_0_q8row(b, act) }
                }

                pub(super) fn dot_i2_s_q8row(row: &[u8], act: &ActQ8Row<'_>) -> f32 {
                    let b: &[BlockI2_S] = as_blocks(row).expect("I2_S row is whole blocks");
                    check(act, b.len() * 128);
                    // SAFETY: see the wrapper notes: installed only after detection.
                    unsafe { super::$body::dot_i2_s_q8row(b, act) }
                }

                pub(super) fn gemm_codes_q8row(
                    codes: &[u8],
                    rows: usize,
                    scales: &[f32],
                    acts: &[ActQ8Row<'_>],
                    out: &mut [f32],
                ) {
                    let k = $crate::scalar::check_gemm(codes, rows, scales, acts, out);
                    // SAFETY: see the wrapper notes: installed only after detection.
                    unsafe { super::$body::gemm_codes_q8row(codes, rows, k, scales, acts, out) }
                }
            }
        )*

        fn unpack_tq2_0(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
            let b: &[$crate::blocks::BlockTQ2_0] =
                $crate::blocks::as_blocks(row).expect("TQ2_0 row is whole blocks");
            assert!(codes.len() == b.len() * 256 && scales.len() == b.len());
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { unpack_tq2_0_body(b, codes, scales) }
        }

        fn unpack_tq1_0(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
            let b: &[$crate::blocks::BlockTQ1_0] =
                $crate::blocks::as_blocks(row).expect("TQ1_0 row is whole blocks");
            assert!(codes.len() == b.len() * 256 && scales.len() == b.len());
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { unpack_tq1_0_body(b, codes, scales) }
        }

        fn unpack_i2_s(row: &[u8], codes: &mut [u8], scales: &mut [f32]) {
            let b: &[$crate::blocks::BlockI2_S] =
                $crate::blocks::as_blocks(row).expect("I2_S row is whole blocks");
            assert!(codes.len() == b.len() * 128 && scales.is_empty());
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { unpack_i2_s_body(b, codes) }
        }

        fn lut_tables(qs: &[i8], tables: &mut [u8]) {
            assert!(
                qs.len().is_multiple_of(2)
                    && tables.len() == $crate::scalar::lut_tables_bytes(qs.len())
            );
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { lut_tables_body(qs, tables) }
        }

        fn lut_unpack(tile: &[u8], codes: &mut [u8]) {
            let cols = tile.len() / 8;
            assert!(
                tile.len() == $crate::scalar::lut_tile_bytes(cols)
                    && codes.len() == $crate::scalar::LUT_TILE_ROWS * cols
            );
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { lut_unpack_body(tile, codes) }
        }

        fn quantize_act_row(x: &[f32], qs: &mut [i8], sums: &mut [i32]) -> Option<f32> {
            assert_eq!(x.len(), qs.len());
            assert!(x.len().is_multiple_of(128) && sums.len() == x.len() / 128);
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { quantize_act_row_body(x, qs, sums) }
        }

        fn lut_gemv(
            tile: &[u8],
            tables: &[u8],
            scales: &[f32],
            out: &mut [f32; $crate::scalar::LUT_TILE_ROWS],
        ) {
            $crate::scalar::check_lut(tile, tables, scales);
            // SAFETY: see the wrapper notes: installed only after detection.
            unsafe { lut_gemv_body(tile, tables, scales, out) }
        }

        /// Puts the ternary kernels of `backend` (a backend of this architecture whose
        /// features were detected) in `k`.
        fn install_ternary(backend: $crate::dispatch::Backend, k: &mut $crate::dispatch::Kernels) {
            use $crate::dispatch::Named;
            use $crate::format::Format;
            let ([tq1, tq2, i2], gemm): ([Named<$crate::dispatch::DotQ8RowFn>; 3], _) =
                match backend {
                    $($pat => (
                        [
                            Named {
                                f: $wrapper::dot_tq1_0_q8row,
                                name: concat!("dot_tq1_0_q8row/", $isa),
                            },
                            Named {
                                f: $wrapper::dot_tq2_0_q8row,
                                name: concat!("dot_tq2_0_q8row/", $isa),
                            },
                            Named {
                                f: $wrapper::dot_i2_s_q8row,
                                name: concat!("dot_i2_s_q8row/", $isa),
                            },
                        ],
                        Named::<$crate::dispatch::GemmCodesFn> {
                            f: $wrapper::gemm_codes_q8row,
                            name: concat!("gemm_codes_q8row/", $isa),
                        },
                    ),)*
                };
            let f = k.format_mut(Format::TQ1_0);
            f.dot_q8_row = Some(tq1);
            f.unpack = Some(Named { f: unpack_tq1_0, name: concat!("unpack_tq1_0/", $isa0) });
            let f = k.format_mut(Format::TQ2_0);
            f.dot_q8_row = Some(tq2);
            f.unpack = Some(Named { f: unpack_tq2_0, name: concat!("unpack_tq2_0/", $isa0) });
            let f = k.format_mut(Format::I2_S);
            f.dot_q8_row = Some(i2);
            f.unpack = Some(Named { f: unpack_i2_s, name: concat!("unpack_i2_s/", $isa0) });
            k.ternary.gemm_codes = gemm;
            k.ternary.lut_tables = Named { f: lut_tables, name: concat!("lut_tables/", $isa0) };
            k.ternary.lut_gemv = Named { f: lut_gemv, name: concat!("lut_gemv/", $isa0) };
            k.ternary.lut_unpack = Named { f: lut_unpack, name: concat!("lut_unpack_tile/", $isa0) };
            k.ternary.quantize_act_row =
                Named { f: quantize_act_row, name: concat!("quantize_act_q8_row/", $isa0) };
        }
    };
}

/// `gemm_codes_q8row`, the batched ternary kernel over unpacked codes, for an integer body
/// module (inside `ternary_int8!`) that defines the register tile `micro::<R, T>(codes,
/// scales, acts, out)` for R ≤ 4 rows × T ≤ 2 tokens: 4 rows × 2 tokens per step (the rows'
/// codes stay in L1 while the tokens stream past), smaller steps at the edges. `out` is
/// token-major (`out[t·rows + r]`), as the reference writes it.
macro_rules! gemm_codes_driver {
    ($features:literal) => {
        /// Rows × tokens over unpacked codes (see `gemm_codes_driver!`).
        #[target_feature(enable = $features)]
        pub(crate) fn gemm_codes_q8row(
            codes: &[u8],
            rows: usize,
            k: usize,
            scales: &[f32],
            acts: &[ActQ8Row<'_>],
            out: &mut [f32],
        ) {
            let nb = if scales.is_empty() { 0 } else { k / 256 };
            let row = |r: usize| &codes[r * k..(r + 1) * k];
            let sc = |r: usize| &scales[r * nb..(r + 1) * nb];
            /// `[f(r0), f(r0 + 1), …]`, as many as the array is long.
            fn rows_of<'s, X: ?Sized, const N: usize>(
                f: impl Fn(usize) -> &'s X,
                r0: usize,
            ) -> [&'s X; N] {
                let mut out = [f(r0); N];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = f(r0 + i);
                }
                out
            }
            let mut r0 = 0;
            while r0 < rows {
                let rr = (rows - r0).min(4);
                let mut t0 = 0;
                while t0 < acts.len() {
                    let tt = (acts.len() - t0).min(2);
                    let (a, b) = out[t0 * rows..].split_at_mut(rows);
                    let o0 = &mut a[r0..r0 + rr];
                    macro_rules! go {
                        ($r:literal, 1) => {
                            micro::<$r, 1>(rows_of(row, r0), rows_of(sc, r0), [&acts[t0]], [o0])
                        };
                        ($r:literal, 2) => {
                            micro::<$r, 2>(
                                rows_of(row, r0),
                                rows_of(sc, r0),
                                [&acts[t0], &acts[t0 + 1]],
                                [o0, &mut b[r0..r0 + rr]],
                            )
                        };
                    }
                    match (rr, tt) {
                        (4, 2) => go!(4, 2),
                        (4, _) => go!(4, 1),
                        (3, 2) => go!(3, 2),
                        (3, _) => go!(3, 1),
                        (2, 2) => go!(2, 2),
                        (2, _) => go!(2, 1),
                        (_, 2) => go!(1, 2),
                        _ => go!(1, 1),
                    }
                    t0 += tt;
                }
                r0 += rr;
            }
        }
    };
}
