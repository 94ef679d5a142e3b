"""Training curves: one run's loss and accuracy per iteration and per epoch (the report's figures
3-5), and several runs side by side (its figure 6)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from .figure import plt, read_csv, running_mean, save_figure

__all__ = ["training_curves", "plot_comparison"]


def training_curves(run_dir, title: str = "") -> list[Path]:
    """Write ``curves_iteration.png`` and ``curves_epoch.png`` into ``run_dir`` from its metrics CSVs."""
    run_dir = Path(run_dir)
    it = read_csv(run_dir / "metrics_iter.csv")
    ep = read_csv(run_dir / "metrics_epoch.csv")
    written = []
    if it:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        x = [r["iteration"] for r in it]
        loss = [r["train_loss"] for r in it]
        acc = [100 * r["train_acc"] for r in it]
        smooth = max(1, len(it) // 100)  # ~100 windows' worth of points per running mean
        a1.plot(x, loss, lw=0.4, alpha=0.35, color="tab:blue", label="per logged window")
        a1.plot(x, running_mean(loss, smooth), lw=1.4, color="tab:blue", label=f"running mean of {smooth}")
        a1.set(xlabel="iteration", ylabel="training loss", title="loss per iteration")
        a1.set_yscale("log")
        a2.plot(x, acc, lw=0.4, alpha=0.35, color="tab:green", label="per logged window")
        a2.plot(x, running_mean(acc, smooth), lw=1.4, color="tab:green", label=f"running mean of {smooth}")
        a2.set(xlabel="iteration", ylabel="training accuracy (%)", title="accuracy per iteration")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        fig.suptitle(f"{title} — per iteration".strip(" —"))
        written.append(save_figure(fig, run_dir / "curves_iteration.png"))
    if ep:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        x = [r["epoch"] for r in ep]
        a1.plot(x, [r["train_loss"] for r in ep], "o-", ms=3, label="train")
        a1.plot(x, [r["test_loss"] for r in ep], "s-", ms=3, label="test")
        a1.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
        a2.plot(x, [100 * r["train_acc"] for r in ep], "o-", ms=3, label="train")
        a2.plot(x, [100 * r["test_acc"] for r in ep], "s-", ms=3, label="test")
        a2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy per epoch")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend()
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"{title} — per epoch".strip(" —"))
        written.append(save_figure(fig, run_dir / "curves_epoch.png"))
    return written


def plot_comparison(runs: dict, path, title: str = "", target: float = 0.98) -> Path:
    """The report's figure 6 for several runs ``{label: run_dir}``: training loss per iteration
    (against epochs, so runs of different lengths align), training loss, test loss and test accuracy
    per epoch."""
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
    (a_it, a_loss), (a_tl, a_acc) = axes
    accs = []
    for (label, run), col in zip(runs.items(), colors):
        it = read_csv(Path(run) / "metrics_iter.csv")
        ep = read_csv(Path(run) / "metrics_epoch.csv")
        if it:
            x = [r["epoch"] for r in it]
            y = [r["train_loss"] for r in it]
            a_it.plot(x, y, lw=0.3, alpha=0.25, color=col)
            k = max(1, len(it) // 200)
            a_it.plot(x, running_mean(y, k), lw=1.4, color=col, label=label)
        if ep:
            e = [r["epoch"] for r in ep]
            a_loss.plot(e, [r["train_loss"] for r in ep], "o-", ms=3, color=col, label=label)
            a_tl.plot(e, [r["test_loss"] for r in ep], "o-", ms=3, color=col, label=label)
            acc = [100 * r["test_acc"] for r in ep]
            accs += acc
            a_acc.plot(e, acc, "o-", ms=3, color=col, label=f"{label} (final {acc[-1]:.2f} %)")
    a_it.set(xlabel="epoch", ylabel="training loss", title="training loss per iteration window "
             "(faint: raw, bold: running mean)")
    a_loss.set(xlabel="epoch", ylabel="training loss", title="training loss per epoch")
    a_tl.set(xlabel="epoch", ylabel="test loss", title="test loss per epoch")
    a_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy per epoch")
    for a in (a_it, a_loss, a_tl):
        a.set_yscale("log")
    if accs:
        a_acc.axhline(100 * target, color="0.4", ls="--", lw=1)
        a_acc.text(0.99, 100 * target, f"{100 * target:.0f} %", color="0.3", fontsize=8, ha="right",
                   va="bottom", transform=a_acc.get_yaxis_transform())
        # zoom on the band that matters; say so when a slow first epoch falls below it
        lo = min(max(min(accs) - 0.3, 90.0), 100 * target - 1.0)
        if max(accs) < 100 * target:  # nobody reaches the target (short runs): show everything
            lo = max(0.0, min(accs) - 1.0)
        a_acc.set_ylim(lo, min(100.0, max(max(accs), 100 * target) + 0.3))
        if min(accs) < lo:
            a_acc.text(0.01, 0.01, f"axis cut at {lo:.0f} %", transform=a_acc.transAxes, fontsize=8, color="0.3")
    for a in axes.flat:
        a.grid(alpha=0.3)
        a.grid(alpha=0.08, which="minor")
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12, fontweight="bold")
    return save_figure(fig, path)
