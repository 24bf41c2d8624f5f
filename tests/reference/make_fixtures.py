#!/usr/bin/env python3
"""Generate reference fixtures for Tern from an independent implementation.

The reference is llama.cpp, driven through the PyPI package llama-cpp-python.
Run it through make_fixtures.sh, which pins the versions and fetches the model.

Fixtures written into tests/reference/fixtures/ (all JSON, floats rounded to
6 significant digits), PREFIX = --prefix (default smollm2; see PROFILES):

  PREFIX_tokenize.json       tokenizer ids + detokenized bytes for varied text
  PREFIX_greedy.json         48 greedy (pure argmax) tokens for several prompts
  PREFIX_logits.json         top-10 logits, log-sum-exp, sampled logit columns
  PREFIX_ppl.json            llama.cpp-style perplexity on the GPL-3 text
  PREFIX_chat_template.json  chat template renderings (HF transformers style);
                             not written for a model without a template
  PREFIX_quantize.json       llama.cpp's llama_model_quantize of the model into the k-quant
                             mixes (QUANTIZE_MIXES; no importance matrix, allow_requantize):
                             per output tensor "name type sha256" and per quantized input
                             tensor "name type sha256" of ggml's f32 dequantization of it (what
                             the quantizers are fed); each sha256 cut to its first 16 hex digits

Profiles: smollm2 (SmolLM2-135M-Instruct Q4_1), qwen25_05b (Qwen2.5-Coder-0.5B-Instruct
Q4_K_M, adds tool-calling template cases), gemma3_270m (Gemma 3 270M Q4_K_M, a base model:
no template). The two newer profiles add tokenizer texts (CJK, emoji, code, digit and
whitespace runs, the model's own special tokens) and prompts in the model's chat format.
make_arch_models.py reuses the functions here for its random-weight models.

Every fixture has a "provenance" object (library versions, llama.cpp system
info, model sha256, thread count, UTC date).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import llama_cpp
from llama_cpp import Llama

# The shared conversations and jinja2 environment of the chat-template fixtures.
from hf_chat import CHAT_CASES, TIME_TOOL, TOOL_CALL_MESSAGES, TOOL_CHAT_CASES, WEATHER_TOOL, hf_style_env  # noqa: F401

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_MODEL = ROOT / "models" / "smollm2-135m-instruct-q4_1.gguf"
DEFAULT_OUT = HERE / "fixtures"
DEFAULT_PPL_TEXT = Path("/usr/share/common-licenses/GPL-3")

SIG_DIGITS = 6


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def rnd(x: float) -> float:
    """Round a float to SIG_DIGITS significant digits (JSON friendly)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.{SIG_DIGITS}g}")


def log(msg: str) -> None:
    print(f"[make_fixtures] {msg}", file=sys.stderr, flush=True)


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


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    path.write_text(text + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
        f"({len(text.encode('utf-8')) // 1024} KiB)")


def logsumexp(row: np.ndarray) -> float:
    r = row.astype(np.float64)
    m = float(r.max())
    return m + math.log(float(np.exp(r - m).sum()))


# --------------------------------------------------------------------------
# llama.cpp access
# --------------------------------------------------------------------------

def _no_extra_bufts_params():
    p = _ORIG_MODEL_DEFAULT_PARAMS()
    p.use_extra_bufts = False
    return p


# llama.cpp puts weights into "extra" CPU buffer types (AMX tiles, repacked
# layouts) when the CPU supports them. On this sandbox the AMX path segfaults
# (ldtilecfg: the kernel does not grant AMX tile state), and those layouts are
# machine dependent anyway, so force the plain ggml CPU kernels. llama-cpp-python
# has no keyword for llama_model_params.use_extra_bufts, hence this patch of the
# default-params factory that Llama.__init__ calls.
_ORIG_MODEL_DEFAULT_PARAMS = llama_cpp.llama_cpp.llama_model_default_params
if hasattr(llama_cpp.llama_cpp.llama_model_params, "_fields_") and any(
        f[0] == "use_extra_bufts" for f in llama_cpp.llama_cpp.llama_model_params._fields_):
    llama_cpp.llama_cpp.llama_model_default_params = _no_extra_bufts_params
    USE_EXTRA_BUFTS = False
else:  # pragma: no cover - older llama-cpp-python
    USE_EXTRA_BUFTS = None

class Ref:
    """Thin wrapper around a llama_cpp.Llama instance."""

    def __init__(self, model_path: Path, n_threads: int, n_ctx: int = 2048, n_batch: int = 512):
        self.n_threads = n_threads
        self.llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=True,
            seed=0,
            verbose=False,
        )
        self.n_vocab = self.llm.n_vocab()
        self._vocab = self.llm._model.vocab
        self._piece_buf = ctypes.create_string_buffer(1024)

    # tokenizer ---------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        # llama_tokenize(vocab, text, add_special, parse_special): add_special
        # only adds BOS/EOS when the vocab's metadata asks for it.
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special))

    def piece(self, tok: int, special: bool) -> bytes:
        # llama-cpp-python's own detokenize uses a fixed 32-byte buffer, but this
        # vocab has pieces up to ~81 bytes, so call llama_token_to_piece directly.
        n = llama_cpp.llama_token_to_piece(self._vocab, tok, self._piece_buf, len(self._piece_buf), 0, special)
        if n < 0:
            raise RuntimeError(f"piece buffer too small for token {tok}")
        return self._piece_buf.raw[:n]

    def detokenize(self, ids: list[int], special: bool = True) -> bytes:
        return b"".join(self.piece(t, special) for t in ids)

    def detokenize_llama(self, ids: list[int], remove_special: bool = False,
                         unparse_special: bool = True) -> bytes:
        """llama_detokenize: the pieces, without the first token's leading space when the vocab
        has add_space_prefix, with clean_up_tokenization_spaces where the vocab enables it."""
        arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
        size = 256 + 64 * len(ids)
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self._vocab, arr, len(ids), buf, size, remove_special,
                                           unparse_special)
            if n >= 0:
                return buf.raw[:n]
            size = -n
        raise RuntimeError("llama_detokenize buffer")

    def token_text(self, tok: int) -> str:
        return self.llm._model.token_get_text(tok)

    # model -------------------------------------------------------------
    def eval_fresh(self, ids: list[int]) -> np.ndarray:
        """Evaluate ids from an empty KV cache; return logits for every position."""
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32, copy=True)

    def eval_next(self, tok: int) -> np.ndarray:
        self.llm.eval([tok])
        return np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32, copy=True)


def provenance(ref: Ref, model_path: Path, model_sha: str, extra: dict | None = None) -> dict:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    libs = sorted(p.name for p in lib_dir.glob("lib*.so.*.*.*")) if lib_dir.is_dir() else []
    try:
        sysinfo = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception:
        sysinfo = None
    try:
        lver = llama_cpp.llama_version().decode()
    except Exception:
        lver = None
    p = {
        "generator": "tests/reference/make_fixtures.py",
        "reference_impl": "llama.cpp via llama-cpp-python",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_version": lver,
        "llama_cpp_shared_libs": libs,
        "llama_cpp_system_info": sysinfo,
        "gguf_version": pkg_version("gguf"),
        "jinja2_version": pkg_version("jinja2"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "model_file": model_path.name,
        "model_sha256": model_sha,
        "n_threads": ref.n_threads,
        "use_extra_bufts": USE_EXTRA_BUFTS,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if extra:
        p.update(extra)
    return p


# --------------------------------------------------------------------------
# fixture: tokenizer
# --------------------------------------------------------------------------

TOKENIZE_TEXTS: list[tuple[str, str]] = [
    ("ascii_hello", "Hello world"),
    ("ascii_capital", "The capital of France is"),
    ("ascii_sentence", "The quick brown fox jumps over the lazy dog."),
    ("contractions", "I'm sure they'll come, but DON'T you think it's late? We've seen what you'd do. THEY'LL see."),
    ("accents_precomposed", "café naïve résumé coöperate"),
    ("accents_decomposed", "cafe\u0301 vs caf\u00e9, n\u0303 and A\u030a"),
    ("german", "Grüße aus München! Die Straße ist schön, Äpfel und Öl."),
    ("french", "Où est la bibliothèque ? C'est l'été, n'est-ce pas ? « Très bien »"),
    ("spanish", "¿Dónde está el niño? ¡Mañana será otro día!"),
    ("chinese", "我爱自然语言处理。今天天气很好，我们去公园吧！"),
    ("japanese", "こんにちは、世界！カタカナとひらがなと漢字を混ぜます。"),
    ("korean", "안녕하세요, 세계! 한국어 토크나이저 테스트입니다."),
    ("emoji", "I love 🦀 and 🐍! 👍🏽 family: 👨\u200d👩\u200d👧\u200d👦 rainbow: 🏳\ufe0f\u200d🌈 flags: 🇫🇷🇯🇵"),
    ("code_python",
     "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n\tif a > b:\n\t\treturn a + b  # tab indented\n"
     "    return b - a\n\n\nprint(add(1, 2))\n"),
    ("digits", "1234567890 3.14159 $1,000,000 and 42nd on 2024-01-15, 007"),
    ("space_runs", "a  b   c    d          e"),
    ("newlines_only", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n"),
    ("leading_trailing_ws", "   leading and trailing whitespace   "),
    ("tabs_nbsp", "\t\ttabs\tand\u00a0non-breaking\u00a0space"),
    ("empty", ""),
    ("single_space", " "),
    ("single_char", "a"),
    ("chatml_specials", "<|im_start|>user\nHi<|im_end|>\n"),
    ("lone_im_end", "<|im_end|>"),
    ("endoftext_in_text", "Hello<|endoftext|>World"),
    ("fake_special", "<|im_start without closing, <|im_end| and |im_start|> and <im_start>"),
    ("arabic", "مرحبا بالعالم، كيف حالك؟"),
    ("hebrew", "שלום עולם, מה שלומך?"),
    ("devanagari", "नमस्ते दुनिया, आप कैसे हैं?"),
    ("thai", "สวัสดีชาวโลก คุณสบายดีไหม"),
    ("mixed_long",
     "In 2023, the café on Rue de Rivoli served 1,234 croissants per day (≈ 3.5 per minute). "
     "Its owner—Zoë, who speaks 日本語 and Español—wrote: `for i in range(10): print(i ** 2)`.\n"
     "Prices: €2.50, £1.99, ¥300; ratings ★★★★☆ 🥐🥐. Email: zoe@example.com, URL https://example.com/a?b=c&d=e#f.\n"
     "\tTabs, CRLF\r\nand    spaces    too. DON'T FORGET: it's 100% true!!! ...and that's all, folks."),
]

# (label, text) tokenized with parse_special = False
TOKENIZE_NO_PARSE_SPECIAL = ["chatml_specials", "lone_im_end", "endoftext_in_text", "fake_special", "ascii_hello"]
# (label) tokenized with add_special = True (llama.cpp adds BOS only if the vocab says so)
TOKENIZE_ADD_SPECIAL = ["ascii_hello", "empty", "chatml_specials", "ascii_capital"]


def make_tokenize(ref: Ref, prov: dict, texts: list[tuple[str, str]] | None = None,
                  no_parse_special: list[str] | None = None,
                  add_special_labels: list[str] | None = None, with_detokenize: bool = False) -> dict:
    texts = TOKENIZE_TEXTS if texts is None else texts
    no_parse_special = TOKENIZE_NO_PARSE_SPECIAL if no_parse_special is None else no_parse_special
    add_special_labels = TOKENIZE_ADD_SPECIAL if add_special_labels is None else add_special_labels
    by_label = dict(texts)
    assert len(by_label) == len(texts), "duplicate tokenize label"
    cases = []

    def case(label: str, add_special: bool, parse_special: bool) -> dict:
        text = by_label[label]
        ids = ref.tokenize(text, add_special=add_special, parse_special=parse_special)
        detok = ref.detokenize(ids, special=True)
        detok_plain = ref.detokenize(ids, special=False)
        out = {
            "label": label,
            "text": text,
            "add_special": add_special,
            "parse_special": parse_special,
            "ids": ids,
            "pieces": [ref.token_text(t) for t in ids],
            "detok_hex": detok.hex(),
            "detok_no_special_hex": detok_plain.hex(),
            "roundtrip_exact": detok == text.encode("utf-8"),
        }
        if with_detokenize:
            out["detokenize_hex"] = ref.detokenize_llama(ids).hex()
        return out

    for label, _ in texts:
        cases.append(case(label, False, True))
    for label in no_parse_special:
        cases.append(case(label, False, False))
    for label in add_special_labels:
        cases.append(case(label, True, True))

    m = ref.llm._model
    md = ref.llm.metadata
    vocab = {
        "n_vocab": ref.n_vocab,
        "tokenizer_model": md.get("tokenizer.ggml.model"),
        "tokenizer_pre": md.get("tokenizer.ggml.pre"),
        "metadata_add_bos_token": md.get("tokenizer.ggml.add_bos_token"),
        "llama_vocab_get_add_bos": bool(m.add_bos_token()),
        "llama_vocab_get_add_eos": bool(m.add_eos_token()),
        "bos_id": m.token_bos(),
        "eos_id": m.token_eos(),
        "eot_id": m.token_eot(),
    }
    if with_detokenize:
        # Every id for which llama_vocab_is_eog holds (generation stops there).
        vocab["eog_ids"] = [t for t in range(ref.n_vocab) if llama_cpp.llama_vocab_is_eog(ref._vocab, t)]
    return {
        "provenance": prov,
        "description": (
            "ids = llama_tokenize(text utf-8, add_special, parse_special) via "
            "Llama.tokenize(text, add_bos=add_special, special=parse_special). "
            "detok_hex = concatenation of llama_token_to_piece(id, lstrip=0, special=true) over ids; "
            "detok_no_special_hex = same with special=false (control tokens render as empty). "
            + ("pieces = raw vocab strings (byte-level BPE alphabet, e.g. 'Ġ' for space)."
               if ref.llm.metadata.get("tokenizer.ggml.model") == "gpt2" else
               "pieces = raw vocab strings (SentencePiece: '▁' for space, <0xXX> byte tokens).")
            + (" detokenize_hex = llama_detokenize(ids, remove_special=false, unparse_special=true): "
               "the pieces without the first one's leading space if the vocab has add_space_prefix, "
               "then clean_up_tokenization_spaces if the pre-tokenizer enables it."
               if with_detokenize else "")
        ),
        "vocab": vocab,
        "cases": cases,
    }


# --------------------------------------------------------------------------
# fixture: greedy decoding
# --------------------------------------------------------------------------

LONG_PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, "
    "a goldsmith from Mainz, combined movable metal type, oil-based ink and a wooden screw press "
    "into a system that could produce books far faster than scribes copying by hand. Within a few "
    "decades, print shops had spread to more than two hundred cities across Europe, and the price "
    "of books fell sharply. Historians often argue that this change helped to spread the ideas of "
    "the Renaissance and the Reformation, because"
)

GREEDY_PROMPTS: list[tuple[str, str]] = [
    ("capital_france", "The capital of France is"),
    ("once_upon", "Once upon a time"),
    ("fibonacci", "def fibonacci(n):"),
    ("counting", "1, 2, 3, 4,"),
    ("chat_2plus2", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("french", "La capitale de l'Allemagne est"),
    ("one_token", "Hello"),
    ("long_100", LONG_PROMPT),
    ("chat_system", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n"),
]
N_GREEDY = 48


def top2(row: np.ndarray) -> tuple[int, float, int, float]:
    i1 = int(np.argmax(row))  # lowest index among ties, like a plain argmax loop
    v1 = float(row[i1])
    tmp = row.copy()
    tmp[i1] = -np.inf
    i2 = int(np.argmax(tmp))
    return i1, v1, i2, float(row[i2])


def greedy_run(ref: Ref, ids: list[int], n: int) -> dict:
    """n greedy steps after evaluating `ids` from an empty KV cache (one batch), then one token
    at a time: generated ids, the top-1 logit, the top-1/top-2 margin and the runner-up id."""
    logits = ref.eval_fresh(ids)[-1]
    gen, top1_logit, margin, second = [], [], [], []
    for step in range(n):
        i1, v1, i2, v2 = top2(logits)
        gen.append(i1)
        top1_logit.append(rnd(v1))
        margin.append(rnd(v1 - v2))
        second.append(i2)
        if step + 1 < n:
            logits = ref.eval_next(i1)
    return {"generated_ids": gen, "top1_logit": top1_logit, "top1_top2_margin": margin, "top2_id": second}


def make_greedy(ref: Ref, prov: dict, prompts: list[tuple[str, str]] | None = None,
                n_greedy: int = N_GREEDY, add_special: bool = False) -> dict:
    prompts = GREEDY_PROMPTS if prompts is None else prompts
    out = []
    for label, text in prompts:
        ids = ref.tokenize(text, add_special=add_special, parse_special=True)
        if label == "one_token":
            n_bos = int(add_special and ref.llm._model.add_bos_token())
            assert len(ids) == 1 + n_bos, ids
        run = greedy_run(ref, ids, n_greedy)
        gen, margin = run["generated_ids"], run["top1_top2_margin"]
        text_out = ref.detokenize(gen, special=True)
        out.append({
            "label": label,
            "prompt": text,
            "prompt_ids": ids,
            "generated_ids": gen,
            "top1_logit": run["top1_logit"],
            "top1_top2_margin": margin,
            "top2_id": run["top2_id"],
            "generated_text": text_out.decode("utf-8", "replace"),
            "generated_hex": text_out.hex(),
        })
        log(f"greedy {label}: {len(ids)} prompt tokens, min margin {min(margin):.4g}")
    return {
        "provenance": prov,
        "description": (
            f"Prompt tokenized with add_special={str(add_special).lower()}, parse_special=true. KV cache reset, prompt "
            f"evaluated as one batch, then {n_greedy} steps of: next = argmax(last logits) (lowest id on ties), "
            "evaluate [next] one token at a time. No EOS stopping: generation continues through "
            "end-of-turn tokens. top1_top2_margin[i] = logit(top1) - logit(top2) at step i; a step with "
            "a tiny margin may legitimately flip under a different float summation order."
        ),
        "n_generated": n_greedy,
        "prompts": out,
    }


# --------------------------------------------------------------------------
# fixture: logits
# --------------------------------------------------------------------------

LOGIT_PROMPTS: list[tuple[str, str]] = [
    ("capital_france", "The capital of France is"),
    ("once_upon", "Once upon a time"),
    ("chat_2plus2", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("fibonacci", "def fibonacci(n):"),
    ("german", "Grüße aus München! Die Straße ist"),
    ("one_token", "Hello"),
]
COLUMN_PROMPT = ("capital_france", "The capital of France is")
N_COLUMNS = 200
TOP_K = 10


def make_logits(ref: Ref, prov: dict, logit_prompts: list[tuple[str, str]] | None = None,
                column_prompt: tuple[str, str] = COLUMN_PROMPT, n_columns: int = N_COLUMNS,
                add_special: bool = False) -> dict:
    logit_prompts = LOGIT_PROMPTS if logit_prompts is None else logit_prompts
    prompts = []
    for label, text in logit_prompts:
        ids = ref.tokenize(text, add_special=add_special, parse_special=True)
        row = ref.eval_fresh(ids)[-1]
        order = np.argsort(-row.astype(np.float64), kind="stable")[:TOP_K]
        prompts.append({
            "label": label,
            "prompt": text,
            "prompt_ids": ids,
            "top_k": [[int(i), rnd(row[i])] for i in order],
            "logsumexp": rnd(logsumexp(row)),
            "max_logit": rnd(float(row.max())),
            "mean_logit": rnd(float(row.astype(np.float64).mean())),
        })

    col_ids = [int(x) for x in np.round(np.linspace(0, ref.n_vocab - 1, n_columns)).astype(int)]
    label, text = column_prompt
    ids = ref.tokenize(text, add_special=add_special, parse_special=True)
    all_rows = ref.eval_fresh(ids)
    positions = []
    for pos, row in enumerate(all_rows):
        positions.append({
            "pos": pos,
            "token_id": ids[pos],
            "argmax": int(np.argmax(row)),
            "max_logit": rnd(float(row.max())),
            "logsumexp": rnd(logsumexp(row)),
            "logits": [rnd(row[c]) for c in col_ids],
        })
    return {
        "provenance": prov,
        "description": (
            "Raw (pre-softmax) logits from llama.cpp, float32 rounded to 6 significant digits. "
            f"Prompts tokenized with add_special={str(add_special).lower()}, parse_special=true and evaluated from an empty KV "
            "cache as one batch. top_k = 10 largest (id, logit) of the last position, descending. "
            "logsumexp = log(sum(exp(logits))) over the whole vocab (float64), so "
            "log p(id) = logit(id) - logsumexp. 'columns' holds logits at column_ids for every "
            "position of one prompt (position p = next-token distribution after tokens[0..=p])."
        ),
        "n_vocab": ref.n_vocab,
        "prompts": prompts,
        "columns": {
            "label": label,
            "prompt": text,
            "prompt_ids": ids,
            "column_ids": col_ids,
            "positions": positions,
        },
    }


# --------------------------------------------------------------------------
# fixture: perplexity
# --------------------------------------------------------------------------

def make_ppl(model_path: Path, n_threads: int, text_path: Path, n_ctx: int, max_chunks: int | None,
             prov_fn) -> dict:
    """Perplexity the way llama.cpp's tools/perplexity (function `perplexity`) computes it.

    As done by llama.cpp:
      * tokens = common_tokenize(text, add_special=true, parse_special=false); add_special adds
        BOS only if the vocab says so (field add_bos; false for SmolLM2 and Qwen2.5, true for Gemma).
      * n_chunk = len(tokens) // n_ctx (remainder dropped), optionally capped by --chunks.
      * chunk i covers tokens[i*n_ctx : (i+1)*n_ctx], evaluated from an empty KV cache at
        positions 0..n_ctx-1. If the vocab adds BOS, the chunk's first token is replaced by BOS.
      * first = n_ctx/2; for j in [first, n_ctx-1): nll += -log_softmax(logits[j])[tokens[j+1]]
        -> n_ctx-1-first = 255 scored tokens per chunk at n_ctx=512.
      * running PPL after each chunk = exp(nll_sum / count).
      * final: mean = nll_sum/count, var = nll2_sum/count - mean^2,
        PPL = exp(mean), error = sqrt(var/(count-1)) * PPL  (printed "PPL = x +/- y").
    Differences: llama.cpp packs 4 chunks into one n_batch=2048 batch as separate sequences;
    here each chunk is its own 512-token batch on a fresh n_ctx=512 context (same math).
    log_softmax is computed in float64 here (llama.cpp: float max, double sum of expf).
    """
    ref = Ref(model_path, n_threads, n_ctx=n_ctx, n_batch=n_ctx)
    add_bos = bool(ref.llm._model.add_bos_token())
    text = text_path.read_text(encoding="utf-8")
    tokens = ref.tokenize(text, add_special=True, parse_special=False)
    n_chunk_max = len(tokens) // n_ctx
    n_chunk = n_chunk_max if max_chunks is None else min(max_chunks, n_chunk_max)
    first = n_ctx // 2
    bos = ref.llm._model.token_bos()
    nll = 0.0
    nll2 = 0.0
    count = 0
    chunks = []
    t0 = time.time()
    for i in range(n_chunk):
        chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            chunk[0] = bos
        logits = ref.eval_fresh(chunk).astype(np.float64)
        rows = logits[first:n_ctx - 1]
        targets = np.array(tokens[i * n_ctx + first + 1:(i + 1) * n_ctx], dtype=np.int64)
        mx = rows.max(axis=1)
        lse = mx + np.log(np.exp(rows - mx[:, None]).sum(axis=1))
        lp = rows[np.arange(len(targets)), targets] - lse
        v = -lp
        chunk_nll = float(v.sum())
        nll += chunk_nll
        nll2 += float((v * v).sum())
        count += len(v)
        chunks.append({
            "chunk": i + 1,
            "chunk_nll_sum": rnd(chunk_nll),
            "chunk_ppl": rnd(math.exp(chunk_nll / len(v))),
            "running_ppl": rnd(math.exp(nll / count)),
        })
        log(f"ppl chunk {i + 1}/{n_chunk}: running {math.exp(nll / count):.4f} ({time.time() - t0:.1f}s)")
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    err = math.sqrt(var / (count - 1)) * ppl if var > 0 else None
    sha_text = sha256_file(text_path)
    return {
        "provenance": prov_fn(ref, {"n_ctx": n_ctx, "n_batch": n_ctx,
                                    "elapsed_s": round(time.time() - t0, 1)}),
        "description": make_ppl.__doc__.strip(),
        "text_file": str(text_path),
        "text_sha256": sha_text,
        "text_bytes": text_path.stat().st_size,
        "n_tokens": len(tokens),
        "first_tokens": tokens[:16],
        "add_bos": add_bos,
        "parse_special": False,
        "n_ctx": n_ctx,
        "first": first,
        "n_chunk_max": n_chunk_max,
        "n_chunks": n_chunk,
        "scored_per_chunk": n_ctx - 1 - first,
        "count": count,
        "chunks": chunks,
        "nll_mean": rnd(mean),
        "ppl": rnd(ppl),
        "ppl_stderr": rnd(err) if err is not None else None,
        "llama_cpp_style_line": f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}" if err is not None else None,
    }


# --------------------------------------------------------------------------
# fixture: chat template
# --------------------------------------------------------------------------

def read_gguf_chat_template(model_path: Path) -> str | None:
    try:
        from gguf import GGUFReader
    except Exception:
        return None
    reader = GGUFReader(str(model_path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        return None
    # string field: last part holds the utf-8 bytes
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def make_chat_template(ref: Ref, model_path: Path, prov: dict, chat_cases: list | None = None) -> dict:
    """chat_cases: (label, messages, add_generation_prompt[, tools]) tuples (default CHAT_CASES)."""
    chat_cases = CHAT_CASES if chat_cases is None else chat_cases
    md = ref.llm.metadata
    tmpl_md = md.get("tokenizer.chat_template")
    tmpl_gguf = read_gguf_chat_template(model_path)
    if tmpl_gguf is not None and tmpl_md is not None and tmpl_gguf != tmpl_md:
        raise RuntimeError("chat template differs between gguf reader and llama.cpp metadata")
    template = tmpl_gguf if tmpl_gguf is not None else tmpl_md
    m = ref.llm._model
    bos_token = m.token_get_text(m.token_bos())
    eos_token = m.token_get_text(m.token_eos())
    env = hf_style_env()
    compiled = env.from_string(template)
    cases = []
    for label, messages, agp, *rest in chat_cases:
        tools = rest[0] if rest else None
        rendered = compiled.render(messages=messages, add_generation_prompt=agp, tools=tools,
                                   bos_token=bos_token, eos_token=eos_token)
        case = {"label": label, "messages": messages}
        if tools is not None:
            case["tools"] = tools
        case.update({
            "add_generation_prompt": agp,
            "rendered": rendered,
            "rendered_ids": ref.tokenize(rendered, add_special=False, parse_special=True),
        })
        cases.append(case)
    return {
        "provenance": prov,
        "description": (
            "template = GGUF tokenizer.chat_template (read with gguf.GGUFReader, cross-checked with "
            "llama.cpp metadata). Rendered like transformers' apply_chat_template: "
            "jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, "
            "extensions=[loopcontrols]) with globals raise_exception, strftime_now, filter tojson, and "
            "variables messages, add_generation_prompt, bos_token, eos_token. rendered_ids = tokenize("
            "rendered, add_special=false, parse_special=true)."
            + (" A case with 'tools' passes them as the variable tools (None otherwise). Every JSON "
               "object in tools and tool_calls has its keys in sorted order, so a renderer that sorts "
               "keys and one that keeps insertion order (tojson's default) print the same."
               if any(len(c) > 3 for c in chat_cases) else "")
        ),
        "template": template,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "cases": cases,
    }


# --------------------------------------------------------------------------
# profiles: which texts and prompts each model's fixtures use
# --------------------------------------------------------------------------

# Texts that exercise a tokenizer beyond TOKENIZE_TEXTS: CJK, emoji, code, digit and whitespace
# runs, Unicode corner cases. Used for every model but SmolLM2 (whose fixture predates them).
EXTRA_TOKENIZE_TEXTS: list[tuple[str, str]] = [
    ("cjk_mixed", "中文、日本語、한국어 mixed with English and 数字123。汉字：龍、龘；“引号”【括号】"),
    ("cjk_no_spaces", "abc日本語def한국어123ghi中文"),
    ("emoji_more", "🤖🚀✨ 😀😃😄 🧑🏾\u200d💻 ❤\ufe0f\u200d🔥 1\ufe0f\u20e3 #\ufe0f\u20e3"),
    ("code_rust",
     "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n"
     "    println!(\"{:?}\", v); // squares\n}\n"),
    ("code_cpp_tabs",
     "#include <stdio.h>\nint main(void) {\n\tfor (int i = 0; i < 10; ++i) {\n"
     "\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n"),
    ("code_json", "{\"name\": \"tern\", \"version\": [1, 2, 3], \"nested\": {\"ok\": true, \"x\": null}}"),
    ("html", "<div class=\"main\"><p>Hello &amp; welcome</p><br/></div>"),
    ("digit_runs",
     "1 12 123 1234 12345 123456 1234567 12345678901234567890 3.14159265358979 0x1F 1e-10 "
     "2,147,483,647 ١٢٣ ０１２"),
    ("whitespace_runs", "a\n\n\n\nb\t\t\t\tc        d\r\n\r\n e  \n  f \u3000 g"),
    ("indent_runs", "\n    four\n        eight\n            twelve\n\t\ttwo tabs\n"),
    ("spaces_17", " " * 17),
    ("newline_space_mix", " \n \n\n  \n"),
    ("leading_space_word", " Hello"),
    ("two_leading_spaces", "  Hello  world"),
    ("apostrophes", "I'M you'RE he's we'VE they'd 'quoted' \u2019curly\u2019 \u2018single\u2019"),
    ("unicode_misc", "ﬁ ligature, Ω vs Ω, ＡＢＣ fullwidth, ① circled, ｶﾀｶﾅ, ẞ, İstanbul, ǅ, x²+y³, ½"),
    ("combining_marks", "Z\u0351\u036b\u0343a\u0310l\u0357g\u0351o and e\u0301\u0301"),
    ("invisible_chars", "\ufffd replacement, zero\u200bwidth, join\u200der, \ufeffbom, a\u0001b\u007fc"),
    ("url_path", "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp#L123 /usr/local/bin/tern --help"),
    ("long_word", "pneumonoultramicroscopicsilicovolcanoconiosis Donaudampfschifffahrtsgesellschaftskapitän"),
]

QWEN_SPECIAL_TEXTS: list[tuple[str, str]] = [
    ("qwen_chatml_system",
     "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("qwen_fim", "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c<|fim_middle|>"),
    ("qwen_tool_call", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"),
    ("qwen_repo_file", "<|repo_name|>tern<|file_sep|>src/main.rs\nfn main() {}"),
    ("qwen_vision", "<|vision_start|><|image_pad|><|vision_end|>"),
]

GEMMA_SPECIAL_TEXTS: list[tuple[str, str]] = [
    ("gemma_turns", "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"),
    ("gemma_bos_eos_in_text", "<bos>Hello<eos> world<pad>"),
    ("gemma_image_tokens", "<start_of_image><end_of_image>"),
    ("gemma_unused", "<unused0> and <unused99>"),
    ("gemma_mask", "<mask> and [multimodal]"),
]

QWEN_CHAT_2PLUS2 = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
QWEN_CHAT_SYSTEM = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n")
GEMMA_CHAT_2PLUS2 = "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
CODE_PROMPT = "```python\n# Quicksort\ndef quicksort(arr):\n"


@dataclass(frozen=True)
class Profile:
    """What the fixtures of one model hold. `prefix` names the files (PREFIX_tokenize.json, …)."""
    prefix: str
    model: Path
    tokenize_texts: list
    no_parse_special: list
    add_special_labels: list
    greedy_prompts: list
    logit_prompts: list
    column_prompt: tuple
    # Prompts for greedy/logits tokenized with add_special (BOS where the vocab adds one).
    prompt_add_special: bool
    # None: the model has no chat template.
    chat_cases: list | None
    n_ctx: int = 2048


BASE_PROMPTS = [p for p in GREEDY_PROMPTS if not p[0].startswith("chat_")]

def qwen_profile(prefix: str, file: str) -> Profile:
    """A Qwen2.5 instruct file: byte-level BPE (pre-tokenizer qwen2), ChatML template with tools,
    add_bos_token false."""
    return Profile(
        prefix=prefix, model=ROOT / "models" / file,
        tokenize_texts=TOKENIZE_TEXTS + EXTRA_TOKENIZE_TEXTS + QWEN_SPECIAL_TEXTS,
        no_parse_special=["chatml_specials", "endoftext_in_text", "qwen_fim", "qwen_tool_call",
                          "ascii_hello"],
        add_special_labels=["ascii_hello", "empty", "chatml_specials"],
        greedy_prompts=BASE_PROMPTS + [("chat_2plus2", QWEN_CHAT_2PLUS2), ("chat_system", QWEN_CHAT_SYSTEM),
                                       ("code_quicksort", CODE_PROMPT)],
        logit_prompts=[p for p in LOGIT_PROMPTS if p[0] != "chat_2plus2"]
        + [("chat_2plus2", QWEN_CHAT_2PLUS2), ("code_quicksort", CODE_PROMPT)],
        column_prompt=COLUMN_PROMPT, prompt_add_special=True,
        chat_cases=CHAT_CASES + TOOL_CHAT_CASES, n_ctx=1024)


PROFILES: dict[str, Profile] = {
    "smollm2": Profile(
        prefix="smollm2", model=DEFAULT_MODEL,
        tokenize_texts=TOKENIZE_TEXTS, no_parse_special=TOKENIZE_NO_PARSE_SPECIAL,
        add_special_labels=TOKENIZE_ADD_SPECIAL, greedy_prompts=GREEDY_PROMPTS,
        logit_prompts=LOGIT_PROMPTS, column_prompt=COLUMN_PROMPT, prompt_add_special=False,
        chat_cases=CHAT_CASES),
    # Qwen2.5-Coder-0.5B-Instruct Q4_K_M (byte-level BPE, pre-tokenizer qwen2, ChatML template
    # with tools). add_bos_token is false, so add_special adds nothing to the prompts.
    "qwen25_05b": qwen_profile("qwen25_05b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    # Qwen2.5-Coder-1.5B-Instruct Q4_K_M (mostly Q4_K, Q6_K output head): the same vocabulary
    # and template as the 0.5B file, so the same texts; opt-in (1.1 GB, scripts/test-heavy.sh).
    "qwen25_15b": qwen_profile("qwen25_15b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
    # Gemma 3 270M (base model, no chat template) Q4_K_M: SentencePiece vocabulary of 262,144
    # tokens, add_bos_token true, add_space_prefix false. Prompts start with <bos>, as
    # llama.cpp's tools tokenize them.
    "gemma3_270m": Profile(
        prefix="gemma3_270m", model=ROOT / "models" / "gemma-3-270m-q4_k_m.gguf",
        tokenize_texts=TOKENIZE_TEXTS + EXTRA_TOKENIZE_TEXTS + GEMMA_SPECIAL_TEXTS,
        no_parse_special=["gemma_turns", "gemma_bos_eos_in_text", "chatml_specials", "ascii_hello"],
        add_special_labels=["ascii_hello", "empty", "gemma_turns", "single_space", "leading_space_word"],
        greedy_prompts=BASE_PROMPTS + [("chat_2plus2", GEMMA_CHAT_2PLUS2), ("code_quicksort", CODE_PROMPT)],
        logit_prompts=[p for p in LOGIT_PROMPTS if p[0] != "chat_2plus2"]
        + [("chat_2plus2", GEMMA_CHAT_2PLUS2), ("code_quicksort", CODE_PROMPT)],
        column_prompt=COLUMN_PROMPT, prompt_add_special=True, chat_cases=None, n_ctx=1024),
}

ALL_FIXTURES = ["tokenize", "greedy", "logits", "ppl", "chat_template", "quantize"]


# --------------------------------------------------------------------------
# fixture: quantization mixes
# --------------------------------------------------------------------------

# (tern quantize --type name, llama_ftype): the k-quant mixes that need no importance matrix.
QUANTIZE_MIXES = [
    ("q4_k_m", 15), ("q4_k_s", 14), ("q5_k_m", 17), ("q5_k_s", 16),
    ("q3_k_m", 12), ("q3_k_s", 11), ("q3_k_l", 13), ("q2_k", 10), ("q6_k", 18),
]


def short_sha256(data: bytes) -> str:
    """The first 16 hex digits (64 bits) of sha256(data): plenty to tell bytes apart, a quarter
    of the fixture's size."""
    return hashlib.sha256(data).hexdigest()[:16]


def make_quantize(model_path: Path, n_threads: int, prov: dict) -> dict:
    """Runs llama.cpp's own quantizer (llama_model_quantize, as llama-quantize does) on the
    model for every mix and records each output tensor's type and bytes (as sha256)."""
    import tempfile

    from gguf import GGUFReader

    # The f32 values llama.cpp's quantizer starts from: ggml's to_float of each quantized input
    # tensor (dequantize_row_<type> in libggml-base, which llama_tensor_dequantize_impl calls).
    ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    inputs = []
    for t in GGUFReader(model_path).tensors:
        if t.tensor_type.name == "F32":
            continue
        fn = getattr(ggml, f"dequantize_row_{t.tensor_type.name.lower()}")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        raw = np.ascontiguousarray(np.asarray(t.data).reshape(-1).view(np.uint8))
        out = np.zeros(int(t.n_elements), dtype="<f4")
        fn(raw.ctypes.data, out.ctypes.data, out.size)
        inputs.append(f"{t.name} {t.tensor_type.name} {short_sha256(out.tobytes())}")

    mixes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ftype in QUANTIZE_MIXES:
            dst = Path(tmp) / f"{name}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.allow_requantize = True
            params.nthread = n_threads
            t0 = time.time()
            rc = llama_cpp.llama_model_quantize(str(model_path).encode(), str(dst).encode(),
                                                ctypes.byref(params))
            if rc != 0:
                raise RuntimeError(f"llama_model_quantize {name} returned {rc}")
            log(f"quantize {name} took {time.time() - t0:.1f}s")
            r = GGUFReader(dst)
            tensors = [f"{t.name} {t.tensor_type.name} {short_sha256(np.asarray(t.data).tobytes())}"
                       for t in r.tensors]
            file_type = int(r.fields["general.file_type"].parts[-1][0])
            mixes.append({"type": name, "ftype": ftype, "file_type": file_type, "tensors": tensors})
            dst.unlink()
    return {"provenance": prov, "inputs": inputs, "mixes": mixes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="smollm2", choices=sorted(PROFILES),
                    help="fixture-name prefix; picks the model's profile (texts, prompts, chat cases)")
    ap.add_argument("--model", type=Path, default=None, help="model file (default: the profile's)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ppl-text", type=Path, default=DEFAULT_PPL_TEXT)
    ap.add_argument("--ppl-ctx", type=int, default=512)
    ap.add_argument("--ppl-chunks", type=int, default=None, help="cap on perplexity chunks (default: all)")
    ap.add_argument("--only", nargs="*", default=None, choices=ALL_FIXTURES)
    args = ap.parse_args()
    prof = PROFILES[args.prefix]

    t_start = time.time()
    model = (args.model or prof.model).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    model_sha = sha256_file(model)
    log(f"model {model} sha256 {model_sha}")
    want = set(args.only) if args.only else set(ALL_FIXTURES)
    if prof.chat_cases is None:
        want.discard("chat_template")
    if prof.prefix != "smollm2":
        # The quantizer fixture (llama.cpp's per-tensor choices for every mix) is SmolLM2's.
        want.discard("quantize")
    out = lambda kind: args.out / f"{prof.prefix}_{kind}.json"

    ref = Ref(model, args.threads, n_ctx=prof.n_ctx, n_batch=512)
    prov_fn = lambda r, extra=None: provenance(r, model, model_sha, extra)
    base_extra = {"n_ctx": prof.n_ctx, "n_batch": 512}

    if "tokenize" in want:
        write_json(out("tokenize"), make_tokenize(ref, prov_fn(ref, base_extra), prof.tokenize_texts,
                                                  prof.no_parse_special, prof.add_special_labels,
                                                  with_detokenize=prof.prefix != "smollm2"))
    if "chat_template" in want:
        write_json(out("chat_template"),
                   make_chat_template(ref, model, prov_fn(ref, base_extra), prof.chat_cases))
    if "logits" in want:
        write_json(out("logits"), make_logits(ref, prov_fn(ref, base_extra), prof.logit_prompts,
                                              prof.column_prompt, N_COLUMNS, prof.prompt_add_special))
    if "greedy" in want:
        t = time.time()
        write_json(out("greedy"), make_greedy(ref, prov_fn(ref, base_extra), prof.greedy_prompts,
                                              N_GREEDY, prof.prompt_add_special))
        log(f"greedy took {time.time() - t:.1f}s")
    if "quantize" in want:
        write_json(out("quantize"), make_quantize(model, args.threads, prov_fn(ref)))
    del ref
    if "ppl" in want:
        write_json(out("ppl"),
                   make_ppl(model, args.threads, args.ppl_text, args.ppl_ctx, args.ppl_chunks, prov_fn))
    log(f"done in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
