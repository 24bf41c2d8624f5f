#!/usr/bin/env python3
"""Float64 perplexity of the real Gemma 3 270M and Qwen2.5-Coder-0.5B files on GPL-3: the exact
answer that Tern's and llama.cpp's perplexities (PREFIX_ppl.json) are measured against.

Run it through make_f64_ppl.sh, which pins the versions. For each profile (gemma3_270m,
qwen25_05b; qwen25_15b with --only qwen25_15b --chunks 4) it writes
tests/reference/fixtures/PREFIX_f64_ppl.json.

Why: Tern computes in f32 with no activation rounding, llama.cpp rounds matmul activations to
8 bits (Q8_0 / Q8_K blocks), keeps K/V in f16 and, for Gemma, takes GELU from an f16 table; the
two perplexities differ by 0.6 % on Gemma 3 270M. Only a forward pass without any of these
roundings says which one is closer to the file's model.

The model is make_arch_models.py's F64Model (the float64 forward pass the generated-model
fixtures use), loaded from the real file by F64Model.from_gguf: every tensor dequantized by
gguf's numpy dequantizers (Q4_K, Q5_0, Q6_K, Q8_0 here) and widened to float64; activations,
attention, RoPE angles, softmax and logits all in float64. Each 512-token chunk is one batch
(matrix-matrix products, causal mask; Gemma's local layers also get the sliding-window mask,
which never cuts at 512 tokens with its window of 512).

The perplexity follows the llama.cpp fixture's description exactly (make_fixtures.make_ppl):
tokens are llama.cpp's own (llama-cpp-python's tokenizer on a vocab-only load, add_special=true,
parse_special=false), checked against the fixture's n_tokens and first_tokens; chunk i is
tokens[512 i : 512 (i + 1)] at positions 0..511 with its first token replaced by BOS when the
vocab adds BOS (Gemma); positions 256..510 are scored on the next token; running PPL =
exp(nll_sum / count) after each chunk.

A sanity check of the loaded graph: the last-position logits of every prompt in
PREFIX_logits.json (llama.cpp) against this forward pass ("llama_logits_check").
"""

from __future__ import annotations

import argparse
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

from make_arch_models import F64Model, GEMMA_FILE, QWEN_FILE, QWEN15_FILE
from make_fixtures import pkg_version, rnd, sha256_file, write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_MODELS = ROOT / "models"
DEFAULT_FIXTURES = HERE / "fixtures"
DEFAULT_TEXT = Path("/usr/share/common-licenses/GPL-3")

PROFILES = {"gemma3_270m": GEMMA_FILE, "qwen25_05b": QWEN_FILE, "qwen25_15b": QWEN15_FILE}
# Run when --only is not given; the 1.5B file is opt-in (1.1 GB, ~7 GB of weights in numpy,
# stored as float32: the dequantized values are float32 numbers, the arithmetic stays float64).
DEFAULT_PROFILES = ["gemma3_270m", "qwen25_05b"]
WEIGHT_DTYPE = {"qwen25_15b": np.float32}
N_CTX = 512


DESCRIPTION = (
    "Perplexity of the file's model computed exactly (float64, no activation or K/V "
    "rounding) with the method of PREFIX_ppl.json's description: llama.cpp's tokens "
    "(add_special=true, parse_special=false), chunks of n_ctx tokens from an empty "
    "context, first token replaced by BOS when add_bos, positions first..n_ctx-2 scored "
    "on the next token, running_ppl = exp(nll_sum / count) after each chunk. Weights: "
    "gguf's numpy dequantizers (float32 values of ggml's dequantize_row_* formulas) "
    "widened to float64. chunks[].llama_cpp_running_ppl is PREFIX_ppl.json's value after "
    "the same chunk and llama_cpp_rel_diff = (llama.cpp - f64) / f64. nll_mean, ppl and "
    "ppl_stderr are over the chunks here (n_chunks), not necessarily all n_chunk_max. "
    "llama_logits_check: PREFIX_logits.json's prompts, last position: max |f64 - "
    "llama.cpp| over llama.cpp's top-10 ids and of logsumexp, and top-1 agreement; "
    "prompts_f64: per prompt the f64 logits at llama.cpp's top-10 ids, f64's own top-10 "
    "and logsumexp; columns_f64: the f64 logits at the columns prompt's column_ids, every "
    "position.")


def log(msg: str) -> None:
    print(f"[make_f64_ppl] {msg}", file=sys.stderr, flush=True)


def llama_tokens(model: Path, text: str) -> tuple[list[int], bool, int]:
    """llama.cpp's tokens of `text` (add_special=true, parse_special=false), whether the vocab
    adds BOS, and the BOS id. A vocab-only load: no weights are read."""
    llm = Llama(model_path=str(model), vocab_only=True, verbose=False)
    tokens = list(llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    add_bos, bos = bool(llm._model.add_bos_token()), int(llm._model.token_bos())
    del llm
    return tokens, add_bos, bos


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    mx = logits.max(axis=1, keepdims=True)
    return logits - (mx + np.log(np.exp(logits - mx).sum(axis=1, keepdims=True)))


def llama_logits_check(model: F64Model, fixture: dict) -> dict:
    """f64 last-position logits of the llama.cpp logits fixture's prompts against llama.cpp's,
    and the f64 logits themselves at llama.cpp's top-10 ids and at f64's own top-10."""
    top_diff, lse_diff, top1_same, prompts = 0.0, 0.0, 0, 0
    per_prompt = []
    for p in fixture["prompts"]:
        row = model.forward(p["prompt_ids"], N_CTX, last_only=True)[0]
        top_diff = max(top_diff, max(abs(float(row[i]) - v) for i, v in p["top_k"]))
        mx = float(row.max())
        lse = mx + math.log(float(np.exp(row - mx).sum()))
        own = np.argsort(-row)[:10]
        per_prompt.append({
            "label": p["label"],
            "prompt_ids": p["prompt_ids"],
            "logsumexp": rnd(lse),
            "at_llama_top_k": [[int(i), rnd(float(row[i]))] for i, _ in p["top_k"]],
            "top_k": [[int(i), rnd(float(row[i]))] for i in own],
            "llama_cpp_max_abs_diff": rnd(max(abs(float(row[i]) - v) for i, v in p["top_k"])),
        })
        lse_diff = max(lse_diff, abs(lse - p["logsumexp"]))
        top1_same += int(np.argmax(row)) == p["top_k"][0][0]
        prompts += 1
    cols = fixture["columns"]
    rows = model.forward(cols["prompt_ids"], N_CTX)
    columns = [{"pos": i,
                "logits": [rnd(float(rows[i][c])) for c in cols["column_ids"]],
                "llama_cpp_max_abs_diff": rnd(max(abs(float(rows[i][c]) - v)
                                                  for c, v in zip(cols["column_ids"], p["logits"])))}
               for i, p in enumerate(cols["positions"])]
    return {"prompts": prompts,
            "max_abs_top10_logit_diff": rnd(top_diff),
            "max_abs_logsumexp_diff": rnd(lse_diff),
            "top1_agreement": f"{top1_same}/{prompts}",
            "prompts_f64": per_prompt,
            "columns_f64": columns}


def make(args, prefix: str) -> dict:
    t_start = time.time()
    path = args.models / PROFILES[prefix]
    llama_ppl = json.loads((args.fixtures / f"{prefix}_ppl.json").read_text(encoding="utf-8"))
    llama_logits = json.loads((args.fixtures / f"{prefix}_logits.json").read_text(encoding="utf-8"))
    sha = sha256_file(path)
    if sha != llama_ppl["provenance"]["model_sha256"]:
        raise SystemExit(f"{path.name}: sha256 {sha} is not the file of {prefix}_ppl.json")
    text = args.text.read_text(encoding="utf-8")
    if sha256_file(args.text) != llama_ppl["text_sha256"]:
        raise SystemExit(f"{args.text}: not the text of {prefix}_ppl.json")

    tokens, add_bos, bos = llama_tokens(path, text)
    if (len(tokens), tokens[:16], add_bos) != (llama_ppl["n_tokens"], llama_ppl["first_tokens"],
                                               llama_ppl["add_bos"]):
        raise SystemExit(f"{prefix}: llama.cpp's tokens differ from {prefix}_ppl.json's")
    n_chunk_max = len(tokens) // N_CTX
    n_chunk = min(args.chunks, n_chunk_max) if args.chunks else n_chunk_max
    first = N_CTX // 2

    t0 = time.time()
    model = F64Model.from_gguf(path, WEIGHT_DTYPE.get(prefix, np.float64))
    t_load = time.time() - t0
    log(f"{prefix}: {path.name} dequantized to float64 in {t_load:.1f}s "
        f"({sum(w.size for w in model.w.values()) / 1e6:.1f}M values)")
    t0 = time.time()
    check = llama_logits_check(model, llama_logits)
    log(f"{prefix}: llama.cpp logits check {check} ({time.time() - t0:.1f}s)")
    if args.logits_only:
        # Refresh the logits part of an existing fixture, keeping its perplexity figures.
        old = json.loads((args.fixtures / f"{prefix}_f64_ppl.json").read_text(encoding="utf-8"))
        if old["provenance"]["model_sha256"] != sha:
            raise SystemExit(f"{prefix}_f64_ppl.json is of another file")
        old["llama_logits_check"] = check
        old["description"] = DESCRIPTION
        return old

    llama_running = [c["running_ppl"] for c in llama_ppl["chunks"]]
    nll, nll2, count, chunks = 0.0, 0.0, 0, []
    t_chunks = time.time()
    for i in range(n_chunk):
        t0 = time.time()
        chunk = list(tokens[i * N_CTX:(i + 1) * N_CTX])
        if add_bos:
            chunk[0] = bos
        logits = model.forward(chunk, N_CTX, rows=slice(first, N_CTX - 1))  # (255, n_vocab)
        targets = np.array(tokens[i * N_CTX + first + 1:(i + 1) * N_CTX], dtype=np.int64)
        v = -log_softmax_rows(logits)[np.arange(len(targets)), targets]
        chunk_nll = float(v.sum())
        nll += chunk_nll
        nll2 += float((v * v).sum())
        count += len(v)
        running = math.exp(nll / count)
        ref = llama_running[i]
        chunks.append({
            "chunk": i + 1,
            "chunk_nll_sum": round(chunk_nll, 6),
            "chunk_ppl": rnd(math.exp(chunk_nll / len(v))),
            "running_ppl": rnd(running),
            "llama_cpp_running_ppl": ref,
            "llama_cpp_rel_diff": rnd((ref - running) / running),
            "seconds": round(time.time() - t0, 1),
        })
        log(f"{prefix} chunk {i + 1}/{n_chunk}: running PPL {running:.4f} (llama.cpp {ref}), "
            f"{time.time() - t0:.1f}s")
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = math.exp(mean)
    err = math.sqrt(var / (count - 1)) * ppl
    a = model.a
    return {
        "provenance": {
            "generator": "tests/reference/make_f64_ppl.py",
            "reference_impl": "float64 numpy forward pass (make_arch_models.F64Model.from_gguf); "
                              "tokens from llama.cpp via llama-cpp-python (vocab only)",
            "numpy_version": np.__version__,
            "gguf_version": pkg_version("gguf"),
            "llama_cpp_python_version": llama_cpp.__version__,
            "python_version": platform.python_version(),
            "machine": platform.machine(),
            "model_file": path.name,
            "model_sha256": sha,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "seconds_load": round(t_load, 1),
            "seconds_per_chunk_mean": round((time.time() - t_chunks) / n_chunk, 1),
            "seconds_total": round(time.time() - t_start, 1),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "description": DESCRIPTION,
        "text_file": str(args.text),
        "text_sha256": llama_ppl["text_sha256"],
        "n_tokens": len(tokens),
        "tokens_sha256": hashlib.sha256(np.array(tokens, dtype="<i4").tobytes()).hexdigest(),
        "first_tokens": tokens[:16],
        "add_bos": add_bos,
        "parse_special": False,
        "n_ctx": N_CTX,
        "first": first,
        "n_chunk_max": n_chunk_max,
        "n_chunks": n_chunk,
        "scored_per_chunk": N_CTX - 1 - first,
        "count": count,
        "model": {"architecture": a.arch, "n_layer": a.n_layer, "n_embd": a.n_embd,
                  "n_ff": a.n_ff, "n_head": a.n_head, "n_head_kv": a.n_head_kv,
                  "head_dim": a.head_dim, "rope_base": a.rope_base, "rms_eps": a.rms_eps,
                  "qkv_bias": a.qkv_bias, "qk_norm": a.qk_norm,
                  "tied_output": a.output_type is None, "extra": a.extra},
        "llama_logits_check": check,
        "chunks": chunks,
        "nll_mean": rnd(mean),
        "ppl": rnd(ppl),
        "ppl_stderr": rnd(err),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=DEFAULT_PROFILES, choices=list(PROFILES))
    ap.add_argument("--chunks", type=int, default=0, help="chunks to score (default 0: all, 14 on "
                    "GPL-3, as the committed fixtures; 4 for a quicker run)")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    ap.add_argument("--logits-only", action="store_true",
                    help="recompute llama_logits_check only, keeping the fixture's perplexity")
    args = ap.parse_args()
    for prefix in args.only:
        fixture = make(args, prefix)
        write_json(args.fixtures / f"{prefix}_f64_ppl.json", fixture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
