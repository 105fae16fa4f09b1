"""The resume state of a training: written after every epoch, read back when the same training (same
key) starts again. Like ``models/model.pt`` it holds only tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(weights_only=True)``. A small JSON beside it (``train-<key>.json``)
says how far it got, which run it belongs to and, once the outputs are written, their md5.

Life cycle: a finished training keeps its state, marked complete, until its outputs are known to be
recorded: a training killed after its last epoch but before the outputs were recorded then only
writes them again instead of retraining. ``prune`` removes states that served their purpose
(complete, outputs recorded) and abandoned ones (interrupted configurations never run again): those
older than ``max_age_days`` and all but the ``keep_newest`` newest; never one a running training holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from bbn.files import atomic_path, try_lock, write_json
from bbn.model.network import BilateralNet


def resume_key(params: dict, files: Sequence[str | Path]) -> str:
    """Which training this is: the params that change its result and the bytes of ``files`` (the
    split it trains on and the code that trains), so a stale state is never picked up."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def _read_info(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class ResumeState:
    """The resume file of one training in ``folder``, held under an exclusive lock: a second run of
    the same training at the same time (two queued experiments that differ only downstream) runs
    without one instead of both writing it."""

    def __init__(self, folder: str | Path, key: str):
        self.key, self.path = key, Path(folder) / f"train-{key[:16]}.pt"
        self.info_path = self.path.with_suffix(".json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = try_lock(self.path.with_suffix(".lock"))
        self.enabled = self._lock is not None

    @property
    def info(self) -> dict:
        """The JSON beside the state: key, epoch, run_id, complete, outputs_md5 ({} when none)."""
        return _read_info(self.info_path) if self.enabled else {}

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
        write_json(self.info_path, {"key": self.key, "epoch": payload["epoch"], "run_id": payload["run_id"],
                                    "complete": False, "saved_at": time.time()})

    def finish(self, outputs_md5: str) -> None:
        """Training finished and its outputs are written (``outputs_md5``: the model file's md5): the
        state stays, marked complete, until ``prune`` sees those outputs recorded."""
        if self.enabled:
            write_json(self.info_path, self.info | {"complete": True, "outputs_md5": outputs_md5})
            self.release()

    def discard(self) -> None:
        """Delete the state (its outputs are recorded and this run trains again, e.g. forced)."""
        if self.enabled:
            self.path.unlink(missing_ok=True)
            self.info_path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.enabled:
            self._lock.close()
            self.enabled = False


def list_states(folder: str | Path) -> list[dict]:
    """Every resume state in ``folder``, newest first: path, key, epoch, run_id, complete,
    outputs_md5, bytes, age_days, held (a running training holds it)."""
    out = []
    for pt in Path(folder).glob("train-*.pt"):
        lock = try_lock(pt.with_suffix(".lock"))
        if lock is not None:
            lock.close()
        try:
            stat = pt.stat()
        except FileNotFoundError:
            continue
        out.append({"path": pt, **_read_info(pt.with_suffix(".json")), "bytes": stat.st_size,
                    "age_days": (time.time() - stat.st_mtime) / 86400, "held": lock is None})
    return sorted(out, key=lambda s: s["age_days"])


def prune(folder: str | Path, keep_newest: int, max_age_days: float, recorded: Callable[[str], bool],
          current: str = "") -> list[Path]:
    """Delete the states in ``folder`` that are complete with ``recorded(outputs_md5)`` true, older
    than ``max_age_days``, or beyond the ``keep_newest`` newest; never the state named ``current``
    (``ResumeState.path``) nor one a running training holds. Returns the deleted state files."""
    removed, kept = [], 0
    for s in list_states(folder):
        if s["held"] or str(s["path"]) == str(current):
            continue
        done = bool(s.get("complete")) and recorded(s.get("outputs_md5", ""))
        if done or s["age_days"] > max_age_days or kept >= keep_newest:
            lock = try_lock(s["path"].with_suffix(".lock"))
            if lock is None:  # taken meanwhile
                continue
            for suffix in (".pt", ".json", ".lock"):
                s["path"].with_suffix(suffix).unlink(missing_ok=True)
            lock.close()
            removed.append(s["path"])
        else:
            kept += 1
    for lock_path in Path(folder).glob("train-*.lock"):  # locks of states deleted before
        if not lock_path.with_suffix(".pt").exists() and (lock := try_lock(lock_path)) is not None:
            lock_path.unlink(missing_ok=True)
            lock.close()
    return removed
