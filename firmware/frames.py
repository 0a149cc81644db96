#!/usr/bin/env python3
"""Stack frame of every function in a Thumb-2 image, from its prologue.

Reads `llvm-objdump -d -C` output on stdin and prints, largest first, the
bytes each function reserves with `push` and `sub sp` in its prologue. The
deepest call chain's frames add up to the measured peak (stack painting);
this says where they go.
"""
import re
import sys

frames = {}
current = None
for line in sys.stdin:
    m = re.match(r"^[0-9a-f]+ <(.*)>:", line)
    if m:
        current = m.group(1)
        frames[current] = 0
        continue
    if current is None:
        continue
    m = re.search(r"\tpush(?:\.w)?\t\{([^}]*)\}", line)
    if m:
        frames[current] += 4 * len(m.group(1).split(","))
        continue
    m = re.search(r"\tvpush\t\{([^}]*)\}", line)
    if m:
        regs = m.group(1).split(",")
        if len(regs) == 1 and "-" in regs[0]:
            a, b = (int(r.strip()[1:]) for r in regs[0].split("-"))
            frames[current] += 4 * (b - a + 1)
        else:
            frames[current] += 4 * len(regs)
        continue
    m = re.search(r"\tsub(?:\.w|w)?\tsp, (?:sp, )?#(0x[0-9a-f]+|\d+)", line)
    if m:
        frames[current] += int(m.group(1), 0)
limit = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for name, size in sorted(frames.items(), key=lambda kv: -kv[1])[:limit]:
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    print(f"{size:8d}  {name[:120]}")
