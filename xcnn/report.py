"""``python -m xcnn.report``: the lab report's experiment, end to end.

Trains (or, with ``--reuse``, picks up) the report's CNN (seed-cnn, 30 epochs) and its two MLPs
(mlp2 784-400-200-10 and mlp1 784-400-10, 40 epochs) with the report's SGD settings, then writes
into ``--out``: the comparison table (table 3) as Markdown and CSV, the combined training curves
(figure 6), each network's curves (figures 3-5), feature maps after the first and second
conv + ReLU for a 1, 2, 3 and 4 after 0, 5 and 25 epochs (figures 7-22), the first-layer kernels,
and ``report.md`` embedding them. ``--quick`` does the same from short runs on a subset (CI).
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)

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


class ReportError(RuntimeError):
    """A report that cannot be made as asked (a run in the way, a missing snapshot, ...)."""


# --------------------------------------------------------------------------- #
# Runs: train, resume or reuse
# --------------------------------------------------------------------------- #

def _match_keys():
    from .trainer import RunConfig  # noqa: PLC0415

    return ("epochs",) + RunConfig.RESUME_KEYS


def config_diff(saved: dict, cfg) -> dict:
    """``{key: (saved, wanted)}`` for the settings that make two runs different experiments."""
    return {k: (saved.get(k), getattr(cfg, k)) for k in _match_keys() if saved.get(k) != getattr(cfg, k)}


def _seems_alive(run_dir: Path, metrics: dict) -> bool:
    """A run whose metrics say "running" and were written recently is taken to be training now in
    another process (a killed run also says "running", but goes stale)."""
    hist = metrics.get("history") or []
    epoch_s = max((h.get("train_seconds", 0) + h.get("eval_seconds", 0) for h in hist), default=0.0)
    age = time.time() - (run_dir / "metrics.json").stat().st_mtime
    return age < max(120.0, 3 * epoch_s)


def obtain_run(cfg, *, reuse: bool, log=print) -> tuple[dict, str]:
    """Train ``cfg`` in ``cfg.out``, or with ``reuse`` pick up a finished run with the same settings
    (resume an unfinished one). Returns ``(metrics.json contents, "trained"|"reused"|"resumed")``."""
    from .trainer import fit  # noqa: PLC0415

    out = Path(cfg.out)
    has_run = (out / "checkpoint.npz").exists() or (out / "metrics.json").exists()
    how = "trained"
    resume = False
    if has_run:
        if not reuse:
            raise ReportError(f"{out} already holds a run: pass --reuse to use it (if its settings match), "
                              "or choose another --runs directory")
        try:
            saved = json.loads((out / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ReportError(f"{out}: config.json is missing or unreadable ({exc}); "
                              "remove the run or choose another --runs directory") from None
        diff = config_diff(saved, cfg)
        if diff:
            raise ReportError(f"{out} holds a run with other settings (" + ", ".join(
                f"{k} {a!r} there, {b!r} wanted" for k, (a, b) in diff.items())
                + "); choose another --runs directory or remove that run")
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
        if metrics.get("status") == "completed":
            log(f"{cfg.model}: reusing the finished run in {out}")
            return metrics, "reused"
        if metrics.get("status") == "running" and _seems_alive(out, metrics):
            raise ReportError(f"{out}: the run seems to be training right now (metrics.json says 'running' and "
                              "was written moments ago); wait for it to finish, then run the report again")
        if metrics.get("status") == "diverged":
            raise ReportError(f"{out}: that run diverged; remove it or choose another --runs directory")
        log(f"{cfg.model}: resuming the unfinished run in {out}")
        how, resume = "resumed", True
    else:
        log(f"{cfg.model}: training {cfg.epochs} epochs into {out}")
    res = fit(cfg, resume=resume, log=log)
    if res.status != "completed":
        raise ReportError(f"{cfg.model}: training {res.status} ({res.message}); the report needs finished runs")
    return json.loads((out / "metrics.json").read_text()), how


# --------------------------------------------------------------------------- #
# Table
# --------------------------------------------------------------------------- #

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


# --------------------------------------------------------------------------- #
# Figures
# --------------------------------------------------------------------------- #

def map_figures(run_dir: Path, out: Path, snapshots, *, standins=None, dataset: str = "mnist",
                data_dir=None) -> list[dict]:
    """Feature maps of relu1 and relu2 for the first test 1, 2, 3, 4, one figure per (layer, snapshot),
    with the maps saved beside each PNG as ``.npz``. Returns ``[{"png", "layer", "epoch", ...}]``."""
    from . import data  # noqa: PLC0415
    from .figures import feature_maps, first_of_classes, plot_feature_maps  # noqa: PLC0415
    from .models import load_model  # noqa: PLC0415
    from .io import atomic_save_npz  # noqa: PLC0415

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
            r = feature_maps(net, images, layer)
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


def _copy_curves(run_dir: Path, name: str, out: Path) -> list[Path]:
    from .io import atomic_write_bytes  # noqa: PLC0415
    from .plots import training_curves  # noqa: PLC0415

    srcs = [run_dir / "curves_iteration.png", run_dir / "curves_epoch.png"]
    if not all(s.is_file() for s in srcs):
        training_curves(run_dir, title=f"{name} on mnist")
    written = []
    for s in srcs:
        dst = out / f"curves_{name}_{s.stem.split('_')[1]}.png"
        written.append(atomic_write_bytes(dst, s.read_bytes()))
    return written


# --------------------------------------------------------------------------- #
# The machine and report.md
# --------------------------------------------------------------------------- #

def machine_info(device: str) -> dict:
    from . import __version__  # noqa: PLC0415

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "xcnn": __version__, "device": device}
    if device.startswith("cuda"):
        try:
            from .backend import cupy_or_none  # noqa: PLC0415

            cp = cupy_or_none()
            props = cp.cuda.runtime.getDeviceProperties(int(device.split(":")[1]) if ":" in device else 0)
            info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            info["cupy"] = cp.__version__
        except Exception:  # naming the GPU is a nicety
            pass
    return info


def _train_command(cfg) -> str:
    parts = ["python -m xcnn.train", f"--model {cfg.model}", f"--epochs {cfg.epochs}", f"--lr {cfg.lr}",
             f"--momentum {cfg.momentum}", f"--weight-decay {cfg.weight_decay}", f"--batch-size {cfg.batch_size}",
             f"--seed {cfg.seed}", f"--device {cfg.device}", f"--out {cfg.out}"]
    if cfg.save_epochs:
        parts.append("--save-epochs " + ",".join(map(str, cfg.save_epochs)))
    if cfg.train_limit:
        parts.append(f"--train-limit {cfg.train_limit}")
    if cfg.test_limit:
        parts.append(f"--test-limit {cfg.test_limit}")
    return " ".join(parts)


def write_report_md(out: Path, *, quick: bool, command: str, cfgs: dict, how: dict, metrics: dict, table: str,
                    maps: list[dict], snapshots, kernels_png: Path, elapsed: float) -> Path:
    from .io import atomic_write_text  # noqa: PLC0415

    devices = sorted({m["device"] for m in metrics.values()})
    mach = machine_info(devices[0] if devices else "cpu")
    L = []
    L.append("# xcnn reproduction of the lab report: seed CNN vs. two MLPs on MNIST\n")
    if quick:
        L.append(f"> **Quick run** (`--quick`): every network trained on only the first {QUICK['train_limit']:,} "
                 f"training images for {cfgs[CNN].epochs} epochs and tested on the first "
                 f"{QUICK['test_limit']:,} test images. The snapshots after epochs "
                 f"{', '.join(map(str, QUICK_SNAPSHOTS))} stand in for the report's epochs 0, 5 and 25. "
                 "The numbers below are a smoke test, not the report's results.\n")
    L.append("## Setup\n")
    L.append(f"- machine: {mach['cpu']}, {mach['cores']} cores; {mach['os']}")
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
    L += [_train_command(cfgs[n]) for n in cfgs]
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


# --------------------------------------------------------------------------- #
# The whole report
# --------------------------------------------------------------------------- #

def make_report(*, device: str = "auto", out="report", runs="runs/report", epochs_cnn: int | None = None,
                epochs_mlp: int | None = None, quick: bool = False, reuse: bool = False, data_dir=None,
                command: str = "python -m xcnn.report", log=print) -> Path:
    """Train or reuse the three runs and write every report file into ``out``; returns report.md's path."""
    from .figures import plot_comparison, plot_kernels  # noqa: PLC0415
    from .io import atomic_write_text  # noqa: PLC0415
    from .models import load_model  # noqa: PLC0415
    from .trainer import RunConfig  # noqa: PLC0415

    t0 = time.perf_counter()
    out, runs = Path(out), Path(runs)
    ecnn = epochs_cnn if epochs_cnn is not None else (QUICK["epochs_cnn"] if quick else 30)
    emlp = epochs_mlp if epochs_mlp is not None else (QUICK["epochs_mlp"] if quick else 40)
    snapshots = QUICK_SNAPSHOTS if quick else FULL_SNAPSHOTS
    if max(snapshots) > ecnn:
        raise ReportError(f"--epochs-cnn {ecnn} is too few: the feature maps need the snapshot after epoch "
                          f"{max(snapshots)}")
    suffix = "-quick" if quick else ""
    cfgs = {}
    for name in NETWORKS:
        cfgs[name] = RunConfig(model=name, epochs=ecnn if name == CNN else emlp, device=device,
                               out=str(runs / f"{name}{suffix}"), save_epochs=list(snapshots), data_dir=data_dir,
                               train_limit=QUICK["train_limit"] if quick else None,
                               test_limit=QUICK["test_limit"] if quick else None)
    metrics, how = {}, {}
    for name, cfg in cfgs.items():
        metrics[name], how[name] = obtain_run(cfg, reuse=reuse, log=log)

    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(metrics)
    table = table_markdown(rows)
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / "table.csv", table_csv(rows))

    title = "seed CNN vs. MLPs on MNIST" + (" (quick run: subset, few epochs)" if quick else "")
    plot_comparison({n: cfgs[n].out for n in cfgs}, out / "curves_comparison.png", title=title, target=TARGET)
    for n in cfgs:
        _copy_curves(Path(cfgs[n].out), n, out)

    cnn_dir = Path(cfgs[CNN].out)
    standins = dict(zip(QUICK_SNAPSHOTS, FULL_SNAPSHOTS)) if quick else None
    maps = map_figures(cnn_dir, out, snapshots, standins=standins, data_dir=data_dir)
    first, _ = load_model(cnn_dir / f"epoch_{snapshots[0]:03d}.npz")
    last, _ = load_model(cnn_dir / "checkpoint.npz")
    kernels_png = plot_kernels({f"epoch {snapshots[0]}": first.layers[0].weight.data,
                                f"epoch {cfgs[CNN].epochs}": last.layers[0].weight.data},
                               out / "kernels_conv1.png",
                               title=f"{CNN}: conv1 kernels (5×5) before and after training")
    report = write_report_md(out, quick=quick, command=command, cfgs=cfgs, how=how, metrics=metrics, table=table,
                             maps=maps, snapshots=snapshots, kernels_png=kernels_png,
                             elapsed=time.perf_counter() - t0)
    log(f"report written to {report} ({time.perf_counter() - t0:.0f} s)")
    return report


@app.command()
def main(
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto (CUDA when usable)"),
    out: Path = typer.Option(Path("report"), help="directory for the report's files"),
    runs: Path = typer.Option(Path("runs/report"), help="directory holding the report's training runs (<runs>/<model>); kept apart from python -m xcnn.train's default runs/<model>"),
    epochs_cnn: Optional[int] = typer.Option(None, help="epochs for the CNN (default 30; 3 with --quick)"),
    epochs_mlp: Optional[int] = typer.Option(None, help="epochs for the MLPs (default 40; 3 with --quick)"),
    quick: bool = typer.Option(False, "--quick", help="short runs on a subset (runs named <model>-quick); for CI"),
    reuse: bool = typer.Option(False, "--reuse", help="use finished runs with matching settings; resume "
                                                       "unfinished ones"),
    data_dir: Optional[str] = typer.Option(None, help="dataset directory"),
):
    """Make the report: table 3, training curves, feature maps, kernels and report.md."""
    from .backend import DeviceError  # noqa: PLC0415
    from .data import DataError  # noqa: PLC0415
    from .network import CheckpointError  # noqa: PLC0415
    from .trainer import TrainingError  # noqa: PLC0415

    # the command as an equivalent, explicit line (not sys.argv: also right when called in-process)
    parts = ["python -m xcnn.report", f"--device {device}", f"--out {shlex.quote(str(out))}",
             f"--runs {shlex.quote(str(runs))}"]
    parts += [f"--epochs-cnn {epochs_cnn}"] if epochs_cnn is not None else []
    parts += [f"--epochs-mlp {epochs_mlp}"] if epochs_mlp is not None else []
    parts += ["--quick"] if quick else []
    parts += ["--reuse"] if reuse else []
    parts += [f"--data-dir {shlex.quote(data_dir)}"] if data_dir else []
    command = " ".join(parts)
    try:
        make_report(device=device, out=out, runs=runs, epochs_cnn=epochs_cnn, epochs_mlp=epochs_mlp, quick=quick,
                    reuse=reuse, data_dir=data_dir, command=command,
                    log=lambda msg: typer.echo(msg, err=True))
    except (ReportError, TrainingError, DeviceError, DataError, CheckpointError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


if __name__ == "__main__":
    app(prog_name="python -m xcnn.report")
