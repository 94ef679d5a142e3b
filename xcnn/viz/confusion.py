"""The confusion matrix of a classifier on a test set, counted and drawn."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figure import plt, save_figure

__all__ = ["confusion_matrix", "plot_confusion"]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """``m[true, predicted]`` counts (k x k), computed with one bincount."""
    return np.bincount(labels.astype(np.int64) * k + predicted.astype(np.int64), minlength=k * k).reshape(k, k)


def plot_confusion(result: dict, path) -> Path:
    """Draw ``result["confusion"]`` (counts) with the class names and the accuracy in the title."""
    cm = np.asarray(result["confusion"])
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm, cmap="Blues", norm=None)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), result["classes"], rotation=45 if k and len(result["classes"][0]) > 2 else 0)
    ax.set_yticks(range(k), result["classes"])
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{result['model']} on {result['dataset']} test set: {result['accuracy']:.2%} correct")
    fig.colorbar(im, ax=ax, label="images")
    return save_figure(fig, path)
