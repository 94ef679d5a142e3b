"""``python -m xcnn.predict CHECKPOINT IMAGE...``: classify digit images (PNG or NPY, 8x8 pixels or more;
an NPY file may hold a stack of images).

Images are made to look like MNIST: grayscale, light-on-dark (inverted when the background
is light), and, unless already 28x28, cropped to the digit, scaled to fit 20x20 and centred
by mass in a 28x28 frame, as the MNIST images were made.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from ..errors import DataError

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


class ImageError(DataError):
    """An image that cannot be read or turned into a digit."""


MIN_SIDE = 8  # pixels: below this there is no digit to see


def _gray(img: np.ndarray) -> np.ndarray:
    """(H, W) as is; (H, W, 2|3|4) gray+alpha or RGB(A) as luminance, alpha composited on white."""
    if img.ndim == 3 and img.shape[-1] == 2:
        a = img[..., 1]
        return img[..., 0] * a + (1 - a)
    if img.ndim == 3:
        rgb = img[..., :3] @ np.array([0.299, 0.587, 0.114])
        if img.shape[-1] == 4:
            a = img[..., 3]
            rgb = rgb * a + (1 - a)
        img = rgb
    return img


def read_images(path) -> list[tuple[str, np.ndarray]]:
    """``[(name, 2-D float image in [0, 1])]`` from a PNG (via matplotlib) or an NPY file.

    A PNG is one image. An NPY may hold one image -- (H, W), or (H, W, 3|4) for RGB(A) -- or a stack:
    (N, H, W) or (N, 1, H, W), named ``file.npy[i]``. Pixels may be 0..255 or 0..1. Refused, with the
    reason: unreadable files, other shapes, images under 8x8 pixels, NaN or infinite pixels."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file — pass PNG or NPY images")
    npy = path.suffix.lower() == ".npy"
    try:
        if npy:
            raw = np.load(path, allow_pickle=False)
        else:
            import matplotlib.image as mpimg

            raw = mpimg.imread(path)
        arr = np.asarray(raw, dtype=np.float64)
    except Exception as exc:
        raise ImageError(f"{path}: not a readable PNG or NPY image ({type(exc).__name__}: {exc})") from None
    if npy and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # (N, 1, H, W): a stack, as a network takes it
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (2, 3, 4) and (not npy or arr.shape[0] >= MIN_SIDE)):
        stack = [(str(path), arr)]  # one image: gray, or gray+alpha / RGB / RGBA in the last axis
    elif npy and arr.ndim == 3:
        stack = [(f"{path}[{i}]", a) for i, a in enumerate(arr)]  # (N, H, W)
        if not stack:
            raise ImageError(f"{path}: the stack holds no images (shape {arr.shape}) — pass a file with at least one")
    else:
        raise ImageError(f"{path}: expected an image of shape (H, W) or (H, W, 3|4), or an NPY stack (N, H, W) or "
                         f"(N, 1, H, W); got shape {arr.shape}")
    for name, img in stack:
        bad = int(img.size - np.isfinite(img).sum())
        if bad:
            raise ImageError(f"{name}: {bad} pixel(s) are NaN or infinite — fix the image (pixels 0..255 or 0..1)")
    scale = 255.0 if arr.size and arr.max() > 1.0 else 1.0  # one scale for a whole file
    out = []
    for name, img in stack:
        img = _gray(img / scale)
        if min(img.shape) < MIN_SIDE:
            raise ImageError(f"{name}: the image is {img.shape[0]}x{img.shape[1]} pixels — a digit needs at least "
                             f"{MIN_SIDE}x{MIN_SIDE}")
        out.append((name, img))
    return out


def is_blank(img: np.ndarray) -> bool:
    """Every pixel the same: there is no digit, whatever the network answers."""
    return bool(img.max() - img.min() < 1e-6)


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area-averaging resize (down) / bilinear (up) with plain NumPy."""
    H, W = img.shape
    ys = (np.arange(h) + 0.5) * H / h - 0.5
    xs = (np.arange(w) + 0.5) * W / w - 0.5
    if H > h or W > w:  # smooth first so downscaling averages instead of aliasing
        k = max(1, int(round(max(H / h, W / w))))
        if k > 1:
            pad = np.pad(img, k // 2, mode="edge")
            c = np.pad(pad, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
            img = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k])[:H, :W] / (k * k)
    y0 = np.clip(np.floor(ys).astype(int), 0, H - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, W - 1)
    y1, x1 = np.clip(y0 + 1, 0, H - 1), np.clip(x0 + 1, 0, W - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None]
    fx = np.clip(xs - x0, 0, 1)[None, :]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def to_mnist(img: np.ndarray) -> np.ndarray:
    """uint8 (28, 28) light-on-dark digit from any grayscale image in [0, 1]."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if border.mean() > 0.5:  # dark digit on light paper: invert
        img = 1.0 - img
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape != (28, 28):
        ys, xs = np.nonzero(img > 0.2)
        if len(ys):
            img = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        h, w = img.shape
        s = 20.0 / max(h, w)
        img = resize(img, max(1, round(h * s)), max(1, round(w * s)))
        frame = np.zeros((28, 28))
        h, w = img.shape
        tot = img.sum()
        cy, cx = ((np.arange(h) @ img.sum(1)) / tot, (np.arange(w) @ img.sum(0)) / tot) if tot else (h / 2, w / 2)
        top = int(np.clip(round(14 - cy), 0, 28 - h))
        left = int(np.clip(round(14 - cx), 0, 28 - w))
        frame[top:top + h, left:left + w] = img
        img = frame
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def predict_images(checkpoint, images, device="cpu", warn=None):
    """``[(name, class index, probabilities)]`` for image files (an NPY stack gives one row per image).
    ``warn(message)`` hears about blank images (their prediction means nothing)."""
    from .. import data
    from ..backend import get_device, to_host
    from ..nn.models import load_model
    from ..ops import softmax

    dev = get_device(device, quiet=True)
    net, _ = load_model(checkpoint, device=dev)
    named = [item for p in images for item in read_images(p)]
    for name, img in named:
        if is_blank(img) and warn is not None:
            warn(f"{name} is blank (every pixel is {img.flat[0]:.3g}); its prediction means nothing")
    batch = np.stack([to_mnist(img) for _, img in named])
    probs = to_host(softmax(net.predict(dev.asarray(data.normalize(batch, net.dtype)))))
    return [(name, int(pr.argmax()), pr) for (name, _), pr in zip(named, probs)]


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint written by python -m xcnn.train"),
    images: list[Path] = typer.Argument(..., help="PNG or NPY digit images"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto"),
):
    """Print the predicted class and the class probabilities of each image."""
    from ..errors import exit_on_error

    with exit_on_error():
        results = predict_images(checkpoint, images, device,
                                 warn=lambda m: typer.echo(f"warning: {m}", err=True))
    for path, k, pr in results:
        top = "  ".join(f"{i}:{p:.3f}" for i, p in enumerate(pr))
        typer.echo(f"{path}: {k}  (p={pr[k]:.3f})  [{top}]")


def run(args=None):
    from ..errors import run_app  # noqa: PLC0415

    run_app(app, "python -m xcnn.predict", args)
