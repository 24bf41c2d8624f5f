"""llvm-mca on the innermost loop of hot AArch64 kernel functions, for bench/arm-insn-count.sh.

  mca.py BINARY PATTERN... [--cpus cortex-a76,cortex-x1,neoverse-n1,neoverse-v1]

For every function of BINARY whose demangled name contains a PATTERN: disassemble it, take the
loop (a backward branch within the function) with the most dot-product and FMA instructions,
the shortest of those, as the hot one, and run llvm-mca on its body for each CPU. Prints a
markdown table: instructions per iteration, SDOT/SMMLA/FMLA in it, and llvm-mca's estimated
cycles per iteration in steady state. A change that cuts instructions but lengthens a
dependency chain shows up here as more cycles per iteration.

LLVM (14 and 19) has no scheduling model of its own for cortex-a76 or cortex-x1: both give
the same figures as cortex-a57. Neoverse N1 is the server sibling of the Cortex-A76 core and
Neoverse V1 of the Cortex-X1, and LLVM models both, so those columns are the closer estimate.
LLVM_MCA names the llvm-mca binary (default: llvm-mca-19 where installed, else llvm-mca).
"""

import os
import shutil

import re
import subprocess
import sys

MCA = os.environ.get("LLVM_MCA") or shutil.which("llvm-mca-19") or "llvm-mca"
OBJDUMP = MCA.replace("llvm-mca", "llvm-objdump")

HEAVY = re.compile(r"^(sdot|udot|usdot|sudot|smmla|ummla|usmmla|fmla|fmls)$")
BRANCH = re.compile(r"^(b\.\w+|b|cbn?z|tbn?z)$")


def functions(binary, patterns):
    out = subprocess.run(["nm", "-C", "-S", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tT" and any(p in parts[3] for p in patterns):
            yield parts[3], int(parts[0], 16), int(parts[1], 16)


def disassemble(binary, start, size):
    out = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", "--mattr=+dotprod,+i8mm,+fullfp16",
                          f"--start-address={start:#x}", f"--stop-address={start + size:#x}", binary],
                         check=True, capture_output=True, text=True).stdout
    insns = []
    for line in out.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m:
            insns.append((int(m[1], 16), m[2], m[3].split("//")[0].strip()))
    return insns


def innermost_loop(insns):
    best = None
    addrs = [a for a, _, _ in insns]
    for i, (addr, mnem, ops) in enumerate(insns):
        if not BRANCH.match(mnem):
            continue
        t = re.search(r"0x([0-9a-f]+)", ops) or re.search(r"\b([0-9a-f]{4,})\b", ops)
        if not t:
            continue
        target = int(t[1], 16)
        if target > addr or target not in addrs:
            continue
        body = insns[addrs.index(target):i + 1]
        score = (sum(1 for _, m, _ in body if HEAVY.match(m)), -len(body))
        if score[0] and (best is None or score > best[0]):
            best = (score, body)
    return best[1] if best else None


def mca(body, cpu):
    lines = ["L0:"]
    for _, mnem, ops in body:
        if BRANCH.match(mnem):
            ops = re.sub(r"0x[0-9a-f]+\s*<[^>]*>|\b[0-9a-f]{4,}\b\s*(<[^>]*>)?", "L0", ops)
        lines.append(f"  {mnem} {ops}")
    asm = "\n".join(lines) + "\n"
    r = subprocess.run([MCA, "-mtriple=aarch64", f"-mcpu={cpu}",
                        "-mattr=+dotprod,+i8mm,+fullfp16", "-iterations=200"],
                       input=asm, capture_output=True, text=True)
    if r.returncode:
        return None, None
    rt = re.search(r"Block RThroughput:\s+([\d.]+)", r.stdout)
    ipc = re.search(r"IPC:\s+([\d.]+)", r.stdout)
    cyc = re.search(r"Total Cycles:\s+(\d+)", r.stdout)
    per_iter = int(cyc[1]) / 200 if cyc else None
    return (per_iter, float(ipc[1]) if ipc else None) if rt and per_iter else (None, None)


def main():
    args = sys.argv[1:]
    cpus = ["cortex-a76", "cortex-x1", "neoverse-n1", "neoverse-v1"]
    if "--cpus" in args:
        i = args.index("--cpus")
        cpus = args[i + 1].split(",")
        del args[i:i + 2]
    binary, patterns = args[0], args[1:]
    head = " | ".join(f"{c} cycles/iter" for c in cpus)
    print(f"| function | loop insns | sdot/mmla/fmla | {head} | {cpus[-1]} cycles per sdot/mmla/fmla |")
    print("|---|---|---|" + "---|" * (len(cpus) + 1))
    seen = set()
    for name, start, size in sorted(functions(binary, patterns)):
        if name in seen or name.endswith("_generic"):
            continue
        seen.add(name)
        body = innermost_loop(disassemble(binary, start, size))
        if not body:
            continue
        heavy = sum(1 for _, m, _ in body if HEAVY.match(m))
        cells = []
        for cpu in cpus:
            c, ipc = mca(body, cpu)
            cells.append(f"{c:.1f} (IPC {ipc:.2f})" if c else "–")
        cells.append(f"{c / heavy:.2f}" if c else "–")
        print(f"| {name} | {len(body)} | {heavy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
