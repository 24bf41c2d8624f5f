/*
 * The counting plugin's own check: known instruction mixes between markers, whose per-class
 * counts bench/arm-insn-count.sh --gate compares exactly. Phase 1 and phase 2 each end with
 * the next marker (one `int` instruction).
 */
int main(void) {
    __asm__ volatile(
        "movz xzr, #0x7e01\n"
        ".rept 1000\n"
        "sdot v0.4s, v1.16b, v2.16b\n"       /* sdot */
        "udot v0.4s, v1.16b, v2.4b[1]\n"     /* sdot */
        "fmla v3.4s, v4.4s, v5.4s\n"         /* fmla */
        "fmla v3.4s, v4.4s, v5.s[2]\n"       /* fmla */
        "fmls v3.2d, v4.2d, v5.2d\n"         /* fmla */
        "fmla v3.8h, v4.8h, v5.8h\n"         /* fmla */
        "fmla v3.8h, v4.8h, v5.h[3]\n"       /* fmla */
        "fadd s0, s1, s2\n"                  /* fp_scalar */
        "fmadd s0, s1, s2, s3\n"             /* fp_scalar */
        "add v0.4s, v1.4s, v2.4s\n"          /* simd */
        "fmul v0.4s, v1.4s, v2.4s\n"         /* simd */
        "add x9, x9, #1\n"                   /* int */
        "ldr q6, [sp, #-16]\n"               /* ldst */
        ".endr\n"
        "movz xzr, #0x7e02\n"
        ".rept 500\n"
        "smmla v0.4s, v1.16b, v2.16b\n"      /* mmla */
        "ummla v0.4s, v1.16b, v2.16b\n"      /* mmla */
        "usmmla v0.4s, v1.16b, v2.16b\n"     /* mmla */
        "usdot v0.4s, v1.16b, v2.16b\n"      /* sdot */
        "sudot v0.4s, v1.16b, v2.4b[0]\n"    /* sdot */
        "usdot v0.4s, v1.16b, v2.4b[3]\n"    /* sdot */
        "cbz x10, 1f\n"                      /* branch */
        "1:\n"
        ".endr\n"
        "movz xzr, #0x7e03\n"
        ::: "v0", "v3", "v6", "x9", "memory");
    return 0;
}
