"""The library's typed inputs and records (issue: typed library inputs): the checkpoint, the resume
snapshot and state policy, the resume key, the training run's resumption, the split datasets."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bbn.errors import BBNError
from bbn.model import inference
from bbn.model.checkpoint import Checkpoint, load_checkpoint
from bbn.model.network import ModelSpec, build_model
from bbn.tracking.resumption import RESUMED_FROM, RESUMED_IN, RunStart, differing, training_run
from bbn.train.inputs import split_datasets
from bbn.train.resume import ResumeState, Snapshot, start_state, training_key


# --------------------------------------------------------------------------------- checkpoint
def test_checkpoint_round_trip_and_one_line_errors(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet32", 3, "off", head="cosine"))
    Checkpoint.of(model, 16, [7, 11, 13], ["ant", "bee", "NA"], 4, method="ldam_drw",
                  prepare={"short_side": 36, "quality": 95}).save(tmp_path / "m.pt")
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt", torch.device("cpu"))
    assert ckpt.spec == model.spec and ckpt.names == ["ant", "bee", "NA"] and ckpt.epochs == 4
    assert ckpt.prepare["short_side"] == 36 and ckpt.alpha == {} and ckpt.inputs == {}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp*"))  # written under a temporary name, then renamed
    with pytest.raises(BBNError, match="nope.pt: checkpoint not found"):
        Checkpoint.load(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(BBNError, match="junk.pt: not a checkpoint of this project"):
        Checkpoint.load(tmp_path / "junk.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    raw["spec"]["num_classes"] = 5  # weights that do not fit the spec
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(BBNError, match="bad.pt: not a checkpoint of this project"):
        load_checkpoint(tmp_path / "bad.pt", torch.device("cpu"))


def test_an_older_checkpoint_without_a_method_is_refused_at_inference(tmp_path):
    raw = {"spec": ModelSpec("resnet32", 2, "off").to_dict(), "state_dict": {}, "image_size": 16,
           "category_ids": [0, 1], "names": ["a", "b"], "epochs": 1}
    torch.save(raw, tmp_path / "old.pt")
    ckpt = Checkpoint.load(tmp_path / "old.pt")
    assert ckpt.method is None and ckpt.preprocess == {}
    with pytest.raises(BBNError, match="older version"):
        inference.test_alpha(ckpt, 0.5)


def test_test_alpha_follows_a_fixed_training_alpha():
    test_alpha = inference.test_alpha

    def ckpt(method: str, **alpha) -> Checkpoint:
        return Checkpoint(ModelSpec("resnet32", 2), {}, 32, [0, 1], ["a", "b"], 1, method=method, alpha=alpha)

    assert test_alpha(ckpt("bbn", schedule="parabolic", value=0.5), 0.5) == 0.5
    assert test_alpha(ckpt("bbn"), 0.3) == 0.3
    assert test_alpha(ckpt("bbn", schedule="fixed", value=0.0), 0.5) == 0.0  # rb branch only
    assert test_alpha(ckpt("bbn", schedule="fixed", value=1.0), 0.5) == 1.0  # conventional only
    assert test_alpha(ckpt("ce", schedule="fixed", value=0.0), 0.5) == 1.0


# ------------------------------------------------------------------------- resume state policy
def _snapshot(epochs: int, run_id: str = "run1") -> Snapshot:
    return Snapshot(build_model(ModelSpec("resnet32", 2, "off")).state_dict(), {}, {},
                    [{"epoch": e + 1} for e in range(epochs)], run_id)


def _key(lr: float = 0.1, **extra):
    flat = {"train.lr": lr, "train.device": "cpu", "train.num_workers": 0, "data.name": "digits", "eval.tta_flip": False}
    return training_key(flat | extra, [], [], [], [], "absent.csv")


def test_the_resume_key_ignores_where_it_runs_and_names_what_changed():
    assert _key().key == _key(**{"train.device": "cuda", "train.num_workers": 8, "eval.tta_flip": True}).key
    assert _key(lr=0.2).key != _key().key and _key(lr=0.2).data == _key().data
    changed = _key(**{"data.name": "cifar10_lt"})
    assert changed.config == _key().config and changed.data != _key().data
    assert changed.data_params == {"data.name": "cifar10_lt"}


def test_start_state_keeps_an_unrecorded_finish_and_discards_a_recorded_one(tmp_path, capsys):
    key = _key()
    saved = ResumeState(tmp_path, key.key, key.meta())
    saved.save(_snapshot(2))
    saved.finish("c" * 32)
    again = start_state(tmp_path, key, 3, 14, recorded=lambda md5: False)
    assert again.path.exists() and "all 2 epochs were done" in capsys.readouterr().out
    again.release()
    start_state(tmp_path, key, 3, 14, recorded=lambda md5: md5 == "c" * 32).release()
    assert not saved.path.exists()  # a forced rerun of recorded outputs trains afresh
    held = start_state(tmp_path, key, 3, 14, recorded=lambda md5: False)
    other = start_state(tmp_path, key, 3, 14, recorded=lambda md5: False)  # a second run of it, at once
    assert held.enabled and not other.enabled and "keeps no resume state" in capsys.readouterr().out
    held.release()


# -------------------------------------------------------------------------- run resumption
class FakeRun:
    """What ``training_run`` uses of a ``bbn.tracking.Tracker``, recorded."""

    made: list[FakeRun] = []
    store: dict[str, dict] = {}

    def __init__(self, run_id):
        self.run_id, self.tags, self.metrics, self.status = run_id, {}, [], None
        FakeRun.made.append(self)

    def params(self):
        return FakeRun.store.get(self.run_id)

    def reopen(self):
        return True

    def logged_steps(self, name):
        return {1}

    def start(self, params, run_name, description, tags):  # as Tracker.start: always a new run
        self.run_id = f"new{len(FakeRun.store)}"
        FakeRun.store[self.run_id] = {k: str(v) for k, v in params.items()}
        self.tags |= tags

    def log_text(self, text, name):
        pass

    def start_system_metrics(self, interval):
        pass

    def log_metrics(self, metrics, step):
        self.metrics.append(step)

    def set_tags(self, tags):
        self.tags |= tags

    def finish(self, status="FINISHED"):
        self.status = status


START = RunStart({"train.lr": 0.1, "eval.tta_flip": True}, "bbn-r32", "", {})


def test_a_resumed_run_continues_its_run_and_logs_only_the_missing_epochs():
    FakeRun.made, FakeRun.store = [], {"old": {"train.lr": "0.1", "eval.tta_flip": "True"}}
    run = training_run(FakeRun, START, "old", [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}])
    assert run.run_id == "old" and run.metrics == [2] and len(FakeRun.made) == 1


def test_changed_params_start_a_new_run_linked_both_ways():
    FakeRun.made, FakeRun.store = [], {"old": {"train.lr": "0.1", "eval.tta_flip": "False"}}
    run = training_run(FakeRun, START, "old", [{"epoch": 1, "loss": 1.0}])
    old = FakeRun.made[0]
    assert run.run_id != "old" and run.tags[RESUMED_FROM] == "old" and old.tags[RESUMED_IN] == run.run_id
    assert old.status == "KILLED" and run.metrics == [1]
    assert differing(FakeRun.store["old"], START.params) == ["eval.tta_flip"]


def test_a_resumed_run_gone_from_the_store_continues_in_a_new_run_with_the_epochs_so_far():
    FakeRun.made, FakeRun.store = [], {}  # the interrupted run was deleted from the store
    run = training_run(FakeRun, START, "old", [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}])
    assert run.run_id != "old" and run.metrics == [1, 2] and RESUMED_FROM not in run.tags


def test_a_fresh_training_starts_one_run_and_logs_nothing_yet():
    FakeRun.made, FakeRun.store = [], {}
    run = training_run(FakeRun, START)
    assert len(FakeRun.made) == 1 and run.metrics == [] and FakeRun.store[run.run_id]["train.lr"] == "0.1"


# --------------------------------------------------------------------------- split datasets
def test_split_datasets_read_prepared_copies_labelled_by_index(tmp_path):
    frame = pd.DataFrame({"path": ["data/raw/a/1.png", "data/raw/b/2.png"], "category_id": [11, 7]})
    pre = {"augment": "cifar", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    train, val = split_datasets(frame, frame.iloc[:1], {7: 0, 11: 1}, 32, pre, True, 4)
    assert train.targets == [1, 0] and val.targets == [1] and len(val) == 1
    assert train.paths == ["data/prepared/a/1.png", "data/prepared/b/2.png"] and train.decode_size == 32  # cifar: no resize


def test_bbn_predict_defaults_to_the_final_model_else_the_trained_one(tmp_path, monkeypatch):
    import os

    from bbn.cli.predict import default_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert default_checkpoint() == "models/final.pt"  # neither: the error will name the final model
    (tmp_path / "models/model.pt").write_bytes(b"")
    assert default_checkpoint() == "models/model.pt"  # only train has run
    (tmp_path / "models/final.pt").write_bytes(b"")
    os.utime(tmp_path / "models/model.pt", (1, 1))
    assert default_checkpoint() == "models/final.pt"
    os.utime(tmp_path / "models/model.pt", None)  # train ran again after the classifier stage
    os.utime(tmp_path / "models/final.pt", (1, 1))
    assert default_checkpoint() == "models/model.pt"
