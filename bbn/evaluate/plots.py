"""The pictures: long-tail class distribution and learning curves (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bbn.files import atomic_path  # noqa: E402


def _save(fig, target: str | Path) -> None:
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def longtail(table: pd.DataFrame, target: str | Path) -> None:
    """Sorted class counts on a log scale, coloured by shot group."""
    colours = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(table["rank"], table["count"].clip(lower=0.8), width=1.0,
           color=[colours[g] for g in table["group"]])
    ax.set_yscale("log")
    ax.set_xlabel("class rank (by training images)")
    ax.set_ylabel("training images (log)")
    ax.set_title(f"{len(table)} classes, imbalance ratio {table['count'].max() / max(table['count'].min(), 1):.1f}")
    ax.legend(handles=[Patch(color=c, label=f"{g} ({(table['group'] == g).sum()})") for g, c in colours.items()])
    _save(fig, target)


def learning_curves(history: pd.DataFrame, target: str | Path) -> None:
    """Loss, accuracy (train, val, per branch), alpha and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    x = history["epoch"]
    axes[0].plot(x, history["train_loss"], label="train")
    axes[0].plot(x, history["val_loss"], label="val")
    axes[0].set_yscale("log")  # early epochs can spike by orders of magnitude
    axes[0].set_title("loss (log)")
    for col, label in [("train_acc", "train (mixed)"), ("val_acc", "val"),
                       ("train_acc_conventional", "conventional branch"),
                       ("train_acc_rebalancing", "re-balancing branch")]:
        if col in history:
            axes[1].plot(x, history[col], label=label)
    axes[1].set_title("accuracy")
    axes[2].plot(x, history["alpha"], label="alpha")
    axes[2].set_title("alpha and learning rate")
    lr_ax = axes[2].twinx()
    lr_ax.plot(x, history["lr"], color="tab:gray", linestyle="--", label="lr")
    lr_ax.set_ylabel("lr")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(loc="best", fontsize=8)
    _save(fig, target)


def per_class_accuracy(table: pd.DataFrame, target: str | Path) -> None:
    """Each class's accuracy against its training count (log x): where the long tail hurts."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table["train_count"].clip(lower=0.8), table["accuracy"], s=14, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("per-class accuracy vs training frequency")
    _save(fig, target)


def reliability(bins: list[dict], ece: float, target: str | Path) -> None:
    """Accuracy against confidence per bin; the gap to the diagonal is miscalibration."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    used = [b for b in bins if b["count"]]
    width = bins[0]["hi"] - bins[0]["lo"]
    ax.bar([b["lo"] for b in used], [b["accuracy"] for b in used], width=width, align="edge",
           edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    _save(fig, target)


def confused_pairs(matrix: pd.DataFrame, target: str | Path) -> None:
    """A confusion matrix restricted to the most confused classes (rows: true, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(matrix), 1 + 0.45 * len(matrix)))
    image = ax.imshow(matrix.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(matrix.index)), matrix.index, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("most confused classes")
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, target)
