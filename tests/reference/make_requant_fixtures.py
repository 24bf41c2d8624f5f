#!/usr/bin/env python3
"""llama.cpp's perplexity on SmolLM2 requantized by `tern quantize` to each new type.

For each type T, this runs

    tern quantize -m models/smollm2-135m-instruct-q4_1.gguf -o WORK/smollm2_T.gguf --type T

twice (the two outputs must be identical: the quantizer is deterministic), loads the file in
llama.cpp (through llama-cpp-python; a file llama.cpp refuses stops the script), and computes
llama.cpp's perplexity on the GPL-3 text at c=512 over every chunk, exactly as make_fixtures.py's
`make_ppl` does for the shipped model. Tern's test (cli/tests/requant_ppl.rs) requantizes with
its own quantizer, checks the file's sha256 equals the one recorded here (so both engines read
the same bytes) and compares its perplexity with the figures recorded here.

Requantizing the Q4_1 model dequantizes it and quantizes the values again: a lossy input, but
the same input for both engines, which is all the comparison needs.

The same windows are also scored by numpy_reference.py's float64 forward pass (gguf-py's
dequantization), twice: with every activation in float64 (`f64_*`), the arbiter for Tern's f32
path; and with the roundings llama.cpp makes on the way (`f64_llama_rounding_*`: matmul inputs
rounded to Q8_0 or Q8_K blocks, attention operands to f16), which shows how much of llama.cpp's
distance from float64 those roundings explain. `--no-f64` skips both (they take about as long
as llama.cpp itself); `--add-f64` adds missing ones to an existing fixture.

Written: tests/reference/fixtures/smollm2_requant_ppl.json (one provenance for the run; per
type: sha256 and size of the file, tensor types as gguf-py reads them, llama.cpp's model
description, final PPL and its error, per-chunk and running PPL, both float64 running PPLs,
elapsed seconds).

With --check, nothing is written: each file is quantized again, its sha256 compared with the
fixture's, loaded in llama.cpp, and llama.cpp's perplexity over the first --check-chunks chunks
compared with the fixture's running figure (same library, so equal to rounding).

Run through make_requant_fixtures.sh, which pins the versions and builds `tern`.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# make_fixtures patches llama.cpp's default model params on import (plain CPU buffers, no
# AMX/repacked layouts); everything below loads models through it.
import make_fixtures as mf  # noqa: E402

ROOT = mf.ROOT
DEFAULT_TERN = ROOT / "target" / "release" / "tern"
DEFAULT_OUT = HERE / "fixtures" / "smollm2_requant_ppl.json"

# The types `tern quantize` writes that Tern gained with the new kernels, and the iq4_xs mix
# (IQ4_XS is only written as llama.cpp's mix; on SmolLM2's 576-wide rows most tensors fall back
# to IQ4_NL, ffn_down is IQ4_XS or Q5_K). The other llama.cpp mixes are not here.
TYPES = ["q5_0", "q5_1", "iq4_nl", "q2_k", "q3_k", "q5_k", "iq4_xs"]

# --check: llama.cpp against its own recorded figure. The fixture rounds to 6 significant
# digits; the same library on the same thread count reproduces its sums, so anything beyond
# rounding means a different file or a different llama.cpp.
CHECK_REL = 1e-5


def log(msg: str) -> None:
    print(f"[make_requant_fixtures] {msg}", file=sys.stderr, flush=True)


def tern_commit() -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def quantize(tern: Path, model: Path, out: Path, ty: str) -> tuple[str, str]:
    """Runs `tern quantize` twice; returns (sha256, tern's summary). Fails unless both runs
    write the same bytes."""
    shas = []
    summary = ""
    for run in range(2):
        dest = out if run == 0 else out.with_suffix(".again.gguf")
        cmd = [str(tern), "quantize", "-m", str(model), "-o", str(dest), "--type", ty]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
        summary = summary or p.stdout
        shas.append(mf.sha256_file(dest))
    out.with_suffix(".again.gguf").unlink()
    if shas[0] != shas[1]:
        raise SystemExit(f"tern quantize --type {ty} is not deterministic: {shas[0]} vs {shas[1]}")
    return shas[0], summary


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds, as gguf-py reads it."""
    from gguf import GGUFReader
    r = GGUFReader(str(path))
    c = collections.Counter(t.tensor_type.name for t in r.tensors)
    return dict(sorted(c.items()))


def llama_desc(path: Path, n_threads: int) -> dict:
    """Loads the file in llama.cpp (raises if it refuses) and returns what it says of it."""
    ref = mf.Ref(path, n_threads, n_ctx=512, n_batch=512)
    m = ref.llm._model
    return {"desc": m.desc(), "n_params": int(m.n_params()), "size_bytes": int(m.size())}


def numpy_forward_classes():
    """numpy_reference.py's float64 model, and a variant with llama.cpp's CPU roundings.

    Imported on first use: numpy_reference needs only gguf and numpy, but the fixture run
    without float64 figures (`--no-f64`) should not need to load it."""
    import numpy as np
    from gguf import GGUFReader
    import numpy_reference as nref

    f16 = lambda a: a.astype(np.float16).astype(np.float64)

    def q8_0(x):
        """ggml's x86 quantize_row_q8_0 (the vec_dot_type of Q4_0, Q5_0, Q8_0, IQ4_NL; Q4_1
        and Q5_1 use Q8_1, the same codes and scale plus a block sum): per 32 values,
        d = amax/127, codes round(x·127/amax) to nearest even, d stored as f16."""
        n, c = x.shape
        b = x.reshape(n, c // 32, 32).astype(np.float32)
        amax = np.abs(b).max(axis=2, keepdims=True)
        safe = np.where(amax > 0, amax, np.float32(1))
        q = np.rint(b * np.where(amax > 0, np.float32(127) / safe, np.float32(0)))
        return (q * f16(amax / np.float32(127))).reshape(n, c)

    def q8_k(x):
        """ggml's quantize_row_q8_K_ref (the vec_dot_type of every k-quant): per 256 values,
        with `max` the value of largest magnitude, iscale = −127/max, codes
        min(127, round(iscale·x)), d = 1/iscale stored as f32."""
        n, c = x.shape
        b = x.reshape(n, c // 256, 256).astype(np.float32)
        mx = np.take_along_axis(b, np.abs(b).argmax(axis=2)[..., None], axis=2)
        safe = np.where(mx != 0, mx, np.float32(1))
        iscale = np.where(mx != 0, np.float32(-127) / safe, np.float32(0))
        q = np.minimum(127, np.rint(iscale * b))
        d = np.where(iscale != 0, np.float32(1) / np.where(iscale != 0, iscale, 1), 0)
        return (q.astype(np.float64) * d.astype(np.float32)).reshape(n, c)

    act = {"Q4_0": q8_0, "Q4_1": q8_0, "Q5_0": q8_0, "Q5_1": q8_0, "Q8_0": q8_0, "IQ4_NL": q8_0,
           "Q2_K": q8_k, "Q3_K": q8_k, "Q4_K": q8_k, "Q5_K": q8_k, "Q6_K": q8_k,
           "IQ4_XS": q8_k}  # ggml-cpu's vec_dot_type for IQ4_XS is Q8_K

    class LlamaRounding(nref.Model):
        """The float64 forward pass, but with the roundings llama.cpp's CPU backend makes on the
        way (flash attention off, as llama-cpp-python runs it): each quantized matmul's input
        rounded to its weight type's vec_dot_type as above; in attention Q, K, V and the softmax
        probabilities rounded to f16 (the KV cache is f16, and ggml's f16 matmul converts its
        other operand to f16). What separates its perplexity from llama.cpp's is then only
        f32 accumulation order, llama.cpp's other f32 steps and Q8_1's f16 block sum."""

        def __init__(self, path: Path):
            super().__init__(path)
            self.types = {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}

        def mm(self, x, name):
            return act[self.types[name]](x) @ self.w[name].T

        def forward(self, tokens, cache, rope_mode="normal", all_logits=True):
            # One window from an empty cache (all the perplexity needs); `cache` is unused.
            n = len(tokens)
            pos = np.arange(n)
            hd, nh, group = self.head_dim, self.n_head, self.n_head // self.n_kv
            mask = pos[None, :] > pos[:, None]
            x = self.embed[np.asarray(tokens)].copy()
            for i, ly in enumerate(self.layers):
                w = lambda s: f"blk.{i}.{s}.weight"
                h = self.rmsnorm(x, ly["attn_norm"])
                q = self.rope(self.mm(h, w("attn_q")).reshape(n, nh, hd), pos, rope_mode)
                k = self.rope(self.mm(h, w("attn_k")).reshape(n, self.n_kv, hd), pos, rope_mode)
                v = self.mm(h, w("attn_v")).reshape(n, self.n_kv, hd)
                q, k, v = f16(q), f16(k), f16(v)
                att = np.empty((n, nh, hd))
                for hh in range(nh):
                    s = (q[:, hh, :] @ k[:, hh // group, :].T) / math.sqrt(hd)
                    s = np.where(mask, -np.inf, s)
                    p = np.exp(s - s.max(axis=1, keepdims=True))
                    att[:, hh, :] = f16(p / p.sum(axis=1, keepdims=True)) @ v[:, hh // group, :]
                x = x + self.mm(att.reshape(n, self.dim), w("attn_output"))
                h = self.rmsnorm(x, ly["ffn_norm"])
                g, u = self.mm(h, w("ffn_gate")), self.mm(h, w("ffn_up"))
                x = x + self.mm((g / (1.0 + np.exp(-g))) * u, w("ffn_down"))
            out = "output.weight" if "output.weight" in self.types else "token_embd.weight"
            return self.mm(self.rmsnorm(x, self.out_norm), out)

    return nref.Model, LlamaRounding


F64_KINDS = {
    # fixture key prefix: which forward pass
    "f64": "exact",
    "f64_llama_rounding": "llama_rounding",
}


def f64_ppl(path: Path, text_path: Path, n_ctx: int, n_tokens: int, kinds) -> dict:
    """Perplexity of the same windows and tokens as `make_ppl`, from numpy_reference.py's
    float64 forward pass (weights dequantized by gguf-py):

      f64_*                 every activation and the KV cache in float64: the arbiter between
                            llama.cpp, which rounds activations to 8-bit blocks before each
                            quantized matmul and keeps K/V in f16, and Tern's f32 path;
      f64_llama_rounding_*  the same with llama.cpp's roundings (LlamaRounding): how much of
                            llama.cpp's distance from float64 those roundings explain."""
    import numpy as np
    from llama_cpp import Llama

    vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    text = text_path.read_text(encoding="utf-8")
    tokens = list(vocab.tokenize(text.encode("utf-8"), add_bos=True, special=False))
    assert len(tokens) == n_tokens, f"{len(tokens)} tokens, make_ppl had {n_tokens}"
    assert not vocab._model.add_bos_token(), "BOS windows not handled here"
    del vocab
    exact, rounding = numpy_forward_classes()
    out = {}
    for key in kinds:
        t0 = time.time()
        model = exact(path) if F64_KINDS[key] == "exact" else rounding(path)
        first = n_ctx // 2
        nll, count, running = 0.0, 0, []
        for i in range(len(tokens) // n_ctx):
            logits = model.forward(tokens[i * n_ctx:(i + 1) * n_ctx], model.new_cache())
            rows = logits[first:n_ctx - 1]
            targets = np.array(tokens[i * n_ctx + first + 1:(i + 1) * n_ctx], dtype=np.int64)
            mx = rows.max(axis=1)
            lse = mx + np.log(np.exp(rows - mx[:, None]).sum(axis=1))
            nll += float((lse - rows[np.arange(len(targets)), targets]).sum())
            count += len(targets)
            running.append(mf.rnd(math.exp(nll / count)))
            log(f"{key} chunk {i + 1}: running {running[-1]} ({time.time() - t0:.1f}s)")
        out[f"{key}_ppl"] = running[-1]
        out[f"{key}_running_ppl"] = running
        out[f"seconds_{key}"] = round(time.time() - t0, 1)
        out["f64_tensor_types"] = dict(sorted(model.tensor_types.items()))
        del model
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", type=Path, default=DEFAULT_TERN, help="the tern binary (release)")
    ap.add_argument("--model", type=Path, default=mf.DEFAULT_MODEL, help="the model to requantize")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--types", nargs="*", default=TYPES, choices=TYPES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ppl-text", type=Path, default=mf.DEFAULT_PPL_TEXT)
    ap.add_argument("--ppl-ctx", type=int, default=512)
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the requantized files in this directory (default: a temporary one)")
    ap.add_argument("--check", action="store_true",
                    help="verify against the existing fixture instead of writing it")
    ap.add_argument("--check-chunks", type=int, default=1)
    ap.add_argument("--no-f64", action="store_true",
                    help="skip the float64 perplexities (2 x ~30 s per window on 2 cores)")
    ap.add_argument("--add-f64", action="store_true",
                    help="add missing float64 figures to the existing fixture (files must match)")
    args = ap.parse_args()

    t_start = time.time()
    tern = args.tern.resolve()
    if not tern.is_file():
        raise SystemExit(f"{tern} is missing: cargo build --release -p tern-cli")
    model = args.model.resolve()
    model_sha = mf.sha256_file(model)
    log(f"model {model} sha256 {model_sha}")

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="tern-requant-")
        work = Path(tmp.name)
    else:
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)

    if args.add_f64:
        fixture = json.loads(args.out.read_text(encoding="utf-8"))
        for ty in args.types:
            want = fixture["types"][ty]
            path = work / f"smollm2_{ty}.gguf"
            sha, _ = quantize(tern, model, path, ty)
            if sha != want["sha256"]:
                raise SystemExit(f"{ty}: sha256 {sha}, fixture {want['sha256']}")
            missing = [k for k in F64_KINDS if f"{k}_ppl" not in want]
            if missing:
                want.update(f64_ppl(path, args.ppl_text, fixture["n_ctx"], fixture["n_tokens"],
                                    missing))
            log(f"{ty}: float64 PPL {want['f64_ppl']}, with llama.cpp's rounding "
                f"{want['f64_llama_rounding_ppl']} (llama.cpp {want['ppl']})")
            path.unlink()
            mf.write_json(args.out, fixture)
        return 0

    if args.check:
        fixture = json.loads(args.out.read_text(encoding="utf-8"))
        failures = []
        for ty in args.types:
            want = fixture["types"][ty]
            path = work / f"smollm2_{ty}.gguf"
            sha, _ = quantize(tern, model, path, ty)
            if sha != want["sha256"]:
                failures.append(f"{ty}: sha256 {sha}, fixture {want['sha256']}")
                continue
            desc = llama_desc(path, args.threads)
            r = mf.make_ppl(path, args.threads, args.ppl_text, args.ppl_ctx, args.check_chunks,
                            lambda ref, extra=None: {})
            got = r["chunks"][-1]["running_ppl"]
            exp = want["running_ppl"][args.check_chunks - 1]
            rel = abs(got - exp) / exp
            log(f"{ty}: loads in llama.cpp as {desc['desc']!r}; PPL after {args.check_chunks} "
                f"chunk(s) {got} vs fixture {exp} (rel {rel:.2e})")
            if rel > CHECK_REL:
                failures.append(f"{ty}: llama.cpp PPL {got} vs fixture {exp}")
            path.unlink()
        if failures:
            log("FAILED:\n  " + "\n  ".join(failures))
            return 1
        log(f"check passed for {', '.join(args.types)} in {time.time() - t_start:.1f}s")
        return 0

    out = {}
    common = None
    for ty in args.types:
        path = work / f"smollm2_{ty}.gguf"
        t0 = time.time()
        sha, summary = quantize(tern, model, path, ty)
        t_quant = time.time() - t0
        log(f"{ty}: {path.name} sha256 {sha} ({path.stat().st_size} bytes, {t_quant:.1f}s x2)")
        desc = llama_desc(path, args.threads)
        log(f"{ty}: llama.cpp loads it: {desc}")
        t0 = time.time()
        r = mf.make_ppl(path, args.threads, args.ppl_text, args.ppl_ctx, None,
                        lambda ref, extra=None: mf.provenance(ref, model, model_sha, extra))
        t_ppl = time.time() - t0
        log(f"{ty}: {r['llama_cpp_style_line']} ({t_ppl:.1f}s)")
        if common is None:
            common = {k: r[k] for k in ("text_file", "text_sha256", "text_bytes", "n_tokens",
                                        "first_tokens", "add_bos", "parse_special", "n_ctx", "first",
                                        "n_chunk_max", "n_chunks", "scored_per_chunk", "count")}
            common["provenance"] = r["provenance"]
            common["description"] = r["description"]
        else:
            for k in ("n_tokens", "n_chunks", "count"):
                assert r[k] == common[k], f"{ty}: {k} {r[k]} vs {common[k]}"
        out[ty] = {
            "file": path.name,
            "command": f"tern quantize -m models/{model.name} -o {path.name} --type {ty}",
            "sha256": sha,
            "size_bytes": path.stat().st_size,
            "tensor_types": tensor_types(path),
            "llama_cpp_model": desc,
            "ppl": r["ppl"],
            "ppl_stderr": r["ppl_stderr"],
            "llama_cpp_style_line": r["llama_cpp_style_line"],
            "chunk_ppl": [c["chunk_ppl"] for c in r["chunks"]],
            "running_ppl": [c["running_ppl"] for c in r["chunks"]],
            "seconds_ppl": round(t_ppl, 1),
        }
        if not args.no_f64:
            out[ty].update(f64_ppl(path, args.ppl_text, args.ppl_ctx, r["n_tokens"], F64_KINDS))
            log(f"{ty}: float64 PPL {out[ty]['f64_ppl']}, with llama.cpp's rounding "
                f"{out[ty]['f64_llama_rounding_ppl']}")
        path.unlink()

    prov = common.pop("provenance")
    prov["generator"] = "tests/reference/make_requant_fixtures.py"
    prov["tern_commit"] = tern_commit()
    prov["quantized_by"] = "tern quantize (target/release/tern), default --embedding-type and --fallback-type"
    prov["seconds_total"] = round(time.time() - t_start, 1)
    fixture = {
        "provenance": prov,
        "about": ("SmolLM2-135M-Instruct Q4_1 requantized by `tern quantize --type T`; the file's "
                  "sha256, llama.cpp's perplexity on it (llama.cpp loads every file), the float64 "
                  "forward pass's (f64_*) and the float64 pass with llama.cpp's roundings "
                  "(f64_llama_rounding_*). Tern's test requantizes, checks the sha256 and "
                  "compares its own perplexity."),
        **common,
        "types": out,
    }
    mf.write_json(args.out, fixture)
    for ty, v in out.items():
        log(f"{ty:7} {v['sha256'][:12]}  PPL {v['ppl']}")
    if tmp is not None:
        tmp.cleanup()
    log(f"done in {time.time() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
