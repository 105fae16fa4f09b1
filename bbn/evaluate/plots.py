"""The pictures: long-tail class distribution, learning curves, per-class accuracy, reliability and
confusion (PNG, written atomically). Counts on log axes are labelled as plain numbers (1, 2, 5, 10,
20, ...), epochs as integers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from bbn.files import atomic_path  # noqa: E402

COLOURS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}


def _save(fig, target: str | Path) -> None:
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def count_axis(axis) -> None:
    """A log-scale axis of counts with ticks at 1, 2, 5 x 10^k labelled as plain numbers."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    axis.set_minor_formatter(NullFormatter())


def _group_legend(ax, groups: pd.Series) -> None:
    """One entry per shot group with its number of classes, an empty group included as (0)."""
    ax.legend(handles=[Patch(color=c, label=f"{g}-shot ({_count(int((groups == g).sum()), 'class')})")
                       for g, c in COLOURS.items()], fontsize=8)


def longtail(table: pd.DataFrame, target: str | Path) -> None:
    """Sorted training counts per class (``bbn.data.stats.class_table``) on a log scale, coloured by shot group."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(table["rank"], table["train_count"].clip(lower=0.8), width=1.0,
           color=[COLOURS[g] for g in table["group"]])
    ax.set_yscale("log")
    count_axis(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("class rank (by training images)")
    ax.set_ylabel("training images (log scale)")
    counts = table["train_count"]
    ax.set_title(f"{len(table)} classes, {counts.sum():,} training images (after the val hold-out), "
                 f"imbalance ratio {counts.max() / max(counts.min(), 1):.1f}", fontsize=9)
    _group_legend(ax, table["group"])
    _save(fig, target)


def _present(history: pd.DataFrame, col: str) -> bool:
    return col in history and history[col].notna().any()


def learning_curves(history: pd.DataFrame, target: str | Path) -> None:
    """Loss, accuracy (train, val, per branch), alpha and learning rate per (1-based) epoch. Columns
    without a value (the re-balancing branch of a single-branch baseline) are left out, and so is
    alpha when only the conventional branch trained."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    x = history["epoch"]
    for col, label in [("train_loss", "train"), ("val_loss", "val")]:
        if _present(history, col):
            axes[0].plot(x, history[col], label=label)
    axes[0].set_yscale("log")  # early epochs can spike by orders of magnitude
    axes[0].set_title("loss (log)")
    for col, label in [("train_acc", "train (mixed)"), ("val_acc", "val"),
                       ("train_acc_conventional", "conventional branch"),
                       ("train_acc_rebalancing", "re-balancing branch")]:
        if _present(history, col):
            axes[1].plot(x, history[col], label=label)
    axes[1].set_title("accuracy")
    bilateral = _present(history, "train_acc_rebalancing")
    lr_ax = axes[2].twinx() if bilateral else axes[2]
    lines = axes[2].plot(x, history["alpha"], label="alpha") if bilateral else []
    lines += lr_ax.plot(x, history["lr"], color="tab:gray", linestyle="--", label="lr")
    lr_ax.set_ylabel("lr")
    axes[2].set_title("alpha and learning rate" if bilateral else "learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:2]:
        ax.legend(loc="best", fontsize=8)
    axes[2].legend(lines, [line.get_label() for line in lines], loc="best", fontsize=8)
    _save(fig, target)


def per_class_accuracy(table: pd.DataFrame, target: str | Path) -> None:
    """Each class's accuracy against its training count (log x), coloured by shot group when the
    table has one: where the long tail hurts."""
    fig, ax = plt.subplots(figsize=(6, 4))
    grouped = "group" in table
    colours = [COLOURS.get(g, "tab:blue") for g in table["group"]] if grouped else "tab:blue"
    ax.scatter(table["train_count"].clip(lower=0.8), table["accuracy"], s=14, alpha=0.7, c=colours)
    ax.set_xscale("log")
    count_axis(ax.xaxis)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("per-class accuracy vs training frequency")
    if grouped:
        _group_legend(ax, table["group"])
    _save(fig, target)


def reliability(bins: list[dict], ece: float, target: str | Path) -> None:
    """Accuracy against confidence per bin, each bar labelled with its number of predictions; the gap
    to the diagonal is miscalibration."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    used = [b for b in bins if b["count"]]
    width = bins[0]["hi"] - bins[0]["lo"]
    bars = ax.bar([b["lo"] for b in used], [b["accuracy"] for b in used], width=width, align="edge",
                  edgecolor="black", label="accuracy")
    ax.bar_label(bars, labels=[str(b["count"]) for b in used], fontsize=6, padding=1)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.08)
    total = sum(b["count"] for b in bins)
    ax.set_title(f"reliability (ECE {ece:.3f}; {total} predictions,\nnumber per bin above its bar)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, target)


def confused_pairs(matrix: pd.DataFrame, target: str | Path, num_classes: int | None = None) -> None:
    """A confusion matrix (rows: true, columns: predicted): all classes, or the most confused ones
    when the model has more (``num_classes``)."""
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(matrix), 1 + 0.45 * len(matrix)))
    image = ax.imshow(matrix.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(matrix.index)), matrix.index, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    every = num_classes is None or len(matrix) >= num_classes
    ax.set_title(f"confusion matrix ({len(matrix)} classes)" if every
                 else f"most confused {len(matrix)} of {num_classes} classes")
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, target)


def _count(n: int, noun: str) -> str:
    """``1 class``, ``4 classes``."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"
