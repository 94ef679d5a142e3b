"""``python -m xcnn.export CHECKPOINT OUT.onnx``: write a trained network as a checked ONNX model.

The model has one input ``image`` (batch, C, H, W) and one output ``logits``, a dynamic batch size,
and opset 17 unless ``--opset`` says otherwise; ``onnx.checker`` (full check) passes before the file
is written (atomically). When ONNX Runtime is installed, the command then runs 64 random inputs
through it and through xcnn and prints how far apart the logits are (``--no-verify`` skips that).
Needs the ``onnx`` extra: ``pip install 'xcnn[onnx]'``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MissingExtraError, exit_on_error, run_app
from ..interop import ExportError
from ..io import check_output_file
from ..interop.onnx_export import OPSET, export_onnx
from ..interop.runtime import compare
from ..nn.models import load_model

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ExportError(f"--input-shape must be C,H,W with positive ints (e.g. 1,28,28), got {text!r}")
    return shape


def export_checkpoint(checkpoint, out, *, opset: int = OPSET, dtype: str | None = None,
                      input_shape: str | None = None):
    """Load ``checkpoint`` and write it to ``out`` as ONNX; returns ``(path, network, input shape)``."""
    check_output_file(out, ".onnx file")  # before the work, not after it
    if dtype is not None and dtype not in ("float32", "float64"):
        raise ExportError(f"--dtype must be float32 or float64, got {dtype!r}")
    net, ck = load_model(checkpoint)
    shape = _parse_shape(input_shape) if input_shape else tuple(ck["meta"].get("input_shape", (1, 28, 28)))
    if dtype is not None:
        net.astype(dtype)
    return export_onnx(net, out, input_shape=shape, opset=opset), net, shape


def report_comparison(model, net, shape, *, hint: str = "") -> bool:
    """Compare ``model`` with ``net`` in ONNX Runtime and print the verdict; False when they disagree.
    Says so (adding ``hint``), and returns True, when ONNX Runtime is missing or cannot run the model."""
    try:
        r = compare(model, net, shape)
    except MissingExtraError:
        typer.echo("ONNX Runtime is not installed: not compared (pip install onnxruntime)")
        return True
    except Exception as exc:  # ONNX Runtime's own refusal, e.g. no float64 Conv kernel on the CPU
        first = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(f"ONNX Runtime could not run the model ({type(exc).__name__}: {first}){hint}")
        return True
    verdict = "agree" if r["ok"] else "DISAGREE"
    typer.echo(f"ONNX Runtime and xcnn {verdict} on {r['n']} random inputs: max |difference| = "
               f"{r['error']:.1e} of each input's largest logit (tolerance {r['tolerance']:.0e})")
    return r["ok"]


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint (python -m xcnn.train or python -m xcnn.import_onnx)"),
    out: Path = typer.Argument(..., help="the ONNX file to write"),
    opset: int = typer.Option(OPSET, help="ONNX opset version"),
    dtype: Optional[str] = typer.Option(None, help="float32 or float64 (default: the network's; ONNX Runtime "
                                                   "runs float64 conv networks only as float32)"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W of one input "
                                                         "(default: the checkpoint's, else 1,28,28)"),
    verify: bool = typer.Option(True, help="compare with ONNX Runtime when it is installed"),
):
    """Export CHECKPOINT to OUT as ONNX."""
    with exit_on_error():
        path, net, shape = export_checkpoint(checkpoint, out, opset=opset, dtype=dtype, input_shape=input_shape)
    typer.echo(f"wrote {path}: {net.name}, {len(net.layers)} layers, {net.num_parameters():,} parameters, "
               f"{net.dtype}, opset {opset}, input image (batch, {', '.join(map(str, shape))}), output logits; "
               "onnx.checker passed")
    hint = "; export with --dtype float32 to run it there" if str(net.dtype) == "float64" else ""
    if verify and not report_comparison(path, net, shape, hint=hint):
        raise typer.Exit(1)


def run(args=None):
    run_app(app, "python -m xcnn.export", args)
