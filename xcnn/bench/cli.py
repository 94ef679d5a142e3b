"""``python -m xcnn.bench``: training speed of xcnn against the same networks in PyTorch.

For each model (seed-cnn, mlp2, mlp1) and batch size it trains timed steps with xcnn and -- when
``torch`` imports (``pip install torch==2.13.0``; xcnn never depends on it) -- the identical
network in PyTorch: same initial weights (copied from the xcnn model), same SGD (xcnn's
``v = m*v + g + wd*p; p -= lr*v`` is torch's SGD with dampening 0 for a constant lr), same synthetic
MNIST-shaped data. The two frameworks alternate repeat by repeat in one process, so machine noise
hits both alike; the ratio is what to read.

Seconds per epoch are extrapolated to 60,000 images from timed steps after a warm-up. Peak memory
(VmHWM, i.e. peak RSS) of one full seed-cnn epoch at batch 1024 is measured in a fresh subprocess
per framework. Results go to ``OUT/bench-<device>.json`` and ``.md``.

The measuring runs in a child process whose environment sets the thread counts;
``--malloc-variant`` repeats the whole measurement once more with glibc's
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` raised, for both frameworks. ``--profile``
prints where xcnn's time goes, per op family.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from .runners import BATCHES, MODELS

def _csv_list(text, conv, allowed=None):
    vals = [conv(t.strip()) for t in text.split(",") if t.strip()]
    if allowed:
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise ValueError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return vals


def main(argv=None):
    import typer  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # internal: the measuring child
        from .worker import worker  # noqa: PLC0415

        print(json.dumps(worker(json.loads(argv[1]))))
        return 0
    app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)

    @app.command()
    def bench(device: str = typer.Option("cpu", help="cpu or cuda"),
              threads: int = typer.Option(2, help="threads for OpenBLAS and PyTorch"),
              quick: bool = typer.Option(False, "--quick/--no-quick",
                                         help="a tiny run (for tests): few images, 2 repeats"),
              out: Path = typer.Option(Path("benchmarks"), help="folder for bench-<device>.json/.md"),
              models: str = typer.Option(",".join(MODELS), help="comma-separated presets"),
              batches: str = typer.Option(",".join(map(str, BATCHES)), help="comma-separated batch sizes"),
              profile: bool = typer.Option(False, "--profile/--no-profile", help="also print xcnn's per-op time breakdown"),
              malloc_variant: bool = typer.Option(False, "--malloc-variant/--no-malloc-variant",
                                                  help="measure once more with raised glibc malloc thresholds"),
              memory: bool = typer.Option(True, help="measure peak RSS of a seed-cnn epoch at batch 1024"),
              torch: bool = typer.Option(True, help="compare with PyTorch when it imports"),
              repeats: Optional[int] = typer.Option(None, help="timed repeats per framework"),
              images: Optional[int] = typer.Option(None, help="images per timed repeat"),
              cuda_graph: bool = typer.Option(True, help="on cuda, also time the --cuda-graph training step")):
        """Time xcnn (and PyTorch) training; write OUT/bench-<device>.json and .md."""
        from ..backend import get_device, parse_device  # noqa: PLC0415
        from ..errors import DeviceError  # noqa: PLC0415
        from ..nn.models import PRESETS  # noqa: PLC0415

        try:
            kind, _ = parse_device(device)
            if kind == "auto":
                raise DeviceError("--device must be cpu, cuda or cuda:N")
            device = str(get_device(device))
        except DeviceError as exc:
            raise typer.BadParameter(str(exc)) from None
        try:
            ms = _csv_list(models, str, list(PRESETS))
            bs = _csv_list(batches, int)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        from .worker import run_benchmark  # noqa: PLC0415

        cmd = "python -m xcnn.bench " + " ".join(a for a in argv)
        res = run_benchmark(device=device, threads=threads, quick=quick, out=out, models=ms, batches=bs,
                            profile_mode=profile, malloc_variant=malloc_variant, memory=memory, use_torch=torch,
                            repeats=repeats, images=images, command=cmd.strip(),
                            cuda_graph=cuda_graph and device.startswith("cuda"))
        print(f"wrote {out / f'bench-{device}.json'} and .md in {res['seconds']:.0f} s")

    from ..errors import exit_on_error, run_app  # noqa: PLC0415

    with exit_on_error():
        run_app(app, "python -m xcnn.bench", argv)
    return 0
