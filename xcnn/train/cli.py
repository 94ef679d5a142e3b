"""``python -m xcnn.train``: train a preset on MNIST or Fashion-MNIST.

With no flags it trains the report's CNN (seed-cnn) with the report's settings (SGD lr 0.1,
momentum 1e-3, weight decay 1e-3, batch 50, 30 epochs) on MNIST, on the best device,
fetching and verifying MNIST first when it is missing.
"""
from __future__ import annotations

from typing import Optional

import typer

from ..nn.models import PRESETS

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


@app.command()
def train(
    model: str = typer.Option("seed-cnn", help=f"model preset: {', '.join(PRESETS)}"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto (CUDA when usable)"),
    epochs: int = typer.Option(30, help="number of epochs"),
    batch_size: int = typer.Option(50, help="mini-batch size"),
    lr: float = typer.Option(0.1, help="learning rate"),
    lr_schedule: str = typer.Option("constant", help="constant, or cosine (decays to 0 over all epochs)"),
    momentum: float = typer.Option(1e-3, help="SGD momentum (the report's 1e-3)"),
    weight_decay: float = typer.Option(1e-3, help="L2 weight decay, biases included"),
    optimizer: str = typer.Option("sgd", help="sgd or adam"),
    seed: int = typer.Option(0, help="seed for the initial weights and the shuffling"),
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist"),
    data_dir: Optional[str] = typer.Option(None, help="dataset directory (default: $XCNN_DATA or the user cache)"),
    out: Optional[str] = typer.Option(None, help="run directory (default: runs/<model>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the interrupted run in --out"),
    save_epochs: str = typer.Option("", help="also keep snapshots after these epochs, e.g. 0,5,25"),
    log_every: int = typer.Option(10, help="iterations per logged point of the per-iteration curve"),
    train_limit: Optional[int] = typer.Option(None, help="use only the first N training images"),
    test_limit: Optional[int] = typer.Option(None, help="use only the first N test images"),
    init: Optional[str] = typer.Option(None, help="weight initialisation: report or he (default: the preset's)"),
    float64: bool = typer.Option(False, "--float64", help="train in float64 instead of float32"),
    cuda_graph: bool = typer.Option(False, "--cuda-graph",
                                    help="CUDA only, SGD only: capture one training step as a CUDA graph and replay "
                                         "it (same results; one launch per step instead of dozens)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar; one line per epoch"),
):
    """Train a model; writes checkpoints, metrics (CSV/JSON) and curve PNGs into --out."""
    from rich.console import Console

    from ..errors import exit_on_error
    from .config import RunConfig
    from .loop import EXIT_DIVERGED, EXIT_INTERRUPTED, fit

    cfg = RunConfig(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                    weight_decay=weight_decay, optimizer=optimizer.lower(), seed=seed, device=device,
                    data_dir=data_dir, out=out or f"runs/{model}", log_every=log_every,
                    save_epochs=_parse_epochs_list(save_epochs), train_limit=train_limit, test_limit=test_limit,
                    dtype="float64" if float64 else "float32", init=init, lr_schedule=lr_schedule,
                    cuda_graph=cuda_graph)
    console = Console(soft_wrap=True)  # long lines (the resume command) must stay copy-pastable
    with exit_on_error(ValueError):
        if model not in PRESETS:
            raise ValueError(f"unknown model {model!r} — choose one of {', '.join(PRESETS)}")
        if quiet or not console.is_terminal:
            result = fit(cfg, resume=resume, log=console.print)
        else:
            with _RichProgress(console) as bar:
                result = fit(cfg, resume=resume, progress=bar, log=console.print)
    if result.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "diverged":
        raise typer.Exit(EXIT_DIVERGED)
    if result.final_test_acc is not None:
        console.print(f"done: {cfg.model} final test accuracy {result.final_test_acc:.2%} "
                      f"(best {result.best_test_acc:.2%}) after {result.epochs_done} epochs; files in {result.out}")


def main():
    """Console-script entry point (``xcnn-train``)."""
    app(prog_name="python -m xcnn.train")
