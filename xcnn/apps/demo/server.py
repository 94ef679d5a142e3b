"""``python -m xcnn.demo CHECKPOINT``: a local page to draw a digit on and watch the network respond.

Draw with the mouse, a pen or a finger; while drawing (at most every 120 ms) and when the stroke
ends, the page sends the canvas as a PNG and shows the class probabilities and the feature maps of
every conv layer and its activation (the report's section 6 figure, live). The server treats the
drawing exactly as ``python -m xcnn.predict`` treats an image file (see :mod:`.model`).

Why Starlette + uvicorn: the page is one HTML file, one script and one stylesheet talking to two
JSON endpoints, and Starlette is exactly that much -- a small, well-maintained ASGI toolkit (routes,
static files, JSON responses; it needs anyio), served by uvicorn (h11, click), its usual server; no
build step, and all of it readable in this folder. Gradio's sketchpad would have drawn the canvas
for us, but it installs a large tree (FastAPI, pydantic, pandas, huggingface_hub, a pre-built
front end ...), and its drawing component changed shape between major versions (in Gradio 4 the
sketchpad became a preset of the image editor, returning a dict of layers); here the path from
stroke to PNG to ``predict``'s preprocessing is a few lines of our own, and the browser test drives
it directly.
Needs the ``demo`` extra: ``pip install 'xcnn[demo]'``.
"""
from __future__ import annotations

import socket
import threading
from importlib import resources
from pathlib import Path

import typer

from ...errors import ConfigError, exit_on_error, run_app
from ...extras import require
from .model import MAX_PNG_BYTES, DemoModel, ImageError

__all__ = ["make_app", "bind", "RunningServer", "serve_in_thread", "app", "run"]

STATIC = resources.files("xcnn.apps.demo") / "static"

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


def make_app(model: DemoModel):
    """The Starlette application serving ``model``: ``/`` (the page), ``/static/*``, ``GET /api/info``
    and ``POST /api/predict`` (body: the drawing as a PNG)."""
    require("starlette", "demo", "The demo page")
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415
    from starlette.responses import FileResponse, JSONResponse  # noqa: PLC0415
    from starlette.routing import Mount, Route  # noqa: PLC0415
    from starlette.staticfiles import StaticFiles  # noqa: PLC0415

    static = Path(str(STATIC))
    info = model.info()

    async def index(request):
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-store"})

    async def api_info(request):
        return JSONResponse(info)

    async def api_predict(request):
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_PNG_BYTES:
            return JSONResponse({"error": f"the drawing is {size:,} bytes; at most {MAX_PNG_BYTES:,} are accepted"},
                                status_code=413)
        body = await request.body()
        try:
            result = await run_in_threadpool(model.analyse_png, body)
        except ImageError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/info", api_info),
        Route("/api/predict", api_predict, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ])


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), bound before the server starts so
    the URL is known and a busy port is reported as such (a :class:`~xcnn.errors.ConfigError`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc}) — "
                          "pass --port 0 for any free port, or another --host") from None
    sock.listen(64)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{port}/"


def _server(asgi_app):
    uvicorn = require("uvicorn", "demo", "The demo page")
    config = uvicorn.Config(asgi_app, log_level="warning", lifespan="off", access_log=False)
    return uvicorn.Server(config)


class RunningServer:
    """A server running in a background thread (tests, the screenshot script): ``.url``, ``.stop()``."""

    def __init__(self, server, thread, url):
        self.server, self.thread, self.url = server, thread, url

    def stop(self, timeout: float = 10.0):
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve_in_thread(asgi_app, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> RunningServer:
    """Start ``asgi_app`` on ``host:port`` in a daemon thread and return once it accepts connections."""
    sock = bind(host, port)
    server = _server(asgi_app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="xcnn-demo")
    thread.start()
    started = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if server.started or not thread.is_alive():
            break
        started.wait(0.02)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(f"the demo server did not start within {timeout:.0f} s")
    return RunningServer(server, thread, _url(sock))


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint (python -m xcnn.train, or python -m xcnn.import_onnx)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: reachable from a phone on the LAN)"),
    port: int = typer.Option(8000, help="port to listen on; 0 picks a free one"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto"),
):
    """Serve the draw-a-digit page for CHECKPOINT until Ctrl-C."""
    with exit_on_error():
        require("starlette", "demo", "The demo page")
        require("uvicorn", "demo", "The demo page")
        model = DemoModel(checkpoint, device)
        asgi_app = make_app(model)
        sock = bind(host, port)
    typer.echo(f"xcnn demo: {model.net.name} ({model.checkpoint.name}, {model.device}) at {_url(sock)}  "
               "(Ctrl-C to stop)")
    _server(asgi_app).run(sockets=[sock])


def run(args=None):
    run_app(app, "python -m xcnn.demo", args)
