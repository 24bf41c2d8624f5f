"""Tables and the CI gate over insn_count.c's output, for bench/arm-insn-count.sh.

  report.py table ROWS N_PROMPT N_GEN QEMU_VERSION
      ROWS: tab-separated "level file who phase class count", who in t-int8, t-def, l
      (Tern --precision int8, Tern's default precision, llama.cpp); "#fn" lines from the
      plugin's funcs= option become a top-functions table. Prints markdown tables.
  report.py gate BASELINE COUNTS_DIR [--update] [--rustc VERSION] [--qemu VERSION]
      COUNTS_DIR holds one plugin output per shape, named SHAPE (with its n_prompt and n_gen
      in the name: "..._p8_n4"). Fails (exit 1) when a shape's instructions per prompt token
      or per decoded token exceed the baseline by more than 2 %; --update rewrites it.
"""

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

CLASSES = ["sdot", "mmla", "fmla", "simd", "fp_scalar", "int", "ldst", "branch", "other"]
PHASE = {"load": 1, "prefill": 2, "decode": 3}
TOLERANCE = 1.02


def read_counts(lines):
    """{phase: {class: count}} from the plugin's "PHASE CLASS COUNT" lines."""
    out = defaultdict(lambda: defaultdict(int))
    for line in lines:
        if line.startswith("#"):
            continue
        p, c, n = line.split()
        out[int(p)][c] += int(n)
    return out


def per_token(counts, n_prompt, n_gen):
    """Instructions per prompt token and per decoded token, by class and in total."""
    pp = {c: counts[PHASE["prefill"]][c] / n_prompt for c in CLASSES}
    tg = {c: counts[PHASE["decode"]][c] / n_gen for c in CLASSES}
    pp["total"] = sum(pp[c] for c in CLASSES)
    tg["total"] = sum(tg[c] for c in CLASSES)
    return pp, tg


def demangle(names):
    """Readable Rust and C++ symbols (c++filt, where installed), without Rust's hash suffix."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        out = list(names)
    return {n: re.sub(r"::h[0-9a-f]{16}$", "", d) for n, d in zip(names, out)}


def table(rows_path, n_prompt, n_gen, qemu):
    runs = defaultdict(list)
    for line in Path(rows_path).read_text().splitlines():
        level, f, who, rest = line.split("\t", 3)
        runs[(level, f, who)].append(rest)
    keys = sorted({(lv, f) for lv, f, _ in runs}, key=lambda k: (k[0] != "dotprod", k[1]))
    stats = {k: per_token(read_counts(v), n_prompt, n_gen) for k, v in runs.items() if v}
    funcs = {k: [x.split(None, 3)[1:] for x in v if x.startswith("#fn ")] for k, v in runs.items()}

    m = lambda x: f"{x / 1e6:.1f}"
    ratio = lambda ref, t: f"{ref / t:.2f}" if t else "–"
    print(f"Instructions executed under {qemu}, single thread, pp {n_prompt} / tg {n_gen}; M = 10^6.")
    print("llama/Tern > 1 means Tern executes fewer instructions.\n")
    print("| level | file | Tern mode | Tern M / decoded token | llama.cpp | llama/Tern "
          "| Tern M / prompt token | llama.cpp | llama/Tern |")
    print("|---|---|---|---|---|---|---|---|---|")
    for lv, f in keys:
        ref = stats.get((lv, f, "l"))
        for who, mode in (("t-int8", "int8"), ("t-def", "default")):
            t = stats.get((lv, f, who))
            if not t:
                continue
            rpp, rtg = (ref[0]["total"], ref[1]["total"]) if ref else (None, None)
            print(f"| {lv} | {f} | {mode} | {m(t[1]['total'])} | {m(rtg) if ref else '–'} | "
                  f"{ratio(rtg, t[1]['total']) if ref else '–'} | {m(t[0]['total'])} | "
                  f"{m(rpp) if ref else '–'} | {ratio(rpp, t[0]['total']) if ref else '–'} |")
    for title, idx in (("decoded token", 1), ("prompt token", 0)):
        print(f"\nM instructions per {title}, by class:\n")
        print("| level | file | engine | " + " | ".join(CLASSES) + " | total |")
        print("|---|---|---|" + "---|" * (len(CLASSES) + 1))
        for lv, f in keys:
            for who, name in (("t-int8", "Tern int8"), ("t-def", "Tern default"), ("l", "llama.cpp")):
                s = stats.get((lv, f, who))
                if s:
                    cells = " | ".join(f"{s[idx][c] / 1e6:.2f}" for c in CLASSES + ["total"])
                    print(f"| {lv} | {f} | {name} | {cells} |")
    if any(funcs.values()):
        print("\nTop functions, M instructions per decoded token (of which sdot/mmla/fmla):\n")
        print("| level | file | engine | function | M / token | dot/FMA |")
        print("|---|---|---|---|---|---|")
        names = demangle(sorted({sym for fl in funcs.values() for _, _, sym in fl}))
        engine = {"t-int8": "Tern int8", "t-def": "Tern default", "l": "llama.cpp"}
        for (lv, f, who), fl in sorted(funcs.items()):
            for n, dot, sym in fl[:8]:
                print(f"| {lv} | {f} | {engine[who]} | `{names[sym][:80]}` | {int(n) / n_gen / 1e6:.2f} | "
                      f"{int(dot) / n_gen / 1e6:.2f} |")


def gate(baseline_path, counts_dir, update, rustc, qemu):
    now = {}
    for p in sorted(Path(counts_dir).iterdir()):
        mt = re.search(r"_p(\d+)_n(\d+)$", p.name)
        if not mt:
            continue
        pp, tg = per_token(read_counts(p.read_text().splitlines()), int(mt[1]), int(mt[2]))
        now[p.name] = {"per_prompt_token": round(pp["total"]), "per_decoded_token": round(tg["total"])}
    if not now:
        sys.exit(f"no counts in {counts_dir}")
    base_file = Path(baseline_path)
    if update:
        doc = {
            "about": "Tern's AArch64 instructions per token under qemu (bench/arm-insn-count.sh "
                     "--gate; the dev-profile build, overflow checks on); rewritten deliberately "
                     "with --update-baseline",
            "rustc": rustc, "qemu": qemu, "tolerance": TOLERANCE, "shapes": now,
        }
        base_file.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"baseline written: {base_file}")
        for k, v in now.items():
            print(f"  {k}: {v['per_prompt_token']} / prompt token, {v['per_decoded_token']} / decoded token")
        return
    base = json.loads(base_file.read_text())
    failed = 0
    for k, v in now.items():
        b = base["shapes"].get(k)
        if b is None:
            print(f"FAIL {k}: not in {base_file} (run with --update-baseline)")
            failed += 1
            continue
        for metric in ("per_prompt_token", "per_decoded_token"):
            r = v[metric] / b[metric]
            verdict = "FAIL" if r > TOLERANCE else "ok"
            failed += verdict == "FAIL"
            hint = "  (improved by > 2 %: update the baseline in this commit)" if r < 1 / TOLERANCE else ""
            print(f"{verdict:4} {k} {metric}: {v[metric]} vs baseline {b[metric]} ({(r - 1) * 100:+.2f} %){hint}")
    if failed:
        if base.get("rustc") != rustc or base.get("qemu") != qemu:
            print(f"note: baseline from rustc {base.get('rustc')!r}, qemu {base.get('qemu')!r}; "
                  f"this run rustc {rustc!r}, qemu {qemu!r}")
        sys.exit(f"{failed} instruction-count check(s) rose by more than {(TOLERANCE - 1) * 100:.0f} %")
    print(f"{sum(2 for _ in now)} passed, 0 failed")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "table":
        table(a[1], int(a[2]), int(a[3]), a[4])
    elif a and a[0] == "gate":
        opts = dict(rustc="", qemu="")
        rest = a[3:]
        for i, x in enumerate(rest):
            if x in ("--rustc", "--qemu"):
                opts[x[2:]] = rest[i + 1]
        gate(a[1], a[2], "--update" in rest, opts["rustc"], opts["qemu"])
    else:
        sys.exit(__doc__)
