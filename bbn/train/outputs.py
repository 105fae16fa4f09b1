"""What a training leaves behind besides the model: the epoch log line, the learning curve and the
final numbers (``metrics/train.json``), written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bbn.files import write_csv, write_json
from bbn.train.loop import finite


def epoch_line(epoch: int, epochs: int, row: dict) -> str:
    """The log line of an epoch (``row``: one entry of ``fit``'s history)."""
    return (f"epoch {epoch}/{epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.4g}  loss {row['train_loss']:.4f}  "
            f"acc {row['train_acc']:.4f}  val_acc {row['val_acc']:.4f}  {row['seconds']:.1f}s")


def write_curve_and_metrics(history: list[dict], curve: str | Path, metrics: str | Path) -> float:
    """Write the learning curve (one row per epoch) to ``curve`` and the last epoch's numbers with
    the best val accuracy to ``metrics``, both without wall-clock times, so a rerun with the same
    results leaves them unchanged. Returns the training's minutes."""
    frame = pd.DataFrame(history)
    write_csv(curve, frame.drop(columns="seconds", errors="ignore"))
    last = history[-1]
    write_json(metrics, finite({
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
        "val_acc": last["val_acc"], "best_val_acc": frame["val_acc"].max(),
        "max_memory_gib": frame.get("max_memory_gib", pd.Series(dtype=float)).max()}))
    return float(frame["seconds"].sum() / 60)
