"""Drive the demo page in headless Chromium: the browser test and ``scripts/demo_screenshot.py`` share this.

Playwright talks to the system's Chromium (Debian's ``chromium`` package at ``/usr/bin/chromium``,
or ``$XCNN_CHROMIUM``); it never downloads a browser of its own. Chromium runs with a fresh
profile and with everything that would reach for the network switched off, since a closed network
makes a default profile stall. The strokes below are in the pad's own 280x280 pixel coordinates.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from contextlib import contextmanager

from ...extras import require

__all__ = ["CHROMIUM_ARGS", "chromium_path", "open_page", "stroke_points", "draw_with_mouse", "draw_with_touch",
           "wait_until_idle", "STROKES"]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _arc(cx, cy, r, start, end, step=10):
    """Points on a circular arc, angles in degrees clockwise from 3 o'clock (the pad's y axis points down)."""
    return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a)))
            for a in range(start, end + 1, step)]


#: digit-like strokes on the 280x280 pad, as polylines (each one stroke, pen down to pen up)
STROKES = {
    "7": [[(70, 62), (212, 62), (176, 130), (128, 226)]],
    "1": [[(150, 50), (146, 130), (142, 232)]],
    "3": [[*_arc(140, 96, 50, -160, 90), *_arc(140, 190, 54, -90, 155)]],
    "0": [[(140 + 62 * math.sin(t / 24 * 2 * math.pi), 140 - 92 * math.cos(t / 24 * 2 * math.pi)) for t in range(25)]],
}


def chromium_path() -> str | None:
    """The Chromium to drive: ``$XCNN_CHROMIUM``, else ``chromium`` on the PATH, else None."""
    return os.environ.get("XCNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def open_page(url: str, *, touch: bool = False, width: int = 1100, height: int = 1000):
    """A Playwright page on ``url`` in headless system Chromium with a fresh profile; waits until the page has
    loaded the model. ``touch=True`` emulates a touch screen."""
    require("playwright", "dev", "Driving the demo in a browser")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("no Chromium found: install Debian's chromium (apt-get install chromium) "
                                "or set XCNN_CHROMIUM")
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="xcnn-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, has_touch=touch, device_scale_factor=1)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=15_000)
            yield page
        finally:
            context.close()


def stroke_points(polyline, step: float = 6.0):
    """The polyline resampled every ``step`` pixels, as a hand moving at even speed would report it."""
    out = [polyline[0]]
    for (x0, y0), (x1, y1) in zip(polyline[:-1], polyline[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
    return out


def _to_page(page, selector="#pad"):
    box = page.locator(selector).bounding_box()
    size = page.eval_on_selector(selector, "c => c.width")  # the pad's own pixels (its CSS size may differ)
    return lambda x, y: (box["x"] + x * box["width"] / size, box["y"] + y * box["height"] / size)


def draw_with_mouse(page, strokes):
    """Draw ``strokes`` (polylines in pad pixels) with the mouse: press, move, release per stroke."""
    at = _to_page(page)
    for polyline in strokes:
        pts = stroke_points(polyline)
        page.mouse.move(*at(*pts[0]))
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(*at(x, y))
            page.wait_for_timeout(8)
        page.mouse.up()


def draw_with_touch(page, strokes):
    """Draw ``strokes`` with a finger: touchStart, touchMove..., touchEnd through the DevTools protocol
    (Playwright has no touch-move call); the page sees them as pointer events of type "touch"."""
    at = _to_page(page)
    cdp = page.context.new_cdp_session(page)
    for polyline in strokes:
        pts = [at(x, y) for x, y in stroke_points(polyline)]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": pts[0][0], "y": pts[0][1]}]})
        for x, y in pts[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            page.wait_for_timeout(8)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def wait_until_idle(page, timeout: float = 20.0):
    """Wait until no stroke is in progress, no request is in flight or queued, and the last one sent is drawn."""
    page.wait_for_function("() => document.body.dataset.busy === '0' && window.xcnnDemo.sent > 0 && "
                           "(window.xcnnDemo.rendered === window.xcnnDemo.sent || window.xcnnDemo.error)",
                           timeout=timeout * 1000)
