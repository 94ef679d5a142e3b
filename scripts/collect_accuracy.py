"""Collect finished training runs into committed accuracy evidence.

    python scripts/collect_accuracy.py runs/seed-cnn runs/mlp2 runs/mlp1 --out benchmarks/accuracy

For each run directory it copies config.json, metrics.json, metrics_epoch.csv and the curve PNGs
into ``OUT/<run name>/`` and writes ``OUT/summary.md`` / ``OUT/summary.json``: the command that
reproduces the run, the seed, per-epoch test accuracy, wall time per epoch, and the machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xcnn.apps.report_md import NETWORKS  # noqa: E402
from xcnn.io import atomic_write_json, atomic_write_text  # noqa: E402
from xcnn.train import RunConfig  # noqa: E402

REPORT = {name: (info["report_acc"] / 100, info["report_epochs"]) for name, info in NETWORKS.items()}


def command(cfg: dict, run: Path) -> str:
    """The ``python -m xcnn.train`` line of a run's saved settings (on the device it resolved to)."""
    known = {k: v for k, v in cfg.items() if k in RunConfig.__dataclass_fields__}
    known.update(device=cfg.get("device_resolved", cfg["device"]), out=f"runs/{run.name}")
    return RunConfig(**known).command()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/accuracy"))
    a = ap.parse_args(argv)
    rows, lines = [], []
    for run in a.runs:
        m = json.loads((run / "metrics.json").read_text())
        cfg = json.loads((run / "config.json").read_text())
        if m["status"] != "completed":
            sys.exit(f"{run}: status {m['status']!r}, not completed")
        dest = a.out / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "metrics.json", "metrics_epoch.csv", "curves_epoch.png", "curves_iteration.png"):
            if (run / f).is_file():
                shutil.copyfile(run / f, dest / f)
        hist = m["history"]
        accs = [h["test_acc"] for h in hist]
        target, budget = REPORT.get(cfg["model"], (None, None)) if cfg.get("dataset") == "mnist" else (None, None)
        first98 = next((h["epoch"] for h in hist if h["test_acc"] >= 0.98), None)
        reached = next((h["epoch"] for h in hist if target and h["test_acc"] >= target), None)
        row = {"run": run.name, "model": cfg["model"], "dataset": cfg.get("dataset", "mnist"), "parameters": m["parameters"], "epochs": len(hist),
               "final_test_acc": accs[-1], "best_test_acc": max(accs),
               "best_epoch": hist[accs.index(max(accs))]["epoch"], "first_epoch_at_98": first98,
               "report_target": target, "report_epochs": budget, "epoch_reaching_target": reached,
               "seconds_per_epoch": m["mean_train_seconds_per_epoch"], "seed": cfg["seed"],
               "command": command(cfg, run), "machine": cfg.get("machine"), "device": m["device"],
               "test_acc_per_epoch": accs}
        rows.append(row)
    lines.append("# Accuracy evidence\n")
    lines.append("Full runs (60,000 train / 10,000 test images), float32. Made with the commands below; "
                 "collected by `python scripts/collect_accuracy.py " + " ".join(str(r) for r in a.runs)
                 + f" --out {a.out}`.\n")
    lines.append("| run | model (dataset) | params | report's target | reached at epoch | best test acc (epoch) | final test acc "
                 "| first epoch ≥ 98 % | s/epoch (train) |")
    lines.append("|---|---|---:|---|---:|---|---:|---:|---:|")
    for r in rows:
        tgt = f"{r['report_target']:.2%} in {r['report_epochs']} ep" if r["report_target"] else "—"
        lines.append(f"| {r['run']} | {r['model']} ({r['dataset']}) | {r['parameters']:,} | {tgt} | {r['epoch_reaching_target'] or ('not reached' if r['report_target'] else '—')} "
                     f"| {r['best_test_acc']:.2%} ({r['best_epoch']}) | {r['final_test_acc']:.2%} | "
                     f"{r['first_epoch_at_98'] or '—'} | {r['seconds_per_epoch']:.1f} |")
    lines.append("\n## Commands\n")
    for r in rows:
        lines.append(f"- `{r['run']}`: `{r['command']}` (seed {r['seed']}, device {r['device']})")
    mach = rows[0]["machine"] or {}
    lines.append(f"\nMachine: {mach.get('platform')}, {mach.get('cpu') or mach.get('processor')}, Python {mach.get('python')}, "
                 f"NumPy {mach.get('numpy')}, xcnn {mach.get('xcnn')}.\n")
    lines.append("## Test accuracy per epoch\n")
    width = max(r["epochs"] for r in rows)
    lines.append("| epoch | " + " | ".join(r["run"] for r in rows) + " |")
    lines.append("|---:|" + "---:|" * len(rows))
    for e in range(width):
        cells = [f"{r['test_acc_per_epoch'][e]:.2%}" if e < r["epochs"] else "" for r in rows]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    atomic_write_text(a.out / "summary.md", "\n".join(lines) + "\n")
    atomic_write_json(a.out / "summary.json", rows)
    print("\n".join(lines[:4 + len(rows)]))


if __name__ == "__main__":
    main()
