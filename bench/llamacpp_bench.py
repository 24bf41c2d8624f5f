#!/usr/bin/env python3
"""llama-bench-style timing of llama.cpp (through llama-cpp-python) on a GGUF file.

pp: one batch of N_PROMPT tokens from an empty context; tg: N_GEN single-token decode steps
from an empty context (what llama-bench's pp/tg tests do). Tokens are fixed pseudo-random ids,
as in `tern bench`. Prints one JSON object.
"""
import argparse
import json
import statistics
import time

import llama_cpp
from llama_cpp import Llama

# This machine's CPU advertises AMX, which the sandbox does not allow: llama.cpp's AMX
# "extra buffer type" then crashes. llama-cpp-python has no keyword for the model parameter,
# so patch its default (the ordinary CPU kernels, same as a phone would use).
_orig = llama_cpp.llama_cpp.llama_model_default_params


def _no_extra_bufts():
    p = _orig()
    p.use_extra_bufts = False
    return p


if any(f[0] == "use_extra_bufts" for f in llama_cpp.llama_cpp.llama_model_params._fields_):
    llama_cpp.llama_cpp.llama_model_default_params = _no_extra_bufts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=5)
    a = ap.parse_args()

    llm = Llama(model_path=a.model, n_ctx=max(512, a.n_prompt + a.n_gen + 8), n_batch=512,
                n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    vocab = llm.n_vocab()
    tokens = [(i * 7919 + 13) % vocab for i in range(max(a.n_prompt, a.n_gen))]

    def pp():
        llm.reset()
        llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
        t = time.perf_counter()
        llm.eval(tokens[: a.n_prompt])
        return a.n_prompt / (time.perf_counter() - t)

    def tg():
        llm.reset()
        llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
        t = time.perf_counter()
        for tok in tokens[: a.n_gen]:
            llm.eval([tok])
        return a.n_gen / (time.perf_counter() - t)

    pp(), tg()  # warm-up
    pps = [pp() for _ in range(a.reps)] if a.n_prompt else []
    tgs = [tg() for _ in range(a.reps)] if a.n_gen else []
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    print(json.dumps({
        "runtime": "llama.cpp " + getattr(llama_cpp, "__version__", "?"),
        "threads": a.threads,
        "pp_tok_s": statistics.mean(pps) if pps else None, "pp_tok_s_sd": sd(pps),
        "tg_tok_s": statistics.mean(tgs) if tgs else None, "tg_tok_s_sd": sd(tgs),
    }))


if __name__ == "__main__":
    main()
