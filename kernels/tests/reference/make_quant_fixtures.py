#!/usr/bin/env python3
"""Writes quant_fixtures.json: reference dequantizations and quantizations.

Two references, both independent of Tern's Rust kernels:
- the PyPI package `gguf` (llama.cpp's gguf-py), whose `gguf.quants` module re-implements
  ggml's block formats in numpy: every dequantization, and the TQ1_0, TQ2_0, Q5_0 and Q5_1
  quantizations;
- the PyPI package `libggml-python`, which ships ggml's own prebuilt `libggml-base.so`: the Q3_K,
  Q2_K, Q5_K, Q4_K and Q6_K quantizations, through ctypes calls of `quantize_row_q3_K_ref` /
  `quantize_row_q2_K_ref` / `quantize_row_q5_K_ref` / `quantize_row_q4_K_ref` /
  `quantize_row_q6_K_ref` (what `llama-quantize` runs for these types without an importance
  matrix; gguf-py cannot quantize them). That build has no fused
  multiply-adds, like any x86_64 build of ggml-base. Set LIBGGML to use another build's
  libggml-base shared library instead.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install gguf numpy libggml-python
    /tmp/refvenv/bin/python kernels/tests/reference/make_quant_fixtures.py

Cases (fixed seeds, so the output is reproducible):
- dequant cases, per format Q4_K, Q6_K, TQ1_0, TQ2_0, Q3_K, Q2_K, Q5_K, IQ4_XS, Q5_0, Q5_1,
  IQ4_NL: rows of 1 and 3 blocks of random bytes with the f16 scale fields overwritten by sane
  values, and adversarial single blocks (all zero, all 0xFF codes, scale 0 and -0, negative
  scales, f16 subnormal, max and infinite scales, extreme int8 sub-block scales, Q5_K's fifth
  bits, IQ4_XS's extreme sub-block scales and codebook ends). Expected output:
  gguf.quants.dequantize.
- quantize cases, TQ1_0, TQ2_0, Q5_0 and Q5_1 (the ones of these formats gguf-py can quantize):
  f32 input rows including exact ties at half the block max, zeros and a lone outlier. Expected
  output: gguf.quants.quantize, which follows ggml's quantize_row_*_ref.
- quantize cases, Q3_K and Q2_K: the same inputs plus rows of sub-blocks of very different
  ranges, all-positive and all-negative blocks, f16-subnormal-sized and ±65504-sized weights
  and one-weight spikes. Expected output: ggml's quantize_row_q{3,2}_K_ref.
- quantize cases, Q5_K: the same kind of inputs plus rows of very different sub-block ranges,
  values on an exact grid (ties in the final rounding) and constant rows. Expected output:
  ggml's quantize_row_q5_K_ref.
- quantize cases, Q4_K and Q6_K (their own seeds, added after the others): the Q5_K inputs plus
  the Q3_K/Q2_K extra rows. Expected output: ggml's quantize_row_q{4,6}_K_ref.

With `--real-model PATH` (Qwen2.5-Coder 0.5B Q4_K_M, see scripts/fetch-models.sh) it also writes
real_tensor_fixtures.json: the bytes of the first rows of a few real Q5_0 tensors of that file
and gguf-py's dequantization of them, so the test checks real data without the model.

The file is JSON with one case per line so the Rust test can read it without a JSON crate.
Every float is the hex of its little-endian f32 bits (exact, and NaN-safe).
"""

import argparse
import ctypes
import importlib.metadata
import json
import os
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

import libggml

OUT = pathlib.Path(__file__).with_name("quant_fixtures.json")
REAL_OUT = pathlib.Path(__file__).with_name("real_tensor_fixtures.json")

# Real tensors to sample (name, rows): Q5_0 in the Qwen2.5-Coder 0.5B Q4_K_M file.
REAL_TENSORS = [("blk.0.attn_q.weight", 2), ("blk.0.attn_output.weight", 1), ("blk.23.ffn_up.weight", 1)]

# Byte offsets of each format's f16 fields (ggml-common.h block structs).
F16_FIELDS = {
    "Q4_K": [0, 2],  # d, dmin
    "Q5_K": [0, 2],  # d, dmin
    "Q6_K": [208],  # d
    "IQ4_XS": [0],  # d
    "TQ1_0": [52],  # d
    "TQ2_0": [64],  # d
    "Q3_K": [108],  # d
    "Q2_K": [80, 82],  # d, dmin
    "Q5_0": [0],  # d
    "Q5_1": [0, 2],  # d, m
    "IQ4_NL": [0],  # d
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
    if fmt == "Q3_K":
        # Six-bit scales 63 (+31) with codes 7 (+3), then scales 0 (-32) with codes 0 (-4).
        top = np.full(size, 0xFF, dtype=np.uint8)
        with_scales("max-scales-max-codes", top, [f16_bits(0.5)])
        with_scales("min-scales-min-codes", np.zeros(size, dtype=np.uint8), [f16_bits(-0.25)])
    if fmt == "Q2_K":
        # Scales and mins 15, codes 0 (only mins) and codes 3 with mins 0.
        block = np.zeros(size, dtype=np.uint8)
        block[0:16] = 0xFF
        with_scales("max-scales-zero-codes", block, [f16_bits(0.01), f16_bits(0.02)])
        block = np.full(size, 0xFF, dtype=np.uint8)
        block[0:16] = 0x0F
        with_scales("max-scales-max-codes-no-min", block, [f16_bits(0.03), f16_bits(0.5)])
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


def dequant_cases(fmt: str, rng: np.random.Generator) -> list[dict]:
    """Rows of 1 and 3 random blocks, then the adversarial blocks."""
    cases = []
    for n_blocks in (1, 3):
        row = np.concatenate([random_block(fmt, rng) for _ in range(n_blocks)])
        cases.append(dequant_case(fmt, f"random-{n_blocks}blk", row))
    for name, block in adversarial_blocks(fmt, rng):
        cases.append(dequant_case(fmt, name, block))
    return cases


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


# ggml's reference quantizers this script calls, per format.
GGML_QUANTIZERS = {
    "Q3_K": "quantize_row_q3_K_ref",
    "Q2_K": "quantize_row_q2_K_ref",
    "Q5_K": "quantize_row_q5_K_ref",
    "Q4_K": "quantize_row_q4_K_ref",
    "Q6_K": "quantize_row_q6_K_ref",
}


def ggml_base_path() -> str:
    """$LIBGGML if set (any llama.cpp/ggml build's libggml-base), else libggml-python's."""
    return os.environ.get("LIBGGML") or os.path.join(
        os.path.dirname(libggml.__file__), "lib64", "libggml-base.so"
    )


def ggml_base_name() -> str:
    """Where the quantize references came from, for the fixture's meta line."""
    if os.environ.get("LIBGGML"):
        return "ggml's " + pathlib.Path(os.environ["LIBGGML"]).resolve().name
    version = importlib.metadata.version("libggml-python")
    return f"ggml's libggml-base.so from libggml-python {version}"


def ggml_quantize(fmt: str, x: np.ndarray) -> np.ndarray:
    """ggml's own quantize_row_*_ref over the row x."""
    fn = getattr(ctypes.CDLL(ggml_base_path()), GGML_QUANTIZERS[fmt])
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    x = np.ascontiguousarray(x, dtype=np.float32)
    block_len, block_bytes = GGML_QUANT_SIZES[QT[fmt]]
    out = np.zeros(x.size // block_len * block_bytes, dtype=np.uint8)
    fn(x.ctypes.data, out.ctypes.data, x.size)
    return out


def low_bit_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """More rows for the 16-weight sub-block searches of Q3_K and Q2_K."""
    cases = []
    x = rng.normal(0, 1, 4 * 256).astype(np.float32)
    x *= np.repeat(10.0 ** rng.uniform(-4, 1, 4 * 16), 16).astype(np.float32)
    cases.append(("mixed-ranges-4blk", x))
    cases.append(("all-positive", np.abs(rng.normal(0.3, 0.2, 256)).astype(np.float32) + 0.01))
    cases.append(("all-negative", -np.abs(rng.normal(0.3, 0.2, 256)).astype(np.float32) - 0.01))
    cases.append(("f16-subnormal-sized", (rng.normal(0, 1, 256) * 3e-6).astype(np.float32)))
    cases.append(("f16-max-sized", rng.uniform(-65504, 65504, 256).astype(np.float32)))
    spikes = np.zeros(256, dtype=np.float32)
    spikes[np.arange(0, 256, 16) + rng.integers(0, 16, 16)] = rng.normal(0, 1, 16)
    cases.append(("one-spike-per-sub-block", spikes))
    steps = np.tile(np.array([-0.3, -0.1, 0.1, 0.3], dtype=np.float32), 64)
    cases.append(("exact-levels", steps))
    return cases


def quant_case(fmt: str, name: str, x: np.ndarray) -> dict:
    if fmt in GGML_QUANTIZERS:
        q = ggml_quantize(fmt, x)
    else:
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


def real_cases(model: pathlib.Path) -> list[dict]:
    from gguf import GGUFReader

    reader = GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}
    cases = []
    for name, rows in REAL_TENSORS:
        t = tensors[name]
        assert t.tensor_type == QT.Q5_0, f"{name} is {t.tensor_type.name}"
        row_len = int(t.shape[0])  # ggml's ne[0]: the row length
        block_len, block_bytes = GGML_QUANT_SIZES[QT.Q5_0]
        row_bytes = row_len // block_len * block_bytes
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: rows * row_bytes]
        case = dequant_case("Q5_0", f"{model.name}:{name}:rows0-{rows}", raw)
        cases.append(case)
    return cases


def write_json(path: pathlib.Path, cases: list[dict], extra: str = "", reference: str = "") -> None:
    versions = {p: importlib.metadata.version(p) for p in ("gguf", "numpy")}
    header = {
        "generator": "kernels/tests/reference/make_quant_fixtures.py" + extra,
        "reference": f"gguf-py {versions['gguf']} (gguf.quants), numpy {versions['numpy']}" + reference,
    }
    lines = ["{"]
    lines.append(f'"meta": {json.dumps(header)},')
    lines.append('"cases": [')
    lines.append(",\n".join(json.dumps(c) for c in cases))
    lines.append("]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # Still valid JSON.
    path.write_text(text)
    print(f"wrote {path} ({len(text)} bytes, {len(cases)} cases)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real-model", type=pathlib.Path, help="also write real_tensor_fixtures.json")
    args = parser.parse_args()
    if args.real_model:
        write_json(REAL_OUT, real_cases(args.real_model), f" --real-model {args.real_model.name}")
    cases = []
    # Each format's dequant seed as its branch chose it, so every case stays byte for byte what that
    # branch tested (Q3_K/Q2_K and Q5_K/IQ4_XS were added side by side and both took 1004, 1005).
    dequant_seeds = [
        ("Q4_K", 1000),
        ("Q6_K", 1001),
        ("TQ1_0", 1002),
        ("TQ2_0", 1003),
        ("Q3_K", 1004),
        ("Q2_K", 1005),
        ("Q5_K", 1004),
        ("IQ4_XS", 1005),
    ]
    for fmt, seed in dequant_seeds:
        rng = np.random.default_rng(seed)
        cases += dequant_cases(fmt, rng)
    for seed, fmt in enumerate(["TQ1_0", "TQ2_0"]):
        rng = np.random.default_rng(2000 + seed)
        for name, x in quant_inputs(rng):
            cases.append(quant_case(fmt, name, x))
    for seed, fmt in enumerate(["Q3_K", "Q2_K"]):
        rng = np.random.default_rng(3000 + seed)
        for name, x in quant_inputs(rng) + low_bit_inputs(rng):
            cases.append(quant_case(fmt, name, x))
    # Formats added later get their own seeds, so the cases above stay byte for byte as they were.
    for seed, fmt in enumerate(["Q5_0", "Q5_1", "IQ4_NL"]):
        rng = np.random.default_rng(3000 + seed)
        cases += dequant_cases(fmt, rng)
    for seed, fmt in enumerate(["Q5_0", "Q5_1"]):
        rng = np.random.default_rng(4000 + seed)
        for name, x in quant_inputs(rng):
            cases.append(quant_case(fmt, name, x))
    for name, x in q5_k_inputs(np.random.default_rng(3000)):
        cases.append(quant_case("Q5_K", name, x))
    # Q4_K and Q6_K moved to ggml's quantizers after the rest: seeds of their own, cases appended.
    for seed, fmt in enumerate(["Q4_K", "Q6_K"]):
        rng = np.random.default_rng(5000 + seed)
        for name, x in q5_k_inputs(rng) + low_bit_inputs(rng):
            cases.append(quant_case(fmt, name, x))
    write_json(OUT, cases, reference=f"; {ggml_base_name()} ({', '.join(GGML_QUANTIZERS.values())})")


if __name__ == "__main__":
    main()
