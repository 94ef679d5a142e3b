"""``python -m xcnn.predict CHECKPOINT IMAGE...``: classify digit images (PNG or NPY, any size).

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


def read_image(path) -> np.ndarray:
    """A 2-D float array in [0, 1] from a PNG (via matplotlib) or an NPY file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            img = np.load(path, allow_pickle=False).astype(np.float64)
            if img.max() > 1.0:
                img = img / 255.0
        else:
            import matplotlib.image as mpimg

            img = np.asarray(mpimg.imread(path), dtype=np.float64)
            if img.max() > 1.0:
                img = img / 255.0
    except Exception as exc:
        raise ImageError(f"{path}: not a readable PNG or NPY image ({type(exc).__name__}: {exc})") from None
    img = np.squeeze(img)
    if img.ndim == 3:  # RGB(A): luminance, alpha composited on white
        rgb = img[..., :3] @ np.array([0.299, 0.587, 0.114])
        if img.shape[-1] == 4:
            a = img[..., 3]
            rgb = rgb * a + (1 - a)
        img = rgb
    if img.ndim != 2 or min(img.shape) < 1:
        raise ImageError(f"{path}: expected a 2-D grayscale or RGB image, got shape {img.shape}")
    return img


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


def predict_images(checkpoint, images, device="cpu"):
    """``[(path, class index, probabilities)]`` for image files."""
    from .. import data
    from ..backend import get_device, to_host
    from ..nn.models import load_model
    from ..ops import softmax

    dev = get_device(device, quiet=True)
    net, _ = load_model(checkpoint, device=dev)
    batch = np.stack([to_mnist(read_image(p)) for p in images])
    probs = to_host(softmax(net.predict(dev.asarray(data.normalize(batch, net.dtype)))))
    return [(str(p), int(pr.argmax()), pr) for p, pr in zip(images, probs)]


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint written by python -m xcnn.train"),
    images: list[Path] = typer.Argument(..., help="PNG or NPY digit images"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto"),
):
    """Print the predicted class and the class probabilities of each image."""
    from ..errors import exit_on_error

    with exit_on_error(ValueError):
        results = predict_images(checkpoint, images, device)
    for path, k, pr in results:
        top = "  ".join(f"{i}:{p:.3f}" for i, p in enumerate(pr))
        typer.echo(f"{path}: {k}  (p={pr[k]:.3f})  [{top}]")


def run():
    app(prog_name="python -m xcnn.predict")
