"""Take the README's screenshot of the demo page: serve CHECKPOINT, draw a digit in headless Chromium, save a PNG.

    python scripts/demo_screenshot.py runs/seed-cnn/checkpoint.npz docs/demo.png --digit 3

Needs the demo extra and playwright (``pip install -e '.[demo,dev]'``) and Debian's chromium. Prints
what the page predicted, so the caption can be checked against the picture.
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xcnn.apps.demo.browser import STROKES, draw_with_mouse, open_page, wait_until_idle  # noqa: E402
from xcnn.apps.demo.model import DemoModel  # noqa: E402
from xcnn.apps.demo.server import make_app, serve_in_thread  # noqa: E402
from xcnn.io import atomic_write_bytes  # noqa: E402


def main(checkpoint: Path = typer.Argument(..., help="the checkpoint to serve"),
         out: Path = typer.Argument(Path("docs/demo.png"), help="the PNG to write"),
         digit: str = typer.Option("3", help=f"the digit to draw: one of {', '.join(STROKES)}"),
         width: int = typer.Option(1000, help="viewport width in CSS pixels")):
    if digit not in STROKES:
        raise typer.BadParameter(f"no stroke for {digit!r}; choose one of {', '.join(STROKES)}")
    with serve_in_thread(make_app(DemoModel(checkpoint, "cpu"))) as running, \
            open_page(running.url, width=width, height=700) as page:
        draw_with_mouse(page, STROKES[digit])
        wait_until_idle(page)
        answer = page.evaluate("() => window.xcnnDemo.last")
        png = page.screenshot(full_page=True)
    atomic_write_bytes(out, png)
    k = answer["prediction"]
    typer.echo(f"wrote {out}: drew a {digit}, the page shows {k} (p = {answer['probabilities'][k]:.4f})")


if __name__ == "__main__":
    typer.run(main)
