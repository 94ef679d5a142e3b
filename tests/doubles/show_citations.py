"""Print every CuPy source line the double and its tests cite, from a CuPy git checkout at the cited tag,
so a reviewer can check each rule against the line it claims to model:

    git clone https://github.com/cupy/cupy /tmp/cupy   # any clone with the v14.2.0 tag
    python3 tests/doubles/show_citations.py /tmp/cupy

A citation is ``cupy/<path>:<line>[-<line>]`` (or ``cupy_backends/...``) with ``(v14.2.0)`` or ``at
v14.2.0`` after it; a following ``:<line>`` / ``and :<line>`` without a path refers to the same file.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = [HERE / "fakecupy.py", HERE / "test_fakecupy.py", *sorted((HERE.parent).glob("test_*.py"))]
CITE = re.compile(r"((?:cupy|cupy_backends)/[\w/]+\.(?:pyx|py|pxd)):(\d+)(?:-(\d+))?((?:(?:,| and|, and)\s*:\d+(?:-\d+)?)*)")
TAG = "v14.2.0"


def main() -> int:
    repo = sys.argv[1] if len(sys.argv) > 1 else "."
    cache: dict = {}
    seen = set()
    for f in FILES:
        text = re.sub(r"\s*\n\s*(?:#\s*)?", " ", f.read_text())  # citations wrap across lines
        for m in CITE.finditer(text):
            path = m.group(1)
            ranges = [(int(m.group(2)), int(m.group(3) or m.group(2)))]
            ranges += [(int(a), int(b or a)) for a, b in re.findall(r":(\d+)(?:-(\d+))?", m.group(4) or "")]
            for lo, hi in ranges:
                if (path, lo, hi) in seen:
                    continue
                seen.add((path, lo, hi))
                if path not in cache:
                    cache[path] = subprocess.run(["git", "-C", repo, "show", f"{TAG}:{path}"], capture_output=True,
                                                 text=True, check=True).stdout.splitlines()
                lines = cache[path]
                print(f"== {path}:{lo}-{hi} ({TAG})  [{f.name}]")
                for i in range(lo, hi + 1):
                    print(f"  {i:5d}  {lines[i - 1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
