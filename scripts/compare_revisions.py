#!/usr/bin/env python
"""Speed of two revisions of xcnn side by side: the same training steps, timed in alternating fresh
processes (A B, B A, A B, ...), so a noisy shared machine slows both alike; the figure is the median
of the per-pair ratios B / A. A benchmark, not a test.

    python scripts/compare_revisions.py 5c5c112 HEAD                 # 12 pairs, 1 thread
    python scripts/compare_revisions.py 5c5c112 HEAD --threads 2 --pairs 12

Each revision is checked out with ``git worktree add --detach`` into a temporary folder and imported
from there (PYTHONPATH); the workload imports either layout (``xcnn.nn`` or the older flat modules).
Writes ``benchmarks/revisions/<A>-vs-<B>-t<threads>.{json,md}`` (``-malloc`` added to the name when
glibc's ``MALLOC_*`` tunables are set in the environment: they reach both revisions' processes alike).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (model, batch, timed steps): the benchmark's configurations, sized to ~0.2 s each on one core
CASES = [("seed-cnn", 50, 120), ("seed-cnn", 256, 24), ("seed-cnn", 1024, 6),
         ("mlp2", 50, 120), ("mlp2", 256, 30), ("mlp2", 1024, 8),
         ("mlp1", 50, 120), ("mlp1", 256, 30), ("mlp1", 1024, 8)]

WORKLOAD = r"""
import json, sys, time
import numpy as np
try:
    from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model
except ImportError:  # the layout before the re-cut
    from xcnn.models import build_model
    from xcnn.optim import SGD
    from xcnn.losses import SoftmaxCrossEntropy
out = {}
for model, batch, steps in json.loads(sys.argv[1]):
    rng = np.random.default_rng(0)
    net = build_model(model, seed=0, device="cpu")
    opt = SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    loss = SoftmaxCrossEntropy()
    data = [(rng.random((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64))
            for _ in range(4)]
    for i in range(3):
        x, y = data[i % 4]; loss.forward(net.forward(x), y); net.backward(loss.backward()); opt.step()
    t0 = time.perf_counter()
    for i in range(steps):
        x, y = data[i % 4]; loss.forward(net.forward(x), y); net.backward(loss.backward()); opt.step()
    out[f"{model}@{batch}"] = (time.perf_counter() - t0) / steps * 1e3
print(json.dumps(out))
"""


def _checkout(rev: str, where: Path) -> tuple[Path, str]:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    path = where / sha
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(path), sha], cwd=ROOT, check=True)
    return path, sha


def _run(path: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), XCNN_NUM_THREADS=str(threads))
    p = subprocess.run([sys.executable, "-c", WORKLOAD, json.dumps(CASES)], env=env, cwd=tempfile.gettempdir(),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"error: the workload failed under {path}: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the baseline revision (a commit, tag or branch)")
    ap.add_argument("b", help="the revision compared with it")
    ap.add_argument("--pairs", type=int, default=12, help="alternating runs of each revision")
    ap.add_argument("--threads", type=int, default=1, help="OpenBLAS and xcnn threads")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "revisions"))
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.threads < 1:
        ap.error("--pairs and --threads must be at least 1")
    with tempfile.TemporaryDirectory(prefix="xcnn-revs-") as tmp:
        (pa, sa), (pb, sb) = _checkout(args.a, Path(tmp)), _checkout(args.b, Path(tmp))
        try:
            runs = {sa: [], sb: []}
            for i in range(args.pairs):
                order = (sa, sb) if i % 2 == 0 else (sb, sa)
                for sha in order:
                    runs[sha].append(_run(pa if sha == sa else pb, args.threads))
                print(f"pair {i + 1}/{args.pairs} done", file=sys.stderr)
        finally:
            for p in (pa, pb):
                subprocess.run(["git", "worktree", "remove", "--force", str(p)], cwd=ROOT, check=False)
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    rows = {}
    for key in runs[sa][0]:
        a = [r[key] for r in runs[sa]]
        b = [r[key] for r in runs[sb]]
        ratios = [y / x for x, y in zip(a, b)]
        rows[key] = {"a_ms_median": statistics.median(a), "b_ms_median": statistics.median(b),
                     "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
    res = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": "python scripts/compare_revisions.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "a": sa, "b": sb, "threads": args.threads, "pairs": args.pairs, "loadavg": os.getloadavg(),
           "cores": os.cpu_count(), "malloc_env": malloc, "rows": rows, "raw": runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{sa}-vs-{sb}-t{args.threads}{'-malloc' if malloc else ''}"
    lines = [f"# {sb} against {sa}: one training step, {args.threads} thread(s)", "",
             f"`{res['command']}` on {res['cores']} cores, {res['date']}, load average after "
             f"{', '.join(f'{v:.2f}' for v in res['loadavg'])}. {args.pairs} pairs of fresh processes, "
             "alternating order; ratio = median over the pairs of B / A (below 1: B is faster)."
             + (f" glibc malloc tunables: {', '.join(f'{k}={v}' for k, v in malloc.items())}." if malloc else ""), "",
             f"| model@batch | {sa} ms/step | {sb} ms/step | {sb} / {sa}, median (range over pairs) |",
             "|---|---:|---:|---:|"]
    for key, r in rows.items():
        lines.append(f"| {key} | {r['a_ms_median']:.2f} | {r['b_ms_median']:.2f} | "
                     f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) |")
    for suffix, text in ((".json", json.dumps(res, indent=1)), (".md", "\n".join(lines) + "\n")):
        tmp_path = stem.with_suffix(suffix + ".tmp")
        tmp_path.write_text(text)
        os.replace(tmp_path, stem.with_suffix(suffix))
    print("\n".join(lines[4:]))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
