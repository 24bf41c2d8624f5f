#!/usr/bin/env python3
"""Writes quant_fixtures.json: reference dequantizations (and TQ quantizations) from gguf-py.

The reference is the PyPI package `gguf` (llama.cpp's gguf-py), whose `gguf.quants` module
re-implements ggml's block formats in numpy, independently of Tern's Rust kernels:

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install gguf numpy
    /tmp/refvenv/bin/python kernels/tests/reference/make_quant_fixtures.py

    # The Q5_K quantize cases also need ggml's own quantizer, called through ctypes: point
    # LIBGGML at the libggml-base shared library of any llama.cpp/ggml build.
    LIBGGML=/path/to/libggml-base.so /tmp/refvenv/bin/python \
        kernels/tests/reference/make_quant_fixtures.py

Cases (fixed seeds, so the output is reproducible):
- dequant cases, per format Q4_K, Q5_K, Q6_K, IQ4_XS, TQ1_0, TQ2_0: rows of 1 and 3 blocks of
  random bytes with the f16 scale fields overwritten by sane values, and adversarial single
  blocks (all zero, all 0xFF codes, scale 0 and -0, negative scales, f16 subnormal, max and
  infinite scales, extreme int8 sub-block scales, Q5_K's fifth bits, IQ4_XS's extreme
  sub-block scales and codebook ends). Expected output: gguf.quants.dequantize.
- quantize cases, TQ1_0 and TQ2_0 (the only ones of these formats gguf-py can quantize): f32
  input rows including exact ties at half the block max, zeros and a lone outlier. Expected
  output: gguf.quants.quantize, which follows ggml's quantize_row_tq{1,2}_0_ref.
- quantize cases, Q5_K (gguf-py has no k-quant quantizer): the same kind of inputs plus rows
  of very different sub-block ranges, values on an exact grid (ties in the final rounding)
  and constant rows. Expected output: ggml's quantize_row_q5_K_ref itself, from $LIBGGML.

The file is JSON with one case per line so the Rust test can read it without a JSON crate.
Every float is the hex of its little-endian f32 bits (exact, and NaN-safe).
"""

import ctypes
import importlib.metadata
import json
import os
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).with_name("quant_fixtures.json")

# Byte offsets of each format's f16 fields (ggml-common.h block structs).
F16_FIELDS = {
    "Q4_K": [0, 2],  # d, dmin
    "Q5_K": [0, 2],  # d, dmin
    "Q6_K": [208],  # d
    "IQ4_XS": [0],  # d
    "TQ1_0": [52],  # d
    "TQ2_0": [64],  # d
}

F16_ZERO, F16_NEG_ZERO = 0x0000, 0x8000
F16_MIN_SUB, F16_MAX_SUB = 0x0001, 0x03FF
F16_MAX, F16_INF, F16_NAN = 0x7BFF, 0x7C00, 0x7E00


def f16_bits(v: float) -> int:
    return int(np.array([v], dtype=np.float16).view(np.uint16)[0])


def set_f16(block: np.ndarray, offset: int, bits: int) -> None:
    block[offset] = bits & 0xFF
    block[offset + 1] = bits >> 8


def sane_scale(rng: np.random.Generator, negative_ok: bool = False) -> int:
    """An f16 of magnitude 1e-4..1e-1 (log-uniform), like real block scales."""
    v = float(10 ** rng.uniform(-4, -1))
    if negative_ok and rng.random() < 0.5:
        v = -v
    return f16_bits(v)


def random_block(fmt: str, rng: np.random.Generator) -> np.ndarray:
    size = GGML_QUANT_SIZES[QT[fmt]][1]
    block = rng.integers(0, 256, size=size, dtype=np.uint8)
    for off in F16_FIELDS[fmt]:
        set_f16(block, off, sane_scale(rng))
    return block


def adversarial_blocks(fmt: str, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    size = GGML_QUANT_SIZES[QT[fmt]][1]
    fields = F16_FIELDS[fmt]
    cases = []

    def with_scales(name: str, codes: np.ndarray, scale_bits: list[int]) -> None:
        block = codes.copy()
        for off, bits in zip(fields, scale_bits):
            set_f16(block, off, bits)
        cases.append((name, block))

    rand = lambda: rng.integers(0, 256, size=size, dtype=np.uint8)  # noqa: E731
    ones = np.full(size, 0xFF, dtype=np.uint8)
    n = len(fields)

    cases.append(("all-zero", np.zeros(size, dtype=np.uint8)))
    with_scales("all-ff-codes", ones, [sane_scale(rng) for _ in range(n)])
    with_scales("scale-zero", rand(), [F16_ZERO] * n)
    with_scales("scale-neg-zero", rand(), [F16_NEG_ZERO] * n)
    with_scales("scale-negative", rand(), [f16_bits(-0.0123), f16_bits(-0.5)][:n])
    with_scales("scale-subnormal", rand(), [F16_MIN_SUB, F16_MAX_SUB][:n])
    with_scales("scale-f16-max", rand(), [F16_MAX] * n)
    with_scales("scale-inf", rand(), [F16_INF, F16_NAN][:n])
    if fmt in ("Q4_K", "Q5_K"):
        # All six-bit scales and mins 63, codes 0: the mins dominate.
        block = np.zeros(size, dtype=np.uint8)
        block[4:16] = 0xFF
        with_scales("max-scales-zero-codes", block, [f16_bits(0.01), f16_bits(0.02)])
    if fmt == "Q6_K":
        # int8 sub-block scales at -128 and 127, codes at 0 (-32) and 63 (+31).
        block = rand()
        block[192:208] = np.array([0x80, 0x7F] * 8, dtype=np.uint8)
        block[0:64] = 0x00
        block[64:128] = 0xFF
        block[128:160] = 0x00
        block[160:192] = 0xFF
        with_scales("extreme-scales-and-codes", block, [f16_bits(0.75)])
    if fmt == "Q5_K":
        # Codes 31 (all qh bits, all nibbles 15) and 16 (qh bits only) in alternate chunks.
        block = rand()
        block[16:48] = 0xFF
        block[48:176] = np.tile(np.array([0xFF] * 32 + [0x00] * 32, dtype=np.uint8), 2)
        with_scales("high-bits-codes-31-and-16", block, [f16_bits(0.03), f16_bits(0.07)])
    if fmt == "IQ4_XS":
        # Sub-block scales 0 and 63 (factors -32 and +31), codebook ends -127 and 113.
        block = rand()
        block[2:4] = [0b11001100, 0b11001100]  # scales_h: sub-blocks 2, 3, 6, 7 high bits 3
        block[4:8] = [0x00, 0xFF, 0x00, 0xFF]  # scales_l: sub-blocks 2, 3, 6, 7 low bits 15
        block[8:136] = np.tile(np.array([0x00, 0xFF], dtype=np.uint8), 64)
        with_scales("extreme-scales-and-codes", block, [f16_bits(0.75)])
    return cases


def hex_f32(values: np.ndarray) -> str:
    return np.ascontiguousarray(values, dtype="<f4").tobytes().hex()


def dequant_case(fmt: str, name: str, row: np.ndarray) -> dict:
    qtype = QT[fmt]
    with np.errstate(invalid="ignore"):  # inf scale times code 0 is NaN, on purpose.
        expected = dequantize(row.reshape(1, -1), qtype).reshape(-1)
    assert expected.dtype == np.float32
    return {
        "format": fmt,
        "name": name,
        "bytes": row.tobytes().hex(),
        "dequant_f32_le": hex_f32(expected),
    }


def quant_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    cases = []
    cases.append(("random-1blk", rng.normal(0, 0.05, 256).astype(np.float32)))
    cases.append(("random-2blk", rng.uniform(-2, 2, 2 * 256).astype(np.float32)))
    # Exact halves of the block max (ties: ggml rounds them away from zero), zeros, -max. The
    # max is a power of two so that x * (1/max) is exactly 0.5 at the ties.
    ties = rng.choice(np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32), 256)
    ties = ties * np.float32(0.25)
    ties[7] = np.float32(-0.25)
    cases.append(("ties-at-half-max", ties.astype(np.float32)))
    cases.append(("all-zero", np.zeros(256, dtype=np.float32)))
    outlier = rng.normal(0, 1e-3, 256).astype(np.float32)
    outlier[200] = np.float32(-3.0)
    cases.append(("lone-outlier", outlier))
    return cases


def quant_case(fmt: str, name: str, x: np.ndarray) -> dict:
    q = quantize(x.reshape(1, -1), QT[fmt]).reshape(-1)
    assert q.dtype == np.uint8
    return {
        "format": fmt,
        "name": "quantize-" + name,
        "input_f32_le": hex_f32(x),
        "bytes": q.tobytes().hex(),
    }


def q5_k_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    cases = quant_inputs(rng)
    # Sub-blocks of 32 at 1e-3 .. 10 and signs: every sub-block scale code from 1 to 63.
    mixed = rng.normal(0, 1, 3 * 256).astype(np.float32)
    mixed *= np.repeat(10.0 ** rng.uniform(-3, 1, 24), 32).astype(np.float32)
    mixed[64:96] = np.abs(mixed[64:96]) + np.float32(0.5)  # an all-positive sub-block
    mixed[300:332] = -np.abs(mixed[300:332]) - np.float32(0.25)  # an all-negative one
    cases.append(("mixed-ranges-3blk", mixed.astype(np.float32)))
    grid = (rng.integers(-16, 16, 256) * 0.125).astype(np.float32)
    cases.append(("exact-grid", grid))
    cases.append(("constant-positive", np.full(256, 0.3, dtype=np.float32)))
    cases.append(("constant-negative", np.full(256, -0.7, dtype=np.float32)))
    tiny = (rng.normal(0, 1, 256) * 1e-6).astype(np.float32)
    cases.append(("tiny", tiny))
    return cases


def ggml_quantizer(name: str):
    """`name(const float *x, void *y, int64_t k)` from $LIBGGML (ggml's reference quantizer)."""
    lib = ctypes.CDLL(os.environ["LIBGGML"])
    f = getattr(lib, name)
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    f.restype = None
    return f


def ggml_quant_case(fmt: str, func, name: str, x: np.ndarray) -> dict:
    x = np.ascontiguousarray(x, dtype=np.float32)
    block_len, block_bytes = GGML_QUANT_SIZES[QT[fmt]]
    q = np.zeros(len(x) // block_len * block_bytes, dtype=np.uint8)
    func(x.ctypes.data, q.ctypes.data, len(x))
    return {
        "format": fmt,
        "name": "quantize-" + name,
        "input_f32_le": hex_f32(x),
        "bytes": q.tobytes().hex(),
    }


def main() -> None:
    cases = []
    for seed, fmt in enumerate(["Q4_K", "Q6_K", "TQ1_0", "TQ2_0", "Q5_K", "IQ4_XS"]):
        rng = np.random.default_rng(1000 + seed)
        for n_blocks in (1, 3):
            row = np.concatenate([random_block(fmt, rng) for _ in range(n_blocks)])
            cases.append(dequant_case(fmt, f"random-{n_blocks}blk", row))
        for name, block in adversarial_blocks(fmt, rng):
            cases.append(dequant_case(fmt, name, block))
    for seed, fmt in enumerate(["TQ1_0", "TQ2_0"]):
        rng = np.random.default_rng(2000 + seed)
        for name, x in quant_inputs(rng):
            cases.append(quant_case(fmt, name, x))
    q5_k = ggml_quantizer("quantize_row_q5_K_ref")
    for name, x in q5_k_inputs(np.random.default_rng(3000)):
        cases.append(ggml_quant_case("Q5_K", q5_k, name, x))

    versions = {p: importlib.metadata.version(p) for p in ("gguf", "numpy")}
    header = {
        "generator": "kernels/tests/reference/make_quant_fixtures.py",
        "reference": f"gguf-py {versions['gguf']} (gguf.quants), numpy {versions['numpy']}",
        "quantize_reference": "ggml quantize_row_*_ref from "
        + pathlib.Path(os.environ["LIBGGML"]).resolve().name,
    }
    lines = ["{"]
    lines.append(f'"meta": {json.dumps(header)},')
    lines.append('"cases": [')
    lines.append(",\n".join(json.dumps(c) for c in cases))
    lines.append("]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # Still valid JSON.
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
