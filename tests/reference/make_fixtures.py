#!/usr/bin/env python3
"""Generate reference fixtures for Tern from an independent implementation.

The reference is llama.cpp, driven through the PyPI package llama-cpp-python.
Run it through make_fixtures.sh, which pins the versions and fetches the model.

Fixtures written into tests/reference/fixtures/ (all JSON, floats rounded to
6 significant digits):

  smollm2_tokenize.json       tokenizer ids + detokenized bytes for varied text
  smollm2_greedy.json         48 greedy (pure argmax) tokens for several prompts
  smollm2_logits.json         top-10 logits, log-sum-exp, sampled logit columns
  smollm2_ppl.json            llama.cpp-style perplexity on the GPL-3 text
  smollm2_chat_template.json  chat template renderings (HF transformers style)

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
from pathlib import Path

import numpy as np

import llama_cpp
from llama_cpp import Llama

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


def make_tokenize(ref: Ref, prov: dict) -> dict:
    by_label = dict(TOKENIZE_TEXTS)
    cases = []

    def case(label: str, add_special: bool, parse_special: bool) -> dict:
        text = by_label[label]
        ids = ref.tokenize(text, add_special=add_special, parse_special=parse_special)
        detok = ref.detokenize(ids, special=True)
        detok_plain = ref.detokenize(ids, special=False)
        return {
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

    for label, _ in TOKENIZE_TEXTS:
        cases.append(case(label, False, True))
    for label in TOKENIZE_NO_PARSE_SPECIAL:
        cases.append(case(label, False, False))
    for label in TOKENIZE_ADD_SPECIAL:
        cases.append(case(label, True, True))

    m = ref.llm._model
    md = ref.llm.metadata
    return {
        "provenance": prov,
        "description": (
            "ids = llama_tokenize(text utf-8, add_special, parse_special) via "
            "Llama.tokenize(text, add_bos=add_special, special=parse_special). "
            "detok_hex = concatenation of llama_token_to_piece(id, lstrip=0, special=true) over ids; "
            "detok_no_special_hex = same with special=false (control tokens render as empty). "
            "pieces = raw vocab strings (byte-level BPE alphabet, e.g. 'Ġ' for space)."
        ),
        "vocab": {
            "n_vocab": ref.n_vocab,
            "tokenizer_model": md.get("tokenizer.ggml.model"),
            "tokenizer_pre": md.get("tokenizer.ggml.pre"),
            "metadata_add_bos_token": md.get("tokenizer.ggml.add_bos_token"),
            "llama_vocab_get_add_bos": bool(m.add_bos_token()),
            "llama_vocab_get_add_eos": bool(m.add_eos_token()),
            "bos_id": m.token_bos(),
            "eos_id": m.token_eos(),
            "eot_id": m.token_eot(),
        },
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


def make_greedy(ref: Ref, prov: dict) -> dict:
    out = []
    for label, text in GREEDY_PROMPTS:
        ids = ref.tokenize(text, add_special=False, parse_special=True)
        if label == "one_token":
            assert len(ids) == 1, ids
        logits = ref.eval_fresh(ids)[-1]
        gen, top1_logit, margin, second = [], [], [], []
        for step in range(N_GREEDY):
            i1, v1, i2, v2 = top2(logits)
            gen.append(i1)
            top1_logit.append(rnd(v1))
            margin.append(rnd(v1 - v2))
            second.append(i2)
            if step + 1 < N_GREEDY:
                logits = ref.eval_next(i1)
        text_out = ref.detokenize(gen, special=True)
        out.append({
            "label": label,
            "prompt": text,
            "prompt_ids": ids,
            "generated_ids": gen,
            "top1_logit": top1_logit,
            "top1_top2_margin": margin,
            "top2_id": second,
            "generated_text": text_out.decode("utf-8", "replace"),
            "generated_hex": text_out.hex(),
        })
        log(f"greedy {label}: {len(ids)} prompt tokens, min margin {min(margin):.4g}")
    return {
        "provenance": prov,
        "description": (
            "Prompt tokenized with add_special=false, parse_special=true. KV cache reset, prompt "
            "evaluated as one batch, then 48 steps of: next = argmax(last logits) (lowest id on ties), "
            "evaluate [next] one token at a time. No EOS stopping: generation continues through "
            "end-of-turn tokens. top1_top2_margin[i] = logit(top1) - logit(top2) at step i; a step with "
            "a tiny margin may legitimately flip under a different float summation order."
        ),
        "n_generated": N_GREEDY,
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


def make_logits(ref: Ref, prov: dict) -> dict:
    prompts = []
    for label, text in LOGIT_PROMPTS:
        ids = ref.tokenize(text, add_special=False, parse_special=True)
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

    col_ids = [int(x) for x in np.round(np.linspace(0, ref.n_vocab - 1, N_COLUMNS)).astype(int)]
    label, text = COLUMN_PROMPT
    ids = ref.tokenize(text, add_special=False, parse_special=True)
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
            "Prompts tokenized with add_special=false, parse_special=true and evaluated from an empty KV "
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
      * tokens = common_tokenize(text, add_special=true, parse_special=false); for this model
        add_special adds nothing (tokenizer.ggml.add_bos_token = false).
      * n_chunk = len(tokens) // n_ctx (remainder dropped), optionally capped by --chunks.
      * chunk i covers tokens[i*n_ctx : (i+1)*n_ctx], evaluated from an empty KV cache at
        positions 0..n_ctx-1. If the vocab adds BOS, the chunk's first token is replaced by BOS
        (not the case here).
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
        "provenance": prov_fn(ref, {"n_ctx": n_ctx, "n_batch": n_ctx}),
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


def hf_style_env():
    """A jinja2 environment set up like transformers' chat template renderer."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CHAT_CASES: list[tuple[str, list[dict], bool]] = [
    ("user_only_gen", [{"role": "user", "content": "Hello! How are you?"}], True),
    ("user_only_nogen", [{"role": "user", "content": "Hello! How are you?"}], False),
    ("system_user_gen", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ], True),
    ("system_user_nogen", [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ], False),
    ("multi_turn_gen", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 equals 4."},
        {"role": "user", "content": "And times 3?"},
    ], True),
    ("multi_turn_nogen", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 equals 4."},
        {"role": "user", "content": "And times 3?"},
    ], False),
    ("user_assistant_no_system_gen", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ], True),
    ("special_chars_gen", [
        {"role": "user", "content": "Line 1\nLine 2\n\n  indented \"quotes\" & 'apostrophes' <tag> {{ not_jinja }} "
                                    "{% raw %} \\ backslash\ttab café 日本語 🎉\n"},
    ], True),
    ("empty_content_gen", [{"role": "user", "content": ""}], True),
]


def make_chat_template(ref: Ref, model_path: Path, prov: dict) -> dict:
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
    for label, messages, agp in CHAT_CASES:
        rendered = compiled.render(messages=messages, add_generation_prompt=agp,
                                   bos_token=bos_token, eos_token=eos_token)
        cases.append({
            "label": label,
            "messages": messages,
            "add_generation_prompt": agp,
            "rendered": rendered,
            "rendered_ids": ref.tokenize(rendered, add_special=False, parse_special=True),
        })
    return {
        "provenance": prov,
        "description": (
            "template = GGUF tokenizer.chat_template (read with gguf.GGUFReader, cross-checked with "
            "llama.cpp metadata). Rendered like transformers' apply_chat_template: "
            "jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, "
            "extensions=[loopcontrols]) with globals raise_exception, strftime_now, filter tojson, and "
            "variables messages, add_generation_prompt, bos_token, eos_token. rendered_ids = tokenize("
            "rendered, add_special=false, parse_special=true)."
        ),
        "template": template,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "cases": cases,
    }


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ppl-text", type=Path, default=DEFAULT_PPL_TEXT)
    ap.add_argument("--ppl-ctx", type=int, default=512)
    ap.add_argument("--ppl-chunks", type=int, default=None, help="cap on perplexity chunks (default: all)")
    ap.add_argument("--only", nargs="*", default=None,
                    choices=["tokenize", "greedy", "logits", "ppl", "chat_template"])
    args = ap.parse_args()

    t_start = time.time()
    model = args.model.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    model_sha = sha256_file(model)
    log(f"model {model} sha256 {model_sha}")
    want = set(args.only) if args.only else {"tokenize", "greedy", "logits", "ppl", "chat_template"}

    ref = Ref(model, args.threads, n_ctx=2048, n_batch=512)
    prov_fn = lambda r, extra=None: provenance(r, model, model_sha, extra)
    base_extra = {"n_ctx": 2048, "n_batch": 512}

    if "tokenize" in want:
        write_json(args.out / "smollm2_tokenize.json", make_tokenize(ref, prov_fn(ref, base_extra)))
    if "chat_template" in want:
        write_json(args.out / "smollm2_chat_template.json", make_chat_template(ref, model, prov_fn(ref, base_extra)))
    if "logits" in want:
        write_json(args.out / "smollm2_logits.json", make_logits(ref, prov_fn(ref, base_extra)))
    if "greedy" in want:
        t = time.time()
        write_json(args.out / "smollm2_greedy.json", make_greedy(ref, prov_fn(ref, base_extra)))
        log(f"greedy took {time.time() - t:.1f}s")
    del ref
    if "ppl" in want:
        write_json(args.out / "smollm2_ppl.json",
                   make_ppl(model, args.threads, args.ppl_text, args.ppl_ctx, args.ppl_chunks, prov_fn))
    log(f"done in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
