"""Issue 26, resume that knows the data (shared case stale_resume_after_data_change): the resume key
covers the content of the images the model sees and the data.* params; a changed dataset trains from
scratch and says why in one line. Unit tests, and the shared case replayed with DVC (pipeline tier)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bbn.model.network import ModelSpec, build_model
from bbn.train.resume import ResumeState, Snapshot, data_changed
from stages.params import validate
from tests.helpers import ROOT, TINY, env, jpeg, merge, prepared_repo, read_params, set_params, sh


@pytest.fixture
def layout(tmp_path):
    """data/split and data/prepared (with the prepare stage's sha256.csv) of four images, cwd there."""
    from bbn.data.prepare import DIGESTS, prepare_images, prepared_path

    rows = []
    for i in range(4):
        raw = Path("data/raw/x/train") / f"{i}.jpg"
        (tmp_path / raw).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / raw).write_bytes(jpeg(i))
        rows.append({"image_id": i, "path": str(raw), "category_id": i % 2})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    (tmp_path / "data/split").mkdir(parents=True)
    pd.DataFrame(rows[:3]).to_csv("data/split/train.csv", index=False)
    pd.DataFrame(rows[3:]).to_csv("data/split/val.csv", index=False)
    pd.DataFrame({"category_id": [0, 1], "name": ["a", "b"], "train_count": [2, 1]}).to_csv(
        "data/split/classes.csv", index_label="index")
    paths = [r["path"] for r in rows]
    digests = prepare_images(paths, [prepared_path(p) for p in paths], 32, workers=1)
    pd.DataFrame({"path": paths, "sha256": digests}).to_csv(Path("data/prepared") / DIGESTS, index=False)
    yield tmp_path
    os.chdir(cwd)


def _params(**data):
    return validate(merge(merge(read_params(ROOT / "params.yaml"), TINY), {"data": data}))


def _interrupted(folder: Path, key) -> ResumeState:
    state = ResumeState(folder, key.key, key.meta())
    model = build_model(ModelSpec("resnet32", 2))
    state.save(Snapshot(model.state_dict(), {}, {}, [{"epoch": 1}], "run1"))
    state.release()
    return state


def test_images_changed_under_the_same_names_train_from_scratch(layout):
    from stages.train import _resume_key

    before = _resume_key(_params())
    assert _resume_key(_params()) == before  # deterministic: an unchanged dataset resumes
    _interrupted(layout / "ck", before)
    prepared = layout / "data/prepared/x/train/1.jpg"
    prepared.write_bytes(jpeg(42))  # the same name, other pixels (the prepare stage reran on new images)
    table = pd.read_csv(layout / "data/prepared/sha256.csv")
    table.loc[1, "sha256"] = "0" * 64
    table.to_csv(layout / "data/prepared/sha256.csv", index=False)
    after = _resume_key(_params())
    assert after.config == before.config and after.data != before.data and after.key != before.key
    line = data_changed(layout / "ck", after)
    assert line.startswith("train: the dataset changed since the interrupted training train-")
    assert "after epoch 1 (the images or split it trained on); training from scratch" in line


def test_a_changed_data_param_is_named(layout):
    from stages.train import _resume_key

    before = _resume_key(_params(image_px=16))
    _interrupted(layout / "ck", before)
    after = _resume_key(_params(image_px=24))
    assert after.key != before.key and "(data.image_px)" in data_changed(layout / "ck", after)
    assert data_changed(layout / "ck", before) is None  # the same data: nothing to say, it resumes


def test_without_the_digest_file_the_content_is_hashed(layout):
    from stages.train import _resume_key

    (layout / "data/prepared/sha256.csv").unlink()
    before = _resume_key(_params())
    (layout / "data/prepared/x/train/3.jpg").write_bytes(jpeg(43))  # a val image
    assert _resume_key(_params()).data != before.data


@pytest.mark.pipeline
def test_dvc_repro_after_the_images_changed_under_the_same_names_trains_from_scratch(tmp_path):
    """The shared case replayed as its run.sh does: a training SIGKILLed after epoch 1 (its resume
    state left), the digits rendered again at 24 px under the same file names (data.image_px 16 -> 24:
    the split lists stay byte-identical), then ``dvc repro train``. It must train from scratch and
    say why in one line; it used to resume epoch 1's weights of the old images in a new run."""
    repo = prepared_repo(tmp_path / "bbn")
    split = {p.name: p.read_bytes() for p in (repo / "data" / "split").glob("*.csv")}
    train = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = []
        for line in train.stdout:  # the epoch line comes after its resume state is saved
            seen.append(line)
            if line.startswith("epoch 1/2"):
                break
    finally:
        train.kill()
        train.wait()
        train.stdout.close()
    state, = (repo / "checkpoints").glob("train-*.pt")
    assert seen[-1].startswith("epoch 1/2"), "".join(seen)
    set_params(repo, {"data": {"image_px": 24}})
    out = sh(repo, "dvc", "repro", "train").stdout
    assert {p.name: p.read_bytes() for p in (repo / "data" / "split").glob("*.csv")} == split  # the same names
    why = [line for line in out.splitlines() if "the dataset changed" in line]
    assert why == [f"train: the dataset changed since the interrupted training {state.name} stopped after epoch 1 "
                   "(data.image_px); training from scratch"], out
    assert "resuming" not in out and "epoch 1/2" in out and "epoch 2/2" in out
