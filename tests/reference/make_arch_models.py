#!/usr/bin/env python3
"""Write small random-weight GGUF models of the architectures Tern runs without a small real
file here (qwen2, qwen3, phi3, Llama 3.x, gemma3), and record llama.cpp's outputs on them.

Run it through make_arch_models.sh, which pins the versions. Models (models/ is gitignored; never
commit them), all deterministic from --seed:

  models/qwen2_small.gguf    qwen2: Q/K/V biases, tied output, GQA 3:1
  models/qwen3_small.gguf    qwen3: per-head attn_q_norm / attn_k_norm, head_dim from
                             attention.key_length (64) != n_embd / n_head (32), no biases, tied
  models/phi3_small.gguf     phi3: fused attn_qkv (q, then k, then v rows), fused ffn_up holding
                             gate rows then up rows (2 * n_ff), LongRoPE rope_factors_long /
                             rope_factors_short with rope.scaling.attn_factor and
                             rope.scaling.original_context_length, untied output
  models/llama3_small.gguf   llama (Llama 3.x): rope_freqs.weight from the llama3 rule,
                             tokenizer pre llama-bpe, untied output
  models/gemma3_small.gguf   gemma3: key_length 32 != n_embd / n_head, sliding window 8 on five
                             of every six layers (llama.cpp's default pattern), rope.freq_base
                             1e6 + linear scaling x8 on global layers, rope.freq_base_swa 1e4 on
                             local ones, final_logit_softcapping 30, post-attention/post-FFN
                             norms, tied Q8_0 embedding of 262,144 rows

Tokenizers are copied from the real files (scripts/fetch-models.sh, scripts/fetch-model.sh), so
writing the models needs those three files:
  qwen2 / qwen3: every tokenizer.* key of Qwen2.5-Coder-0.5B-Instruct (gpt2 BPE, pre qwen2,
      151,936 tokens, its ChatML template).
  llama3: the same Qwen2.5 vocabulary and merges with pre = llama-bpe, and the padding tokens
      [PAD151665]..[PAD151669] renamed to Llama 3's <|begin_of_text|>, <|end_of_text|>,
      <|start_header_id|>, <|end_header_id|>, <|eot_id|> (control); bos <|begin_of_text|>, eos
      <|eot_id|>, add_bos_token true. (No real Llama 3 file here.)
  phi3: SmolLM2's gpt2 BPE (pre smollm, 49,152 tokens) plus Phi-3's chat tokens <|system|>,
      <|user|>, <|assistant|>, <|end|> appended as control tokens (49,156). Phi-3's own
      SentencePiece vocabulary is not available here; Phi-4-mini is a phi3 file with a gpt2 BPE.
  gemma3: every tokenizer.* key of Gemma 3 270M (SentencePiece, 262,144 tokens).

Weights: approximately normal values (an Irwin-Hall sum of four 16-bit uniforms from a
splitmix64 stream keyed by (seed, tensor name), as make_bitnet_models.py draws them), scaled by
1/sqrt(fan_in) for matrices; norms 1 + N(0, 0.1^2) (output_norm larger, see Arch.out_gain, so the
logits spread by a few units); biases N(0, 0.5^2). Only IEEE-exact float operations are used, so
the files are the same on every machine (their sha256s are in the fixtures). Matrices cycle
through Q8_0, Q5_0, Q4_0, F16 and Q4_1 by layer and role (see `matrix_type`); norms, biases and
rope factor tensors are F32.

Fixtures (tests/reference/fixtures/<name>.json), from llama.cpp through llama-cpp-python on the
same files: tokenizer ids/detokenized bytes on a few strings, for three prompts (16 to 101
tokens, all longer than gemma3's sliding window) the top-10 / log-sum-exp / argmax at every
position, logits at 48 fixed ids at every position of one prompt, and 32 greedy tokens with
top-2 margins. llama.cpp loading each file is the proof that the layout is what it expects.

A float64 numpy forward pass of the same weights (F64Model, written from the facts below) gives
the same summaries and 32 greedy tokens per prompt ("f64" in each prompt), and each fixture's
checks compare it with llama.cpp: that bounds llama.cpp's own rounding (8-bit activations, f16
K/V: on these sharp random models, max |logit| differences of 1.7-3.2, 8.6 for the 8-layer
gemma3, with mean differences of 0.03-0.5; argmax agreement 75-90 %, so llama.cpp's greedy
tokens part from exact arithmetic after a few steps: compare a runtime's exact path with f64) and checks the
facts (variants of them, e.g. a window of 7 or 9, or no linear scaling, move gemma3's f64 logits
ten times further from llama.cpp's). The checks also show the special features matter: the
logits move when gemma3's sliding window is removed (and not before position 8), when llama3's
rope_freqs is dropped, and between phi3's short (n_ctx <= original_context_length) and long runs.

F64Model.from_gguf runs the same forward pass on a real qwen2 or gemma3 file (metadata read by
arch_from_gguf, tensors through gguf's dequantizers): make_f64_ppl.py uses it for the exact
perplexity of the real Gemma 3 270M and Qwen2.5-Coder-0.5B files.

Where the layout comes from (llama.cpp as vendored in llama-cpp-python 0.3.36):
  * src/models/{qwen2,qwen3,phi3,llama,gemma3}.cpp load_arch_tensors: names/shapes; create_tensor_qkv
    in src/llama-model.cpp: attn_qkv {n_embd, n_q + 2 n_kv} or separate attn_q/k/v (+ biases);
    phi3 ffn_up {n_embd, 2 n_ff} split by LLM_FFN_SWIGLU as silu(first half) * second half.
  * src/llama-arch.cpp: key names (%s.attention.key_length, %s.rope.freq_base_swa,
    %s.rope.scaling.attn_factor, %s.rope.scaling.original_context_length,
    %s.final_logit_softcapping, ...) and tensor names (rope_freqs, rope_factors_long/short,
    blk.N.post_attention_norm, blk.N.post_ffw_norm, blk.N.attn_q_norm, ...).
  * conversion/{qwen,phi,llama,gemma}.py and conversion/base.py (convert_hf_to_gguf): which keys a
    converted file has. llama3 rope_freqs: LlamaModel.generate_extra_tensors (factor,
    low_freq_factor, high_freq_factor, original_max_position_embeddings; not stored as keys).
    phi3: Phi3MiniModel.set_gguf_parameters / generate_extra_tensors (attn_factor =
    sqrt(1 + ln(scale) / ln(orig)), scale = context_length / original_context_length).
    gemma3: Gemma3Model (norm weights stored as 1 + w; key/value_length; sliding_window;
    final_logit_softcapping) and TextModel (rope.freq_base_swa, rope.scaling.type/factor).
  * Graph facts a runtime must match: qwen2/qwen3/phi3/gemma3 use NEOX RoPE, llama NORM
    (llama_model_rope_type); gemma3 scales the input embedding by sqrt(n_embd) (f32), uses
    attention scale 1/sqrt(key_length) (except 62-layer 27B), GELU(tanh) gated FFN, layer i is
    local iff i % 6 < 5 when the file has no sliding_window_pattern key, a local layer's query at
    p sees keys p0 with p - p0 < sliding_window, local layers rope with freq_base_swa and scale 1,
    global ones with freq_base and 1/rope.scaling.factor; logits = cap * tanh(logits / cap).
    llama.cpp quirk: a general.name containing "phi3" or "phi-3" (any architecture) makes llama.cpp
    give special tokens RSTRIP and require "</s>", "<unk>", "<s>" in the vocabulary, so these files'
    names avoid it. phi3 chooses rope_factors_long iff the context (n_ctx_seq) > original_context_length, and
    multiplies RoPE's cos/sin by attn_factor (so q.k by attn_factor^2); it ignores
    attention.sliding_window (llama.cpp disables Phi-3 SWA). llama divides each frequency by
    rope_freqs[i].
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize, quantize

from make_bitnet_models import compact_json, key, pkg_version, rnd, sha256_file, stream

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_MODELS = ROOT / "models"
DEFAULT_FIXTURES = HERE / "fixtures"

QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN15_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
SMOLLM2_FILE = "smollm2-135m-instruct-q4_1.gguf"

N_GREEDY = 32
N_COLUMNS = 48
TOP_K = 10
N_CTX = 512


def log(msg: str) -> None:
    print(f"[make_arch_models] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    name: str                 # file stem and fixture name
    arch: str                 # general.architecture
    tokenizer: str            # "qwen", "llama3", "phi3" or "gemma" (see read_tokenizer)
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx_train: int
    rope_base: float
    rms_eps: float
    embed_type: QT
    output_type: QT | None    # None: tied (no output.weight)
    # Spread of the logits: output_norm weights are out_gain * (1 + N(0, 0.1^2)).
    out_gain: float
    # Standard deviation of the embedding values, times 1/sqrt(n_embd).
    embed_std: float = 1.0
    qkv_bias: bool = False
    qk_norm: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def n_q(self) -> int:
        return self.n_head * self.head_dim

    @property
    def n_kv(self) -> int:
        return self.n_head_kv * self.head_dim


ARCHS: list[Arch] = [
    Arch("qwen2_small", "qwen2", "qwen", n_embd=96, n_ff=288, n_layer=3, n_head=3, n_head_kv=1,
         head_dim=32, n_ctx_train=4096, rope_base=1_000_000.0, rms_eps=1e-6,
         embed_type=QT.Q8_0, output_type=None, out_gain=3.0, embed_std=1.0, qkv_bias=True),
    Arch("qwen3_small", "qwen3", "qwen", n_embd=128, n_ff=384, n_layer=3, n_head=4, n_head_kv=2,
         head_dim=64, n_ctx_train=4096, rope_base=1_000_000.0, rms_eps=1e-6,
         embed_type=QT.Q5_0, output_type=None, out_gain=3.0, embed_std=1.0, qk_norm=True),
    Arch("phi3_small", "phi3", "phi3", n_embd=128, n_ff=256, n_layer=3, n_head=4, n_head_kv=2,
         head_dim=32, n_ctx_train=4096, rope_base=10000.0, rms_eps=1e-5,
         embed_type=QT.Q8_0, output_type=QT.Q5_0, out_gain=4.0,
         extra={"original_context_length": 512, "sliding_window": 262144}),
    Arch("llama3_small", "llama", "llama3", n_embd=64, n_ff=192, n_layer=3, n_head=2, n_head_kv=1,
         head_dim=32, n_ctx_train=2048, rope_base=500000.0, rms_eps=1e-5,
         embed_type=QT.Q4_0, output_type=QT.Q8_0, out_gain=4.0,
         # The llama3 rule's inputs (HF rope_scaling). original_max_position_embeddings is tiny
         # on purpose: with Llama 3.1's 8192 the factors would only move angles at positions far
         # beyond a test prompt, so dropping rope_freqs would go unnoticed.
         extra={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}),
    Arch("gemma3_small", "gemma3", "gemma", n_embd=64, n_ff=192, n_layer=8, n_head=4, n_head_kv=2,
         head_dim=32, n_ctx_train=32768, rope_base=1_000_000.0, rms_eps=1e-6,
         embed_type=QT.Q8_0, output_type=None, out_gain=6.5, embed_std=0.6, qk_norm=True,
         extra={"sliding_window": 8, "rope_freq_base_swa": 10000.0, "rope_scaling_factor": 8.0,
                "final_logit_softcapping": 30.0}),
]

# Matrix formats, cycled by (layer + role index) so every role meets every format somewhere.
CYCLE = [QT.Q8_0, QT.Q5_0, QT.Q4_0, QT.F16, QT.Q4_1]
ROLES = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def matrix_type(layer: int, role: str) -> QT:
    return CYCLE[(layer + ROLES.index(role)) % len(CYCLE)]


def tensor_list(a: Arch, n_vocab: int) -> list[tuple[str, tuple[int, ...], str, QT]]:
    """(name, numpy shape = (ne1, ne0) = (out, in), kind, type) in file order."""
    d, f = a.n_embd, a.n_ff
    out: list[tuple[str, tuple[int, ...], str, QT]] = [
        ("token_embd.weight", (n_vocab, d), "embed", a.embed_type)]
    if a.output_type is not None:
        out.append(("output.weight", (n_vocab, d), "output", a.output_type))
    out.append(("output_norm.weight", (d,), "out_norm", QT.F32))
    hd2 = a.head_dim // 2
    if a.arch == "llama":
        out.append(("rope_freqs.weight", (hd2,), "rope_freqs", QT.F32))
    if a.arch == "phi3":
        out.append(("rope_factors_long.weight", (hd2,), "rope_long", QT.F32))
        out.append(("rope_factors_short.weight", (hd2,), "rope_short", QT.F32))
    for i in range(a.n_layer):
        p = f"blk.{i}."
        m = lambda role, shape: (p + role + ".weight", shape, "matrix", matrix_type(i, role))
        out.append((p + "attn_norm.weight", (d,), "norm", QT.F32))
        if a.arch == "phi3":
            out.append(m("attn_qkv", (a.n_q + 2 * a.n_kv, d)))
        else:
            out += [m("attn_q", (a.n_q, d)), m("attn_k", (a.n_kv, d)), m("attn_v", (a.n_kv, d))]
        if a.qkv_bias:
            out += [(p + "attn_q.bias", (a.n_q,), "bias", QT.F32),
                    (p + "attn_k.bias", (a.n_kv,), "bias", QT.F32),
                    (p + "attn_v.bias", (a.n_kv,), "bias", QT.F32)]
        if a.qk_norm:
            out += [(p + "attn_q_norm.weight", (a.head_dim,), "qk_norm", QT.F32),
                    (p + "attn_k_norm.weight", (a.head_dim,), "qk_norm", QT.F32)]
        out.append(m("attn_output", (d, a.n_q)))
        if a.arch == "gemma3":
            out.append((p + "post_attention_norm.weight", (d,), "norm", QT.F32))
        out.append((p + "ffn_norm.weight", (d,), "norm", QT.F32))
        if a.arch == "phi3":
            out.append(m("ffn_up", (2 * f, d)))
        else:
            out += [m("ffn_gate", (f, d)), m("ffn_up", (f, d))]
        out.append(m("ffn_down", (d, f)))
        if a.arch == "gemma3":
            out.append((p + "post_ffw_norm.weight", (d,), "norm", QT.F32))
    return out


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------

# Irwin-Hall: the sum of four independent uniforms on 0..65535 has mean 2*65535 and variance
# 4 * (65536^2 - 1) / 12.
IH_MEAN = 2.0 * 65535.0
IH_STD = math.sqrt(4.0 * (65536.0 ** 2 - 1.0) / 12.0)


def gauss(seed: int, name: str, n: int) -> np.ndarray:
    """n approximately standard normal float64 values for tensor `name` (exactly reproducible:
    integer sums, one subtraction and one division)."""
    u = stream(key(seed, "w", name), 0, n)
    m = np.uint64(0xFFFF)
    s = (u & m) + ((u >> np.uint64(16)) & m) + ((u >> np.uint64(32)) & m) + (u >> np.uint64(48))
    return (s.astype(np.float64) - IH_MEAN) / IH_STD


def llama3_rope_freqs(a: Arch) -> np.ndarray:
    """rope_freqs as convert_hf_to_gguf's LlamaModel.generate_extra_tensors computes it."""
    e = a.extra
    base, dim = a.rope_base, a.head_dim
    freqs = 1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    old, lo, hi, factor = (e["original_max_position_embeddings"], e["low_freq_factor"],
                           e["high_freq_factor"], e["factor"])
    low_wavelen, high_wavelen = old / lo, old / hi
    out = []
    for freq in freqs.astype(np.float64):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def phi3_factors(seed: int, name: str, n: int, top: float) -> np.ndarray:
    """LongRoPE-like factors: non-decreasing from 1 to about `top` over the rotated pairs (the
    shape of Phi-3-mini-128k's long_factor), rounded to 1/64 (exact in f32)."""
    jitter = np.abs(gauss(seed, name, n)) * 0.05
    ramp = 1.0 + (top - 1.0) * (np.arange(n, dtype=np.float64) / (n - 1)) ** 2
    return (np.round(np.maximum.accumulate(ramp + jitter) * 64.0) / 64.0).astype(np.float32)


# Queries and keys are this many times larger than 1/sqrt(fan_in) (or q/k norm weights ~ this), so
# attention scores spread by about QK_GAIN^2: attention picks positions instead of averaging
# the context into a vector that hardly changes from one step to the next (which makes greedy
# decoding repeat one token).
QK_GAIN = 2.0


def values(a: Arch, seed: int, name: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
    n = int(np.prod(shape))
    if kind == "rope_freqs":
        return llama3_rope_freqs(a)
    if kind == "rope_long":
        return phi3_factors(seed, name, n, 48.0)
    if kind == "rope_short":
        return phi3_factors(seed, name, n, 2.0)
    g = gauss(seed, name, n)
    if kind == "norm":
        v = 1.0 + 0.1 * g
    elif kind == "qk_norm":
        v = QK_GAIN * (1.0 + 0.1 * g)
    elif kind == "out_norm":
        v = a.out_gain * (1.0 + 0.1 * g)
    elif kind == "bias":
        v = (0.1 if ".attn_v." in name else 0.5) * g
    elif kind == "embed":
        v = g * (a.embed_std / math.sqrt(a.n_embd))
    else:  # matrix or output: 1/sqrt(fan_in), q and k rows QK_GAIN times that
        v = (g / math.sqrt(shape[-1])).reshape(shape)
        if name.endswith((".attn_q.weight", ".attn_k.weight")):
            v = v * QK_GAIN
        elif name.endswith(".attn_qkv.weight"):
            v[: a.n_q + a.n_kv] *= QK_GAIN
    return v.astype(np.float32).reshape(shape)


# --------------------------------------------------------------------------
# tokenizers copied from the real files
# --------------------------------------------------------------------------

@dataclass
class KV:
    key: str
    vtype: GGUFValueType
    value: object
    sub_type: GGUFValueType | None = None


_FIELDS_CACHE: dict[tuple[Path, str], list[KV]] = {}


def read_fields(path: Path, prefix: str) -> list[KV]:
    """Every key starting with `prefix`, with its GGUF type (strings as raw bytes). Returns a
    fresh copy (callers edit the lists); the file is read once."""
    if (path, prefix) not in _FIELDS_CACHE:
        _FIELDS_CACHE[(path, prefix)] = _read_fields(path, prefix)
    return [KV(kv.key, kv.vtype, list(kv.value) if isinstance(kv.value, list) else kv.value,
               kv.sub_type) for kv in _FIELDS_CACHE[(path, prefix)]]


def _read_fields(path: Path, prefix: str) -> list[KV]:
    if not path.exists():
        raise SystemExit(f"{path} is missing: run scripts/fetch-models.sh and scripts/fetch-model.sh")
    r = GGUFReader(str(path))
    out = []
    for k, f in r.fields.items():
        if not k.startswith(prefix):
            continue
        t = f.types[0]
        if t == GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == GGUFValueType.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [f.parts[i][0].item() for i in f.data]
            out.append(KV(k, t, val, sub))
        elif t == GGUFValueType.STRING:
            out.append(KV(k, t, bytes(f.parts[f.data[0]])))
        else:
            out.append(KV(k, t, f.parts[f.data[0]][0].item()))
    return out


def set_kv(kvs: list[KV], k: str, vtype: GGUFValueType, value) -> None:
    for kv in kvs:
        if kv.key == k:
            kv.vtype, kv.value = vtype, value
            return
    kvs.append(KV(k, vtype, value))


def get_kv(kvs: list[KV], k: str) -> KV:
    return next(kv for kv in kvs if kv.key == k)


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
PHI3_SPECIALS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TOKEN_CONTROL = 3


def read_tokenizer(kind: str, models: Path) -> list[KV]:
    if kind == "qwen":
        return read_fields(models / QWEN_FILE, "tokenizer.")
    if kind == "gemma":
        return read_fields(models / GEMMA_FILE, "tokenizer.")
    if kind == "llama3":
        kvs = [kv for kv in read_fields(models / QWEN_FILE, "tokenizer.")
               if kv.key != "tokenizer.chat_template"]
        tokens = get_kv(kvs, "tokenizer.ggml.tokens").value
        types = get_kv(kvs, "tokenizer.ggml.token_type").value
        first = 151665
        for j, s in enumerate(LLAMA3_SPECIALS):
            assert tokens[first + j] == f"[PAD{first + j}]".encode(), tokens[first + j]
            tokens[first + j] = s.encode()
            types[first + j] = TOKEN_CONTROL
        set_kv(kvs, "tokenizer.ggml.pre", GGUFValueType.STRING, b"llama-bpe")
        set_kv(kvs, "tokenizer.ggml.bos_token_id", GGUFValueType.UINT32, first)
        set_kv(kvs, "tokenizer.ggml.eos_token_id", GGUFValueType.UINT32, first + 4)
        set_kv(kvs, "tokenizer.ggml.add_bos_token", GGUFValueType.BOOL, True)
        return kvs
    if kind == "phi3":
        kvs = [kv for kv in read_fields(models / SMOLLM2_FILE, "tokenizer.")
               if kv.key != "tokenizer.chat_template"]
        get_kv(kvs, "tokenizer.ggml.tokens").value.extend(s.encode() for s in PHI3_SPECIALS)
        get_kv(kvs, "tokenizer.ggml.token_type").value.extend([TOKEN_CONTROL] * len(PHI3_SPECIALS))
        return kvs
    raise ValueError(kind)


def vocab_size(kvs: list[KV]) -> int:
    return len(get_kv(kvs, "tokenizer.ggml.tokens").value)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------

# llama_ftype of the most common matrix format (general.file_type); informational.
FILE_TYPE = {QT.Q8_0: 7, QT.Q4_0: 2, QT.Q5_0: 8}


def add_hparams(w: gguf.GGUFWriter, a: Arch, n_vocab: int, seed: int) -> None:
    arch, e = a.arch, a.extra
    # general.name must not contain "phi3" or "phi-3": llama.cpp then gives every special token
    # RSTRIP and looks up "</s>", "<unk>" and "<s>", failing (unordered_map::at) on a vocabulary
    # without them (llama-vocab.cpp, per-token attributes chosen by model name).
    w.add_name(f"Tern random-weight test model {a.n_layer}x{a.n_embd} (seed {seed})")
    w.add_description(f"{a.name}: random-weight {arch} test model written by "
                      "tests/reference/make_arch_models.py; not a trained model.")
    w.add_uint32("general.file_type", FILE_TYPE.get(a.embed_type, 7))
    w.add_uint32("general.quantization_version", 2)
    w.add_uint32(f"{arch}.context_length", a.n_ctx_train)
    w.add_uint32(f"{arch}.embedding_length", a.n_embd)
    w.add_uint32(f"{arch}.feed_forward_length", a.n_ff)
    w.add_uint32(f"{arch}.block_count", a.n_layer)
    w.add_uint32(f"{arch}.attention.head_count", a.n_head)
    w.add_uint32(f"{arch}.attention.head_count_kv", a.n_head_kv)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", a.rms_eps)
    w.add_float32(f"{arch}.rope.freq_base", a.rope_base)
    if arch in ("qwen3", "gemma3", "llama"):
        # head_dim in the HF config: the converter writes key_length and value_length.
        w.add_uint32(f"{arch}.attention.key_length", a.head_dim)
        w.add_uint32(f"{arch}.attention.value_length", a.head_dim)
    if arch == "llama":
        w.add_uint32(f"{arch}.vocab_size", n_vocab)
        w.add_uint32(f"{arch}.rope.dimension_count", a.head_dim)
    if arch == "phi3":
        orig = e["original_context_length"]
        scale = a.n_ctx_train / orig
        attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig))
        w.add_uint32(f"{arch}.rope.scaling.original_context_length", orig)
        w.add_uint32(f"{arch}.rope.dimension_count", a.head_dim)
        w.add_uint32(f"{arch}.attention.sliding_window", e["sliding_window"])
        w.add_float32(f"{arch}.rope.scaling.attn_factor", attn_factor)
    if arch == "gemma3":
        w.add_float32(f"{arch}.rope.freq_base_swa", e["rope_freq_base_swa"])
        w.add_string(f"{arch}.rope.scaling.type", "linear")
        w.add_float32(f"{arch}.rope.scaling.factor", e["rope_scaling_factor"])
        w.add_float32(f"{arch}.final_logit_softcapping", e["final_logit_softcapping"])
        w.add_uint32(f"{arch}.attention.sliding_window", e["sliding_window"])


def write_model(path: Path, a: Arch, seed: int, tok: list[KV],
                overrides: dict | None = None, drop: tuple[str, ...] = ()) -> list[dict]:
    """Writes the model; returns its tensor table. `overrides` replaces metadata values and
    `drop` leaves tensors out (for the variants the fixture's checks compare against)."""
    n_vocab = vocab_size(tok)
    tmp = path.with_suffix(".gguf.part")
    w = gguf.GGUFWriter(tmp, a.arch)
    add_hparams(w, a, n_vocab, seed)
    for kv in tok:
        w.add_key_value(kv.key, kv.value, kv.vtype, kv.sub_type)
    for k, v in (overrides or {}).items():
        w.add_key_value(k, v[1], v[0])
    table = []
    for name, shape, kind, qt in tensor_list(a, n_vocab):
        if name in drop:
            continue
        v = values(a, seed, name, shape, kind)
        data = quantize(v, qt)
        w.add_tensor(name, data, raw_dtype=qt)
        table.append({"name": name, "shape": list(shape[::-1]), "type": qt.name})
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return table


# --------------------------------------------------------------------------
# float64 reference forward pass (the graph facts in the module doc, executed)
# --------------------------------------------------------------------------

def arch_from_gguf(r: GGUFReader, name: str) -> Arch:
    """The Arch of a real qwen2 or gemma3 file, from its metadata with llama.cpp's defaults for
    absent keys (gemma3: head_dim = key_length, rope.freq_base_swa 10000, no rope scaling and no
    logit softcapping unless the keys say so, layer i local iff i % 6 < 5)."""
    def get(k: str, default=None):
        f = r.fields.get(k)
        if f is None:
            if default is None:
                raise SystemExit(f"{name}: metadata key {k} is missing")
            return default
        if f.types[0] == GGUFValueType.STRING:
            return bytes(f.parts[f.data[0]]).decode()
        return f.parts[f.data[0]][0].item()

    arch = get("general.architecture")
    if arch not in ("qwen2", "gemma3"):
        raise SystemExit(f"{name}: architecture {arch} is not handled by arch_from_gguf")
    tensors = {t.name: t for t in r.tensors}
    n_embd, n_head = get(f"{arch}.embedding_length"), get(f"{arch}.attention.head_count")
    head_dim = get(f"{arch}.attention.key_length", n_embd // n_head)
    if get(f"{arch}.attention.value_length", head_dim) != head_dim or \
            get(f"{arch}.rope.dimension_count", head_dim) != head_dim:
        raise SystemExit(f"{name}: value_length or rope.dimension_count differs from key_length")
    extra: dict = {}
    if arch == "gemma3":
        if f"{arch}.attention.sliding_window_pattern" in r.fields:
            raise SystemExit(f"{name}: sliding_window_pattern is not handled (i % 6 < 5 is assumed)")
        extra["sliding_window"] = get(f"{arch}.attention.sliding_window")
        extra["rope_freq_base_swa"] = float(get(f"{arch}.rope.freq_base_swa", 10000.0))
        if get(f"{arch}.rope.scaling.type", "none") == "linear":
            extra["rope_scaling_factor"] = float(get(f"{arch}.rope.scaling.factor"))
        if f"{arch}.final_logit_softcapping" in r.fields:
            extra["final_logit_softcapping"] = float(get(f"{arch}.final_logit_softcapping"))
    out = tensors.get("output.weight")
    return Arch(
        name, arch, "file", n_embd=n_embd, n_ff=get(f"{arch}.feed_forward_length"),
        n_layer=get(f"{arch}.block_count"), n_head=n_head,
        n_head_kv=get(f"{arch}.attention.head_count_kv"), head_dim=head_dim,
        n_ctx_train=get(f"{arch}.context_length"), rope_base=float(get(f"{arch}.rope.freq_base")),
        rms_eps=float(get(f"{arch}.attention.layer_norm_rms_epsilon")),
        embed_type=QT(tensors["token_embd.weight"].tensor_type),
        output_type=None if out is None else QT(out.tensor_type),
        out_gain=0.0,  # only used to generate weights
        qkv_bias="blk.0.attn_q.bias" in tensors, qk_norm="blk.0.attn_q_norm.weight" in tensors,
        extra=extra)


class F64Model:
    """The architectures' forward pass in float64 numpy on the file's exact (dequantized) weights,
    with nothing quantized: no 8-bit activations, no f16 KV cache. Written from the facts listed
    in the module doc; agreement with llama.cpp up to its rounding is what checks those facts."""

    def __init__(self, a: Arch, w: dict[str, np.ndarray]):
        """`w`: every tensor by GGUF name, float64, numpy shape (ne1, ne0) = (out, in)."""
        self.a = a
        self.w = w

    @classmethod
    def generated(cls, a: Arch, seed: int, n_vocab: int) -> F64Model:
        """The weights write_model stores for (a, seed), quantized and dequantized again."""
        w: dict[str, np.ndarray] = {}
        for name, shape, kind, qt in tensor_list(a, n_vocab):
            v = values(a, seed, name, shape, kind)
            w[name] = dequantize(quantize(v, qt), qt).astype(np.float64).reshape(shape)
        return cls(a, w)

    @classmethod
    def from_gguf(cls, path: Path, dtype=np.float64) -> F64Model:
        """A real file: hyperparameters from its metadata (arch_from_gguf), every tensor through
        gguf's numpy dequantizers (the ggml dequantize_row_* definitions, float32 results: Q8_0,
        Q5_0 and Q6_K values are exact in float32, Q4_K's d*sc*q - dmin*m is rounded once).
        `dtype` float32 stores those same values in half the memory (the 1.5B file); forward
        computes in float64 either way."""
        r = GGUFReader(str(path))
        a = arch_from_gguf(r, path.stem)
        w: dict[str, np.ndarray] = {}
        for t in r.tensors:
            shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # (ne1, ne0)
            v = dequantize(t.data, QT(t.tensor_type))
            w[t.name] = np.asarray(v, dtype=dtype).reshape(shape)
        return cls(a, w)

    def rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.a.rms_eps) * w

    def rope(self, x: np.ndarray, pos: np.ndarray, base: float, scale: float,
             factors: np.ndarray | None, mscale: float) -> np.ndarray:
        """x (T, heads, hd). NEOX rotates pairs (i, i + hd/2); NORM (llama) pairs (2i, 2i+1)."""
        hd = x.shape[-1]
        inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd) * scale
        if factors is not None:
            inv = inv / factors
        ang = pos[:, None, None] * inv[None, None, :]
        cos, sin = np.cos(ang) * mscale, np.sin(ang) * mscale
        if self.a.arch == "llama":
            x0, x1 = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2] = x0 * cos - x1 * sin
            out[..., 1::2] = x0 * sin + x1 * cos
            return out
        h = hd // 2
        x0, x1 = x[..., :h], x[..., h:]
        return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)

    def forward(self, tokens: list[int], n_ctx: int, last_only: bool = False,
                rows: slice | None = None) -> np.ndarray:
        """Logits (T, n_vocab) of every position, (1, n_vocab) of the last with last_only, or of
        the positions in `rows` only. The whole sequence is one batch (matrix-matrix products,
        causal mask), as a runtime's prefill."""
        a, w, e = self.a, self.w, self.a.extra
        T, hd, H, Hkv = len(tokens), a.head_dim, a.n_head, a.n_head_kv
        pos = np.arange(T, dtype=np.float64)
        # float64 from here on even when the weights are stored as float32 (from_gguf's dtype):
        # numpy widens them in each product.
        x = w["token_embd.weight"][tokens].astype(np.float64)
        if a.arch == "gemma3":
            x = x * float(np.sqrt(np.float32(a.n_embd)))
        causal = np.tril(np.ones((T, T), dtype=bool))
        for i in range(a.n_layer):
            p = f"blk.{i}."
            h = self.rmsnorm(x, w[p + "attn_norm.weight"])
            if a.arch == "phi3":
                qkv = h @ w[p + "attn_qkv.weight"].T
                q, k, v = np.split(qkv, [a.n_q, a.n_q + a.n_kv], axis=-1)
            else:
                q, k, v = (h @ w[p + f"attn_{r}.weight"].T for r in "qkv")
            if a.qkv_bias:
                q, k, v = (t + w[p + f"attn_{r}.bias"] for t, r in zip((q, k, v), "qkv"))
            q, k, v = q.reshape(T, H, hd), k.reshape(T, Hkv, hd), v.reshape(T, Hkv, hd)
            if a.qk_norm:
                q = self.rmsnorm(q, w[p + "attn_q_norm.weight"])
                k = self.rmsnorm(k, w[p + "attn_k_norm.weight"])
            base, scale, factors, mscale = a.rope_base, 1.0, None, 1.0
            mask = causal
            if a.arch == "gemma3":
                if i % 6 < 5:  # local layer
                    base = e["rope_freq_base_swa"]
                    mask = causal & (pos[:, None] - pos[None, :] < e["sliding_window"])
                else:
                    scale = 1.0 / e.get("rope_scaling_factor", 1.0)
            if a.arch == "llama":
                factors = w["rope_freqs.weight"]
            if a.arch == "phi3":
                orig = e["original_context_length"]
                factors = w["rope_factors_long.weight" if n_ctx > orig else "rope_factors_short.weight"]
                mscale = math.sqrt(1 + math.log(a.n_ctx_train / orig) / math.log(orig))
            q = self.rope(q, pos, base, scale, factors, mscale)
            k = self.rope(k, pos, base, scale, factors, mscale)
            kh = np.repeat(k, H // Hkv, axis=1)  # query head j reads kv head j // (H / Hkv)
            vh = np.repeat(v, H // Hkv, axis=1)
            sc = np.einsum("thd,shd->hts", q, kh) / math.sqrt(hd)
            sc = np.where(mask[None], sc, -np.inf)
            sc = np.exp(sc - sc.max(axis=-1, keepdims=True))
            sc /= sc.sum(axis=-1, keepdims=True)
            o = np.einsum("hts,shd->thd", sc, vh).reshape(T, H * hd) @ w[p + "attn_output.weight"].T
            if a.arch == "gemma3":
                o = self.rmsnorm(o, w[p + "post_attention_norm.weight"])
            x = x + o
            h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
            if a.arch == "phi3":
                g, u = np.split(h @ w[p + "ffn_up.weight"].T, 2, axis=-1)
            else:
                g, u = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
            if a.arch == "gemma3":  # GELU, tanh approximation
                act = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
            else:
                act = g / (1 + np.exp(-g))
            f = (act * u) @ w[p + "ffn_down.weight"].T
            if a.arch == "gemma3":
                f = self.rmsnorm(f, w[p + "post_ffw_norm.weight"])
            x = x + f
        if last_only:
            rows = slice(T - 1, T)
        x = self.rmsnorm(x if rows is None else x[rows], w["output_norm.weight"])
        logits = x @ w.get("output.weight", w["token_embd.weight"]).T
        if a.arch == "gemma3" and e.get("final_logit_softcapping"):
            cap = e["final_logit_softcapping"]
            logits = cap * np.tanh(logits / cap)
        return logits

    def greedy(self, tokens: list[int], n_ctx: int, n: int) -> dict:
        """n argmax steps, recomputing the whole sequence each step (no cache to get wrong)."""
        seq, gen, margin = list(tokens), [], []
        for _ in range(n):
            row = self.forward(seq, n_ctx, last_only=True)[0]
            order = np.argsort(-row, kind="stable")[:2]
            gen.append(int(order[0]))
            margin.append(rnd(row[order[0]] - row[order[1]]))
            seq.append(int(order[0]))
        return {"generated_ids": gen, "top1_top2_margin": margin}


# --------------------------------------------------------------------------
# fixture (llama.cpp)
# --------------------------------------------------------------------------

MIXED_PROMPT = ("def area(r):\n    return 3.14159 * r ** 2  # 円の面積 🦀\n\n"
                "print(area(12345), \"done\")  # 12 spaces:            end")
SHORT_PROMPT = "The quick brown fox jumps over the lazy dog, then runs away into the dark green forest."
PROMPTS_BY_ARCH_CHAT = {
    "qwen": ("chat", "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n"),
    "llama3": ("chat", "<|start_header_id|>user<|end_header_id|>\n\nWrite a haiku about the sea."
                       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    "phi3": ("chat", "<|user|>\nWrite a haiku about the sea, please, in English.<|end|>\n<|assistant|>\n"),
    "gemma": ("chat", "<start_of_turn>user\nWrite a haiku about the sea, please.<end_of_turn>\n"
                      "<start_of_turn>model\n"),
}
TOKENIZE_LABELS = ["ascii_sentence", "contractions", "chinese", "emoji", "code_python", "digits",
                   "space_runs", "mixed_long"]
EXTRA_TOKENIZE_LABELS = ["digit_runs", "whitespace_runs", "cjk_no_spaces", "leading_space_word"]
SPECIAL_TEXTS = {
    "qwen": [("specials", "<|im_start|>user\nHi<|im_end|>\n<|endoftext|><tool_call>x</tool_call>")],
    "llama3": [("specials", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")],
    "phi3": [("specials", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n")],
    "gemma": [("specials", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")],
}


def prompts_for(a: Arch) -> list[tuple[str, str]]:
    import make_fixtures as mf
    return [("long_100", mf.LONG_PROMPT), ("mixed_code", MIXED_PROMPT), PROMPTS_BY_ARCH_CHAT[a.tokenizer]]


def run_llama(mf, path: Path, a: Arch, n_ctx: int, threads: int, col_ids: list[int] | None) -> dict:
    """Logits summaries, columns and greedy runs of every prompt on one llama.cpp context."""
    ref = mf.Ref(path, threads, n_ctx=n_ctx, n_batch=n_ctx)
    add_bos = bool(ref.llm._model.add_bos_token())
    prompts, rows_all = [], []
    for label, text in prompts_for(a):
        ids = ref.tokenize(text, add_special=True, parse_special=True)
        rows = ref.eval_fresh(ids)
        rows_all.append(rows)
        last = rows[-1]
        order = np.argsort(-last.astype(np.float64), kind="stable")[:TOP_K]
        entry = {
            "label": label,
            "prompt": text,
            "prompt_ids": ids,
            "top_k_last": [[int(i), rnd(last[i])] for i in order],
            "argmax": [int(np.argmax(r)) for r in rows],
            "max_logit": [rnd(float(r.max())) for r in rows],
            "logsumexp": [rnd(mf.logsumexp(r)) for r in rows],
        }
        if col_ids is not None and label == "mixed_code":
            entry["column_logits"] = [[rnd(r[c]) for c in col_ids] for r in rows]
        entry["greedy"] = mf.greedy_run(ref, ids, N_GREEDY)
        prompts.append(entry)
    del ref
    return {"n_ctx": n_ctx, "add_bos": add_bos, "prompts": prompts, "_rows": rows_all}


def max_diff(x: list[np.ndarray], y: list[np.ndarray]) -> float:
    return rnd(max(float(np.max(np.abs(p - q))) for p, q in zip(x, y)))


def make_fixture(args, a: Arch, path: Path, table: list[dict], tok: list[KV]) -> dict:
    import make_fixtures as mf  # imports llama_cpp (and patches its default model params)
    t0 = time.time()
    sha = sha256_file(path)
    n_vocab = vocab_size(tok)
    col_ids = [int(x) for x in np.round(np.linspace(0, n_vocab - 1, N_COLUMNS)).astype(int)]

    # Tokenizer cases, on a llama.cpp context of the file itself.
    ref = mf.Ref(path, args.threads, n_ctx=N_CTX, n_batch=N_CTX)
    texts = dict(mf.TOKENIZE_TEXTS) | dict(mf.EXTRA_TOKENIZE_TEXTS)
    tok_texts = [(k, texts[k]) for k in TOKENIZE_LABELS + EXTRA_TOKENIZE_LABELS] + SPECIAL_TEXTS[a.tokenizer]
    tokenize = mf.make_tokenize(ref, {}, tok_texts, ["specials"], ["ascii_sentence", "specials"],
                                with_detokenize=True)
    prov = mf.provenance(ref, path, sha, {"n_ctx": N_CTX, "n_batch": N_CTX, "seed": args.seed,
                                          "generator": "tests/reference/make_arch_models.py"})
    del ref
    tokenize.pop("provenance")

    runs, checks = {}, {}
    if a.arch == "phi3":
        orig = a.extra["original_context_length"]
        runs["short_factors"] = run_llama(mf, path, a, orig, args.threads, col_ids)
        # No column logits here: the fixture stays under 100 KB.
        runs["long_factors"] = run_llama(mf, path, a, 2 * orig, args.threads, None)
        checks["max_abs_logit_diff_long_vs_short_factors"] = max_diff(
            runs["long_factors"]["_rows"], runs["short_factors"]["_rows"])
    else:
        runs["main"] = run_llama(mf, path, a, N_CTX, args.threads, col_ids)
        base = runs["main"]["_rows"]
        variant = args.models / f"{a.name}.variant.gguf"
        if a.arch == "gemma3":
            write_model(variant, a, args.seed, tok, overrides={
                "gemma3.attention.sliding_window": (GGUFValueType.UINT32, a.n_ctx_train)})
            other = run_llama(mf, variant, a, N_CTX, args.threads, None)["_rows"]
            checks["max_abs_logit_diff_without_sliding_window"] = max_diff(base, other)
            # Position p < sliding_window: every local layer still sees the whole prefix.
            w = a.extra["sliding_window"]
            checks["max_abs_logit_diff_without_sliding_window_before_window"] = rnd(
                max(float(np.max(np.abs(x[:w] - y[:w]))) for x, y in zip(base, other)))
        if a.arch == "llama":
            write_model(variant, a, args.seed, tok, drop=("rope_freqs.weight",))
            other = run_llama(mf, variant, a, N_CTX, args.threads, None)["_rows"]
            checks["max_abs_logit_diff_without_rope_freqs"] = max_diff(base, other)
        variant.unlink(missing_ok=True)
    # The float64 reference on the same prompts: how far llama.cpp's own rounding moves the logits
    # (the tolerance a runtime's comparison with the llama.cpp numbers needs) and a check of the
    # graph facts in the module doc.
    f64 = F64Model.generated(a, args.seed, n_vocab)
    for rname, r in runs.items():
        diffs, lp_diffs, agree, total = [], [], 0, 0
        for prompt, rows in zip(r["prompts"], r["_rows"]):
            ref_rows = f64.forward(prompt["prompt_ids"], r["n_ctx"])
            llama = rows.astype(np.float64)
            diffs.append(float(np.max(np.abs(llama - ref_rows))))
            lse_l = np.array([mf.logsumexp(x) for x in llama])
            lse_f = np.array([mf.logsumexp(x) for x in ref_rows])
            lp_diffs.append(float(np.max(np.abs((llama - lse_l[:, None]) - (ref_rows - lse_f[:, None])))))
            am = [int(np.argmax(x)) for x in ref_rows]
            agree += sum(x == y for x, y in zip(am, prompt["argmax"]))
            total += len(am)
            last = ref_rows[-1]
            order = np.argsort(-last, kind="stable")[:TOP_K]
            prompt["f64"] = {"argmax": am, "logsumexp": [rnd(x) for x in lse_f],
                             "top_k_last": [[int(i), rnd(last[i])] for i in order],
                             "greedy": f64.greedy(prompt["prompt_ids"], r["n_ctx"], N_GREEDY)}
            g_l, g_f = prompt["greedy"]["generated_ids"], prompt["f64"]["greedy"]["generated_ids"]
            same = next((j for j, (x, y) in enumerate(zip(g_l, g_f)) if x != y), len(g_l))
            checks.setdefault(f"{rname}_greedy_steps_equal_llama_vs_f64", []).append(same)
        checks[f"{rname}_max_abs_logit_diff_llama_vs_f64"] = rnd(max(diffs))
        checks[f"{rname}_max_abs_logprob_diff_llama_vs_f64"] = rnd(max(lp_diffs))
        checks[f"{rname}_argmax_agreement_llama_vs_f64"] = f"{agree}/{total}"
    for r in runs.values():
        rows = r.pop("_rows")
        checks.setdefault("logit_std_mean", rnd(float(np.mean([np.std(x) for rr in rows for x in rr]))))
        for p in r["prompts"]:
            checks.setdefault("min_greedy_margin", 1e9)
            checks["min_greedy_margin"] = min(checks["min_greedy_margin"], min(p["greedy"]["top1_top2_margin"]))
    for k, v in checks.items():
        log(f"{a.name} check {k}: {v}")

    e = a.extra
    model = {
        "file": path.name,
        "sha256": sha,
        "bytes": path.stat().st_size,
        "architecture": a.arch,
        "n_vocab": n_vocab,
        "n_embd": a.n_embd, "n_ff": a.n_ff, "n_layer": a.n_layer, "n_head": a.n_head,
        "n_head_kv": a.n_head_kv, "head_dim": a.head_dim, "n_ctx_train": a.n_ctx_train,
        "rope_base": a.rope_base, "rms_eps": a.rms_eps,
        "tied_output": a.output_type is None,
        "extra": e,
        "tensors": table,
    }
    if a.arch == "llama":
        model["rope_freqs"] = [rnd(x) for x in llama3_rope_freqs(a)]
    if a.arch == "phi3":
        orig = e["original_context_length"]
        model["rope_scaling_attn_factor"] = rnd(math.sqrt(1 + math.log(a.n_ctx_train / orig) / math.log(orig)))
    if a.arch == "gemma3":
        model["local_layers"] = [i for i in range(a.n_layer) if i % 6 < 5]
    log(f"{a.name}: llama.cpp fixture in {time.time() - t0:.1f}s")
    return {
        "provenance": prov,
        "description": (
            f"Random-weight {a.arch} model written by make_arch_models.py (seed {args.seed}); "
            "llama.cpp through llama-cpp-python on the same file. tokenize: as PREFIX_tokenize.json "
            "from make_fixtures.py. runs[name].prompts: prompt tokenized with add_special=true, "
            "parse_special=true, evaluated from an empty KV cache as one batch; per position p: "
            "argmax, max_logit, logsumexp (float64) of the next-token logits after tokens[0..=p]; "
            "top_k_last = top-10 (id, logit) at the last position; column_logits[p][j] = logit of "
            "column_ids[j] at position p; greedy = 32 argmax tokens decoded one at a time after the "
            "prompt, with the top-1 logit, top-1 minus top-2 margin and runner-up id of each step. "
            "llama.cpp quantizes matmul activations to 8 bits and keeps K/V in f16, so compare "
            "with a tolerance and accept greedy flips only at small margins. "
            + ("phi3: runs.short_factors uses n_ctx = original_context_length (rope_factors_short), "
               "runs.long_factors n_ctx = 2 * original_context_length (> it: rope_factors_long); both "
               "multiply RoPE cos/sin by rope.scaling.attn_factor. " if a.arch == "phi3" else "")
            + "prompts[i].f64: the same summaries from make_arch_models.py's float64 forward pass "
            "(F64Model: the file's dequantized weights, nothing else rounded), its greedy tokens "
            "recomputed from the whole sequence each step. checks: llama.cpp "
            "against f64 (max |logit| and |log-prob| differences over every position and the whole "
            "vocabulary, argmax agreement), and against variants of the file (see make_arch_models.py)."
        ),
        "model": model,
        "tokenize": tokenize,
        "column_ids": col_ids,
        "runs": runs,
        "checks": checks,
    }


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="directory of the real files and "
                    "the output models")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-fixture", action="store_true", help="only write the models (gguf + numpy)")
    ap.add_argument("--only", nargs="*", default=None, choices=[a.name for a in ARCHS])
    args = ap.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    toks: dict[str, list[KV]] = {}
    for a in ARCHS:
        if args.only and a.name not in args.only:
            continue
        t0 = time.time()
        if a.tokenizer not in toks:
            toks[a.tokenizer] = read_tokenizer(a.tokenizer, args.models)
        tok = toks[a.tokenizer]
        path = args.models / f"{a.name}.gguf"
        table = write_model(path, a, args.seed, tok)
        size = path.stat().st_size
        log(f"wrote {path} ({size / 1e6:.2f} MB) in {time.time() - t0:.1f}s")
        assert size <= 30_000_000, f"{path.name} is larger than 30 MB"
        if not args.no_fixture:
            fixture = make_fixture(args, a, path, table, tok)
            out = args.fixtures / f"{a.name}.json"
            text = compact_json(fixture)
            out.write_text(text + "\n", encoding="utf-8")
            log(f"wrote {out} ({len(text) // 1024} KiB)")
    log(f"done in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
