//! GGUF blocks repacked, without dequantizing, as the weights of ONNX Runtime's
//! `com.microsoft.MatMulNBits`, and a reference of that operator's dequantization to check the
//! packing against Tern's own dequantizers.
//!
//! `MatMulNBits` (ONNX Runtime's contrib operator, `docs/ContribOperators.md`) multiplies
//! `A (…, K)` by `Bᵀ` where `B` is `N` rows of `K` codes of `bits` bits, in blocks of
//! `block_size` codes along `K`, stored as uint8 `[N, K / block_size, block_size · bits / 8]`:
//! code `k` of a block sits in byte `k · bits / 8` at bit `(k · bits) mod 8`, least
//! significant first. Each block has one float scale (`scales`, `[N · K / block_size]`, row
//! major) and, when the `zero_points` input is absent, the zero point `2^(bits − 1)`:
//! `W[n, k] = (code − 2^(bits − 1)) · scale`. We never pass `zero_points`: every format below
//! maps to that default exactly.
//!
//! | GGUF   | bits | block | code                      | scale            |
//! |--------|------|-------|---------------------------|------------------|
//! | Q4_0   | 4    | 32    | q (zero point 8 = GGUF's) | d                |
//! | Q8_0   | 8    | 32    | q + 128 (q as int8)       | d                |
//! | TQ2_0  | 2    | 64    | q + 1 (q ∈ {0, 1, 2})     | d (4 per block)  |
//! | TQ1_0  | 2    | 64    | trit + 1                  | d (4 per block)  |
//! | I2_S   | 2    | 64    | q + 1 (q ∈ {0, 1, 2})     | 1 (tensor scale applied by the runtime) |
//!
//! Ternary codes become `q + 1` so that the default zero point 2 gives `q − 1`. A TQ2_0 or
//! I2_S code 3 (outside the ternary alphabet; Tern's dequantizers read it as 2·d) has no 2-bit
//! code with zero point 2: such matrices are declined, as are formats with float minimums
//! (Q4_1, K-quants: `MatMulNBits` zero points are per block integers, a float minimum is not
//! one) and codebooks (IQ4_*). Blocks of 64 for 2-bit weights: the HTP emulator runs 16/32/64
//! (checked in `/work/logs/npu-probe.md`'s recipe); a 256-weight ternary block is four blocks
//! sharing its scale, which is exact.

use half::f16;
use tern_kernels::Format;

/// Weights of one `MatMulNBits` node.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    /// Bits per code: 2, 4 or 8.
    pub bits: u8,
    /// Codes per block along `K`.
    pub block: usize,
    /// Inputs (`K`, the GGUF row length).
    pub k: usize,
    /// Outputs (`N`, the GGUF rows).
    pub n: usize,
    /// `[N, K / block, block · bits / 8]` codes.
    pub b: Vec<u8>,
    /// `[N · K / block]` scales.
    pub scales: Vec<f32>,
}

impl Packed {
    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.k / self.block
    }

    /// Bytes of one block's codes.
    pub fn blob_bytes(&self) -> usize {
        self.block * self.bits as usize / 8
    }
}

/// `rows` GGUF rows of `cols` weights of `format` (`bytes`, the rows back to back) packed for
/// `MatMulNBits`, or the reason the format or these weights have no exact packing.
pub fn pack(format: Format, rows: usize, cols: usize, bytes: &[u8]) -> Result<Packed, String> {
    let (bits, block) = match format {
        Format::Q4_0 => (4, 32),
        Format::Q8_0 => (8, 32),
        Format::TQ2_0 | Format::TQ1_0 | Format::I2_S => (2, 64),
        Format::Q4_1 | Format::Q5_1 | Format::Q4_K | Format::Q5_K | Format::Q2_K => {
            return Err(format!(
                "{}: float minimums are not MatMulNBits zero points",
                format.name()
            ))
        }
        other => {
            return Err(format!(
                "{}: no exact MatMulNBits packing (Q4_0, Q8_0, TQ2_0, TQ1_0, I2_S are)",
                other.name()
            ))
        }
    };
    if cols == 0 || rows == 0 || !cols.is_multiple_of(format.block_len()) {
        return Err(format!("{rows}×{cols}: not whole blocks"));
    }
    let row_bytes = format.row_bytes(cols).ok_or("row length overflows")?;
    if bytes.len() != rows * row_bytes {
        return Err(format!(
            "{} bytes for {rows} rows of {row_bytes}",
            bytes.len()
        ));
    }
    // Codes (already offset to the zero point 2^(bits−1)) and one scale per GGUF block.
    let mut codes = vec![0u8; rows * cols];
    let mut gguf_scales = Vec::with_capacity(rows * cols / format.block_len());
    let bb = format.block_bytes();
    for (blk, (src, dst)) in bytes
        .chunks_exact(bb)
        .zip(codes.chunks_exact_mut(format.block_len()))
        .enumerate()
    {
        let d = |at: usize| f16::from_le_bytes([src[at], src[at + 1]]).to_f32();
        match format {
            Format::Q4_0 => {
                for (j, &q) in src[2..18].iter().enumerate() {
                    dst[j] = q & 0xF;
                    dst[j + 16] = q >> 4;
                }
                gguf_scales.push(d(0));
            }
            Format::Q8_0 => {
                for (o, &q) in dst.iter_mut().zip(&src[2..34]) {
                    *o = q ^ 0x80; // int8 q + 128
                }
                gguf_scales.push(d(0));
            }
            Format::TQ2_0 => {
                for h in 0..2 {
                    for m in 0..32 {
                        let byte = src[32 * h + m];
                        for n in 0..4 {
                            dst[128 * h + m + 32 * n] = ternary_code((byte >> (2 * n)) & 3, blk)?;
                        }
                    }
                }
                gguf_scales.push(d(64));
            }
            Format::TQ1_0 => {
                const POW3: [u16; 5] = [1, 3, 9, 27, 81];
                let trit = |b: u8, n: usize| ((((b as u16 * POW3[n]) & 0xFF) * 3) >> 8) as u8;
                for m in 0..32 {
                    for n in 0..5 {
                        dst[m + 32 * n] = trit(src[m], n) + 1;
                    }
                }
                for m in 0..16 {
                    for n in 0..5 {
                        dst[160 + m + 16 * n] = trit(src[32 + m], n) + 1;
                    }
                }
                for j in 0..4 {
                    for n in 0..4 {
                        dst[240 + j + 4 * n] = trit(src[48 + j], n) + 1;
                    }
                }
                gguf_scales.push(d(52));
            }
            Format::I2_S => {
                for p in 0..32 {
                    for k in 0..4 {
                        dst[p + 32 * k] = ternary_code((src[p] >> (6 - 2 * k)) & 3, blk)?;
                    }
                }
                gguf_scales.push(1.0);
            }
            _ => unreachable!("formats without a packing returned above"),
        }
    }
    // GGUF blocks are whole multiples of the MatMulNBits block: repeat each scale.
    let per = format.block_len() / block;
    let scales: Vec<f32> = gguf_scales
        .iter()
        .flat_map(|&s| core::iter::repeat_n(s, per))
        .collect();
    let per_byte = 8 / bits as usize;
    let mut b = vec![0u8; rows * cols / per_byte];
    for (byte, c) in b.iter_mut().zip(codes.chunks_exact(per_byte)) {
        *byte = c
            .iter()
            .enumerate()
            .fold(0, |acc, (i, &q)| acc | q << (bits as usize * i));
    }
    Ok(Packed {
        bits,
        block,
        k: cols,
        n: rows,
        b,
        scales,
    })
}

/// A ternary code `q` as a 2-bit code over zero point 2, or the reason it has none.
fn ternary_code(q: u8, block: usize) -> Result<u8, String> {
    if q == 3 {
        return Err(format!(
            "code 3 in block {block} is not ternary: no 2-bit code with zero point 2 gives 2·d"
        ));
    }
    Ok(q + 1)
}

/// `W (N, K)` as `MatMulNBits` defines it for `p` without `zero_points`: the reference the
/// packing is checked against.
pub fn dequantize(p: &Packed) -> Vec<f32> {
    let zero = 1i32 << (p.bits - 1);
    let mask = ((1u16 << p.bits) - 1) as u8;
    let mut w = vec![0.0; p.n * p.k];
    for n in 0..p.n {
        for k in 0..p.k {
            let (blk, within) = (k / p.block, k % p.block);
            let blob = &p.b[(n * p.blocks_per_row() + blk) * p.blob_bytes()..];
            let bit = within * p.bits as usize;
            let code = (blob[bit / 8] >> (bit % 8)) & mask;
            let scale = p.scales[n * p.blocks_per_row() + blk];
            w[n * p.k + k] = (code as i32 - zero) as f32 * scale;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    //! The packing of every offloaded format, dequantized by the operator's definition, equals
    //! Tern's scalar dequantizer bit for bit, on random blocks and the adversarial ones
    //! (all-max codes, ±65504, zero and subnormal scales); formats and codes without an exact
    //! packing are declined.

    use super::*;
    use tern_kernels::Kernels;

    /// xorshift64*: deterministic random bytes.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
    }

    const SCALES: [f32; 7] = [0.0, 1.0, -0.37, 65504.0, -65504.0, 5.96e-8, 6.0e-5];

    /// One GGUF block of `format` with scale `d` and codes from `code(i)` (its own domain).
    fn block(format: Format, d: f32, code: &mut dyn FnMut() -> u8) -> Vec<u8> {
        let dh = f16::from_f32(d).to_le_bytes();
        let mut b = vec![0u8; format.block_bytes()];
        match format {
            Format::Q4_0 => {
                b[..2].copy_from_slice(&dh);
                b[2..]
                    .iter_mut()
                    .for_each(|x| *x = code() & 0xF | (code() & 0xF) << 4);
            }
            Format::Q8_0 => {
                b[..2].copy_from_slice(&dh);
                b[2..].iter_mut().for_each(|x| *x = code());
            }
            Format::TQ2_0 => {
                b[..64].iter_mut().for_each(|x| {
                    *x = (0..4).fold(0, |a, n| a | (code() % 3) << (2 * n));
                });
                b[64..].copy_from_slice(&dh);
            }
            Format::TQ1_0 => {
                // Any byte is a valid 5-trit (or 4-trit) fraction.
                b[..52].iter_mut().for_each(|x| *x = code());
                b[52..].copy_from_slice(&dh);
            }
            Format::I2_S => {
                b.iter_mut().for_each(|x| {
                    *x = (0..4).fold(0, |a, n| a | (code() % 3) << (2 * n));
                });
            }
            _ => unreachable!(),
        }
        b
    }

    fn check(format: Format, rows: usize, cols: usize, bytes: &[u8]) {
        let p = pack(format, rows, cols, bytes).expect("packs");
        assert_eq!(p.b.len(), rows * cols * p.bits as usize / 8);
        assert_eq!(p.scales.len(), rows * cols / p.block);
        let got = dequantize(&p);
        let rb = bytes.len() / rows;
        let mut want = vec![0.0f32; cols];
        for r in 0..rows {
            Kernels::scalar().dequant(format, &bytes[r * rb..(r + 1) * rb], &mut want);
            for (c, (g, w)) in got[r * cols..(r + 1) * cols].iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{format:?} row {r} col {c}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn packing_dequantizes_to_terns_values_bit_for_bit() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for format in [
            Format::Q4_0,
            Format::Q8_0,
            Format::TQ2_0,
            Format::TQ1_0,
            Format::I2_S,
        ] {
            let bl = format.block_len();
            for (rows, blocks) in [(1, 1), (3, 2), (7, 3), (2, 5)] {
                let cols = bl * blocks;
                let mut bytes = Vec::new();
                for i in 0..rows * blocks {
                    let d = if i % 3 == 0 {
                        SCALES[i / 3 % SCALES.len()]
                    } else {
                        (rng.byte() as f32 - 128.0) / 50.0
                    };
                    bytes.extend(block(format, d, &mut || rng.byte()));
                }
                check(format, rows, cols, &bytes);
            }
            // Extreme codes: all max, all min, per scale.
            for d in SCALES {
                for fill in [0xFFu8, 0x00, 0x80, 0x7F] {
                    let mut bytes = block(format, d, &mut || fill);
                    bytes.extend(block(format, -d, &mut || fill));
                    check(format, 2, bl, &bytes);
                }
            }
        }
    }

    #[test]
    fn ternary_code_3_and_formats_without_packing_are_declined() {
        for format in [Format::TQ2_0, Format::I2_S] {
            let bytes = vec![0xFFu8; format.block_bytes()];
            let why = pack(format, 1, format.block_len(), &bytes).unwrap_err();
            assert!(why.contains("code 3"), "{why}");
        }
        for format in [
            Format::Q4_1,
            Format::Q4_K,
            Format::Q6_K,
            Format::F16,
            Format::IQ4_NL,
        ] {
            let cols = format.block_len().max(32);
            let bytes = vec![0u8; format.row_bytes(cols).unwrap()];
            assert!(pack(format, 1, cols, &bytes).is_err(), "{format:?}");
        }
        let bytes = vec![0u8; 17];
        assert!(pack(Format::Q4_0, 1, 32, &bytes).is_err());
    }
}
