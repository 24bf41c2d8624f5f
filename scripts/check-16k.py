#!/usr/bin/env python3
"""Checks that 64-bit ELF shared libraries have every LOAD segment aligned to 16 KB.

Android 15+ devices with 16 KB pages refuse to load a library whose LOAD segments are aligned
to less (p_align < 16384), and Google Play refuses such apps for new targets. Each argument is
a shared library, or a .jar/.aar/.zip whose 64-bit .so files are checked (JNA ships
libjnidispatch.so inside its per-platform jars; an AAR keeps its libraries under jni/<abi>/).
32-bit libraries are listed and skipped: the requirement is for 64-bit ABIs.

Prints one line per library and exits 1 if any 64-bit library is misaligned.
Reads the ELF header and program headers directly (no readelf needed).
"""
import struct
import sys
import zipfile

PAGE = 16384
PT_LOAD = 1


def load_alignments(data: bytes):
    """(bits, [p_align of each LOAD segment]) of an ELF image, or None if it is not ELF."""
    if data[:4] != b"\x7fELF":
        return None
    bits = {1: 32, 2: 64}[data[4]]
    endian = {1: "<", 2: ">"}[data[5]]
    if bits == 64:
        phoff, = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    aligns = []
    for i in range(phnum):
        off = phoff + i * phentsize
        p_type, = struct.unpack_from(endian + "I", data, off)
        if p_type != PT_LOAD:
            continue
        if bits == 64:
            p_align, = struct.unpack_from(endian + "Q", data, off + 0x30)
        else:
            p_align, = struct.unpack_from(endian + "I", data, off + 0x1C)
        aligns.append(p_align)
    return bits, aligns


def libraries(path: str):
    """(name, bytes) of each shared library `path` is or holds."""
    if path.endswith((".jar", ".aar", ".zip")):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".so"):
                    yield f"{path}!{name}", z.read(name)
    else:
        with open(path, "rb") as f:
            yield path, f.read()


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    bad = 0
    seen = 0
    for path in paths:
        for name, data in libraries(path):
            parsed = load_alignments(data)
            if parsed is None:
                print(f"not ELF   {name}")
                bad += 1
                continue
            bits, aligns = parsed
            if bits == 32:
                print(f"32-bit    {name} (not required)")
                continue
            seen += 1
            ok = bool(aligns) and all(a >= PAGE and a % PAGE == 0 for a in aligns)
            shown = ", ".join(hex(a) for a in aligns)
            print(f"{'ok' if ok else 'TOO SMALL':9} {name}: LOAD p_align {shown}")
            bad += not ok
    if seen == 0:
        print("no 64-bit shared library found", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
