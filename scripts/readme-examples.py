#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Extracts the README's C++ examples (```cpp blocks whose first line is `// example: NAME`)
# into OUTDIR/NAME.cpp, so they are compiled and run as tests and cannot drift.
import pathlib
import re
import sys

readme, outdir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
outdir.mkdir(parents=True, exist_ok=True)
names = []
for block in re.findall(r"```cpp\n(.*?)```", readme.read_text(), flags=re.S):
    first = block.splitlines()[0] if block else ""
    m = re.match(r"// example: ([a-z0-9_]+)$", first)
    if not m:
        continue
    name = m.group(1)
    target = outdir / f"{name}.cpp"
    text = f"// Generated from README.md; edit the README, not this file.\n{block}"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    names.append(name)
print(";".join(names), end="")
