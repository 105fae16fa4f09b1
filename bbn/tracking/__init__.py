"""Tracking: every training run as one MLflow run (params, per-epoch metrics, evaluation metrics,
plots, submission), through ``Tracker``, a client that never stops the pipeline when the store fails."""

from bbn.tracking.store import Tracker, store_lock

__all__ = ["Tracker", "store_lock"]
