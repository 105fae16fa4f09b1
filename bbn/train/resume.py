"""The resume state of an interrupted training: written after every epoch, read back when the same
training (same key) starts again. Like ``models/model.pt`` it holds only tensors, numbers, strings,
lists and dicts, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from bbn.files import atomic_path, try_lock
from bbn.model.network import BilateralNet


def resume_key(params: dict, files: Sequence[str | Path]) -> str:
    """Which training this is: the params that change its result and the bytes of ``files`` (the
    split it trains on and the code that trains), so a stale state is never picked up."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


class ResumeState:
    """The resume file of one training in ``folder``, held under an exclusive lock: a second run of
    the same training at the same time (two queued experiments that differ only downstream) runs
    without one instead of both writing it."""

    def __init__(self, folder: str | Path, key: str):
        self.key, self.path = key, Path(folder) / f"train-{key[:16]}.pt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = try_lock(self.path.with_suffix(".lock"))
        self.enabled = self._lock is not None

    def load(self, model: BilateralNet) -> dict | None:
        """The saved state with its weights loaded into ``model``; None when there is none, or it
        is unreadable or of another training (then training starts afresh)."""
        if not self.enabled or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # atomic writes make this unlikely; a bad file must not stop a new run
            print(f"warning: {self.path}: unreadable resume state ({type(exc).__name__}), starting afresh")
            return None
        if state.get("key") != self.key:
            return None
        model.load_state_dict(state["model"])
        return state

    def save(self, model: BilateralNet, state: dict, run_id: str | None) -> None:
        """``state``: fit's optimizer / scaler / history after an epoch."""
        if not self.enabled:
            return
        payload = {"key": self.key, "epoch": len(state["history"]), "model": model.state_dict(),
                   "run_id": run_id or "", "optimizer": state["optimizer"], "scaler": state["scaler"],
                   "history": state["history"]}
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a SIGKILLed holder's; we hold the lock
            stale.unlink(missing_ok=True)

    def finish(self) -> None:
        """Training finished: the state has served its purpose."""
        if self.enabled:
            self.path.unlink(missing_ok=True)
            Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()
            self.enabled = False
