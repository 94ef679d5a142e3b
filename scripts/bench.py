#!/usr/bin/env python
"""Training speed of xcnn vs PyTorch: a thin wrapper around ``python -m xcnn.bench`` (same flags).

    python scripts/bench.py --device cpu --threads 2 --malloc-variant   # -> benchmarks/bench-cpu.{json,md}
    python scripts/bench.py --quick --out /tmp/b                         # a tiny run
    python scripts/bench.py --profile --models seed-cnn --batches 50     # where the time goes

PyTorch is optional (``pip install torch==2.13.0``); without it only xcnn is timed.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # works without the editable install

from xcnn.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
