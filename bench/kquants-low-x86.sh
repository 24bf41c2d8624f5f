#!/bin/sh
# Issue 15: Q2_K and Q3_K beside Q4_0 in one run (f32 row dot, multi-row dot, int8 row dot,
# int8 GEMM; every x86 backend), on SmolLM2's ffn_down and Llama 3.2 1B's attention shapes.
# Each argument is one of the bench's FILTER words. Seconds, not minutes.
set -e
F=""
for t in Q4_0 Q2_K Q3_K; do
    for k in dot dot_rows dot_q8 gemm_q8; do
        for s in 576x1536 2048x2048; do F="$F|$t $k $s"; done
    done
done
IFS='|'
# shellcheck disable=SC2086 # split on '|' on purpose
set -- ${F#|}
exec cargo bench -p tern-kernels --bench kernels -- "$@"
