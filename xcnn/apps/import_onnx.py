"""``python -m xcnn.import_onnx MODEL.onnx OUT.npz``: an xcnn checkpoint from an ONNX model.

The graph must be a chain of the ops xcnn's layers compute (Conv, Gemm or MatMul+Add, Relu, Sigmoid,
Tanh, AveragePool, MaxPool, Flatten or a flattening Reshape, Identity/Dropout); anything else is
refused with the op and node named. The checkpoint carries the network's architecture, so
``python -m xcnn.evaluate``, ``xcnn.predict``, ``xcnn.visualize``, ``xcnn.export`` and ``xcnn.demo``
take it like a trained one. When ONNX Runtime is installed, the imported network is compared with
it on 64 random inputs (``--no-verify`` skips that). Needs the ``onnx`` extra:
``pip install 'xcnn[onnx]'``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import exit_on_error, run_app
from ..interop.onnx_import import convert, read_model
from ..io import check_output_file
from ..nn.architecture import save_network
from .export import report_comparison

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def import_to_checkpoint(model_path, out, *, name: str | None = None) -> dict:
    """Convert ``model_path`` and save it as a checkpoint at ``out`` (atomically); returns
    ``{"network", "input_shape", "notes", "path", "model"}``."""
    check_output_file(out, ".npz checkpoint")  # before the work, not after it
    model = read_model(model_path)
    imported = convert(model, name=name or Path(model_path).stem)
    producer = " ".join(v for v in (model.producer_name, model.producer_version) if v)
    meta = {"input_shape": list(imported.input_shape), "notes": imported.notes,
            "source": {"onnx": str(model_path), "producer": producer,
                       "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)}}
    path = save_network(imported.network, out, meta=meta)
    return {"network": imported.network, "input_shape": imported.input_shape, "notes": imported.notes,
            "path": path, "model": model}


@app.command()
def main(
    model: Path = typer.Argument(..., help="an ONNX model file"),
    out: Path = typer.Argument(..., help="the xcnn checkpoint to write (.npz)"),
    name: Optional[str] = typer.Option(None, help="the network's name (default: the model file's stem)"),
    verify: bool = typer.Option(True, help="compare with ONNX Runtime when it is installed"),
):
    """Import MODEL into an xcnn checkpoint OUT."""
    with exit_on_error(ValueError):  # ValueError: whatever else an arbitrary graph trips over
        r = import_to_checkpoint(model, out, name=name)
    net = r["network"]
    typer.echo(net.summary((1, *r["input_shape"])))
    for note in r["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {r['path']}")
    if verify and not report_comparison(r["model"], net, r["input_shape"]):
        raise typer.Exit(1)


def run(args=None):
    run_app(app, "python -m xcnn.import_onnx", args)
