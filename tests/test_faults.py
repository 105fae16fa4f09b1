"""Faults of the environment: a full disk or a missing permission as one line naming the path;
temporaries of a SIGKILLed writer removed at the next start, those of a live writer left alone."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bbn.cli.predict import classify, collect_images, main
from bbn.errors import run
from bbn.files import atomic_dir, atomic_path, remove_stale, write_json
from bbn.model.checkpoint import Checkpoint
from bbn.model.network import ModelSpec, build_model


def _run(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run(main)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_environment_errors_are_one_line_naming_the_path(capsys, code):
    def main():
        raise OSError(code, os.strerror(code), "/data/models/model.pt")

    status, err = _run(main, capsys)
    assert status == 1
    assert err == f"error: /data/models/model.pt: {os.strerror(code)}\n"


def test_full_disk_while_writing_names_the_target(tmp_path, capsys):
    """write() on a full disk raises ENOSPC without a file name; the error names the output."""
    target = tmp_path / "metrics" / "eval.json"

    def main():
        with atomic_path(target) as tmp, open("/dev/full", "w") as full:
            tmp.write_text("{}")
            full.write("x" * 10)
            full.flush()  # the real ENOSPC of a full device

    status, err = _run(main, capsys)
    assert status == 1 and err == f"error: {target}: {os.strerror(errno.ENOSPC)}\n"
    assert list(target.parent.iterdir()) == []  # nothing half-written


def test_torch_save_on_a_full_disk_names_the_target(tmp_path, capsys, monkeypatch):
    """torch.save reports a failed write as RuntimeError; on a full disk it becomes the one line."""
    import bbn.files

    monkeypatch.setattr(bbn.files, "_disk_full", lambda folder: True)
    target = tmp_path / "model.pt"

    def main():
        with atomic_path(target):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    assert _run(main, capsys) == (1, f"error: {target}: {os.strerror(errno.ENOSPC)}\n")


def test_other_errors_keep_their_traceback(tmp_path):
    def main():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")

    with pytest.raises(FileNotFoundError):
        run(main)
    with pytest.raises(RuntimeError, match="a bug"):
        with atomic_path(tmp_path / "never-written"):
            raise RuntimeError("a bug, not a full disk")
    assert list(tmp_path.iterdir()) == []


WARNED = """
import warnings
from bbn.errors import BBNWarning, run

def main():
    warnings.warn("tracking: a call not logged", BBNWarning, stacklevel=2)
    warnings.warn("a library's own warning")

run(main)
"""


def test_a_stage_warning_is_one_line_other_warnings_keep_their_source():
    proc = subprocess.run([sys.executable, "-c", WARNED], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "warning: tracking: a call not logged"
    assert lines[1].endswith(":7: UserWarning: a library's own warning")  # Python's format: file and line


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_leftovers_of_killed_writers_removed_live_ones_kept(tmp_path):
    """A SIGKILLed writer leaves its temporary (no `finally` ran); the next writer of the same target
    removes it, but never the temporary of a writer that is still running (it holds a flock)."""
    dead_file = tmp_path / ".eval.json.k1ll3d.tmp"
    dead_file.write_text("half")
    dead_dir = tmp_path / ".prepared.k1ll3d.tmp"
    (dead_dir / "a").mkdir(parents=True)
    (dead_dir / "a" / "x.jpg").write_bytes(b"half")
    live = tmp_path / ".eval.json.l1ve.tmp"
    live.write_text("being written")
    other = tmp_path / ".other.json.k1ll3d.tmp"
    other.write_text("another target's")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        write_json(tmp_path / "eval.json", {"a": 1})
        with atomic_dir(tmp_path / "prepared") as out:
            (out / "y.jpg").write_bytes(b"ok")
        assert not dead_file.exists() and not dead_dir.exists()
        assert live.exists() and other.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".eval.json.l1ve.tmp", ".other.json.k1ll3d.tmp", "eval.json", "prepared"])
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale(tmp_path, ".eval.json.*.tmp") == [live]  # its holder died


def test_writer_holds_its_temporary(tmp_path):
    with atomic_path(tmp_path / "x.bin") as tmp:
        fd = os.open(tmp, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.bin").read_bytes() == b"1"


def test_predict_reports_unreadable_files_as_rows_and_carries_on(tmp_path, capsys):
    """bbn-predict over a folder with broken files: a row with the reason for each, predictions for
    the rest (the same as without the broken files), in the order found."""
    torch.manual_seed(0)
    Checkpoint.of(build_model(ModelSpec("resnet32", 3, "off", 3)), 16, [7, 11, 13], ["ant", "bee", "NA"],
                  epochs=1).save(tmp_path / "model.pt")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    good = collect_images([str(imgs)])
    (imgs / "1b_truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (imgs / "2b_empty.png").write_bytes(b"")
    (imgs / "3b_text.jpg").write_text("not a picture")
    out = tmp_path / "p.csv"
    main([str(imgs), "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out), "--device", "cpu"])
    assert "4 images classified, 3 unreadable (see the error column)" in capsys.readouterr().out
    table = pd.read_csv(out, dtype={"name": str, "error": str}, keep_default_na=False)
    assert table["path"].tolist() == collect_images([str(imgs)])  # every file, in order
    bad = table[table["error"] != ""]
    assert sorted(Path(p).name for p in bad["path"]) == ["1b_truncated.jpg", "2b_empty.png", "3b_text.jpg"]
    assert bad.set_index("path").loc[str(imgs / "2b_empty.png"), "error"] == "empty file"
    assert (bad["category_id"] == "").all() and (bad["name"] == "").all()
    alone = classify(tmp_path / "model.pt", good, device="cpu")
    ok = table[table["error"] == ""]
    assert ok["category_id"].astype(int).tolist() == alone["category_id"].tolist()
    assert set(ok["name"]) <= {"ant", "bee", "NA"}


@pytest.mark.pipeline
def test_stages_remove_what_a_killed_run_left(tmp_path):
    """Leftovers of a SIGKILL in extraction, download, stats and prepare (staging folders and
    temporaries no `finally` removed) are gone after the next run of those stages."""
    from tests.helpers import make_repo, stage

    repo = make_repo(tmp_path / "repo", {"data": {"name": "imagefolder", "test_per_class": 2,
                                                  "source": "tests/data/real-world/birds_macos.zip"}})
    leftovers = [repo / "data/downloads/extracted/tmpk1ll3d/birds/cat/0000.jpg",
                 repo / "data/downloads/extracted/.birds_macos.zip-0123456789ab.k1ll3d.tmp/birds/a.jpg",
                 repo / "data/.raw.k1ll3d.tmp/imagefolder/train/cat/0000.jpg",
                 repo / "data/.prepared.k1ll3d.tmp/imagefolder/train/cat/0000.jpg",
                 repo / "metrics/.stats.json.k1ll3d.tmp"]
    for f in leftovers:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half")
    for name in ("download", "check", "split", "stats", "prepare"):
        proc = stage(repo, name)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    staging = [p for p in (repo / "data").rglob("*") if p.name.startswith("tmp") or p.name.endswith(".tmp")]
    assert staging == [] and not (repo / "metrics/.stats.json.k1ll3d.tmp").exists()
    assert len(list((repo / "data/prepared").rglob("*.jpg"))) == 36
