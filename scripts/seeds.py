"""The accuracy claims on three seeds: train each documented configuration with seeds 0, 1 and 2
through ``python -m xcnn.train`` and write the mean and standard deviation of the final-epoch and
the best test accuracy.

    python scripts/seeds.py                              # all configurations, seeds 0 1 2 (~30 min, 2 CPU cores)
    python scripts/seeds.py --only seed-cnn --seeds 0    # a part of it

Runs go to ``RUNS/<config>-s<seed>/`` (default ``runs/seeds``). An interrupted invocation picks up
where it stopped: finished runs are kept, a run with a checkpoint resumes. The summary goes to
``OUT/seeds.md`` and ``OUT/seeds.json`` (default ``benchmarks/accuracy``), with each run's
``config.json``, ``metrics.json`` and ``metrics_epoch.csv`` copied to ``OUT/seeds/<run>/``. The
standard deviation is the sample one (n - 1). Seeds are not chosen: every seed asked for is reported.
Runs use one CPU thread (``XCNN_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``): the compiled convolution
sums its weight gradient per thread, so the thread count decides the last bits of a CNN run, and one
thread makes every figure here reproducible bit for bit on any machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xcnn.io import atomic_write_json, atomic_write_text  # noqa: E402

#: name -> (flags, the report's accuracy for that network, what the flags are)
CONFIGS = {
    "seed-cnn": (["--model", "seed-cnn", "--epochs", "30"], 0.9854, "the report's settings"),
    "seed-cnn-wd1e-4": (["--model", "seed-cnn", "--epochs", "30", "--weight-decay", "1e-4"], 0.9854,
                        "weight decay 1e-4"),
    "mlp2": (["--model", "mlp2", "--epochs", "40"], 0.9833, "the report's settings"),
    "mlp2-wd1e-4": (["--model", "mlp2", "--epochs", "40", "--weight-decay", "1e-4"], 0.9833, "weight decay 1e-4"),
    "mlp1": (["--model", "mlp1", "--epochs", "40"], 0.9800, "the report's settings"),
    "mlp1-wd1e-4": (["--model", "mlp1", "--epochs", "40", "--weight-decay", "1e-4"], 0.9800, "weight decay 1e-4"),
}
COPIED = ("config.json", "metrics.json", "metrics_epoch.csv")


def _metrics(run: Path) -> dict | None:
    try:
        return json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def train(name: str, seed: int, runs: Path, device: str, data_dir: str | None, log) -> Path:
    """One run, resumed when it has a checkpoint, skipped when it completed."""
    flags, _, _ = CONFIGS[name]
    out = runs / f"{name}-s{seed}"
    m = _metrics(out)
    if m and m.get("status") == "completed":
        log(f"{out}: completed earlier, kept")
        return out
    cmd = [sys.executable, "-m", "xcnn.train", *flags, "--seed", str(seed), "--device", device, "--out", str(out),
           "--log-every", "1000000"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if (out / "checkpoint.npz").exists():
        cmd += ["--resume"]
    log(" ".join(cmd))
    t0 = time.perf_counter()
    env = dict(os.environ, XCNN_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    log(f"{out}: {time.perf_counter() - t0:.0f} s")
    return out


def _stats(values):
    mean = statistics.fmean(values)
    return {"mean": mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def summarize(runs: Path, names, seeds) -> list[dict]:
    rows = []
    for name in names:
        flags, report_acc, what = CONFIGS[name]
        per_seed = {}
        for seed in seeds:
            m = _metrics(runs / f"{name}-s{seed}")
            if m and m.get("status") == "completed":
                per_seed[seed] = m
        if not per_seed:
            continue
        final = [per_seed[s]["final_test_acc"] for s in sorted(per_seed)]
        best = [per_seed[s]["best_test_acc"] for s in sorted(per_seed)]
        first = []
        for s in sorted(per_seed):
            hit = [h["epoch"] for h in per_seed[s]["history"] if h["test_acc"] >= report_acc]
            first.append(hit[0] if hit else None)
        rows.append({"config": name, "settings": what, "command": "python -m xcnn.train " + " ".join(flags)
                     + " --seed S", "seeds": sorted(per_seed), "report_acc": report_acc, "final": _stats(final),
                     "best": _stats(best), "first_epoch_at_report_acc": first,
                     "final_at_least_report": [a >= report_acc for a in final],
                     "train_seconds_per_epoch": statistics.fmean(
                         per_seed[s]["mean_train_seconds_per_epoch"] for s in per_seed)})
    return rows


def _pct(st):
    return f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f} %"


def markdown(rows, machine) -> str:
    L = ["# Accuracy on three seeds", "",
         "Every configuration trained with seeds 0, 1 and 2 (`python scripts/seeds.py`; full MNIST, float32, "
         f"CPU: {machine}, one thread: `XCNN_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`, so every figure is reproducible "
         "bit for bit). Mean ± sample standard deviation over the seeds; the per-seed figures follow.", "",
         "| configuration | settings | seeds | final-epoch test accuracy | best-epoch test accuracy | the report |",
         "|---|---|---|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['config']} | {r['settings']} | {', '.join(map(str, r['seeds']))} | {_pct(r['final'])} | "
                 f"{_pct(r['best'])} | {100 * r['report_acc']:.2f} % |")
    L += ["", "| configuration | seed | final | best | first epoch at the report's accuracy |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        for s, f, b, e in zip(r["seeds"], r["final"]["values"], r["best"]["values"], r["first_epoch_at_report_acc"]):
            L.append(f"| {r['config']} | {s} | {100 * f:.2f} % | {100 * b:.2f} % | {e if e is not None else 'never'} |")
    L += ["", "Commands (S = 0, 1, 2; each run's own settings and machine are in `seeds/<run>/config.json`):", "",
          "```bash"] + [f"XCNN_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 {r['command']}" for r in rows] + ["```", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--runs", type=Path, default=Path("runs/seeds"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/accuracy"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=os.environ.get("XCNN_DATA"))
    ap.add_argument("--collect-only", action="store_true", help="only summarize finished runs")
    a = ap.parse_args(argv)
    runs = a.runs.resolve()

    def log(msg):
        print(f"seeds: {msg}", file=sys.stderr, flush=True)

    if not a.collect_only:
        for name in a.only:
            for seed in a.seeds:
                train(name, seed, runs, a.device, a.data_dir, log)
    rows = summarize(runs, a.only, a.seeds)
    from xcnn import machine  # noqa: PLC0415

    info = machine.describe()
    mach = f"{info['cpu']}, {info['cores']} cores, {info['cpu_kernels']}"
    for r in rows:
        for seed in r["seeds"]:
            src, dst = runs / f"{r['config']}-s{seed}", a.out / "seeds" / f"{r['config']}-s{seed}"
            dst.mkdir(parents=True, exist_ok=True)
            for f in COPIED:
                if (src / f).exists():
                    shutil.copyfile(src / f, dst / f)
    atomic_write_json(a.out / "seeds.json", {"machine": info, "rows": rows})
    atomic_write_text(a.out / "seeds.md", markdown(rows, mach))
    print(markdown(rows, mach))
    return 0


if __name__ == "__main__":
    sys.exit(main())
