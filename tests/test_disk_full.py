"""Issue 26, faults: no space left on device, for every output a stage writes: the model (shared case
disk_full_train), the resume state written after each epoch, the evaluation's predictions, and an
upload into the MLflow artifact store.

A tmpfs cannot be mounted here, so the full disk is injected: a ``sitecustomize`` on the stage's
PYTHONPATH makes the writes of one file (``torch.save``, ``numpy.savez_compressed``, and
``shutil.copyfileobj``, with which MLflow's local artifact repository uploads) raise
``OSError(ENOSPC)`` without a file name, as a write(2) on a full disk does. Expected for the DVC
outputs: one line naming the file and "no space left on device", no traceback, nothing half-written,
the MLflow run FAILED where the stage had one open, and the rerun (space freed) recovers. For an
MLflow artifact: tracking is secondary, so one warning naming the file, the stage's outputs complete,
and the run ends FAILED saying what it lacks (tag ``bbn.not_logged``)."""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bbn.files import atomic_path
from tests.helpers import env, jpeg, prepared_repo, set_params

INJECT = '''
import errno, os
WANT = os.environ.get("BBN_TEST_ENOSPC")  # a part of the path of the file the full disk refuses
if WANT:
    import shutil
    import numpy
    import torch

    left = [int(os.environ.get("BBN_TEST_ENOSPC_AFTER", "0"))]  # writes of that file that still fit

    def refuse(path):
        if WANT in str(path):
            left[0] -= 1
            if left[0] < 0:
                raise OSError(errno.ENOSPC, "No space left on device")  # as write(2): no file name

    def opened(f):  # the path of an open file, also of one opened from a descriptor (MLflow's uploads)
        try:
            return os.readlink(f"/proc/self/fd/{f.fileno()}")
        except (AttributeError, OSError, ValueError):
            return f

    def wrap(module, name, path_of):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            refuse(path_of(*args))
            return real(*args, **kwargs)
        setattr(module, name, wrapper)

    wrap(torch, "save", lambda obj, f, *rest: f)
    wrap(numpy, "savez_compressed", lambda f, *rest: opened(f))
    wrap(shutil, "copyfileobj", lambda src, dst, *rest: opened(dst))
'''


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny repo after download ... prepare and stats (each test runs in a copy of it)."""
    return prepared_repo(tmp_path_factory.mktemp("prepared") / "bbn")


@pytest.fixture(scope="module")
def inject(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inject")
    (folder / "sitecustomize.py").write_text(INJECT)
    return folder


def _copy(repo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(repo, tmp_path / "bbn", symlinks=True))


def _stage(repo: Path, name: str, inject: Path | None = None, full: str = "", after: int = 0
           ) -> subprocess.CompletedProcess:
    """``python -m stages.<name>`` in ``repo``; ``full``: a part of the path of the file whose writes
    fail with ENOSPC after ``after`` of them succeeded (the ``sitecustomize`` in ``inject``)."""
    e = env()
    if full:
        e |= {"BBN_TEST_ENOSPC": full, "BBN_TEST_ENOSPC_AFTER": str(after),
              "PYTHONPATH": f"{inject}:{e['PYTHONPATH']}"}
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=repo, env=e, capture_output=True, text=True,
                          timeout=600)


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _runs(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute("select run_uuid, status from runs order by start_time").fetchall()


def _metrics(repo: Path, run_id: str) -> set[str]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return {key for key, in db.execute("select key from latest_metrics where run_uuid = ?", (run_id,))}


@pytest.mark.pipeline
def test_disk_full_while_saving_the_model_is_one_line_a_failed_run_and_a_rerun_recovers(prepared, inject, tmp_path):
    repo = _copy(prepared, tmp_path)
    set_params(repo, {"train": {"epochs": 1, "tmax": 1, "lr_steps": [1]}})
    full = _stage(repo, "train", inject, "model.pt")
    assert full.returncode == 1, full.stderr
    assert _errors(full) == ["error: models/model.pt: No space left on device"]
    assert not (repo / "models" / "model.pt").exists() and not list((repo / "models").glob(".model.pt.*"))
    assert [status for _, status in _runs(repo)] == ["FAILED"]
    again = _stage(repo, "train")
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch 1" in again.stdout
    assert torch.load(repo / "models" / "model.pt", weights_only=True)["epochs"] == 1
    assert [status for _, status in _runs(repo)] == ["FINISHED"]  # the same run, finished by the rerun


@pytest.mark.pipeline
def test_disk_full_while_saving_the_resume_state_is_one_line_a_failed_run_and_a_rerun_finishes(prepared, inject,
                                                                                              tmp_path):
    """The state after epoch 1 fits, the one after epoch 2 does not: the line names the state file, the
    epoch-1 state stays whole (no temporary beside it) and the rerun resumes it and finishes the run."""
    repo = _copy(prepared, tmp_path)
    full = _stage(repo, "train", inject, "/checkpoints/.train-", after=1)
    assert full.returncode == 1, full.stderr
    states = list((repo / "checkpoints").glob("train-*.pt"))
    assert len(states) == 1 and _errors(full) == [f"error: {states[0].resolve()}: No space left on device"]
    assert not list((repo / "checkpoints").glob(".train-*"))  # nothing half-written
    assert torch.load(states[0], weights_only=True)["epoch"] == 1
    assert json.loads(states[0].with_suffix(".json").read_text())["epoch"] == 1
    assert not (repo / "models" / "model.pt").exists()
    assert [status for _, status in _runs(repo)] == ["FAILED"]
    again = _stage(repo, "train")
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch 1" in again.stdout and "epoch 2/2" in again.stdout
    assert torch.load(repo / "models" / "model.pt", weights_only=True)["epochs"] == 2
    assert [status for _, status in _runs(repo)] == ["FINISHED"]  # the same run, finished by the rerun


@pytest.mark.pipeline
def test_disk_full_while_writing_predictions_is_one_line_and_the_rerun_logs_the_evaluation(prepared, inject,
                                                                                           tmp_path):
    """evaluate writes every DVC output before it touches MLflow: a full disk at the first predictions
    file is one line, leaves no file and no evaluation in any run (no run of its own is left RUNNING,
    the training run stays FINISHED: training did finish), and the rerun logs the evaluation."""
    repo = _copy(prepared, tmp_path)
    set_params(repo, {"train": {"epochs": 1, "tmax": 1, "lr_steps": [1]}})
    for name in ("train", "classifier"):
        assert _stage(repo, name).returncode == 0
    before = (repo / "metrics" / "eval.json").read_bytes()
    full = _stage(repo, "evaluate", inject, "predictions/.val.npz")
    assert full.returncode == 1, full.stderr
    assert _errors(full) == ["error: predictions/val.npz: No space left on device"]
    assert list((repo / "predictions").iterdir()) == [] and (repo / "metrics" / "eval.json").read_bytes() == before
    (run_id, status), = _runs(repo)
    assert status == "FINISHED" and not [k for k in _metrics(repo, run_id) if k.startswith("test_")]
    again = _stage(repo, "evaluate")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (repo / "predictions").iterdir()) == ["test.npz", "val.npz"]
    assert _runs(repo) == [(run_id, "FINISHED")] and "test_top1_error" in _metrics(repo, run_id)


@pytest.mark.pipeline
def test_disk_full_in_the_mlflow_artifact_store_is_one_warning_and_a_failed_run(prepared, inject, tmp_path):
    """The learning curve's upload into mlartifacts/ is refused. Tracking is secondary to the DVC
    outputs (as when the store is away): the stage finishes them and exits 0, says so in one warning
    naming the file and the reason, logs what comes after (train_minutes), and ends the run FAILED
    with the tag bbn.not_logged: a run left RUNNING, or FINISHED as if complete, would not be true."""
    from mlflow.tracking import MlflowClient

    repo = _copy(prepared, tmp_path)
    set_params(repo, {"train": {"epochs": 1, "tmax": 1, "lr_steps": [1]}})
    proc = _stage(repo, "train", inject, "/artifacts/plots/")  # the upload's temporary in the run's plots/
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "No space left on device" in line or "Traceback" in line]
    assert lines == [  # one line: no source file or code line around it
        "warning: tracking: log_artifact(plots/learning_curve.csv) not logged: No space left on device; the run "
        "names it in its tag bbn.not_logged (the outputs stay in the project: python -m stages.relog logs them later)"]
    assert "unavailable" not in proc.stderr and "call(s) not logged" not in proc.stderr
    for output in ("models/model.pt", "models/mlflow_run.json", "metrics/train.json", "plots/learning_curve.csv"):
        assert (repo / output).is_file(), output
    (run_id, status), = _runs(repo)
    run = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert status == "FAILED" and run.data.tags["bbn.not_logged"] == "log_artifact(plots/learning_curve.csv)"
    assert "train_minutes" in run.data.metrics
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*")) == [
        "params_resolved.yaml", "plots"]  # no half-written upload (MLflow's .artifact.uploading.* temporary)


def test_torch_writer_failure_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    """torch's own message on a full disk ("unexpected pos ...") names neither the file nor the cause."""
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10 << 20, 10 << 20, 1024))
    with pytest.raises(OSError) as caught:
        with atomic_path(tmp_path / "model.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 426560 vs 426456")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "model.pt")


def _full_disk_writes(monkeypatch):
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.suffix in (".png", ".jpg"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_a_full_disk_while_writing_data_raw_or_prepared_names_the_file(tmp_path, monkeypatch):
    import numpy as np

    from bbn.data.prepare import prepare_images
    from bbn.errors import BBNError
    from bbn.sources.layout import Record, write_dataset

    src = tmp_path / "a.png"
    src.write_bytes(b"")  # before the disk is full
    _full_disk_writes(monkeypatch)
    with pytest.raises(OSError) as caught:
        write_dataset(tmp_path / "raw", [{"id": 0, "name": "a"}],
                      {"train": [Record("x/0.png", 0, pixels=np.zeros((4, 4, 3), np.uint8))]}, "t")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "raw" / "x" / "0.png")

    src.with_suffix(".bin").write_bytes(jpeg(1))
    with pytest.raises(BBNError, match=r"No space left on device: '.*out/b.jpg'"):
        prepare_images([str(src.with_suffix(".bin"))], [str(tmp_path / "out" / "b.jpg")], 32, workers=1)
