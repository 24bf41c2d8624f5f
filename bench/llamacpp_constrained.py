#!/usr/bin/env python3
"""llama.cpp's cost of JSON-schema-constrained decoding (through llama-cpp-python), to set
beside `tern bench --json-schema FILE` on the same GGUF and schema.

Greedy decoding from the same ChatML prompt `tern bench` uses by default, alternating REPS
rounds of constrained (llama.cpp's GBNF from LlamaGrammar.from_json_schema) and free
decoding; the prompt stays in llama.cpp's cache, so the time is decode only (the first call
warms it). Figures are per generated token. Prints one JSON object.
"""
import argparse
import json
import statistics
import time

import llama_cpp
from llama_cpp import Llama, LlamaGrammar

# Importing it applies its patch: the sandbox forbids AMX, which llama.cpp's extra buffer types
# would use.
import llamacpp_bench  # noqa: F401,E402

PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
          "Describe three fictional people as JSON: names, ages, cities, hobbies.<|im_end|>\n"
          "<|im_start|>assistant\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--json-schema", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=3)
    a = ap.parse_args()

    llm = Llama(model_path=a.model, n_ctx=1024, n_batch=512, n_threads=a.threads,
                n_threads_batch=a.threads, verbose=False)
    schema = open(a.json_schema).read()
    t = time.perf_counter()
    grammar = LlamaGrammar.from_json_schema(schema, verbose=False)
    setup_ms = (time.perf_counter() - t) * 1e3

    def run(constrained, n):
        t = time.perf_counter()
        out = llm.create_completion(PROMPT, max_tokens=n, temperature=0.0,
                                    grammar=grammar if constrained else None)
        dt = time.perf_counter() - t
        k = out["usage"]["completion_tokens"]
        return k / dt, k, out["choices"][0]["text"]

    run(True, a.n_gen), run(False, a.n_gen)  # warm-up: prompt into the cache
    free, con, lens, free_lens, text = [], [], [], [], ""
    for _ in range(a.reps):
        tok_s, k, text = run(True, a.n_gen)
        con.append(tok_s)
        lens.append(k)
        tok_s, k_free, _ = run(False, k)
        free.append(tok_s)
        free_lens.append(k_free)
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    print(json.dumps({
        "runtime": "llama.cpp " + getattr(llama_cpp, "__version__", "?"),
        "n_vocab": llm.n_vocab(),
        "free_tok_s": statistics.mean(free), "free_tok_s_sd": sd(free),
        "constrained_tok_s": statistics.mean(con), "constrained_tok_s_sd": sd(con),
        "overhead_pct": 100.0 * (statistics.mean(free) / statistics.mean(con) - 1.0),
        "free_runs": free, "constrained_runs": con, "free_tokens": free_lens,
        "tokens_per_run": statistics.mean(lens), "grammar_setup_ms": setup_ms,
        "constrained_text": text,
    }))


if __name__ == "__main__":
    main()
