"""The resume state of a training: written after every epoch, read back when the same training (same
key) starts again. Like ``models/model.pt`` it holds only tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(weights_only=True)``. A small JSON beside it (``train-<key>.json``)
says how far it got, which run it belongs to and, once the outputs are written, their md5.

The key (``TrainingKey``) covers what changes the result: the params, the code, and the data: the
``data.*`` params, the split lists and the content of the images the model sees (the sha256 of each
prepared copy, ``content_digest``). A changed dataset therefore trains from scratch, and
``data_changed`` says so in one line when an interrupted training of the same config was left.

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import torch

from bbn.files import atomic_path, read_csv, try_lock, write_json
from bbn.model.network import BilateralNet


def resume_key(params: dict, files: Sequence[str | Path]) -> str:
    """Which training this is: the params that change its result and the bytes of ``files`` (the
    split it trains on and the code that trains), so a stale state is never picked up."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def content_digest(paths: Sequence[str], prepared: Sequence[str], digests: str | Path) -> str:
    """sha256 of the images a training sees: for each of ``paths`` (as the split lists them) the
    sha256 of its prepared copy ``prepared[i]``, read from ``digests`` (the prepare stage's
    ``sha256.csv``: path, sha256) or, for a path it does not list, computed from the file."""
    known = {}
    if Path(digests).is_file():
        table = read_csv(digests)
        known = dict(zip(table["path"], table["sha256"]))
    h = hashlib.sha256()
    for path, copy in zip(paths, prepared):
        digest = known.get(path) or hashlib.sha256(Path(copy).read_bytes()).hexdigest()
        h.update(f"{path}\t{digest}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TrainingKey:
    """A training's identity in two parts: ``config`` (the params other than ``data.*``, the code)
    and ``data`` (the ``data.*`` params, the split lists, the content of the images trained and
    validated on). ``key`` covers both; ``data_params`` names what changed when only data did."""

    config: str
    data: str
    data_params: dict

    @classmethod
    def of(cls, params: dict, files: Sequence[str | Path], data_params: dict, data_files: Sequence[str | Path],
           content: str) -> "TrainingKey":
        data = resume_key({"params": data_params, "content": content}, data_files)
        return cls(resume_key(params, files), data, data_params)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.config}:{self.data}".encode()).hexdigest()

    def meta(self) -> dict:
        return {"config": self.config, "data": self.data, "data_params": self.data_params}


# what a resumed training may change: where it runs, not what it computes
MOVABLE = frozenset({"train.device", "train.num_workers", "train.rdzv_endpoint", "train.rdzv_id"})


def training_key(flat: dict[str, object], code: Sequence[str | Path], split: Sequence[str | Path],
                 paths: Sequence[str], prepared: Sequence[str], digests: str | Path) -> TrainingKey:
    """The key of a training: ``flat`` params ({dotted key: value}; the ``model.``, ``train.`` and
    ``prepare.`` ones but ``MOVABLE`` go into the config part, ``data.`` ones into the data part),
    the ``code`` files, the ``split`` lists, and the content of the images trained and validated on
    (``paths`` as listed, their ``prepared`` copies, ``digests``: see ``content_digest``)."""
    chosen = {k: v for k, v in flat.items() if k.split(".")[0] in ("model", "train", "prepare") and k not in MOVABLE}
    data = {k: v for k, v in flat.items() if k.startswith("data.")}
    return TrainingKey.of(chosen, code, data, split, content_digest(paths, prepared, digests))


def data_changed(folder: str | Path, key: TrainingKey) -> str | None:
    """One line when an interrupted training of the same config is in ``folder`` but its data differ
    (so it is not resumed: training starts from scratch), naming the changed ``data.*`` params or
    else the images; None when there is none."""
    for s in list_states(folder):
        if s.get("config") == key.config and s.get("data") != key.data and not s.get("complete"):
            old = s.get("data_params") or {}
            changed = [k for k in sorted(set(old) | set(key.data_params)) if old.get(k) != key.data_params.get(k)]
            what = ", ".join(changed) or "the images or split it trained on"
            return (f"train: the dataset changed since the interrupted training {Path(s['path']).name} stopped "
                    f"after epoch {s.get('epoch', '?')} ({what}); training from scratch")
    return None


def _read_info(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Snapshot:
    """A training after an epoch: what resuming it needs. ``model``, ``optimizer``, ``scaler``: their
    ``state_dict()``; ``history``: one row per epoch done (``bbn.train.loop.fit``); ``run_id``: the
    MLflow run it logs to ('' before one is known)."""

    model: dict
    optimizer: dict
    scaler: dict
    history: list[dict]
    run_id: str = ""

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return len(self.history)


class ResumeState:
    """The resume file of one training in ``folder``, held under an exclusive lock: a second run of
    the same training at the same time (two queued experiments that differ only downstream) runs
    without one instead of both writing it."""

    def __init__(self, folder: str | Path, key: str, meta: dict | None = None):
        """``meta``: written into the JSON beside the state (``TrainingKey.meta``)."""
        self.key, self.path, self.meta = key, Path(folder) / f"train-{key[:16]}.pt", meta or {}
        self.info_path = self.path.with_suffix(".json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = try_lock(self.path.with_suffix(".lock"))
        self.enabled = self._lock is not None

    @property
    def info(self) -> dict:
        """The JSON beside the state: key, epoch, run_id, complete, outputs_md5 ({} when none)."""
        return _read_info(self.info_path) if self.enabled else {}

    def load(self, model: BilateralNet) -> Snapshot | None:
        """The saved snapshot with its weights loaded into ``model``; None when there is none, or it
        is unreadable or of another training (then training starts afresh)."""
        if not self.enabled or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if state.get("key") != self.key:
                return None
            snapshot = Snapshot(state["model"], state["optimizer"], state["scaler"], state["history"], state["run_id"])
        except Exception as exc:  # atomic writes make this unlikely; a bad file must not stop a new run
            print(f"warning: {self.path}: unreadable resume state ({type(exc).__name__}), starting afresh")
            return None
        model.load_state_dict(snapshot.model)
        return snapshot

    def save(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` (atomically) and the JSON beside it."""
        if not self.enabled:
            return
        payload = {"key": self.key, "epoch": snapshot.epoch} | {f.name: getattr(snapshot, f.name) for f in fields(snapshot)}
        with atomic_path(self.path) as tmp:
            torch.save(payload, tmp)
        write_json(self.info_path, {"key": self.key, "epoch": snapshot.epoch, "run_id": snapshot.run_id,
                                    "complete": False, "saved_at": time.time(), **self.meta})

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


def start_state(folder: str | Path, key: TrainingKey, keep_newest: int, max_age_days: float,
                recorded: Callable[[str], bool]) -> ResumeState:
    """The resume state of the training ``key`` starting now, after pruning the others in ``folder``
    (``prune``). A complete state whose outputs are ``recorded`` means a forced rerun: it is deleted
    and training starts afresh; a complete one whose outputs are not (killed after the last epoch)
    is kept, and the caller writes the outputs again without training."""
    saved = ResumeState(folder, key.key, key.meta())
    if saved.enabled and not saved.path.exists() and (why := data_changed(folder, key)):
        print(why)
    for path in prune(folder, keep_newest, max_age_days, recorded, str(saved.path)):
        print(f"train: deleted resume state {path.name} (finished and recorded, past the age limit, or beyond the newest kept)")
    info = saved.info
    if info.get("complete") and recorded(info.get("outputs_md5", "")):
        saved.discard()
    elif info.get("complete"):
        print(f"train: all {info['epoch']} epochs were done by an earlier run whose outputs were not "
              f"recorded ({saved.path.name}); writing them again without training")
    elif not saved.enabled:
        print(f"train: another run of this training holds {saved.path}; this one keeps no resume state")
    return saved

