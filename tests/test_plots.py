"""The figures: plain-number count axes, lr in the legend, no empty lines for baselines, integer
epochs, bin counts on the reliability diagram."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bbn.evaluate import plots
from bbn.evaluate.metrics import reliability_bins


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, drawn and kept open for inspection."""
    kept = []

    def keep(fig, target):
        fig.canvas.draw()
        kept.append(fig)

    monkeypatch.setattr(plots, "_save", keep)
    yield kept
    for fig in kept:
        plots.plt.close(fig)


def _labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def test_count_axes_read_as_plain_numbers(figures):
    counts = np.array([460, 200, 90, 40, 12, 3])
    table = pd.DataFrame({"rank": np.arange(1, 7), "train_count": counts,
                          "group": ["many", "many", "medium", "medium", "few", "few"]})
    plots.longtail(table, "unused.png")
    ax = figures[0].axes[0]
    labels = _labels(ax.yaxis)
    assert {"5", "10", "20", "50", "100", "200"} <= set(labels), labels
    assert not any("times" in t or "^" in t or "$" in t for t in labels)  # no 3×10⁰ mathtext
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["many-shot (2 classes)", "medium-shot (2 classes)", "few-shot (2 classes)"]


def _history(bilateral: bool, epochs: int = 3) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "alpha": 1 - ((e - 1) / epochs) ** 2 if bilateral else np.ones(epochs),
                         "lr": [0.1, 0.1, 0.01][:epochs], "train_loss": 2.0 / e, "val_loss": 2.1 / e,
                         "train_acc": e / 4, "val_acc": e / 5, "train_acc_conventional": e / 4,
                         "train_acc_rebalancing": e / 6 if bilateral else np.full(epochs, np.nan)})


@pytest.mark.parametrize("bilateral", [True, False])
def test_learning_curves_legends_and_integer_epochs(figures, bilateral):
    plots.learning_curves(_history(bilateral), "unused.png")
    loss_ax, acc_ax, sched_ax = figures[0].axes[:3]
    sched = [t.get_text() for t in sched_ax.get_legend().get_texts()]
    assert sched == (["alpha", "lr"] if bilateral else ["lr"])  # no flat alpha panel for a baseline
    acc = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert ("re-balancing branch" in acc) == bilateral  # no empty line for a baseline
    for ax in (loss_ax, acc_ax, sched_ax):
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_reliability_bars_carry_their_counts(figures):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=200)
    labels = rng.integers(0, 4, 200)
    bins = reliability_bins(probs, labels)
    plots.reliability(bins, 0.1, "unused.png")
    texts = [t.get_text() for t in figures[0].axes[0].texts]
    assert sorted(map(int, texts)) == sorted(b["count"] for b in bins if b["count"])
