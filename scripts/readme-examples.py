#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Extracts the C++ examples of the README and the docs pages (```cpp blocks whose first line is
# `// example: NAME`) into OUTDIR/NAME.cpp, so they are compiled and run as tests and cannot drift.
# Usage: readme-examples.py OUTDIR PAGE.md...   (prints the names, separated by ';')
import pathlib
import re
import sys

outdir, pages = pathlib.Path(sys.argv[1]), [pathlib.Path(p) for p in sys.argv[2:]]
outdir.mkdir(parents=True, exist_ok=True)
names = {}
for page in pages:
    for block in re.findall(r"```cpp\n(.*?)```", page.read_text(), flags=re.S):
        first = block.splitlines()[0] if block else ""
        m = re.match(r"// example: ([a-z0-9_]+)$", first)
        if not m:
            continue
        name = m.group(1)
        if name in names:
            sys.exit(f"readme-examples: example '{name}' is in both {names[name]} and {page.name}")
        names[name] = page.name
        target = outdir / f"{name}.cpp"
        text = f"// Generated from {page.name}; edit that page, not this file.\n{block}"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
print(";".join(names), end="")
