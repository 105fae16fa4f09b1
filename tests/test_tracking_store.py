"""bbn.tracking against a real sqlite MLflow store: failures never raise, missed calls are replayed
when the store is back, the experiment is a model-training one."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bbn.tracking import Tracker
from bbn.tracking.experiment import KIND_TAG, MODEL_TRAINING, ensure_experiment


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One sqlite store for the module (creating MLflow's schema takes seconds)."""
    folder = tmp_path_factory.mktemp("store")
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder


def _uri(store: Path) -> str:
    return f"sqlite:///{store / 'mlflow.db'}"


def _tracker(store: Path, experiment: str, **kwargs) -> Tracker:
    """A Tracker whose new experiment keeps its artifacts in the store's folder (MLflow's default
    is ./mlruns of the working directory)."""
    return Tracker(_uri(store), experiment, artifacts=store / "artifacts", **kwargs)


def test_store_moved_away_after_the_run_exists_then_back(store, tmp_path):
    """The store fails after the run was created (its file moved away, as when its folder is
    removed): no call raises (the old client raised AttributeError on log_artifact), one warning,
    and once the file is back the missed epochs, artifact, text and tags reach the run in order."""
    note = tmp_path / "note.txt"
    note.write_text("hello\n")
    run = _tracker(store, "moved", retry_s=0)
    run_id = run.start({"train.tmax": 2}, {"t": "1"}, run_name="moved-run")
    run.log_metrics({"loss": 1.0}, step=1)
    db = store / "mlflow.db"
    os.rename(db, store / "away.db")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run.log_metrics({"loss": 0.5}, step=2)
            run.log_artifact(note, "notes")
            run.log_text("text", "t.txt")
            run.set_tags({"late": "yes"})
            run.log_metrics({"loss": 0.25}, step=3)
        assert not run.available
        unavailable = [w for w in caught if "unavailable" in str(w.message)]
        assert len(unavailable) == 1 and "continuing without tracking" in str(unavailable[0].message)
    finally:
        os.rename(store / "away.db", db)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.finish()
    assert any("is back" in str(w.message) for w in caught)
    client = MlflowClient(_uri(store))
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.data.tags["late"] == "yes"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert {a.path for a in client.list_artifacts(run_id, "notes")} == {"notes/note.txt"}
    assert run.available


def test_store_away_at_start_creates_the_run_when_back(store):
    """A store that fails before the run exists: the run is created, with every epoch, once it is back."""
    db = store / "mlflow.db"
    os.rename(db, store / "away.db")
    (store / "mlflow.db").mkdir()  # sqlite cannot open a folder: the store is unusable
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = _tracker(store, "late", retry_s=0)
            assert run.start({"a": 1}, {}) is None and run.run_id is None
            run.log_metrics({"loss": 2.0}, step=1)
            run.log_metrics({"loss": 1.0}, step=2)
    finally:
        (store / "mlflow.db").rmdir()
        os.rename(store / "away.db", db)
    run.finish()
    assert run.run_id is not None
    client = MlflowClient(_uri(store))
    assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [1, 2]
    assert client.get_run(run.run_id).data.params == {"a": "1"}


def test_a_call_that_is_wrong_is_skipped_and_does_not_block_the_rest(store):
    run = _tracker(store, "wrong")
    run.start({}, {})
    with pytest.warns(UserWarning, match="tracking: broken failed .*ZeroDivisionError"):
        run.submit("broken", lambda client, run_id: 1 / 0)
    run.log_metrics({"x": 1.0}, step=1)
    run.finish()
    assert MlflowClient(_uri(store)).get_run(run.run_id).data.metrics == {"x": 1.0}


def test_experiment_is_model_training_and_existing_ones_are_tagged_on_first_use(store):
    client = MlflowClient(_uri(store))
    new = ensure_experiment(client, "fresh", description="about")
    assert client.get_experiment(new).tags[KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(new).tags["mlflow.note.content"] == "about"
    old = client.create_experiment("made-before")  # as older versions of the pipeline did: no tags
    _tracker(store, "made-before", description="about").start({}, {})
    assert client.get_experiment(old).tags[KIND_TAG] == MODEL_TRAINING
    chosen = client.create_experiment("chosen", tags={KIND_TAG: "genai_development"})
    ensure_experiment(client, "chosen")
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"  # a person's choice stays


def test_disabled_tracker_does_nothing(store):
    run = Tracker("sqlite:////nonexistent/dir/mlflow.db", "x", enabled=False)
    assert run.start({"a": 1}, {}) is None
    run.log_metrics({"x": 1.0}, step=1)
    run.finish()
    assert run.client is None


def test_an_artifact_a_full_disk_refuses_is_one_warning_and_the_run_ends_failed(store, tmp_path, monkeypatch):
    """Issue 26, no space left under the artifact store. MLflow's local repository writes a file
    through ``shutil.copyfileobj`` (the error names no file) and copies a model's folder with
    ``shutil.copyfile`` (the error names source and destination). Each refused upload is one warning
    naming the file and the reason; it does not hold back the calls after it (the store answers);
    the run ends FAILED, the tag ``bbn.not_logged`` saying what it lacks: not FINISHED as if complete,
    nor RUNNING for ever behind a queue that cannot drain."""
    import errno
    import shutil

    curve = tmp_path / "learning_curve.csv"
    curve.write_text("epoch,loss\n1,0.5\n")
    real = shutil.copyfileobj

    def full(fsrc, fdst, *args, **kwargs):
        if getattr(fsrc, "name", "") == str(curve):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fsrc, fdst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", full)
    model_file = str(store / "artifacts" / "models" / "m-1" / "artifacts" / "model.pt")

    def log_model(client, run_id):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/model/model.pt", None, model_file)

    run = _tracker(store, "full-disk")
    run_id = run.start({"a": 1}, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log_artifact(curve, "plots")
        run.submit("log_model", log_model)
        run.log_metrics({"x": 1.0}, step=1)
        run.finish()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all("\n" not in m for m in messages), messages
    assert messages[0].startswith(f"tracking: log_artifact({curve}) not logged: No space left on device;")
    assert messages[1].startswith(f"tracking: log_model not logged: {model_file}: No space left on device;")
    client = MlflowClient(_uri(store))
    got = client.get_run(run_id)
    assert got.info.status == "FAILED" and got.data.metrics == {"x": 1.0}
    assert got.data.tags["bbn.not_logged"] == f"log_artifact({curve}); log_model"
    assert client.list_artifacts(run_id, "plots") == []
