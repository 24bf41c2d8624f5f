#!/usr/bin/env python3
"""Independent float64 numpy reference forward pass for Llama-architecture GGUFs.

Purpose: arbitrate small numerical differences between two runtimes (e.g. Tern
vs llama.cpp).  Both of those quantize activations (llama.cpp rounds matmul
inputs to int8/q8 blocks and keeps the KV cache in f16); this script does not.
Weights are dequantized exactly as stored in the GGUF (Q4_1 / Q8_0 / F32) and
every activation, the KV cache, RoPE, softmax and the logits are float64.

Architecture (written from the Llama definition, nothing borrowed from a runtime):

    x = embed[tok]
    per block:
        h   = rmsnorm(x) * attn_norm
        q,k,v = Wq h, Wk h, Wv h
        RoPE on q,k   (GGML "normal" mode: rotate adjacent pairs (2i, 2i+1) by
                       pos * base^(-2i/head_dim); llama.cpp uses this mode for
                       `llama` GGUFs because convert_hf_to_gguf permuted Wq/Wk)
        causal grouped-query attention, query head h -> kv head h // (n_head/n_kv)
        x  += Wo att
        h   = rmsnorm(x) * ffn_norm
        x  += Wdown (silu(Wgate h) * Wup h)
    logits = Wout (rmsnorm(x) * output_norm)   (Wout = token_embd if no output.weight)

Usage:
    /tmp/refvenv/bin/python tests/reference/numpy_reference.py
        [--model models/smollm2-135m-instruct-q4_1.gguf]
        [--out tests/reference/fixtures/smollm2_f64_logits.json]
        [--greedy-tokens 24]

It reads the llama.cpp fixtures smollm2_logits.json and smollm2_greedy.json for
the prompt ids, writes smollm2_f64_logits.json, and prints a comparison with
the llama.cpp numbers.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

import gguf
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = HERE / "fixtures"
DEFAULT_MODEL = ROOT / "models" / "smollm2-135m-instruct-q4_1.gguf"
DEFAULT_OUT = FIXTURES / "smollm2_f64_logits.json"

SIG_DIGITS = 6
TOP_K = 10


def rnd(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.{SIG_DIGITS}g}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_version() -> str:
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "unknown"


# --------------------------------------------------------------------------
# model loading
# --------------------------------------------------------------------------

def exact_q4_1_f64(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_1 dequantized in float64: w = d*q + m with d, m f16 (exact in f64).

    Only used as a check on gguf.quants.dequantize, which evaluates d*q + m
    in float32 (d*q is exact there, the + m may round)."""
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float64)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float64)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)  # low nibbles = elems 0..15
    return (d * q + m).reshape(rows, cols)


class Model:
    def __init__(self, path: Path):
        t0 = time.time()
        r = GGUFReader(str(path))
        arch = r.fields["general.architecture"].contents()
        if arch != "llama":
            raise SystemExit(f"expected llama architecture, got {arch!r}")

        def kv(name):
            return r.fields[f"{arch}.{name}"].contents()

        self.n_layer = int(kv("block_count"))
        self.dim = int(kv("embedding_length"))
        self.ffn = int(kv("feed_forward_length"))
        self.n_head = int(kv("attention.head_count"))
        self.n_kv = int(kv("attention.head_count_kv"))
        self.head_dim = self.dim // self.n_head
        self.rope_dims = int(kv("rope.dimension_count"))
        self.rope_base = float(kv("rope.freq_base"))
        # eps as stored (f32 of 1e-5); using exactly 1e-5 changes logits ~1e-9
        self.eps = float(kv("attention.layer_norm_rms_epsilon"))
        assert self.rope_dims == self.head_dim, "partial rotary not handled"
        assert self.n_head % self.n_kv == 0

        self.tokens = list(r.fields["tokenizer.ggml.tokens"].contents())

        self.w: dict[str, np.ndarray] = {}
        self.q4_1_max_abs_dev = 0.0  # library (f32 arithmetic) vs exact f64 dequant
        self.tensor_types: dict[str, int] = {}
        for t in r.tensors:
            ne = [int(x) for x in t.shape]  # GGUF ne order: ne[0] = row length
            arr = dequantize(t.data, t.tensor_type)
            want = tuple(reversed(ne)) if len(ne) > 1 else (ne[0],)
            if arr.shape != want:
                raise SystemExit(f"{t.name}: dequantize shape {arr.shape}, expected {want}")
            a64 = np.asarray(arr, dtype=np.float64)
            if t.tensor_type == GGMLQuantizationType.Q4_1:
                ex = exact_q4_1_f64(np.asarray(t.data), *want)
                self.q4_1_max_abs_dev = max(self.q4_1_max_abs_dev, float(np.max(np.abs(ex - a64))))
            self.w[t.name] = np.ascontiguousarray(a64)
            tn = t.tensor_type.name
            self.tensor_types[tn] = self.tensor_types.get(tn, 0) + 1

        self.embed = self.w["token_embd.weight"]  # (n_vocab, dim)
        self.out_w = self.w.get("output.weight", self.embed)
        self.tied_output = "output.weight" not in self.w
        self.n_vocab = self.embed.shape[0]
        L = lambda i, n: self.w[f"blk.{i}.{n}.weight"]
        self.layers = [
            dict(attn_norm=L(i, "attn_norm"), wq=L(i, "attn_q"), wk=L(i, "attn_k"),
                 wv=L(i, "attn_v"), wo=L(i, "attn_output"), ffn_norm=L(i, "ffn_norm"),
                 wg=L(i, "ffn_gate"), wu=L(i, "ffn_up"), wd=L(i, "ffn_down"))
            for i in range(self.n_layer)
        ]
        self.out_norm = self.w["output_norm.weight"]
        # theta_i = base^(-2i/d), i = 0..d/2-1
        self.inv_freq = self.rope_base ** (-np.arange(0, self.rope_dims, 2, dtype=np.float64) / self.rope_dims)
        self.load_seconds = time.time() - t0

    # ---------------------------------------------------------------- pieces
    def rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x: np.ndarray, pos: np.ndarray, mode: str) -> np.ndarray:
        """x: (n, heads, head_dim); pos: (n,)."""
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]  # (n, d/2)
        c = np.cos(ang)[:, None, :]
        s = np.sin(ang)[:, None, :]
        out = np.empty_like(x)
        if mode == "normal":      # pairs (2i, 2i+1)
            x0, x1 = x[..., 0::2], x[..., 1::2]
            out[..., 0::2] = x0 * c - x1 * s
            out[..., 1::2] = x0 * s + x1 * c
        elif mode == "neox":      # pairs (i, i + d/2)
            h = self.rope_dims // 2
            x0, x1 = x[..., :h], x[..., h:]
            out[..., :h] = x0 * c - x1 * s
            out[..., h:] = x0 * s + x1 * c
        else:
            raise ValueError(mode)
        return out

    def new_cache(self):
        return [dict(k=np.zeros((self.n_kv, 0, self.head_dim)), v=np.zeros((self.n_kv, 0, self.head_dim)))
                for _ in range(self.n_layer)]

    # ---------------------------------------------------------------- forward
    def forward(self, tokens, cache, rope_mode: str = "normal", all_logits: bool = True) -> np.ndarray:
        """Evaluate `tokens` appended after what is in `cache` (updated in place).

        Returns logits (n, n_vocab) for every new position, or (1, n_vocab) for
        the last one if all_logits is False."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        start = cache[0]["k"].shape[1]
        pos = np.arange(start, start + n)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_kv
        group = nh // nkv
        scale = 1.0 / math.sqrt(hd)
        total = start + n
        # causal mask: new query i (abs pos start+i) sees keys 0..start+i
        mask = np.arange(total)[None, :] > pos[:, None]  # (n, total) True = masked

        x = self.embed[tokens].copy()  # (n, dim)
        for ly, c in zip(self.layers, cache):
            h = self.rmsnorm(x, ly["attn_norm"])
            q = (h @ ly["wq"].T).reshape(n, nh, hd)
            k = (h @ ly["wk"].T).reshape(n, nkv, hd)
            v = (h @ ly["wv"].T).reshape(n, nkv, hd)
            q = self.rope(q, pos, rope_mode)
            k = self.rope(k, pos, rope_mode)
            c["k"] = np.concatenate([c["k"], k.transpose(1, 0, 2)], axis=1)  # (nkv, total, hd)
            c["v"] = np.concatenate([c["v"], v.transpose(1, 0, 2)], axis=1)
            att = np.empty((n, nh, hd))
            for hh in range(nh):
                kvh = hh // group
                s = (q[:, hh, :] @ c["k"][kvh].T) * scale  # (n, total)
                s = np.where(mask, -np.inf, s)
                s = s - s.max(axis=1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=1, keepdims=True)
                att[:, hh, :] = p @ c["v"][kvh]
            x = x + att.reshape(n, self.dim) @ ly["wo"].T
            h = self.rmsnorm(x, ly["ffn_norm"])
            g = h @ ly["wg"].T
            u = h @ ly["wu"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ ly["wd"].T
        if not all_logits:
            x = x[-1:]
        return self.rmsnorm(x, self.out_norm) @ self.out_w.T

    def detok(self, ids) -> str:
        """Display text for ids: GPT-2 byte-level BPE decoding (for logs / JSON only)."""
        if not hasattr(self, "_byte_of"):
            keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
            self._byte_of = {chr(b): b for b in keep}
            extra = 0
            for b in range(256):
                if b not in keep:
                    self._byte_of[chr(256 + extra)] = b
                    extra += 1
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if all(ch in self._byte_of for ch in t):
                out += bytes(self._byte_of[ch] for ch in t)
            else:  # special / control token text such as <|im_end|>
                out += t.encode("utf-8")
        return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------
# statistics helpers
# --------------------------------------------------------------------------

def logsumexp(v: np.ndarray) -> float:
    m = float(np.max(v))
    return m + math.log(float(np.sum(np.exp(v - m))))


def top_k(v: np.ndarray, k: int = TOP_K):
    # descending by logit, lowest id first on ties
    idx = np.lexsort((np.arange(len(v)), -v))[:k]
    return [[int(i), rnd(v[i])] for i in idx]


def greedy(model: Model, prompt_ids, n_tokens: int, rope_mode: str = "normal"):
    cache = model.new_cache()
    logits = model.forward(prompt_ids, cache, rope_mode, all_logits=False)[-1]
    ids, top1_logit, margin, top2 = [], [], [], []
    for step in range(n_tokens):
        order = np.lexsort((np.arange(len(logits)), -logits))
        a, b = int(order[0]), int(order[1])
        ids.append(a)
        top1_logit.append(rnd(logits[a]))
        top2.append(b)
        margin.append(rnd(logits[a] - logits[b]))
        if step + 1 < n_tokens:
            logits = model.forward([a], cache, rope_mode, all_logits=False)[-1]
    return dict(generated_ids=ids, top1_logit=top1_logit, top1_top2_margin=margin, top2_id=top2)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--logits-fixture", type=Path, default=FIXTURES / "smollm2_logits.json")
    ap.add_argument("--greedy-fixture", type=Path, default=FIXTURES / "smollm2_greedy.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--greedy-tokens", type=int, default=24)
    args = ap.parse_args()

    t_start = time.time()
    model = Model(args.model)
    log(f"loaded {args.model.name} in {model.load_seconds:.1f}s: {model.n_layer} blocks, dim {model.dim}, "
        f"ffn {model.ffn}, heads {model.n_head}/{model.n_kv}, head_dim {model.head_dim}, "
        f"rope base {model.rope_base}, eps {model.eps}, vocab {model.n_vocab}, tied output {model.tied_output}, "
        f"types {model.tensor_types}")
    log(f"Q4_1: max |gguf.quants.dequantize - exact f64 d*q+m| = {model.q4_1_max_abs_dev:.3g}")

    lfix = json.loads(args.logits_fixture.read_text())
    gfix = json.loads(args.greedy_fixture.read_text())
    cols = lfix["columns"]
    prompt_ids = cols["prompt_ids"]
    column_ids = np.asarray(cols["column_ids"])
    ref_cols = np.asarray([p["logits"] for p in cols["positions"]], dtype=np.float64)

    # ---- RoPE pairing cross-check ("normal" vs "neox") on the columns prompt
    t0 = time.time()
    rope_check = {}
    per_mode_logits = {}
    for mode in ("normal", "neox"):
        logits = model.forward(prompt_ids, model.new_cache(), mode)
        per_mode_logits[mode] = logits
        last = logits[-1]
        lse = logsumexp(last)
        g = greedy(model, prompt_ids, 2, mode)["generated_ids"]
        rope_check[mode] = dict(
            greedy_2=g,
            greedy_2_text=model.detok(g),
            logprob_7042=rnd(last[7042] - lse),
            rank_7042=int(np.sum(last > last[7042])),
            max_abs_diff_vs_llama_cpp_columns=rnd(np.max(np.abs(logits[:, column_ids] - ref_cols))),
            argmax_per_position=[int(np.argmax(r)) for r in logits],
        )
        log(f"rope {mode:6s}: greedy {g} {model.detok(g)!r}, log p(7042)={rope_check[mode]['logprob_7042']}, "
            f"rank {rope_check[mode]['rank_7042']}, max|llama.cpp - f64| over columns "
            f"{rope_check[mode]['max_abs_diff_vs_llama_cpp_columns']}")
    ok = (rope_check["normal"]["greedy_2"][0] == 7042
          and rope_check["normal"]["logprob_7042"] > rope_check["neox"]["logprob_7042"]
          and rope_check["normal"]["max_abs_diff_vs_llama_cpp_columns"]
          < rope_check["neox"]["max_abs_diff_vs_llama_cpp_columns"])
    if not ok:
        log("RoPE cross-check FAILED: 'normal' pairing does not beat 'neox'")
        return 1
    log(f"RoPE cross-check passed ({time.time() - t0:.1f}s)")

    # ---- columns: all positions of the columns prompt
    logits = per_mode_logits["normal"]
    positions = []
    diff_summary = []
    for p, row in enumerate(logits):
        f64c = row[column_ids]
        positions.append(dict(
            pos=p, token_id=int(prompt_ids[p]),
            argmax=int(np.argmax(row)), max_logit=rnd(np.max(row)), logsumexp=rnd(logsumexp(row)),
            top_k=top_k(row), logits=[rnd(x) for x in f64c]))
        d = ref_cols[p] - f64c
        ref_pos = cols["positions"][p]
        diff_summary.append(dict(
            pos=p, max_abs=rnd(np.max(np.abs(d))), mean=rnd(np.mean(d)), sd=rnd(np.std(d)),
            logsumexp_diff=rnd(ref_pos["logsumexp"] - logsumexp(row)),
            argmax_agree=bool(ref_pos["argmax"] == int(np.argmax(row)))))
    all_d = ref_cols - logits[:, column_ids]
    log(f"columns: max |llama.cpp - f64| = {np.max(np.abs(all_d)):.4g} over {all_d.size} values")
    for s in diff_summary:
        log(f"  pos {s['pos']}: max|d| {s['max_abs']:.4g}  mean {s['mean']:+.4g}  sd {s['sd']:.4g}  "
            f"lse diff {s['logsumexp_diff']:+.4g}  argmax agree {s['argmax_agree']}")

    # ---- prompts: last-position top-k and logsumexp
    prompts_out = []
    for pr in lfix["prompts"]:
        row = model.forward(pr["prompt_ids"], model.new_cache(), all_logits=False)[-1]
        tk = top_k(row)
        prompts_out.append(dict(label=pr["label"], prompt_ids=pr["prompt_ids"], top_k=tk,
                                logsumexp=rnd(logsumexp(row)), max_logit=rnd(np.max(row)),
                                mean_logit=rnd(np.mean(row))))
        ref_top = pr["top_k"]
        common = {i for i, _ in ref_top} & {i for i, _ in tk}
        dtop = max(abs(lv - row[i]) for i, lv in ref_top)
        log(f"prompt {pr['label']:15s}: top1 f64 {tk[0][0]} vs llama.cpp {ref_top[0][0]}, "
            f"top-10 overlap {len(common)}/10, max|d| on llama.cpp top-10 {dtop:.4g}, "
            f"lse diff {pr['logsumexp'] - logsumexp(row):+.4g}")

    # ---- greedy continuations
    t0 = time.time()
    greedy_out = []
    greedy_cmp = []
    for pr in gfix["prompts"]:
        g = greedy(model, pr["prompt_ids"], args.greedy_tokens)
        ref = pr["generated_ids"][: args.greedy_tokens]
        agree = 0
        while agree < len(ref) and ref[agree] == g["generated_ids"][agree]:
            agree += 1
        cmp = dict(label=pr["label"], n_compared=len(ref), n_agree_prefix=agree)
        if agree < len(ref):
            cmp.update(first_disagreement_step=agree,
                       f64_id=g["generated_ids"][agree], llama_cpp_id=ref[agree],
                       f64_margin=g["top1_top2_margin"][agree],
                       llama_cpp_margin=pr["top1_top2_margin"][agree])
        greedy_cmp.append(cmp)
        greedy_out.append(dict(label=pr["label"], prompt_ids=pr["prompt_ids"], **g,
                               generated_text=model.detok(g["generated_ids"])))
        log(f"greedy {pr['label']:15s}: {agree}/{len(ref)} agree"
            + ("" if agree == len(ref) else
               f"; first diff step {agree}: f64 {cmp['f64_id']} (margin {cmp['f64_margin']}) vs "
               f"llama.cpp {cmp['llama_cpp_id']} (llama.cpp margin {cmp['llama_cpp_margin']})")
            + f"  [{time.time() - t0:.0f}s]")
    runtime = time.time() - t_start
    log(f"total runtime {runtime:.1f}s")

    out = dict(
        provenance=dict(
            generator="tests/reference/numpy_reference.py",
            reference_impl="independent numpy float64 forward pass (Llama architecture)",
            numpy_version=np.__version__,
            gguf_version=gguf_version(),
            python_version=platform.python_version(),
            machine=platform.machine(),
            model_file=args.model.name,
            model_sha256=sha256_file(args.model),
            date_utc=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            runtime_seconds=round(runtime, 1),
            hyperparameters=dict(n_layer=model.n_layer, dim=model.dim, ffn=model.ffn, n_head=model.n_head,
                                 n_head_kv=model.n_kv, head_dim=model.head_dim, rope_base=model.rope_base,
                                 rope_dims=model.rope_dims, rope_mode="normal (adjacent pairs 2i,2i+1)",
                                 rms_eps=model.eps, n_vocab=model.n_vocab, tied_output=model.tied_output),
            weights=("gguf.quants.dequantize -> float64; Q4_1 library dequant (f32 d*q+m) deviates from exact "
                     f"f64 by at most {model.q4_1_max_abs_dev:.3g}"),
        ),
        description=("Raw (pre-softmax) logits from a float64 numpy forward pass (no activation quantization, "
                     "float64 KV cache), rounded to 6 significant digits. Same prompts/conventions as "
                     "smollm2_logits.json and smollm2_greedy.json: prompts evaluated from an empty cache as one "
                     "batch; greedy = argmax (lowest id on ties), one token at a time with a KV cache, no EOS "
                     "stop. logsumexp over the whole vocab. top_k = 10 largest (id, logit), descending."),
        n_vocab=model.n_vocab,
        rope_cross_check=rope_check,
        columns=dict(label=cols.get("label"), prompt_ids=prompt_ids, column_ids=[int(i) for i in column_ids],
                     positions=positions),
        prompts=prompts_out,
        greedy=dict(n_generated=args.greedy_tokens, prompts=greedy_out),
        llama_cpp_comparison=dict(
            note="diff = llama.cpp (smollm2_logits.json) - f64, over the 200 column ids",
            columns_max_abs=rnd(np.max(np.abs(all_d))),
            columns_per_position=diff_summary,
            greedy=greedy_cmp),
    )
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    log(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
