"""``python -m xcnn.evaluate CHECKPOINT``: test accuracy, per-class accuracy and a confusion-matrix PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..backend import to_host
from ..data.cli import DATA_DIR_HELP
from ..viz.confusion import confusion_matrix, plot_confusion

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def evaluate_checkpoint(checkpoint, *, dataset: str | None = None, data_dir=None, device="cpu",
                        limit: int | None = None) -> dict:
    """Evaluate a checkpoint on its dataset's test split; returns accuracy, per-class accuracy and the matrix."""
    from .. import data
    from ..backend import get_device
    from ..nn.models import load_model

    dev = get_device(device, quiet=True)
    net, ck = load_model(checkpoint, device=dev)
    cfg = ck["meta"].get("config", {})
    name = dataset or cfg.get("dataset", "mnist")
    ds = data.load(name, data_dir=data_dir or cfg.get("data_dir"))
    x, y = ds.test_images, ds.test_labels
    if limit:
        x, y = x[:limit], y[:limit]
    logits = net.predict(dev.asarray(data.normalize(x, net.dtype)))
    pred = to_host(logits.argmax(axis=1))
    k = len(ds.classes)
    cm = confusion_matrix(y, pred, k)
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return {"checkpoint": str(checkpoint), "model": net.name, "dataset": name, "n": int(len(y)),
            "accuracy": float((pred == y).mean()), "per_class": [float(a) for a in per_class],
            "classes": list(ds.classes), "confusion": cm.tolist()}


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint written by python -m xcnn.train (.npz)"),
    dataset: Optional[str] = typer.Option(None, help="dataset (default: the one the run trained on)"),
    data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto"),
    out: Optional[Path] = typer.Option(None, help="where to write confusion.png and evaluation.json "
                                                  "(default: beside the checkpoint)"),
):
    """Evaluate CHECKPOINT on the test set."""
    from ..errors import exit_on_error
    from ..io import atomic_write_json, check_output_dir

    with exit_on_error():
        folder = check_output_dir(out or checkpoint.parent, "--out")  # before the work, not after it
        result = evaluate_checkpoint(checkpoint, dataset=dataset, data_dir=data_dir, device=device)
        typer.echo(f"{result['model']} on {result['dataset']}: test accuracy {result['accuracy']:.2%} "
                   f"({result['n']} images)")
        for c, a in zip(result["classes"], result["per_class"]):
            typer.echo(f"  {c:>12}: {a:.2%}")
        png = plot_confusion(result, folder / "confusion.png")
        atomic_write_json(folder / "evaluation.json", result)
    typer.echo(f"confusion matrix: {png}")


def run(args=None):
    from ..errors import run_app  # noqa: PLC0415

    run_app(app, "python -m xcnn.evaluate", args)
