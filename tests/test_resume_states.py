"""The prune rule for resume states (bbn.train.resume.prune, applied at train start by
stages.checkpoints): complete-and-recorded, too old, beyond the newest K; never held or current."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from bbn.files import try_lock
from bbn.model.network import ModelSpec, build_model
from bbn.train.resume import ResumeState, Snapshot, list_states, prune


def _state(folder: Path, name: str, age_days: float, **info) -> Path:
    pt = folder / f"train-{name}.pt"
    pt.write_bytes(b"x" * 10)
    pt.with_suffix(".json").write_text(json.dumps({"key": name, "epoch": 1, "run_id": "", "complete": False} | info))
    then = time.time() - age_days * 86400
    os.utime(pt, (then, then))
    return pt


def test_prune_rule(tmp_path):
    new = _state(tmp_path, "new", 0.1)
    done = _state(tmp_path, "done", 0.2, complete=True, outputs_md5="a" * 32)
    unrecorded = _state(tmp_path, "unrecorded", 0.3, complete=True, outputs_md5="b" * 32)
    third = _state(tmp_path, "third", 1.0)
    old = _state(tmp_path, "old", 20.0)
    current = _state(tmp_path, "current", 30.0)
    held = _state(tmp_path, "held", 40.0)
    holder = try_lock(held.with_suffix(".lock"))  # a running training's lock
    (tmp_path / "train-orphan.lock").write_text("")  # the lock of a state deleted long ago
    removed = prune(tmp_path, keep_newest=2, max_age_days=14, recorded=lambda md5: md5 == "a" * 32, current=current)
    assert sorted(p.name for p in removed) == sorted([done.name, third.name, old.name])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"{p.stem}{s}" for p in (new, unrecorded, current, held) for s in (".pt", ".json")]
                          + ["train-held.lock"] + [f"{p.stem}.lock" for p in (new, unrecorded, current)])
    holder.close()
    assert [s["path"] for s in list_states(tmp_path)] == [new, unrecorded, current, held]  # newest first


def test_finished_state_is_kept_complete_then_discarded(tmp_path):
    model = build_model(ModelSpec("resnet32", 3, "off", 3))
    saved = ResumeState(tmp_path, "k" * 64)
    saved.save(Snapshot(model.state_dict(), {}, {}, [{"epoch": 1}, {"epoch": 2}], "run1"))
    assert saved.info == {"key": "k" * 64, "epoch": 2, "run_id": "run1", "complete": False,
                          "saved_at": saved.info["saved_at"]}
    saved.finish("c" * 32)
    again = ResumeState(tmp_path, "k" * 64)  # the next start of the same training
    assert again.info["complete"] and again.info["outputs_md5"] == "c" * 32
    loaded = again.load(build_model(ModelSpec("resnet32", 3, "off", 3)))
    assert loaded.epoch == 2 and loaded.run_id == "run1" and torch.equal(loaded.model["cb_fc.weight"], model.cb_fc.weight)
    again.discard()
    assert not again.path.exists() and not again.info_path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [again.path.with_suffix(".lock").name]
