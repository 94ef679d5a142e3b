"""``python -m xcnn.report``: the lab report's experiment, end to end.

Trains (or, with ``--reuse``, picks up) the report's CNN (seed-cnn, 30 epochs) and its two MLPs
(mlp2 784-400-200-10 and mlp1 784-400-10, 40 epochs) with the report's SGD settings, then writes
into ``--out``: the comparison table (table 3) as Markdown and CSV, the combined training curves
(figure 6), each network's curves (figures 3-5), feature maps after the first and second
conv + ReLU for a 1, 2, 3 and 4 after 0, 5 and 25 epochs (figures 7-22), the first-layer kernels,
and ``report.md`` embedding them (:mod:`.report_md`). ``--quick`` does the same from short runs
on a subset (CI).
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Optional

import typer

from ..data.cli import DATA_DIR_HELP

from .report_md import (CNN, FULL_SNAPSHOTS, NETWORKS, QUICK, QUICK_SNAPSHOTS, TARGET, ReportError, copy_curves,
                        map_figures, table_csv, table_markdown, table_rows, write_report_md)

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def _match_keys():
    from ..train.config import RunConfig  # noqa: PLC0415

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
    from ..train.loop import fit  # noqa: PLC0415

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


def make_report(*, device: str = "auto", out="report", runs="runs/report", epochs_cnn: int | None = None,
                epochs_mlp: int | None = None, quick: bool = False, reuse: bool = False, data_dir=None,
                command: str = "python -m xcnn.report", log=print) -> Path:
    """Train or reuse the three runs and write every report file into ``out``; returns report.md's path."""
    from ..io import atomic_write_text  # noqa: PLC0415
    from ..nn.models import load_model  # noqa: PLC0415
    from ..train.config import RunConfig  # noqa: PLC0415
    from ..viz.curves import plot_comparison  # noqa: PLC0415
    from ..viz.maps import plot_kernels  # noqa: PLC0415

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
        copy_curves(Path(cfgs[n].out), n, out)

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
    quick: bool = typer.Option(False, "--quick/--no-quick", help="short runs on a subset (runs named <model>-quick); for CI"),
    reuse: bool = typer.Option(False, "--reuse/--no-reuse", help="use finished runs with matching settings; resume "
                                                       "unfinished ones"),
    data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP),
):
    """Make the report: table 3, training curves, feature maps, kernels and report.md."""
    from ..errors import exit_on_error  # noqa: PLC0415

    # the command as an equivalent, explicit line (not sys.argv: also right when called in-process)
    parts = ["python -m xcnn.report", f"--device {device}", f"--out {shlex.quote(str(out))}",
             f"--runs {shlex.quote(str(runs))}"]
    parts += [f"--epochs-cnn {epochs_cnn}"] if epochs_cnn is not None else []
    parts += [f"--epochs-mlp {epochs_mlp}"] if epochs_mlp is not None else []
    parts += ["--quick"] if quick else []
    parts += ["--reuse"] if reuse else []
    parts += [f"--data-dir {shlex.quote(data_dir)}"] if data_dir else []
    command = " ".join(parts)
    from ..io import check_output_dir  # noqa: PLC0415

    with exit_on_error(ValueError):
        check_output_dir(out, "--out")
        check_output_dir(runs, "--runs")
        make_report(device=device, out=out, runs=runs, epochs_cnn=epochs_cnn, epochs_mlp=epochs_mlp, quick=quick,
                    reuse=reuse, data_dir=data_dir, command=command,
                    log=lambda msg: typer.echo(msg, err=True))


def run(args=None):
    from ..errors import run_app  # noqa: PLC0415

    run_app(app, "python -m xcnn.report", args)
