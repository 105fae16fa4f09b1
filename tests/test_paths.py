"""Path params mean the same in every mode of running: relative to the project root, also inside
`dvc exp run --temp`/`--queue`'s temporary copy (which holds only the files git tracks)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from stages import paths
from stages.runs import store_uri
from tests.helpers import make_repo, sh

BIRDS = Path(__file__).parent / "data" / "real-world" / "birds_macos.zip"


def test_resolve_and_resolve_uri(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    assert paths.resolve("data/src") == str(tmp_path / "data/src")
    assert paths.resolve("/abs/src") == "/abs/src" and paths.resolve("") == ""
    assert paths.resolve("https://host/x.pth") == "https://host/x.pth"
    assert paths.resolve_uri("sqlite:///runs.db") == f"sqlite:///{tmp_path}/runs.db"  # four slashes: absolute
    assert paths.resolve_uri("sqlite:////abs/runs.db") == "sqlite:////abs/runs.db"
    assert paths.resolve_uri("mlruns") == str(tmp_path / "mlruns")
    assert paths.resolve_uri("file:mlruns") == f"file://{tmp_path}/mlruns"
    assert paths.resolve_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_relative_tracking_uri_is_the_project_roots(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # any other working directory (DVC's temporary copy)

    class Tracking:
        uri = "sqlite:///store/runs.db"

    assert store_uri(Tracking) == f"sqlite:///{tmp_path}/store/runs.db"


@pytest.mark.pipeline
def test_relative_data_source_under_dvc_exp_run_temp(tmp_path):
    """`data.source: birds` (a folder beside params.yaml, kept out of git) under `dvc exp run --temp`,
    whose temporary copy has no such folder: the stage finds it at the project root."""
    repo = make_repo(tmp_path / "repo", {"data": {"name": "imagefolder", "source": "birds", "test_per_class": 2}})
    with zipfile.ZipFile(BIRDS) as z:
        z.extractall(repo / "unpacked")
    (repo / "unpacked" / "birds").rename(repo / "birds")
    with open(repo / ".gitignore", "a") as fh:
        fh.write("/birds/\n/unpacked/\n")
    sh(repo, "git", "commit", "-qam", "data outside git")
    proc = sh(repo, "dvc", "exp", "run", "--temp", "download", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "download: imagefolder built" in proc.stdout
    assert not (repo / "data" / "raw").exists()  # it ran in the temporary copy, not here
