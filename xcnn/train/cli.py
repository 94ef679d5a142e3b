"""``python -m xcnn.train``: train a preset on MNIST or Fashion-MNIST.

With no flags it trains the report's CNN (seed-cnn) with the report's settings (SGD lr 0.1,
momentum 1e-3, weight decay 1e-3, batch 50, 30 epochs) on MNIST, on the best device,
fetching and verifying MNIST first when it is missing.
"""
from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from ..data.cli import DATA_DIR_HELP
from ..data.specs import DATASETS
from ..nn.models import PRESETS
from .config import LR_SCHEDULES

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def _parse_epochs_list(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        vals = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated epoch numbers like 0,5,25, got {text!r}") from None
    if any(v < 0 for v in vals):
        raise typer.BadParameter("epoch numbers must be >= 0")
    return vals


class _RichProgress:
    """A rich progress bar with live loss/accuracy, plus one printed line per epoch."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.bar = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}"),
                            TimeRemainingColumn(), console=console, transient=True)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, event, **info):
        if event == "epoch_start":
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task("train", total=info["steps"], completed=info["start"],
                                          epoch=f"{info['epoch']}/{info['epochs']}", loss=float("nan"), acc=0.0)
        elif event == "step":
            self.bar.update(self.task, completed=info["step"], loss=info["loss"], acc=info["acc"])
        elif event == "epoch_end":
            self.console.print(
                f"epoch {info['epoch']:3d}  train loss {info['train_loss']:.4f} acc {info['train_acc']:.2%}  "
                f"test loss {info['test_loss']:.4f} acc {info['test_acc']:.2%}  "
                f"{info['train_seconds']:.1f}s ({info['images_per_second']:,.0f} img/s)")


def _choices(name: str, values) -> type[Enum]:
    """A str Enum of ``values``: ``--help`` lists them and the parser refuses anything else."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Model = _choices("Model", PRESETS)
Dataset = _choices("Dataset", DATASETS)
Optimizer = _choices("Optimizer", ("sgd", "adam"))
Schedule = _choices("Schedule", LR_SCHEDULES)
Init = _choices("Init", ("report", "he"))
DistBackend = _choices("DistBackend", ("auto", "mpi", "nccl"))


def _given(ctx: typer.Context, values: dict) -> dict:
    """The RunConfig fields the user set on the command line (not left at their defaults)."""
    out = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            out["dtype" if name == "float64" else name] = value
    return out


@app.command()
def train(
    ctx: typer.Context,
    model: Model = typer.Option("seed-cnn", help="model preset"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto (CUDA when usable)"),
    epochs: int = typer.Option(30, min=1, help="number of epochs"),
    batch_size: int = typer.Option(50, min=1, help="mini-batch size"),
    lr: float = typer.Option(0.1, help="learning rate (finite, > 0)"),
    lr_schedule: Schedule = typer.Option("constant", help="constant, or cosine (decays to 0 over all epochs)"),
    momentum: float = typer.Option(1e-3, help="SGD momentum (the report's 1e-3)"),
    weight_decay: float = typer.Option(1e-3, help="L2 weight decay, biases included"),
    optimizer: Optimizer = typer.Option("sgd", case_sensitive=False, help="the optimizer"),
    seed: int = typer.Option(0, min=0, help="seed for the initial weights and the shuffling"),
    dataset: Dataset = typer.Option("mnist", help="the dataset"),
    data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP),
    out: Optional[str] = typer.Option(None, help="run folder (default: runs/<model>)"),
    resume: bool = typer.Option(False, "--resume/--no-resume",
                                help="continue the interrupted run in --out with its saved settings (--epochs, "
                                     "--device, --data-dir, --cuda-graph and --save-epochs may change, and so "
                                     "may --distributed and the number of ranks)"),
    save_epochs: str = typer.Option("", help="also keep snapshots after these epochs, e.g. 0,5,25"),
    log_every: int = typer.Option(10, min=1, help="iterations per logged point of the per-iteration curve"),
    train_limit: Optional[int] = typer.Option(None, min=1, help="use only the first N training images"),
    test_limit: Optional[int] = typer.Option(None, min=1, help="use only the first N test images"),
    init: Optional[Init] = typer.Option(None, help="weight initialisation (default: the preset's)"),
    float64: bool = typer.Option(False, "--float64/--float32", help="train in float64 instead of float32"),
    cuda_graph: bool = typer.Option(False, "--cuda-graph/--no-cuda-graph",
                                    help="CUDA only, SGD only: capture one training step as a CUDA graph and replay "
                                         "it (same results; one launch per step instead of dozens)"),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", help="no progress bar; one line per epoch"),
    distributed: bool = typer.Option(False, "--distributed/--no-distributed",
                                     help="data-parallel over the processes of `mpirun -n N` / `srun` (needs mpi4py "
                                          "and an MPI library: the mpi extra): --batch-size stays the global batch, "
                                          "one GPU per process with --device cuda, rank 0 writes the files; a run may "
                                          "resume on any number of ranks"),
    dist_backend: DistBackend = typer.Option("auto", help="with --distributed: auto (NCCL for GPU arrays when "
                                                          "CuPy has it, else MPI), mpi or nccl"),
):
    """Train a model; writes checkpoints, metrics (CSV/JSON) and curve PNGs into --out."""
    from rich.console import Console

    from ..errors import exit_on_error
    from .loop import EXIT_DIVERGED, EXIT_INTERRUPTED, fit

    # long lines (the resume command) must stay copy-pastable; no colours under mpirun, whose
    # pseudo-terminal would carry them into a redirected log
    console = Console(soft_wrap=True, highlight=not distributed)
    values = dict(model=model.value, dataset=dataset.value, epochs=epochs, batch_size=batch_size, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, optimizer=optimizer.value.lower(), seed=seed,
                  device=device, data_dir=data_dir, out=out or f"runs/{model.value}", log_every=log_every,
                  save_epochs=_parse_epochs_list(save_epochs), train_limit=train_limit, test_limit=test_limit,
                  init=init.value if init else None, lr_schedule=lr_schedule.value, cuda_graph=cuda_graph,
                  float64=float64)
    if distributed:
        result, cfg, report = _train_distributed(lambda: _config(ctx, values, resume), resume=resume,
                                                 backend=dist_backend.value, quiet=quiet, console=console)
    else:
        report = True
        with exit_on_error():
            cfg = _config(ctx, values, resume)
            if quiet or not console.is_terminal:
                result = fit(cfg, resume=resume, log=console.print)
            else:
                with _RichProgress(console) as bar:
                    result = fit(cfg, resume=resume, progress=bar, log=console.print)
    if result.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)
    if result.final_test_acc is not None and report:  # (in a distributed run rank 0 reports)
        console.print(f"done: {cfg.model} final test accuracy {result.final_test_acc:.2%} "
                      f"(best {result.best_test_acc:.2%}) after {result.epochs_done} epochs; files in {result.out}")


def _config(ctx: typer.Context, values: dict, resume: bool):
    """The run's settings: the flags, or -- with ``resume`` -- the run's saved ``config.json`` with the
    flags a resumed run may change."""
    import json
    from pathlib import Path

    from ..errors import ConfigError
    from .config import RunConfig, resumed_config

    values = dict(values)
    if not resume:
        values["dtype"] = "float64" if values.pop("float64") else "float32"
        return RunConfig(**values)
    given = _given(ctx, values)
    given["out"] = values["out"]
    if "dtype" in given:
        given["dtype"] = "float64" if given["dtype"] else "float32"
    cfg_file = Path(values["out"]) / "config.json"
    try:
        saved = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume: {values['out']} holds no run ({cfg_file} is missing) — pass the --out "
                          "of the run to continue, or start without --resume") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: {cfg_file} is unreadable ({exc}) — start a new run with another "
                          "--out") from None
    return resumed_config(saved, given)


def _silent(*args, **kwargs):
    return None


def _train_distributed(make_config, *, resume: bool, backend: str, quiet: bool, console):
    """One rank of ``--distributed``: rank 0 settles the settings (it alone reads ``--out``), every rank
    joins with its device, trains, and rank 0 logs. Returns ``(result, settings, is rank 0)``; a failure
    is one line and exit 2 on every rank, or ends the job (:func:`xcnn.dist.launch.one_job`)."""
    from ..dist.launch import join, one_job
    from ..dist.parallel import DataParallel
    from .loop import fit

    mpi = join()
    with one_job(mpi) as job:
        cfg = mpi.from_root(make_config)
        par = DataParallel.launch(cfg.device, backend, mpi)
        job.comm = par.comm
        root = par.is_root
        if root and par.note:
            console.print(f"warning: {par.note}", highlight=False)
        if quiet or not root or not console.is_terminal:
            result = fit(cfg, resume=resume, log=console.print if root else _silent, parallel=par)
        else:
            with _RichProgress(console) as bar:
                result = fit(cfg, resume=resume, progress=bar, log=console.print, parallel=par)
        par.close()
    return result, cfg, root


def main(args=None):
    """Console-script entry point (``xcnn-train``)."""
    from ..errors import run_app  # noqa: PLC0415

    run_app(app, "python -m xcnn.train", args)
