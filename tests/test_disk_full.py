"""Issue 26, faults: no space left while the train stage saves the model (shared case disk_full_train).

A tmpfs cannot be mounted here, so the full disk is injected: a ``sitecustomize`` on the stage's
PYTHONPATH makes ``torch.save`` of ``models/model.pt``'s temporary raise ``OSError(ENOSPC)`` without
a file name, as a write(2) on a full disk does. Expected: one line naming models/model.pt and "no
space left on device", the MLflow run FAILED, and the rerun (space freed) finishes the same run."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bbn.files import atomic_path
from tests.helpers import env, jpeg, prepared_repo

INJECT = '''
import errno, os
if os.environ.get("BBN_TEST_ENOSPC"):
    import torch
    _save = torch.save
    def save(obj, f, *args, **kwargs):
        if os.environ["BBN_TEST_ENOSPC"] in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return _save(obj, f, *args, **kwargs)
    torch.save = save
'''


def _train(repo: Path, inject: Path | None) -> subprocess.CompletedProcess:
    e = env()
    if inject:
        e |= {"BBN_TEST_ENOSPC": "model.pt", "PYTHONPATH": f"{inject}:{e['PYTHONPATH']}"}
    return subprocess.run([sys.executable, "-m", "stages.train"], cwd=repo, env=e, capture_output=True, text=True,
                          timeout=600)


def _runs(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute("select run_uuid, status from runs order by start_time").fetchall()


@pytest.mark.pipeline
def test_disk_full_while_saving_the_model_is_one_line_a_failed_run_and_a_rerun_recovers(tmp_path):
    repo = prepared_repo(tmp_path / "bbn", {"train": {"epochs": 1, "tmax": 1, "lr_steps": [1]}})
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    full = _train(repo, inject)
    assert full.returncode == 1, full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: models/model.pt: No space left on device"] and "Traceback" not in full.stderr
    assert not (repo / "models" / "model.pt").exists() and not list((repo / "models").glob(".model.pt.*"))
    assert [status for _, status in _runs(repo)] == ["FAILED"]
    again = _train(repo, None)
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch 1" in again.stdout
    assert torch.load(repo / "models" / "model.pt", weights_only=True)["epochs"] == 1
    assert [status for _, status in _runs(repo)] == ["FINISHED"]  # the same run, finished by the rerun


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
