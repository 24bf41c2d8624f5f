/*
 * A qemu TCG plugin that counts executed AArch64 instructions by class, split into phases by
 * markers the guest executes.
 *
 * Written against the plugin API of Debian 12's qemu 7.2 (QEMU_PLUGIN_VERSION 1; the header is
 * include/qemu/qemu-plugin.h of the qemu source package). It uses only calls that API version
 * has: translation callbacks, per-TB inline adds, per-instruction callbacks and the pointer
 * form of qemu_plugin_insn_data. Later API versions changed some of these (the inline ops moved
 * to per-vCPU scoreboards, qemu_plugin_insn_data to a copying call), so a header of another
 * version stops the build below rather than counting wrongly.
 *
 * Phase markers: `movz xzr, #(0x7e00 | phase)` writes the zero register, so it is a no-op on
 * every AArch64 CPU, and no compiler emits it. `tern bench` (TERN_INSN_MARKERS=1) and the
 * llama.cpp driver execute it with phase 1 = load, 2 = prefill, 3 = decode, 4 = end. A marker
 * is recognised by its encoding when its block is translated, so it costs nothing at run time
 * and does not depend on any syscall (qemu >= 8.1 no longer traps clock_gettime).
 *
 * Counting: each translated block adds its per-class instruction counts to running totals once
 * per execution (an inline op, no helper call); a marker's callback closes the current phase by
 * taking the totals, less the instructions of its block that come after the marker. A block
 * that is left early (a fault) still counts whole: in user mode that is a few instructions per
 * signal. Single-threaded guests only: the totals are not atomic.
 *
 * Classes are decoded from the encoding (Arm ARM, "A64 instruction set encoding"):
 *   sdot      SDOT/UDOT/USDOT/SUDOT, vector and by element
 *   mmla      SMMLA/UMMLA/USMMLA
 *   fmla      FMLA/FMLS vector and by element (half, single, double)
 *   simd      every other Advanced SIMD vector or SVE instruction
 *   fp_scalar scalar floating point and Advanced SIMD scalar (FADD s, FCVT, FMADD, DUP s, ...)
 *   int       integer data processing, immediate and register
 *   ldst      loads and stores, general and SIMD&FP registers
 *   branch    B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, BR/BLR/RET
 *   other     system instructions (hints, barriers, MRS/MSR, SVC) and unallocated encodings
 *
 * Output (argument out=PATH, else stderr): one line per phase and class, "PHASE CLASS COUNT",
 * phase 0 being everything before the first marker. With funcs=PHASE, also lines
 * "#fn COUNT DOT SYMBOL" for the functions that executed the most instructions in that phase
 * (DOT: of those, sdot + mmla + fmla); a block is attributed to the symbol of its first
 * instruction and to the phase current when it starts. That costs a helper call per block.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

#if QEMU_PLUGIN_VERSION != 1
#error "insn_count.c is written for the qemu plugin API version 1 (qemu 7.2)"
#endif

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum insn_class { C_SDOT, C_MMLA, C_FMLA, C_SIMD, C_FP_SCALAR, C_INT, C_LDST, C_BRANCH, C_OTHER, N_CLASS };

static const char *const class_names[N_CLASS] = {
    "sdot", "mmla", "fmla", "simd", "fp_scalar", "int", "ldst", "branch", "other",
};

#define MARKER_MASK 0xffe0001fu  /* MOVZ (64-bit), hw = 0, Rd = xzr; imm16 in bits 20:5 */
#define MARKER_BITS 0xd280001fu
#define MARKER_TAG 0x7e00u
#define N_PHASE 16

/* Running totals, added to by inline ops at every block entry. */
static uint64_t live[N_CLASS];
/* `live` as it was when the current phase began. */
static uint64_t phase_start[N_CLASS];
static uint64_t phase_counts[N_PHASE][N_CLASS];
static unsigned current_phase;
static char *out_path;

/* Per-function attribution (funcs=PHASE): a small open-addressing table keyed by the symbol
 * string's address, which qemu keeps for the whole run. */
#define N_FUNCS 8192
struct func {
    const char *sym;
    uint64_t n;
    uint64_t dot;
};
static struct func funcs[N_FUNCS];
static int funcs_phase = -1;

/* What a block's attribution callback needs. */
struct block {
    const char *sym;
    uint32_t n;
    uint32_t dot;
};

static void on_block(unsigned int vcpu, void *udata) {
    (void)vcpu;
    const struct block *b = udata;
    if ((int)current_phase != funcs_phase) return;
    size_t h = ((uintptr_t)b->sym >> 3) % N_FUNCS;
    for (size_t probe = 0; probe < N_FUNCS; probe++, h = (h + 1) % N_FUNCS) {
        if (funcs[h].sym == b->sym || funcs[h].sym == NULL) {
            funcs[h].sym = b->sym;
            funcs[h].n += b->n;
            funcs[h].dot += b->dot;
            return;
        }
    }
}

static int by_count(const void *a, const void *b) {
    uint64_t x = ((const struct func *)a)->n, y = ((const struct func *)b)->n;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* What a marker's callback needs: its phase and the counts of its block after it. */
struct marker {
    unsigned phase;
    uint64_t tail[N_CLASS];
};

/* The class of one A64 instruction word. */
static enum insn_class classify(uint32_t w) {
    uint32_t op0 = (w >> 25) & 0xf;
    switch (op0) {
    case 0x8: case 0x9: /* data processing, immediate */
    case 0x5: case 0xd: /* data processing, register */
        return C_INT;
    case 0xa: case 0xb: /* branches, exception generation, system */
        if ((w & 0x7c000000u) == 0x14000000u) return C_BRANCH; /* B, BL */
        if ((w & 0xff000010u) == 0x54000000u) return C_BRANCH; /* B.cond */
        if ((w & 0x7e000000u) == 0x34000000u) return C_BRANCH; /* CBZ, CBNZ */
        if ((w & 0x7e000000u) == 0x36000000u) return C_BRANCH; /* TBZ, TBNZ */
        if ((w & 0xfe000000u) == 0xd6000000u) return C_BRANCH; /* BR, BLR, RET, ... */
        return C_OTHER;
    case 0x4: case 0x6: case 0xc: case 0xe: /* loads and stores */
        return C_LDST;
    case 0x2: /* SVE */
        return C_SIMD;
    case 0x7: case 0xf: /* SIMD and floating point */
        break;
    default:
        return C_OTHER;
    }
    if (w & (1u << 28)) return C_FP_SCALAR; /* scalar FP, Advanced SIMD scalar */
    /* Advanced SIMD vector: 0 Q U 0111x ... */
    if ((w & 0x9fe0fc00u) == 0x0e809400u) return C_SDOT;   /* SDOT/UDOT (vector), size 10 */
    if ((w & 0xbfe0fc00u) == 0x0e809c00u) return C_SDOT;   /* USDOT (vector) */
    if ((w & 0x9fc0f400u) == 0x0f80e000u) return C_SDOT;   /* SDOT/UDOT (by element) */
    if ((w & 0xbf40f400u) == 0x0f00f000u) return C_SDOT;   /* SUDOT/USDOT (by element) */
    if ((w & 0xdfe0fc00u) == 0x4e80a400u) return C_MMLA;   /* SMMLA/UMMLA */
    if ((w & 0xffe0fc00u) == 0x4e80ac00u) return C_MMLA;   /* USMMLA */
    if ((w & 0xbf20fc00u) == 0x0e20cc00u) return C_FMLA;   /* FMLA/FMLS (vector), s/d */
    if ((w & 0xbf60fc00u) == 0x0e400c00u) return C_FMLA;   /* FMLA/FMLS (vector), half */
    if ((w & 0xbf80b400u) == 0x0f801000u) return C_FMLA;   /* FMLA/FMLS (by element), s/d */
    if ((w & 0xbfc0b400u) == 0x0f001000u) return C_FMLA;   /* FMLA/FMLS (by element), half */
    return C_SIMD;
}

static uint32_t insn_word(const struct qemu_plugin_insn *insn) {
    uint32_t w;
    memcpy(&w, qemu_plugin_insn_data(insn), sizeof w);
    return w;
}

static void close_phase(uint64_t const tail[N_CLASS]) {
    for (int c = 0; c < N_CLASS; c++) {
        uint64_t upto = live[c] - tail[c];
        phase_counts[current_phase][c] += upto - phase_start[c];
        phase_start[c] = upto;
    }
}

static void on_marker(unsigned int vcpu, void *udata) {
    (void)vcpu;
    const struct marker *m = udata;
    close_phase(m->tail);
    current_phase = m->phase;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t per[N_CLASS] = {0};
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_size(insn) != 4) continue;
        uint32_t w = insn_word(insn);
        per[classify(w)]++;
        if ((w & MARKER_MASK) == MARKER_BITS && (((w >> 5) & 0xff00u) == MARKER_TAG)) {
            /* Markers are translated a handful of times per run: a leak per translation is
             * fine and keeps the callback's data alive for every later execution. */
            struct marker *m = calloc(1, sizeof *m);
            if (!m) abort();
            m->phase = ((w >> 5) & 0xffu) % N_PHASE;
            for (size_t j = i + 1; j < n; j++) {
                struct qemu_plugin_insn *after = qemu_plugin_tb_get_insn(tb, j);
                if (qemu_plugin_insn_size(after) == 4) m->tail[classify(insn_word(after))]++;
            }
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, m);
        }
    }
    for (int c = 0; c < N_CLASS; c++) {
        if (per[c]) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &live[c], per[c]);
    }
    if (funcs_phase >= 0 && n > 0) {
        /* One per translation, kept for every later execution of the block, like a marker's. */
        struct block *b = calloc(1, sizeof *b);
        if (!b) abort();
        const char *sym = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0));
        b->sym = sym ? sym : "?";
        b->n = (uint32_t)n;
        b->dot = (uint32_t)(per[C_SDOT] + per[C_MMLA] + per[C_FMLA]);
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
    }
}

static void on_guest_exit(qemu_plugin_id_t id, void *udata) {
    (void)id;
    (void)udata;
    static const uint64_t none[N_CLASS];
    close_phase(none);
    FILE *f = out_path ? fopen(out_path, "w") : stderr;
    if (!f) {
        perror(out_path);
        return;
    }
    for (int p = 0; p < N_PHASE; p++) {
        uint64_t total = 0;
        for (int c = 0; c < N_CLASS; c++) total += phase_counts[p][c];
        if (!total) continue;
        for (int c = 0; c < N_CLASS; c++) fprintf(f, "%d %s %" PRIu64 "\n", p, class_names[c], phase_counts[p][c]);
    }
    if (funcs_phase >= 0) {
        qsort(funcs, N_FUNCS, sizeof funcs[0], by_count);
        for (int i = 0; i < 40 && funcs[i].n; i++)
            fprintf(f, "#fn %" PRIu64 " %" PRIu64 " %s\n", funcs[i].n, funcs[i].dot, funcs[i].sym);
    }
    if (f != stderr) fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    if (strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "insn_count: aarch64 guests only, not %s\n", info->target_name);
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        } else if (strncmp(argv[i], "funcs=", 6) == 0) {
            funcs_phase = atoi(argv[i] + 6);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (out=PATH, funcs=PHASE)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_guest_exit, NULL);
    return 0;
}
