"""Issue 26, paths: the MLflow store of a project whose folder holds characters special in URLs
(`%`, `?`, `#`, spaces, non-ASCII), and a store that cannot be opened (one line, no minutes of back-off)."""

from __future__ import annotations

import sqlite3
import time
import warnings

import pytest

from bbn.cli.report import main as report
from bbn.errors import BBNError
from bbn.files import sqlite_path, sqlite_uri
from bbn.tracking import Tracker
from bbn.tracking.failures import open_store
from stages import paths
from stages.relog import relog

ODD = "proj 50% a%2b?x=1#frag ü"


def test_a_store_in_a_folder_with_url_characters_is_that_folder(tmp_path):
    folder = tmp_path / ODD
    folder.mkdir()
    db, artifacts = folder / "mlflow.db", folder / "mlartifacts"
    uri = sqlite_uri(db)
    assert sqlite_path(uri) == db
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the Tracker warns when the store fails
        run = Tracker(uri, "e", artifacts=artifacts, lock=folder / ".lock")
        run.start({"a": 1}, {})
        run.log_metrics({"m": 0.5}, step=1)
        (tmp_path / "note.txt").write_text("x")
        run.log_artifact(tmp_path / "note.txt", "plots")
        run.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt", ODD]  # nothing beside it
    with sqlite3.connect(db) as con:
        assert con.execute("select status from runs").fetchall() == [("FINISHED",)]
    assert list(artifacts.rglob("note.txt"))


def test_resolve_uri_escapes_the_project_root(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ROOT", tmp_path / ODD)
    uri = paths.resolve_uri("sqlite:///runs.db")
    assert "?" not in uri and "#" not in uri and " " not in uri and sqlite_path(uri) == tmp_path / ODD / "runs.db"
    assert paths.resolve_uri("sqlite:///my%20runs.db").endswith("/my%20runs.db")


def test_a_store_that_cannot_be_opened_fails_fast_in_one_line(tmp_path, capsys):
    bad = tmp_path / "mlflow.db"
    bad.write_text("not a database")
    start = time.monotonic()
    with pytest.raises(BBNError, match=r"^cannot open the MLflow store sqlite:///.*mlflow.db \(\w+: .*\)$") as caught:
        open_store(sqlite_uri(bad))
    assert "\n" not in str(caught.value)
    with pytest.raises(BBNError, match="cannot open the MLflow store"):
        report(["--tracking-uri", sqlite_uri(bad), "--out", str(tmp_path / "r")])
    (tmp_path / "params.yaml").write_text("tracking:\n  uri: sqlite:///mlflow.db\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "learning_curve.csv").write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(BBNError, match="cannot open the MLflow store"):
        relog(tmp_path, sqlite_uri(bad))
    with pytest.warns(UserWarning, match="unavailable during connect"):
        Tracker(sqlite_uri(bad), "e")
    assert time.monotonic() - start < 20  # MLflow alone backs off ~100 s per attempt to open it
