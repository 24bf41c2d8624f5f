#!/usr/bin/env python3
"""Write small random-weight BitNet b1.58 models as GGUF and record llama.cpp's outputs on them.

Run it through make_bitnet_models.sh, which pins the versions. There are no small real ternary
checkpoints to download, so the models are random: ternary weights {-1, 0, +1} times one scale
per tensor, which TQ1_0, TQ2_0 and I2_S all represent EXACTLY. The same weights are written
several times, so a runtime must produce (almost) the same logits from every copy:

  models/bitnet_small_tq2_0.gguf         ternary matrices in TQ2_0 (block scale d = tensor scale)
  models/bitnet_small_tq1_0.gguf         the same in TQ1_0
  models/bitnet_small_i2_s.gguf          the same in bitnet.cpp's I2_S (type 36): n/4 code bytes,
                                         the f32 tensor scale, then NON-ZERO garbage padding to
                                         n/4 + 32 bytes (real files do not always zero it)
  models/bitnet_small_q4_0.gguf          the same weights requantized to Q4_0 (not exact; the
                                         non-ternary comparison)
  models/bitnet_small_scaled_tq2_0.gguf  TQ2_0 with block scale 1 and the tensor scale moved into
                                         the optional `blk.N.<w>.scale` tensors (same function)

  --layers700m writes only models/bitnet_700m_layers_tq2_0.gguf: two layers of the benchmark shape
  below with a 4096-token vocabulary (the NPU delegate's whole-layer test, issue 20).

  --bench adds the benchmark shape of issue 7 (BitNet b1.58 "large", ~700M parameters: hidden
  1536, FFN 4096, 24 layers, 16 heads, vocabulary 32002, F16 tied embedding/output):
  models/bitnet_bench_tq2_0.gguf, models/bitnet_bench_i2_s.gguf (275 and 270 MB, about 4 minutes
  on 2 cores). The Q4_0 copy for the non-ternary comparison comes from Tern itself:
    tern quantize -m models/bitnet_bench_tq2_0.gguf -o models/bitnet_bench_q4_0.gguf \
        --type q4_0 --embedding-type keep          (481 MB, F16 embedding kept)

Fixture (tests/reference/fixtures/bitnet_small.json, from the small model): llama.cpp (through
llama-cpp-python) on the TQ2_0 and TQ1_0 copies -- llama.cpp cannot load I2_S -- plus an
independent float64 numpy forward pass of the same weights (no activation quantization, f64 KV
cache), for 3 prompts given as token ids: logits at 100 fixed token ids at every position,
log-sum-exp at every position, top-10 at the last position, and 16 greedy tokens with the
top-2 margin of each step.

Everything is deterministic from --seed: the weights come from a counter-based splitmix64
stream keyed by (seed, tensor name), so a tensor's values do not depend on file order and the
generator is easy to port (see `stream`). Model files are never committed (models/ is
gitignored); rerun this script to regenerate them. The model sha256s are in the fixture.

The `bitnet` architecture, as llama.cpp reads it (the facts this script relies on):
  * tensor names and shapes: llama.cpp src/models/bitnet.cpp `load_arch_tensors` (ggml-org
    llama.cpp, and the same file vendored in llama-cpp-python 0.3.36): token_embd {n_embd,
    n_vocab}; output_norm; per layer attn_norm, attn_q {n_embd, n_embd}, attn_k/attn_v
    {n_embd, n_embd_gqa}, attn_output {n_embd, n_embd}, attn_sub_norm {n_embd}, ffn_norm,
    ffn_gate/ffn_up {n_embd, n_ff}, ffn_down {n_ff, n_embd}, ffn_sub_norm {n_ff}; optional
    `<weight>.scale` {1} per matrix (TENSOR_NOT_REQUIRED). No `output.weight`: the graph always
    multiplies by tok_embd (tied head), and the loader does not create `output`.
  * hyperparameter keys: the generic LLM_KV names in src/llama-arch.cpp ("%s.block_count",
    "%s.embedding_length", ...); bitnet's load_arch_hparams additionally REQUIRES
    "%s.attention.layer_norm_rms_epsilon" and optionally reads "%s.hidden_activation" (SiLU by
    default; not written here).
  * graph: src/models/bitnet.cpp -- RMSNorm everywhere; attn_sub_norm on the attention result
    before attn_output; SiLU-gated parallel FFN (LLM_FFN_SILU, LLM_FFN_PAR) with ffn_sub_norm
    on silu(gate)*up before ffn_down; scale tensors multiply the matmul OUTPUT
    (build_lora_mm: ggml_mul(ggml_mul_mat(w, x), w_s)).
  * RoPE: NEOX (half split), from src/llama-model.cpp llama_model_rope_type, where LLM_ARCH_BITNET
    is in the "pairs of head values are offset by n_rot/2" list. The file does not say so.
  * BitNet b1.58 large config (hidden 1536, intermediate 4096, 24 layers, 16 heads, no GQA,
    vocab 32002, rms eps 1e-5, rope theta 10000): the 1bitLLM/bitnet_b1_58-large config.json
    that issue 7's benchmark shape refers to.
  * I2_S layout: /work/shared/formats.md (bitnet.cpp src/ggml-bitnet-mad.cpp quantize_i2_s):
    blocks of 128 weights in 32 bytes, byte p of block i holds weights 128i + p + 32k (k = 0..3)
    at bits 7-2k..6-2k as w + 1; then the f32 scale; tensor size n/4 + 32. general.file_type 40
    is bitnet.cpp's LLAMA_FTYPE_MOSTLY_I2_S.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_MODELS = ROOT / "models"
DEFAULT_FIXTURE = HERE / "fixtures" / "bitnet_small.json"

SIG_DIGITS = 6
TOP_K = 10
N_GREEDY = 16
N_IDS = 100
ALIGNMENT = 32

# bitnet.cpp's type id for I2_S. Upstream ggml retired 36 (it was IQ4_NL_4_4), so a file using it
# comes from bitnet.cpp (or from this script); gguf-py has no name for it.
GGML_TYPE_I2_S = 36
I2_S_TRAILER = 32
# llama_ftype values for general.file_type (llama.h; 40 is bitnet.cpp's LLAMA_FTYPE_MOSTLY_I2_S).
FILE_TYPE = {"tq1_0": 36, "tq2_0": 37, "i2_s": 40, "q4_0": 2, "scaled_tq2_0": 37}


def log(msg: str) -> None:
    print(f"[make_bitnet_models] {msg}", file=sys.stderr, flush=True)


def rnd(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.{SIG_DIGITS}g}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # pragma: no cover - informational only
        return None


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    name: str
    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ctx_train: int
    rms_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_embd_kv(self) -> int:
        return self.head_dim * self.n_head_kv

    def tensors(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, numpy shape, kind). numpy shape is ggml's reversed: (ne1, ne0) = (out, in)."""
        d, f, kv = self.n_embd, self.n_ff, self.n_embd_kv
        out = [("token_embd.weight", (self.n_vocab, d), "embed"),
               ("output_norm.weight", (d,), "norm")]
        for i in range(self.n_layer):
            p = f"blk.{i}."
            out += [
                (p + "attn_norm.weight", (d,), "norm"),
                (p + "attn_q.weight", (d, d), "ternary"),
                (p + "attn_k.weight", (kv, d), "ternary"),
                (p + "attn_v.weight", (kv, d), "ternary"),
                (p + "attn_output.weight", (d, d), "ternary"),
                (p + "attn_sub_norm.weight", (d,), "norm"),
                (p + "ffn_norm.weight", (d,), "norm"),
                (p + "ffn_gate.weight", (f, d), "ternary"),
                (p + "ffn_up.weight", (f, d), "ternary"),
                (p + "ffn_down.weight", (d, f), "ternary"),
                (p + "ffn_sub_norm.weight", (f,), "norm"),
            ]
        return out

    def check(self) -> None:
        assert self.n_embd % self.n_head == 0 and self.n_head % self.n_head_kv == 0
        # TQ1_0/TQ2_0 blocks are 256 weights along a row; I2_S blocks 128.
        for t in (self.n_embd, self.n_ff):
            assert t % 256 == 0, f"{t} is not a multiple of 256"


SMALL = Spec("bitnet_small", n_vocab=4096, n_embd=256, n_ff=512, n_layer=4, n_head=4, n_head_kv=2,
             n_ctx_train=2048)
# 1bitLLM/bitnet_b1_58-large (config.json): hidden 1536, intermediate 4096, 24 layers, 16 heads
# (no GQA), vocab 32002, rms_norm_eps 1e-5, rope_theta 10000, max_position_embeddings 2048.
BENCH = Spec("bitnet_bench", n_vocab=32002, n_embd=1536, n_ff=4096, n_layer=24, n_head=16,
             n_head_kv=16, n_ctx_train=2048)
# Two layers of that shape with a 4096-token vocabulary (--layers700m): the NPU delegate's
# whole-layer test (issue 20) at BitNet b1.58 large's layer dimensions, 27 MB, seconds to write.
LAYERS700M = Spec("bitnet_700m_layers", n_vocab=4096, n_embd=1536, n_ff=4096, n_layer=2,
                  n_head=16, n_head_kv=16, n_ctx_train=2048)


# --------------------------------------------------------------------------
# deterministic values: counter-based splitmix64
# --------------------------------------------------------------------------

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z):
    """splitmix64's finalizer on numpy uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def key(seed: int, purpose: str, name: str) -> int:
    """The stream key of (seed, purpose, tensor name): mix64((seed * GOLDEN) ^ fnv1a64(purpose:name))."""
    k = np.array([((seed * GOLDEN) & M64) ^ fnv1a64(f"{purpose}:{name}")], dtype=np.uint64)
    return int(mix64(k)[0])


def stream(k: int, start: int, n: int) -> np.ndarray:
    """Values start..start+n of stream k: mix64(k + (i + 1) * GOLDEN), i.e. splitmix64 seeded k."""
    i = np.arange(start + 1, start + n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(np.uint64(k) + i * np.uint64(GOLDEN))


def tensor_scale(seed: int, name: str) -> float:
    """Per-tensor weight scale m/1024, m in 32..96: exactly representable in f16 and f32."""
    m = 32 + int(stream(key(seed, "scale", name), 0, 1)[0] % np.uint64(65))
    return m / 1024.0


def ternary_codes(seed: int, name: str, shape: tuple[int, ...], start_row: int = 0,
                  n_rows: int | None = None) -> np.ndarray:
    """Ternary weights t in {-1, 0, +1} (int8), uniform thirds: ((u >> 33) mod 3) - 1."""
    cols = shape[-1]
    n_rows = shape[0] if n_rows is None else n_rows
    u = stream(key(seed, "w", name), start_row * cols, n_rows * cols)
    return ((u >> np.uint64(33)) % np.uint64(3)).astype(np.int8).reshape(n_rows, cols) - np.int8(1)


def norm_weights(seed: int, name: str, n: int) -> np.ndarray:
    """Norm weights near 1: 1 + k/1024, k in -100..100 (exact in f32)."""
    u = stream(key(seed, "w", name), 0, n)
    k = (u >> np.uint64(40)) % np.uint64(201)
    return (1.0 + (k.astype(np.float64) - 100.0) / 1024.0).astype(np.float32)


def embed_rows(seed: int, name: str, cols: int, start_row: int, n_rows: int) -> np.ndarray:
    """Embedding values k/1024, k in -400..400 (exact in f16)."""
    u = stream(key(seed, "w", name), start_row * cols, n_rows * cols)
    k = (u >> np.uint64(40)) % np.uint64(801)
    return ((k.astype(np.float64) - 400.0) / 1024.0).astype(np.float16).reshape(n_rows, cols)


def i2_s_padding(seed: int, name: str) -> bytes:
    """28 bytes of non-zero garbage after an I2_S tensor's scale."""
    u = stream(key(seed, "pad", name), 0, I2_S_TRAILER - 4)
    return bytes(int(v % np.uint64(255)) + 1 for v in u)


# --------------------------------------------------------------------------
# tokenizer: a tiny SentencePiece-style ("llama") vocabulary
# --------------------------------------------------------------------------

def make_vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s>, the 256 byte tokens <0xXX>, then '▁', printable ASCII with and without
    a '▁' prefix, then lowercase pairs and triples likewise, until n_vocab. Scores fall with the
    id (earlier pieces merge first). Types: 1 normal, 2 unknown, 3 control, 6 byte."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    pieces = ["▁"]
    for c in range(33, 127):
        pieces += [chr(c), "▁" + chr(c)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    for a in letters:
        for b in letters:
            pieces += ["▁" + a + b, a + b]
    for a in letters:
        for b in letters:
            for c in letters:
                pieces += ["▁" + a + b + c, a + b + c]
    need = n_vocab - len(tokens)
    assert need <= len(pieces), "vocabulary too large for the piece generator"
    tokens += pieces[:need]
    types += [1] * need
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(need)]
    assert len(set(tokens)) == len(tokens) == n_vocab
    return tokens, scores, types


# --------------------------------------------------------------------------
# weights in memory (small model only) and their encodings
# --------------------------------------------------------------------------

def small_weights(spec: Spec, seed: int) -> dict[str, np.ndarray]:
    """Every tensor's exact values: float16 embedding, float32 norms, and for each ternary matrix
    the int8 codes (the scale is tensor_scale(seed, name))."""
    w: dict[str, np.ndarray] = {}
    for name, shape, kind in spec.tensors():
        if kind == "embed":
            w[name] = embed_rows(seed, name, shape[1], 0, shape[0])
        elif kind == "norm":
            w[name] = norm_weights(seed, name, shape[0])
        else:
            w[name] = ternary_codes(seed, name, shape)
    return w


def pack_i2_s(t: np.ndarray, scale: float, padding: bytes) -> np.ndarray:
    """bitnet.cpp's I2_S bytes of a ternary tensor: codes t + 1 in blocks of 128 (byte p of a
    block holds elements p, p+32, p+64, p+96 in bits 7-6, 5-4, 3-2, 1-0), the f32 scale, then
    `padding` up to n/4 + 32 bytes."""
    c = (t.reshape(-1, 4, 32) + 1).astype(np.uint8)  # (block, k, p)
    packed = (c[:, 0, :] << 6) | (c[:, 1, :] << 4) | (c[:, 2, :] << 2) | c[:, 3, :]
    trailer = np.frombuffer(np.float32(scale).tobytes() + padding, dtype=np.uint8)
    assert trailer.size == I2_S_TRAILER
    return np.concatenate([packed.reshape(-1), trailer])


def unpack_i2_s(raw: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Inverse of pack_i2_s (self-check): codes - 1 as int8 and the scale."""
    b = raw[: n // 4].reshape(-1, 32)
    c = np.stack([(b >> 6) & 3, (b >> 4) & 3, (b >> 2) & 3, b & 3], axis=1)  # (block, k, p)
    scale = float(np.frombuffer(raw[n // 4: n // 4 + 4].tobytes(), dtype=np.float32)[0])
    return c.reshape(-1).astype(np.int8) - 1, scale


def encode_matrix(variant: str, t: np.ndarray, scale: float, seed: int, name: str
                  ) -> tuple[np.ndarray, int]:
    """(bytes as uint8 array, ggml type id) of ternary matrix t*scale in `variant`."""
    if variant == "i2_s":
        return pack_i2_s(t, scale, i2_s_padding(seed, name)), GGML_TYPE_I2_S
    if variant == "scaled_tq2_0":
        # Block scale 1: the tensor scale lives in the separate `.scale` tensor.
        return quantize(t.astype(np.float32), QT.TQ2_0), int(QT.TQ2_0)
    qt = {"tq2_0": QT.TQ2_0, "tq1_0": QT.TQ1_0, "q4_0": QT.Q4_0}[variant]
    return quantize(t.astype(np.float32) * np.float32(scale), qt), int(qt)


def check_exact(variant: str, raw: np.ndarray, qtype: int, t: np.ndarray, scale: float) -> None:
    """Ternary encodings must decode to exactly t * scale."""
    if variant == "q4_0":
        return
    if variant == "i2_s":
        codes, s = unpack_i2_s(raw, t.size)
        assert s == np.float32(scale) and np.array_equal(codes, t.reshape(-1)), "I2_S round trip"
        return
    want_scale = 1.0 if variant == "scaled_tq2_0" else scale
    back = dequantize(raw, QT(qtype)).reshape(t.shape)
    assert np.array_equal(back, t.astype(np.float32) * np.float32(want_scale)), f"{variant} round trip"


# --------------------------------------------------------------------------
# GGUF writing (streamed: tensor infos first, then each tensor's bytes in order)
# --------------------------------------------------------------------------

def add_metadata(w: gguf.GGUFWriter, spec: Spec, variant: str, seed: int) -> None:
    arch = "bitnet"
    w.add_name(f"{spec.name} ({variant}, random ternary weights, seed {seed})")
    w.add_description("Random-weight BitNet b1.58 test model written by "
                      "tests/reference/make_bitnet_models.py; not a trained model.")
    w.add_uint32("general.file_type", FILE_TYPE[variant])
    w.add_uint32("general.quantization_version", 2)
    w.add_uint32(f"{arch}.vocab_size", spec.n_vocab)
    w.add_uint32(f"{arch}.context_length", spec.n_ctx_train)
    w.add_uint32(f"{arch}.embedding_length", spec.n_embd)
    w.add_uint32(f"{arch}.feed_forward_length", spec.n_ff)
    w.add_uint32(f"{arch}.block_count", spec.n_layer)
    w.add_uint32(f"{arch}.attention.head_count", spec.n_head)
    w.add_uint32(f"{arch}.attention.head_count_kv", spec.n_head_kv)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", spec.rms_eps)
    w.add_float32(f"{arch}.rope.freq_base", spec.rope_base)
    w.add_uint32(f"{arch}.rope.dimension_count", spec.head_dim)
    tokens, scores, types = make_vocab(spec.n_vocab)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_eos_token", False)


def tensor_layout(spec: Spec, variant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """The file's tensors (name, numpy shape, kind), with `.scale` tensors for scaled_tq2_0."""
    out = []
    for name, shape, kind in spec.tensors():
        out.append((name, shape, kind))
        if kind == "ternary" and variant == "scaled_tq2_0":
            out.append((name.removesuffix(".weight") + ".scale", (1,), "scale"))
    return out


def type_and_bytes(variant: str, shape: tuple[int, ...], kind: str) -> tuple[int, int]:
    n = int(np.prod(shape))
    if kind == "embed":
        return int(QT.F16), 2 * n
    if kind in ("norm", "scale"):
        return int(QT.F32), 4 * n
    if variant == "i2_s":
        return GGML_TYPE_I2_S, n // 4 + I2_S_TRAILER
    qt = {"tq2_0": QT.TQ2_0, "scaled_tq2_0": QT.TQ2_0, "tq1_0": QT.TQ1_0, "q4_0": QT.Q4_0}[variant]
    block, size = gguf.GGML_QUANT_SIZES[qt]
    return int(qt), n // block * size


def write_model(path: Path, spec: Spec, variant: str, seed: int,
                weights: dict[str, np.ndarray] | None) -> None:
    """Writes one copy. With `weights` (small model) values come from memory, else they are
    generated tensor by tensor (the bench model does not fit comfortably in memory)."""
    spec.check()
    tmp = path.with_suffix(".gguf.part")
    w = gguf.GGUFWriter(tmp, "bitnet")
    add_metadata(w, spec, variant, seed)
    layout = tensor_layout(spec, variant)
    for name, shape, kind in layout:
        qtype, nbytes = type_and_bytes(variant, shape, kind)
        # Logical shape with a non-uint8 dtype: gguf-py then keeps the shape as given (it only
        # converts byte shapes of uint8 tensors, and knows no block size for type 36).
        w.add_tensor_info(name, shape, np.dtype(np.int8), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, kind in layout:
        qtype, nbytes = type_and_bytes(variant, shape, kind)
        if kind == "embed":
            if weights is not None:
                data = weights[name].view(np.uint8).reshape(-1)
            else:  # in chunks of rows: the bench embedding is 32002 x 1536
                rows, cols = shape
                step = 4096
                data = np.concatenate([
                    embed_rows(seed, name, cols, r, min(step, rows - r)).view(np.uint8).reshape(-1)
                    for r in range(0, rows, step)])
        elif kind == "norm":
            v = weights[name] if weights is not None else norm_weights(seed, name, shape[0])
            data = v.view(np.uint8)
        elif kind == "scale":
            data = np.array([tensor_scale(seed, name.removesuffix(".scale") + ".weight")],
                            dtype=np.float32).view(np.uint8)
        else:
            t = weights[name] if weights is not None else ternary_codes(seed, name, shape)
            s = tensor_scale(seed, name)
            data, got_type = encode_matrix(variant, t, s, seed, name)
            assert got_type == qtype
            if weights is not None:
                check_exact(variant, data, qtype, t, s)
            data = data.reshape(-1)
        assert data.dtype == np.uint8 and data.size == nbytes, (name, data.size, nbytes)
        w.write_tensor_data(data)
    w.close()
    tmp.replace(path)


def model_path(models: Path, spec: Spec, variant: str) -> Path:
    return models / f"{spec.name}_{variant}.gguf"


# --------------------------------------------------------------------------
# independent float64 forward pass (no activation quantization)
# --------------------------------------------------------------------------

class F64Model:
    """The `bitnet` graph of llama.cpp's src/models/bitnet.cpp, written in float64 numpy from
    the exact weights (not from a GGUF reader).

    With emulate=True it also rounds what llama.cpp's CPU backend rounds: the input of every
    ternary matmul to Q8_K (ggml quantize_row_q8_K_ref: per 256 elements, d = max/-127 of the
    signed value of largest magnitude, q = round(x/d)), Q/K/V to f16 (f16 KV cache), and the
    input of the F16 output head to f16. That reproduces llama.cpp's logits at position 0 to
    ~1e-5, which checks everything except attention over several positions (norms, sub-norms,
    FFN, tied head); beyond position 0 the f16 attention arithmetic differs slightly, and the
    discontinuous int8 rounding turns that into the usual Q8_K noise."""

    def __init__(self, spec: Spec, weights: dict[str, np.ndarray], seed: int):
        self.s = spec
        self.w = {}
        for name, shape, kind in spec.tensors():
            v = weights[name].astype(np.float64)
            if kind == "ternary":
                v = v * tensor_scale(seed, name)
            self.w[name] = v

    def rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.s.rms_eps) * w

    def rope_neox(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        # x: (n, heads, head_dim); NEOX pairs element i with i + head_dim/2.
        hd = x.shape[-1]
        half = hd // 2
        theta = self.s.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / hd)
        ang = pos[:, None].astype(np.float64) * theta[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def forward(self, tokens: list[int], emulate: bool = False) -> np.ndarray:
        """Logits (n_tokens, n_vocab) for a fresh sequence."""
        s, w = self.s, self.w
        n = len(tokens)
        hd, nh, nkv = s.head_dim, s.n_head, s.n_head_kv
        act = q8_k_round if emulate else (lambda a: a)
        half = f16_round if emulate else (lambda a: a)
        pos = np.arange(n)
        x = w["token_embd.weight"][tokens]  # (n, d)
        mask = np.triu(np.full((n, n), -np.inf), k=1)
        for i in range(s.n_layer):
            p = f"blk.{i}."
            h = act(self.rmsnorm(x, w[p + "attn_norm.weight"]))
            q = (h @ w[p + "attn_q.weight"].T).reshape(n, nh, hd)
            k = (h @ w[p + "attn_k.weight"].T).reshape(n, nkv, hd)
            v = half((h @ w[p + "attn_v.weight"].T).reshape(n, nkv, hd))
            q, k = half(self.rope_neox(q, pos)), half(self.rope_neox(k, pos))
            att = np.empty((n, nh, hd))
            for hh in range(nh):
                kh = hh // (nh // nkv)  # GQA: ggml broadcasts kv head = q head / (nh / nkv)
                sc = q[:, hh, :] @ k[:, kh, :].T / math.sqrt(hd) + mask
                sc = np.exp(sc - sc.max(axis=-1, keepdims=True))
                sc /= sc.sum(axis=-1, keepdims=True)
                att[:, hh, :] = sc @ v[:, kh, :]
            a = act(self.rmsnorm(att.reshape(n, nh * hd), w[p + "attn_sub_norm.weight"]))
            x = x + a @ w[p + "attn_output.weight"].T
            h = act(self.rmsnorm(x, w[p + "ffn_norm.weight"]))
            g = h @ w[p + "ffn_gate.weight"].T
            u = h @ w[p + "ffn_up.weight"].T
            f = g / (1.0 + np.exp(-g)) * u
            f = act(self.rmsnorm(f, w[p + "ffn_sub_norm.weight"]))
            x = x + f @ w[p + "ffn_down.weight"].T
        x = half(self.rmsnorm(x, w["output_norm.weight"]))
        return x @ w["token_embd.weight"].T


def q8_k_round(x: np.ndarray) -> np.ndarray:
    """x rounded as ggml's quantize_row_q8_K_ref rounds it (rows of a multiple of 256)."""
    b = x.reshape(-1, 256).astype(np.float32)
    mx = b[np.arange(len(b)), np.argmax(np.abs(b), axis=1)]
    with np.errstate(divide="ignore"):
        iscale = np.where(mx == 0, np.float32(0), np.float32(-127.0) / mx).astype(np.float32)
        d = np.where(iscale == 0, np.float32(0), np.float32(1) / iscale).astype(np.float32)
    q = np.minimum(np.rint(iscale[:, None] * b), 127)
    return (q * d[:, None]).reshape(x.shape).astype(np.float64)


def f16_round(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float64)


# --------------------------------------------------------------------------
# llama.cpp
# --------------------------------------------------------------------------

def load_llama_cpp():
    """Imports llama_cpp with extra buffer types disabled: on this machine llama.cpp's AMX path
    segfaults (the kernel does not grant AMX tile state), and repacked layouts are machine
    dependent anyway. Same patch of the default-params factory as make_fixtures.py."""
    import llama_cpp

    orig = llama_cpp.llama_cpp.llama_model_default_params

    def no_extra_bufts():
        p = orig()
        p.use_extra_bufts = False
        return p

    fields = getattr(llama_cpp.llama_cpp.llama_model_params, "_fields_", [])
    use_extra = None
    if any(f[0] == "use_extra_bufts" for f in fields):
        llama_cpp.llama_cpp.llama_model_default_params = no_extra_bufts
        use_extra = False
    return llama_cpp, use_extra


class LlamaRef:
    def __init__(self, llama_cpp, path: Path, n_threads: int, n_ctx: int = 128):
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx,
                                   n_threads=n_threads, n_threads_batch=n_threads,
                                   logits_all=True, seed=0, verbose=False)

    def forward(self, tokens: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(tokens)
        return np.array(self.llm.scores[: len(tokens)], dtype=np.float64, copy=True)

    def greedy(self, tokens: list[int], n: int) -> tuple[list[int], list[float]]:
        """n greedy tokens decoded one at a time after the prompt, with top-2 margins."""
        logits = self.forward(tokens)[-1]
        out, margins = [], []
        for _ in range(n):
            t, m = argmax_margin(logits)
            out.append(t)
            margins.append(m)
            self.llm.eval([t])
            logits = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float64)
        return out, margins


def f64_greedy(model: F64Model, tokens: list[int], n: int) -> tuple[list[int], list[float]]:
    seq = list(tokens)
    out, margins = [], []
    for _ in range(n):
        t, m = argmax_margin(model.forward(seq)[-1])
        out.append(t)
        margins.append(m)
        seq.append(t)
    return out, margins


def argmax_margin(row: np.ndarray) -> tuple[int, float]:
    order = np.argsort(-row, kind="stable")
    return int(order[0]), float(row[order[0]] - row[order[1]])


def logsumexp(row: np.ndarray) -> float:
    m = float(row.max())
    return m + math.log(float(np.exp(row - m).sum()))


# --------------------------------------------------------------------------
# fixture
# --------------------------------------------------------------------------

PROMPTS: list[tuple[str, list[int]]] = [
    ("hundreds", [1, 100, 200, 300, 400, 500, 600, 700]),
    ("mixed_16", [1, 17, 4000, 2500, 33, 1024, 999, 3, 258, 259, 4095, 1500, 77, 77, 77, 2048]),
    ("short", [1, 3000]),
]


def fixed_ids(n_vocab: int) -> list[int]:
    """N_IDS token ids spread over the vocabulary, including both ends."""
    return sorted({int(round(i * (n_vocab - 1) / (N_IDS - 1))) for i in range(N_IDS)})


def record(logits: np.ndarray, ids: list[int], greedy: tuple[list[int], list[float]]) -> dict:
    last = logits[-1]
    top = np.argsort(-last, kind="stable")[:TOP_K]
    return {
        "top10_last": {"ids": [int(i) for i in top], "logits": [rnd(last[i]) for i in top]},
        "logsumexp": [rnd(logsumexp(r)) for r in logits],
        "logits_at_ids": [[rnd(r[i]) for i in ids] for r in logits],
        "greedy": {"tokens": greedy[0], "top2_margins": [rnd(m) for m in greedy[1]]},
    }


def compact_json(obj) -> str:
    """indent=1 JSON with every list of numbers on one line (keeps the fixture small)."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)

    def join(m: re.Match) -> str:
        items = [s.strip() for s in m.group(1).split(",")]
        return "[" + ", ".join(items) + "]"

    return re.sub(r"\[\s*((?:-?[0-9][0-9.eE+-]*\s*,\s*)*-?[0-9][0-9.eE+-]*)\s*\]", join, text)


def make_fixture(args, weights: dict[str, np.ndarray], shas: dict[str, str]) -> dict:
    llama_cpp, use_extra = load_llama_cpp()
    spec, seed = SMALL, args.seed
    ids = fixed_ids(spec.n_vocab)
    f64 = F64Model(spec, weights, seed)

    runs: dict[str, dict] = {}
    all_logits: dict[str, list[np.ndarray]] = {}
    loaded: dict[str, bool] = {}
    for variant in ("tq2_0", "tq1_0", "scaled_tq2_0", "q4_0"):
        t0 = time.time()
        try:
            ref = LlamaRef(llama_cpp, model_path(args.models, spec, variant), args.threads)
        except Exception as e:  # recorded: the fixture says which copies llama.cpp rejects
            log(f"llama.cpp could not load {variant}: {e}")
            loaded[variant] = False
            continue
        loaded[variant] = True
        logits = [ref.forward(toks) for _, toks in PROMPTS]
        all_logits[variant] = logits
        if variant in ("tq2_0", "tq1_0"):
            runs[variant] = {"prompts": [record(lg, ids, ref.greedy(toks, N_GREEDY))
                                         for lg, (_, toks) in zip(logits, PROMPTS)]}
        del ref
        log(f"llama.cpp {variant}: {time.time() - t0:.1f}s")
    # I2_S: llama.cpp (upstream) rejects type 36; record that it does.
    try:
        LlamaRef(llama_cpp, model_path(args.models, spec, "i2_s"), args.threads)
        loaded["i2_s"] = True
    except Exception as e:
        log(f"llama.cpp rejects i2_s as expected: {e}")
        loaded["i2_s"] = False

    f64_logits = [f64.forward(toks) for _, toks in PROMPTS]
    runs["f64"] = {"prompts": [record(lg, ids, f64_greedy(f64, toks, N_GREEDY))
                               for lg, (_, toks) in zip(f64_logits, PROMPTS)]}

    def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return rnd(max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)))

    checks = {}
    base = all_logits.get("tq2_0")
    if base is not None:
        for other in ("tq1_0", "scaled_tq2_0", "q4_0"):
            if other in all_logits:
                checks[f"max_abs_logit_diff_llama_{other}_vs_llama_tq2_0"] = max_diff(all_logits[other], base)
        checks["max_abs_logit_diff_llama_tq2_0_vs_f64"] = max_diff(base, f64_logits)
        # Position 0 with llama.cpp's roundings emulated: checks the graph (see F64Model).
        emu = [f64.forward(toks[:1], emulate=True)[0] for _, toks in PROMPTS]
        checks["max_abs_logit_diff_llama_tq2_0_vs_f64_emulated_position_0"] = rnd(
            max(float(np.max(np.abs(lg[0] - e))) for lg, e in zip(base, emu)))
        spread = max(float(np.std(x)) for lg in f64_logits for x in lg)
        checks["max_logit_std_f64"] = rnd(spread)
        greedy_same = [runs["tq2_0"]["prompts"][i]["greedy"]["tokens"] == runs["f64"]["prompts"][i]["greedy"]["tokens"]
                       for i in range(len(PROMPTS))]
        checks["greedy_llama_tq2_0_equals_f64"] = greedy_same
    for k, v in checks.items():
        log(f"check {k}: {v}")

    try:
        lver = llama_cpp.llama_version().decode()
    except Exception:
        lver = None
    try:
        sysinfo = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception:
        sysinfo = None
    return {
        "provenance": {
            "generator": "tests/reference/make_bitnet_models.py",
            "reference_impl": "llama.cpp via llama-cpp-python (tq2_0, tq1_0); float64 numpy "
                              "forward pass of the exact weights in this script (f64)",
            "llama_cpp_python_version": llama_cpp.__version__,
            "llama_cpp_version": lver,
            "llama_cpp_system_info": sysinfo,
            "use_extra_bufts": use_extra,
            "gguf_version": pkg_version("gguf"),
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "machine": platform.machine(),
            "n_threads": args.threads,
            "n_ctx": 128,
            "seed": seed,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        },
        "description": (
            "Random ternary BitNet model (architecture 'bitnet'); the TQ2_0, TQ1_0, I2_S and "
            "scaled_TQ2_0 files hold exactly the same weights. For each prompt (token ids, BOS "
            "included; no tokenizer involved): top10_last = top-10 ids/logits at the last "
            "position; logsumexp = per position; logits_at_ids[pos][j] = logit of token ids[j] at "
            "position pos; greedy = 16 tokens decoded one at a time (argmax, first from the "
            "prompt's last logits) with the top-2 logit margin at each step. llama.cpp quantizes "
            "matmul activations to Q8_K (per 256-element block, int8) and keeps the KV cache in "
            "f16; f64 quantizes nothing. Files llama.cpp loads: see llama_cpp_loads."
        ),
        "model": {
            "architecture": "bitnet",
            "n_vocab": spec.n_vocab, "n_embd": spec.n_embd, "n_ff": spec.n_ff,
            "n_layer": spec.n_layer, "n_head": spec.n_head, "n_head_kv": spec.n_head_kv,
            "head_dim": spec.head_dim, "rms_eps": spec.rms_eps, "rope_base": spec.rope_base,
            "rope": "neox", "ffn": "silu-gated, sub-norm before ffn_down",
            "embedding": "F16, tied output", "tokenizer": "llama (SentencePiece-style), 4096 tokens",
            "files": {v: {"file": model_path(args.models, spec, v).name, "sha256": shas[v]}
                      for v in shas},
        },
        "llama_cpp_loads": loaded,
        "ids": ids,
        "prompts": [{"name": n, "tokens": t} for n, t in PROMPTS],
        "llama_cpp": {k: v for k, v in runs.items() if k != "f64"},
        "f64": runs["f64"],
        "checks": checks,
    }


# --------------------------------------------------------------------------

SMALL_VARIANTS = ["tq2_0", "tq1_0", "i2_s", "q4_0", "scaled_tq2_0"]
BENCH_VARIANTS = ["tq2_0", "i2_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="output directory for models")
    ap.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-fixture", action="store_true", help="only write the models")
    ap.add_argument("--layers700m", action="store_true",
                    help="only write two layers of the ~700M shape (TQ2_0), "
                         "models/bitnet_700m_layers_tq2_0.gguf")
    ap.add_argument("--bench", action="store_true",
                    help="also write the ~700M-parameter benchmark-shaped model (TQ2_0 and I2_S)")
    args = ap.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    if args.layers700m:
        path = model_path(args.models, LAYERS700M, "tq2_0")
        write_model(path, LAYERS700M, "tq2_0", args.seed, None)
        log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - t_start:.0f}s")
        return 0

    weights = small_weights(SMALL, args.seed)
    shas = {}
    for variant in SMALL_VARIANTS:
        path = model_path(args.models, SMALL, variant)
        write_model(path, SMALL, variant, args.seed, weights)
        shas[variant] = sha256_file(path)
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {shas[variant]})")

    if not args.no_fixture:
        fixture = make_fixture(args, weights, shas)
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        text = compact_json(fixture)
        args.fixture.write_text(text + "\n", encoding="utf-8")
        log(f"wrote {args.fixture} ({len(text) // 1024} KiB)")

    if args.bench:
        for variant in BENCH_VARIANTS:
            t0 = time.time()
            path = model_path(args.models, BENCH, variant)
            write_model(path, BENCH, variant, args.seed, None)
            log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f}s")
    log(f"done in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
