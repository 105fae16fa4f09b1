"""Tracking: every training run as one MLflow run (params, datasets, per-epoch and system metrics,
evaluation metrics, plots, the model), through ``Tracker``, a client that never stops the pipeline
when the store fails and logs what it missed once the store is back."""

from bbn.tracking.store import Tracker, store_lock

__all__ = ["Tracker", "store_lock"]
