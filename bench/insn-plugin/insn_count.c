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
 * phase 0 being everything before the first marker.
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
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (out=PATH)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_guest_exit, NULL);
    return 0;
}
