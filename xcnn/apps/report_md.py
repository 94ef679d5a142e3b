"""The report's table 3, its figures of feature maps and curves, and ``report.md`` embedding them."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["NETWORKS", "ReportError", "table_rows", "table_markdown", "table_csv", "map_figures", "copy_curves", "write_report_md"]

class ReportError(ConfigError):
    """A report that cannot be made as asked (a run in the way, a missing snapshot, ...)."""


#: the report's networks: what table 3 says about them, and its numbers (reference column)
NETWORKS = {
    "seed-cnn": {"structure": "conv 5×5 1→4 p2, ReLU, avgpool 2, conv 3×3 4→8 p1, ReLU, avgpool 2, fc 392→10",
                 "activation": "ReLU", "loss": "softmax cross-entropy", "report_acc": 98.54,
                 "report_seconds": "~180", "report_epochs": 30},
    "mlp2": {"structure": "784-400-200-10", "activation": "ReLU", "loss": "softmax cross-entropy",
             "report_acc": 98.33, "report_seconds": "~8", "report_epochs": 40},
    "mlp1": {"structure": "784-400-10", "activation": "ReLU", "loss": "softmax cross-entropy",
             "report_acc": 98.00, "report_seconds": "~8", "report_epochs": 40},
}
CNN = "seed-cnn"
DIGITS = (1, 2, 3, 4)  # the first test image of each of these classes
MAP_LAYERS = {"relu1": "first conv + ReLU (relu1)", "relu2": "second conv + ReLU (relu2)"}
TARGET = 0.98
QUICK = {"train_limit": 3000, "test_limit": 1000, "epochs_cnn": 3, "epochs_mlp": 3}
FULL_SNAPSHOTS = (0, 5, 25)
QUICK_SNAPSHOTS = (0, 1, 2)  # stand in for 0, 5, 25 in --quick runs


def epochs_to_reach(history: list[dict], target: float = TARGET):
    """The first epoch whose test accuracy is >= ``target``, or None."""
    for h in history:
        if h["test_acc"] >= target:
            return int(h["epoch"])
    return None


TABLE_COLUMNS = ["network", "structure", "activation", "loss", "parameters", "epochs", "test accuracy (final)",
                 "test accuracy (best)", "seconds per epoch", "device", "epochs to reach 98 %",
                 "report: test accuracy", "report: seconds per epoch"]


#: the CSV: plain numbers (accuracy in %, empty "epochs to reach 98 %" when never), report epochs apart
CSV_COLUMNS = TABLE_COLUMNS[:-1] + ["report: epochs", "report: seconds per epoch"]


def table_rows(metrics: dict[str, dict]) -> list[dict]:
    """One row per network from its ``metrics.json`` (numbers as the run recorded them)."""
    rows = []
    for name, m in metrics.items():
        info = NETWORKS[name]
        reach = epochs_to_reach(m["history"])
        rows.append({
            "network": name, "structure": info["structure"], "activation": info["activation"],
            "loss": info["loss"], "parameters": m["parameters"], "epochs": m["epochs_done"],
            "test accuracy (final)": round(100 * m["final_test_acc"], 2),
            "test accuracy (best)": round(100 * m["best_test_acc"], 2),
            "seconds per epoch": round(m["mean_train_seconds_per_epoch"], 2), "device": m["device"],
            "epochs to reach 98 %": reach if reach is not None else "",
            "report: test accuracy": info["report_acc"], "report: epochs": info["report_epochs"],
            "report: seconds per epoch": info["report_seconds"],
        })
    return rows


def _md_row(r: dict) -> dict:
    """A table row as the Markdown shows it (the CSV keeps plain numbers)."""
    return {**r, "parameters": f"{r['parameters']:,}",
            "test accuracy (final)": f"{r['test accuracy (final)']:.2f} %",
            "test accuracy (best)": f"{r['test accuracy (best)']:.2f} %",
            "seconds per epoch": f"{r['seconds per epoch']:.1f}",
            "epochs to reach 98 %": str(r["epochs to reach 98 %"]) if r["epochs to reach 98 %"] != "" else "—",
            "report: test accuracy": f"{r['report: test accuracy']:.2f} % ({r['report: epochs']} epochs)",
            "report: seconds per epoch": f"{r['report: seconds per epoch']} (NumPy + Cython)"}


def table_markdown(rows: list[dict]) -> str:
    def esc(v):
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("parameters", "epochs", "seconds per epoch") else "---"
                            for c in TABLE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(esc(_md_row(r)[c]) for c in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def map_figures(run_dir: Path, out: Path, snapshots, *, standins=None, dataset: str = "mnist",
                data_dir=None) -> list[dict]:
    """Feature maps of relu1 and relu2 for the first test 1, 2, 3, 4, one figure per (layer, snapshot),
    with the maps saved beside each PNG as ``.npz``. Returns ``[{"png", "layer", "epoch", ...}]``."""
    from .. import data  # noqa: PLC0415
    from ..io import atomic_save_npz  # noqa: PLC0415
    from ..nn.models import load_model  # noqa: PLC0415
    from ..viz.maps import feature_maps, first_of_classes, plot_feature_maps  # noqa: PLC0415

    ds = data.load(dataset, data_dir=data_dir)
    idx = first_of_classes(ds.test_labels, DIGITS)
    images, labels = ds.test_images[idx], ds.test_labels[idx]
    made = []
    for ep in snapshots:
        snap = run_dir / f"epoch_{ep:03d}.npz"
        if not snap.is_file():
            raise ReportError(f"{snap} is missing: the CNN run must keep snapshots after epochs "
                              f"{', '.join(map(str, snapshots))} (python -m xcnn.train --save-epochs ...)")
        net, _ = load_model(snap)
        for layer, what in MAP_LAYERS.items():
            r = feature_maps(net, data.normalize(images, net.dtype), layer)
            C, H, W = r["maps"].shape[1:]
            when = "before training (epoch 0)" if ep == 0 else f"after {ep} epoch{'s' if ep != 1 else ''}"
            if standins:
                when += f" (quick run; stands in for epoch {standins[ep]})"
            stem = f"maps_{layer}_epoch{ep:03d}"
            png = plot_feature_maps(images, r["maps"], labels=labels, pred=r["pred"], prob=r["prob"], indices=idx,
                                    title=f"{CNN}: after the {what}, {C} maps {H}×{W}\n{when}",
                                    path=out / f"{stem}.png", classes=list(ds.classes))
            atomic_save_npz(out / f"{stem}.npz", {"maps": r["maps"], "indices": np.asarray(idx),
                                                  "labels": labels, "pred": r["pred"], "prob": r["prob"],
                                                  "epoch": np.asarray(ep), "layer": np.asarray(layer)})
            made.append({"png": png, "layer": layer, "epoch": ep, "what": what, "shape": (C, H, W),
                         "pred": r["pred"], "prob": r["prob"], "labels": labels})
    return made


def copy_curves(run_dir: Path, name: str, out: Path) -> list[Path]:
    from ..io import atomic_write_bytes  # noqa: PLC0415
    from ..viz.curves import training_curves  # noqa: PLC0415

    srcs = [run_dir / "curves_iteration.png", run_dir / "curves_epoch.png"]
    if not all(s.is_file() for s in srcs):
        training_curves(run_dir, title=f"{name} on mnist")
    written = []
    for s in srcs:
        dst = out / f"curves_{name}_{s.stem.split('_')[1]}.png"
        written.append(atomic_write_bytes(dst, s.read_bytes()))
    return written


def write_report_md(out: Path, *, quick: bool, command: str, cfgs: dict, how: dict, metrics: dict, table: str,
                    maps: list[dict], snapshots, kernels_png: Path, elapsed: float) -> Path:
    from .. import machine  # noqa: PLC0415
    from ..io import atomic_write_text  # noqa: PLC0415

    devices = sorted({m["device"] for m in metrics.values()})
    mach = machine.describe(devices[0] if devices else "cpu")
    L = []
    L.append("# xcnn reproduction of the lab report: seed CNN vs. two MLPs on MNIST\n")
    if quick:
        L.append(f"> **Quick run** (`--quick`): every network trained on only the first {QUICK['train_limit']:,} "
                 f"training images for {cfgs[CNN].epochs} epochs and tested on the first "
                 f"{QUICK['test_limit']:,} test images. The snapshots after epochs "
                 f"{', '.join(map(str, QUICK_SNAPSHOTS))} stand in for the report's epochs 0, 5 and 25. "
                 "The numbers below are a smoke test, not the report's results.\n")
    L.append("## Setup\n")
    L.append(f"- machine: {mach['cpu']}, {mach['cores']} cores; {mach['platform']}")
    L.append(f"- device used for training: {', '.join(devices)}" + (f" ({mach['gpu']})" if "gpu" in mach else ""))
    L.append(f"- versions: Python {mach['python']}, NumPy {mach['numpy']}, xcnn {mach['xcnn']}"
             + (f", CuPy {mach['cupy']}" if "cupy" in mach else ""))
    c = cfgs[CNN]
    L.append(f"- training: SGD lr {c.lr}, momentum {c.momentum}, weight decay {c.weight_decay}, batch {c.batch_size}, "
             f"seed {c.seed}, {c.dtype}; inputs scaled to [-0.5, 0.5]; report initialisation "
             "(conv N(0, 1), linear N(0, 0.1²), biases 0)")
    L.append("- runs: " + "; ".join(f"{n} {how[n]} (`{cfgs[n].out}`)" for n in cfgs))
    trained = set()
    for n in cfgs:
        try:
            m = json.loads((Path(cfgs[n].out) / "config.json").read_text()).get("machine", {})
            trained.add(f"Python {m.get('python')}, NumPy {m.get('numpy')}, xcnn {m.get('xcnn')}")
        except (OSError, ValueError):
            pass
    if trained:
        L.append(f"- the runs were trained with: {'; '.join(sorted(trained))}")
    trained_here = [n for n in cfgs if how[n] != "reused"]
    L.append(f"- making this report took {elapsed:.0f} s"
             + (f" (including training {', '.join(trained_here)})\n" if trained_here else " (runs reused, no training)\n"))
    L.append("Commands:\n")
    L.append("```sh")
    L.append(command)
    L.append("# which trains (or, with --reuse, reuses) runs equivalent to:")
    L += [cfgs[n].command() for n in cfgs]
    L.append("```\n")
    L.append("## Table 3: the three networks\n")
    L.append("Accuracy is on the test set after the last epoch (final) and the best epoch; seconds per epoch is the "
             "mean training time of an epoch on the device used (evaluation excluded). The report's column is its "
             "NumPy + Cython implementation.\n")
    L.append(table)
    if not quick:
        cmp = [f"{n} {100 * m['final_test_acc']:.2f} % vs. {NETWORKS[n]['report_acc']:.2f} % "
               f"({100 * m['final_test_acc'] - NETWORKS[n]['report_acc']:+.2f} points)" for n, m in metrics.items()]
        L.append("Final test accuracy here vs. the report: " + "; ".join(cmp) + ". The gap between final and best "
                 "accuracy is the epoch-to-epoch noise of SGD at lr 0.1 without a learning-rate schedule."
                 + (" Why the MLPs land below the report, and the settings that close the gap: "
                    "[../accuracy/README.md](../accuracy/README.md)."
                    if (out.parent / "accuracy" / "README.md").is_file() else "") + "\n")
    if not quick and any(m["device"] == "cpu" for m in metrics.values()):
        L.append("CPU timings depend on what else the machine ran: the runs may have shared its cores.\n")
    L.append("## Training curves\n")
    L.append("![comparison](curves_comparison.png)\n")
    L.append("*Figure 6: the three networks together — training loss per 10-iteration window and per epoch, test "
             "loss and test accuracy per epoch (dashed: 98 %).*\n")
    for i, n in enumerate(cfgs, start=3):
        L.append(f"![{n} per iteration](curves_{n}_iteration.png)\n")
        L.append(f"![{n} per epoch](curves_{n}_epoch.png)\n")
        L.append(f"*Figure {i}: {n} ({NETWORKS[n]['structure']}) — training loss and accuracy per iteration "
                 "window (first image) and train/test loss and accuracy per epoch (second).*\n")
    L.append("## Feature maps of the CNN\n")
    L.append(f"The first test image of each of the classes {', '.join(map(str, DIGITS))} (test indices "
             f"{', '.join(str(int(i)) for i in np.load(maps[0]['png'].with_suffix('.npz'))['indices'])}), "
             "passed through the CNN's snapshot after each epoch shown. Each row is one digit: the input, then its "
             "maps on one colour scale shared along the row (colorbar at the right); the row title gives the "
             "network's prediction and its softmax probability (red when wrong). The arrays drawn are saved "
             "beside each figure as `.npz`. The frame along the edges of many maps is the zero padding: the "
             "images' background is −0.5 after normalisation, so the padded zeros look like faint ink to the "
             "kernels.\n")
    for m in maps:
        ok = int((m["pred"] == m["labels"]).sum())
        L.append(f"![{m['layer']} after {m['epoch']} epochs]({m['png'].name})\n")
        L.append(f"*After the {m['what']} at epoch {m['epoch']}: {m['shape'][0]} maps "
                 f"{m['shape'][1]}×{m['shape'][2]}; {ok} of {len(m['pred'])} digits classified correctly.*\n")
    L.append("## First-layer kernels\n")
    L.append(f"![kernels]({kernels_png.name})\n")
    L.append(f"*The 4 conv1 kernels (5×5) before training and after epoch {cfgs[CNN].epochs}, on one diverging "
             "colour scale (red positive, blue negative); weight decay shrinks the N(0, 1) start.*\n")
    return atomic_write_text(out / "report.md", "\n".join(L))
