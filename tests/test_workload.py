"""The real workload's knobs: ``train.num_workers: auto`` and ``train.max_steps`` (issue 23)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bbn.data.loading import ImageList, eval_loader, resolve_workers, train_loaders
from bbn.data.samplers import UniformSampler
from bbn.errors import ArgError, BBNError
from bbn.model.network import ModelSpec, build_model
from bbn.sources.datasets import fetch_dataset
from bbn.sources.extract import stream_extract
from bbn.sources.raw import point, shared_tree, source_fingerprint
from bbn.sources.spec import DataSpec
from bbn.train.loop import fit
from bbn.train.resume import Snapshot
from stages.params import TrainParams
from stages.specs import train_spec
from tests.helpers import FileServer, dataspec, inat2019, md5s


@pytest.fixture
def cpus(monkeypatch):
    """Pretend this process may use 16 CPUs, on a node of one process."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return monkeypatch


def test_auto_workers_share_the_cpus_among_the_loaders_reading_at_once(cpus):
    assert resolve_workers("auto") == 16  # evaluation: one loader
    assert resolve_workers("auto", share=2) == 8  # BBN: uniform and reversed read side by side
    assert resolve_workers(-1, share=2) == 8  # the old spelling
    cpus.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 GPUs on this node
    assert resolve_workers("auto", share=2) == 2
    cpus.setenv("LOCAL_WORLD_SIZE", "64")
    assert resolve_workers("auto", share=2) == 1  # never 0: the main process must not decode
    assert resolve_workers(3, share=2) == 3  # a count is taken as given
    with pytest.raises(ArgError, match="num_workers"):
        resolve_workers("many")


def test_auto_is_the_default_and_the_schema_reads_it():
    assert TrainParams().num_workers == "auto"
    assert TrainParams(num_workers=0).num_workers == 0
    with pytest.raises(ValueError):
        TrainParams(num_workers=-2)


def test_loaders_built_with_auto_are_persistent_prefetching_and_split_by_method(cpus):
    images = ImageList(["a.jpg"] * 8, [0, 1] * 4, transform=None)
    bbn = train_loaders(images, 4, "auto", seed=0, share=2)
    ce = train_loaders(images, 4, "auto", seed=0, share=1)
    assert bbn["uniform"].num_workers == bbn["reversed"].num_workers == 8
    assert ce["uniform"].num_workers == 16
    loader = bbn["uniform"]
    assert loader.persistent_workers and loader.prefetch_factor == 4
    assert loader.pin_memory == torch.cuda.is_available()
    assert eval_loader(images, 0, "auto", torch.device("cpu")).num_workers == 16
    assert train_loaders(images, 4, 0, seed=0)["uniform"].num_workers == 0  # in the main process


def _fit(max_steps: int, epochs: int = 3, resume: Snapshot | None = None):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 4, (64,))
    data = TensorDataset(x, y)
    loaders = {k: DataLoader(data, batch_size=8, sampler=UniformSampler(64, seed=1)) for k in ("uniform", "reversed")}
    model = build_model(ModelSpec("resnet32", 4, "off"))
    p = train_spec(TrainParams(epochs=epochs, tmax=epochs, warmup_epochs=0, lr_steps=[99], max_steps=max_steps,
                               channels_last=False))
    seen = []
    history = fit(model, loaders, None, p, torch.device("cpu"), torch.ones(4),
                  on_epoch=lambda epoch, row, state: seen.append((epoch, row["steps"])), resume=resume)
    return history, seen


def test_max_steps_bounds_the_whole_run_and_ends_the_epoch_in_progress():
    history, seen = _fit(max_steps=11)  # 8 steps an epoch: all of epoch 1, 3 steps of epoch 2
    assert seen == [(1, 8), (2, 3)]
    assert [row["epoch"] for row in history] == [1, 2]
    history, seen = _fit(max_steps=0)  # no bound: every epoch whole
    assert seen == [(1, 8), (2, 8), (3, 8)]


def test_max_steps_counts_the_steps_of_a_resumed_run():
    first, _ = _fit(max_steps=0, epochs=1)  # one whole epoch done (8 steps) before an interruption
    model = build_model(ModelSpec("resnet32", 4, "off"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = Snapshot(model.state_dict(), optimizer.state_dict(), torch.amp.GradScaler("cpu", enabled=False).state_dict(),
                     first)
    _, seen = _fit(max_steps=12, resume=state)
    assert seen == [(2, 4)]  # 12 in all: 8 before, 4 now
    _, seen = _fit(max_steps=8, resume=state)
    assert seen == []  # the bound was reached before the interruption


@pytest.mark.parametrize("max_steps", [7, 0])
def test_max_steps_is_recorded_as_the_run_tag_budget_max_steps(tmp_path, monkeypatch, max_steps):
    """A bounded run must say so in MLflow (its numbers are not a full training's): the new
    training run's tags carry ``budget.max_steps`` (0: no bound) beside its params."""
    import pandas as pd

    from stages.params import validate
    from stages.runs import training_start
    from tests.helpers import ROOT, merge, read_params

    monkeypatch.chdir(tmp_path)  # training_start reads data/split/{train,val}.csv for the dataset inputs
    (tmp_path / "data/split").mkdir(parents=True)
    for name in ("train", "val"):
        pd.DataFrame({"image_id": [1], "path": ["data/raw/a/1.png"], "category_id": [0]}).to_csv(
            tmp_path / "data/split" / f"{name}.csv", index=False)
    params = validate(merge(read_params(ROOT / "params.yaml"), {"train": {"max_steps": max_steps}}))
    start = training_start(params, torch.device("cpu"), 1)
    assert start.tags["budget.max_steps"] == str(max_steps) and start.params["train.max_steps"] == max_steps
    assert start.tags["budget.epochs"] == str(params.train.epochs)


# ------------------------------------------------------------------ one dataset tree per version
def _build(calls: list, fail: bool = False):
    def build(out: Path) -> dict:
        calls.append(out)
        (out / "a.jpg").write_bytes(b"image")
        (out / "dataset.json").write_text('{"name": "x"}')
        if fail:
            raise KeyboardInterrupt  # a kill in the middle of the build
        return {"name": "x"}
    return build


def test_a_tree_is_built_once_per_key_and_a_killed_build_leaves_nothing(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        shared_tree(tmp_path, "x", "k1", _build(calls, fail=True))
    assert not (tmp_path / "x-k1").exists() and not list(tmp_path.glob(".x-k1.*.tmp"))
    tree, manifest, built = shared_tree(tmp_path, "x", "k1", _build(calls))
    assert built and tree == tmp_path / "x-k1" and manifest["files"] == 2 and manifest["name"] == "x"
    again, same, built = shared_tree(tmp_path, "x", "k1", _build(calls))
    assert not built and again == tree and same == manifest and len(calls) == 2  # reused: no third build
    other, rebuilt, _ = shared_tree(tmp_path, "x", "k2", _build(calls))  # new code, same dataset
    assert other != tree and rebuilt["content"] == manifest["content"]  # data/raw.json would not change


def test_the_fingerprint_sees_edits_replacements_and_new_files_only(tmp_path):
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    (src / "cat/1.jpg").write_bytes(b"one")
    first = source_fingerprint(src)
    assert source_fingerprint(src) == first and source_fingerprint("") == ""
    with open(src / "cat/1.jpg", "r+b") as fh:  # edited in place: same inode, same size, new mtime
        fh.write(b"ONE")
    os.utime(src / "cat/1.jpg", ns=(1, 10**18))
    edited = source_fingerprint(src)
    assert edited != first
    (src / "cat/new.jpg").write_bytes(b"one")
    os.replace(src / "cat/new.jpg", src / "cat/1.jpg")  # replaced under the same name: a new inode
    os.utime(src / "cat/1.jpg", ns=(1, 10**18))
    assert source_fingerprint(src) not in (first, edited)


def test_data_raw_becomes_a_link_and_an_old_folder_of_links_goes_without_harming_originals(tmp_path):
    original = tmp_path / "src/1.jpg"
    original.parent.mkdir()
    original.write_bytes(b"image")
    old = tmp_path / "data/raw"
    old.mkdir(parents=True)
    os.link(original, old / "1.jpg")  # what the pipeline built before data/raw was a link
    tree = tmp_path / "trees/x-k"
    tree.mkdir(parents=True)
    point(old, tree)
    assert old.is_symlink() and old.resolve() == tree.resolve() and original.read_bytes() == b"image"
    point(old, tmp_path / "trees")
    assert old.resolve() == (tmp_path / "trees").resolve() and not list(old.parent.glob(".raw.*"))


# ------------------------------------------------------------- download: one pass, archives dropped
def test_stream_extract_verifies_on_the_same_pass_and_refuses_unsafe_members(tmp_path):
    files = inat2019(evil=True)
    good, evil = tmp_path / "test2019.tar.gz", tmp_path / "evil.tar.gz"
    good.write_bytes(files["test2019.tar.gz"])
    evil.write_bytes(files["train_val2019.tar.gz"])
    assert stream_extract(good, tmp_path / "out") == md5s(files)["test2019.tar.gz"]
    assert len(list((tmp_path / "out/test2019").glob("*.jpg"))) == 4
    with pytest.raises(BBNError, match="unsafe member '../evil'"):
        stream_extract(evil, tmp_path / "x/out")
    assert not (tmp_path / "x/evil").exists()  # checked before it was written


def _inat(server, keep: bool, files: dict) -> DataSpec:
    return dataspec(name="inat2019", mirror=server.url, md5=md5s(files), keep_archives=keep)


def test_dropping_archives_keeps_one_copy_and_loses_nothing_when_interrupted(tmp_path, monkeypatch):
    import bbn.sources.datasets as datasets

    files, downloads = inat2019(), tmp_path / "downloads"
    real = datasets.stream_extract

    def killed_on_the_big_one(archive, dest):
        if archive.name == "train_val2019.tar.gz":
            raise KeyboardInterrupt  # killed while extracting
        return real(archive, dest)

    with FileServer(files) as server:
        monkeypatch.setattr(datasets, "stream_extract", killed_on_the_big_one)
        with pytest.raises(KeyboardInterrupt):
            fetch_dataset(_inat(server, False, files), tmp_path / "a", downloads)
        assert (downloads / "train_val2019.tar.gz").is_file()  # not dropped: its extraction is not complete
        monkeypatch.setattr(datasets, "stream_extract", real)
        server.requests.clear()
        fetch_dataset(_inat(server, False, files), tmp_path / "b", downloads)
        assert "train_val2019.tar.gz" not in {path for path, _ in server.requests}  # complete and verified: kept
        assert not list(downloads.glob("*.tar.gz")) and not list(downloads.glob("*.md5"))  # one copy: the extraction
        server.requests.clear()
        fetch_dataset(_inat(server, True, files), tmp_path / "c", downloads)  # extracted: nothing to fetch
        assert server.requests == []
    trees = [sorted(p.relative_to(tmp_path / x).as_posix() for p in (tmp_path / x).rglob("*.jpg")) for x in "bc"]
    assert trees[0] == trees[1] and len(trees[0]) == 21  # 17 training and val images, 4 test


# ------------------------------------------------------------------------- the official init
@pytest.mark.parametrize("init", ["official", "fan_out"])
def test_conv_init_std_per_layer_follows_its_kaiming_formula(init):
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet32", 10, "off", shortcut="pad", init=init))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 3 * 5 * 2 + 2  # stem, 3 stages x 5 blocks x 2, the second branch block's 2
    for conv in convs:
        out_c, in_c, k, _ = conv.weight.shape
        fan = in_c * k * k if init == "official" else out_c * k * k
        assert conv.weight.std().item() == pytest.approx((2 / fan) ** 0.5, rel=0.12), conv
    stem = convs[0].weight.std().item()
    assert stem == pytest.approx(0.272 if init == "official" else 0.118, rel=0.12)  # sqrt(2/27), sqrt(2/144)


def test_official_init_of_resnet50_is_pytorchs_default_and_a_bad_init_is_named():
    torch.manual_seed(0)
    conv = next(m for m in build_model(ModelSpec("resnet50", 10, "off", init="official")).modules()
                if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] == 64 and m.weight.shape[2] == 3)
    bound = 1 / (conv.weight[0].numel()) ** 0.5  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), ...)
    assert conv.weight.abs().max().item() <= bound and conv.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
    with pytest.raises(ArgError, match="init"):
        build_model(ModelSpec("resnet32", 10, "off", init="xavier"))


def test_every_recipe_claims_the_official_init():
    from stages.recipe import load, names

    for name in names():
        assert load(name)["model"]["init"] == "official", name


def test_the_fingerprint_ends_a_symlink_loop(tmp_path):
    (tmp_path / "src/cat").mkdir(parents=True)
    (tmp_path / "src/cat/1.jpg").write_bytes(b"one")
    (tmp_path / "src/cat/loop").symlink_to(tmp_path / "src", target_is_directory=True)
    assert source_fingerprint(tmp_path / "src")  # returns: each folder walked once


def test_an_error_in_one_archive_stops_the_others_at_their_next_block():
    import time

    from bbn.sources.datasets import _in_parallel
    from bbn.sources.extract import CANCEL, check_cancel

    def job(item):
        if item == "bad":
            raise BBNError("bad.tar.gz: md5 mismatch")
        for _ in range(400):  # an 80 GB archive: 20 s at this pace, unless cancelled
            check_cancel()
            time.sleep(0.05)
        return item

    start = time.monotonic()
    with pytest.raises(BBNError, match="md5 mismatch"):
        _in_parallel(job, ["big", "bad"])
    assert time.monotonic() - start < 5 and not CANCEL.is_set()
