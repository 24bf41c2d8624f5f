//! Unquantized formats: F32, F16, BF16.

/// Reads little-endian f32 `i` of `row`.
#[inline(always)]
fn f32_at(row: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]])
}

#[inline(always)]
fn f16_at(row: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32()
}

#[inline(always)]
fn bf16_at(row: &[u8], i: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as u32) << 16)
}

/// `out[i] = row[i]` for an F32 row.
pub fn dequant_f32(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len(), 4 * out.len());
    for (i, o) in out.iter_mut().enumerate() {
        *o = f32_at(row, i);
    }
}

/// Dot product of an F32 row with `x`.
pub fn dot_f32_f32(row: &[u8], x: &[f32]) -> f32 {
    assert_eq!(row.len(), 4 * x.len());
    x.iter()
        .enumerate()
        .map(|(i, &xi)| f32_at(row, i) * xi)
        .sum()
}

/// `out[i] = row[i]` for an F16 row.
pub fn dequant_f16(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len(), 2 * out.len());
    for (i, o) in out.iter_mut().enumerate() {
        *o = f16_at(row, i);
    }
}

/// Dot product of an F16 row with `x`.
pub fn dot_f16_f32(row: &[u8], x: &[f32]) -> f32 {
    assert_eq!(row.len(), 2 * x.len());
    x.iter()
        .enumerate()
        .map(|(i, &xi)| f16_at(row, i) * xi)
        .sum()
}

/// `out` = `x` as an F16 row (little-endian halves), rounded to nearest, ties to even; beyond
/// ±65504 becomes ±∞ (IEEE 754 conversion, as F16C and `fcvtn` perform it): what the f16 KV
/// cache stores.
pub fn quantize_f16(x: &[f32], out: &mut [u8]) {
    assert_eq!(out.len(), 2 * x.len());
    for (o, &v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
    }
}

/// `out[i] = row[i]` for a BF16 row.
pub fn dequant_bf16(row: &[u8], out: &mut [f32]) {
    assert_eq!(row.len(), 2 * out.len());
    for (i, o) in out.iter_mut().enumerate() {
        *o = bf16_at(row, i);
    }
}

/// Dot product of a BF16 row with `x`.
pub fn dot_bf16_f32(row: &[u8], x: &[f32]) -> f32 {
    assert_eq!(row.len(), 2 * x.len());
    x.iter()
        .enumerate()
        .map(|(i, &xi)| bf16_at(row, i) * xi)
        .sum()
}
