/*
 * A llama-bench-shaped driver for instruction counting: loads a GGUF with libllama, then runs
 * one prompt of N_PROMPT tokens in a single batch and N_GEN single-token decode steps, single
 * threaded, with the same phase markers `tern bench` emits under TERN_INSN_MARKERS=1 (see
 * insn_count.c): 1 = load, 2 = prefill, 3 = decode, 4 = end.
 *
 * usage: llama_driver MODEL N_PROMPT N_GEN
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

/* `movz xzr, #(0x7e00 | phase)`: writes the zero register, so it does nothing on any AArch64
 * CPU; the counting plugin recognises the encoding. */
#define MARK(phase) __asm__ volatile("movz xzr, %0" ::"i"(0x7e00 | (phase)) : "memory")

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float progress, void *user) {
    (void)progress;
    (void)user;
    return true;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL N_PROMPT N_GEN\n", argv[0]);
        return 2;
    }
    const int n_prompt = atoi(argv[2]);
    const int n_gen = atoi(argv[3]);
    if (n_prompt < 1 || n_gen < 1) {
        fprintf(stderr, "N_PROMPT and N_GEN must be at least 1\n");
        return 2;
    }
    llama_log_set(quiet, NULL);

    MARK(1);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = no_progress;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_gen + 16;
    cp.n_batch = n_prompt;
    cp.n_ubatch = n_prompt;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    cp.no_perf = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    const int n_tok = n_prompt > n_gen ? n_prompt : n_gen;
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t)n_tok);
    if (!tokens) return 1;
    /* The same fixed pseudo-random tokens as `tern bench`. */
    for (int i = 0; i < n_tok; i++) tokens[i] = (llama_token)(((unsigned)i * 7919u + 13u) % (unsigned)n_vocab);

    /* Prefill: the whole prompt in one batch, logits for the last token only (as llama-bench). */
    MARK(2);
    if (llama_decode(ctx, llama_batch_get_one(tokens, n_prompt)) != 0) {
        fprintf(stderr, "prefill failed\n");
        return 1;
    }
    /* Decode: a fresh sequence of single-token steps, as llama-bench's tg test. */
    llama_memory_clear(llama_get_memory(ctx), 1);
    MARK(3);
    for (int i = 0; i < n_gen; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&tokens[i], 1)) != 0) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
    }
    MARK(4);
    free(tokens);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
