"""Recipes: each family's resolved params against its cited source, and one epoch of every family
through ``dvc exp run`` (queued and --temp) in one shared repo."""

from __future__ import annotations

import json
import sys
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from bbn.errors import BBNError
from stages.recipe import load, names, resolve
from tests.helpers import ROOT, make_repo, sh

CURRENT = yaml.safe_load((ROOT / "params.yaml").read_text())
SECTIONS = ("stats", "split", "prepare", "model", "train", "classifier", "eval")  # what a recipe must set completely


def params_of(name: str, *sets: str) -> dict:
    return resolve(name, list(sets), CURRENT)


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}
    return out


def test_every_recipe_validates_and_records_its_name():
    assert len(names()) >= 25
    for name in names():
        sets = ["model.pretrained=/weights.pth"] if name == "study_pretrained" else []
        assert params_of(name, *sets)["recipe"] == name
        text = (ROOT / "recipes" / f"{name}.yaml").read_text()
        assert text.startswith("#") and "# Source: " in text  # every recipe cites its source


def test_recipes_set_the_same_keys_so_their_order_does_not_matter():
    def keys(name):
        return {k for k in flat(load(name)) if k.split(".")[0] in SECTIONS}

    union = set().union(*(keys(n) for n in names()))
    for name in names():
        assert keys(name) == union, (name, sorted(union - keys(name)))


def test_required_values_and_overrides():
    with pytest.raises(BBNError, match="model.pretrained"):
        params_of("study_pretrained")
    p = params_of("cifar10_lt_bbn", "data.imbalance_ratio=10", "train.lr_steps=[2, 3]")
    assert p["data"]["imbalance_ratio"] == 10 and p["train"]["lr_steps"] == [2, 3]
    with pytest.raises(BBNError, match="train.tmax"):
        params_of("cifar10_lt_bbn", "train.tmax=0")


# Megvii-Nanjing/BBN configs/cifar10.yaml and cifar100.yaml, lib/utils/utils.py (nesterov=True),
# main/train.py (drop_last=True), lib/core/combiner.py (div_epoch = MAX_EPOCH), written out here.
BBN_CIFAR = {"train.epochs": 200, "train.batch_size": 128, "train.lr": 0.1, "train.momentum": 0.9,
             "train.weight_decay": 2e-4, "train.nesterov": True, "train.lr_steps": [120, 160], "train.lr_factor": 0.01,
             "train.warmup_epochs": 5, "train.image_size": 32, "train.tmax": 200, "train.augment": "cifar",
             "train.normalize": "cifar", "train.hflip": True, "train.crop_padding": 4, "train.drop_last": True,
             "train.method": "bbn", "train.alpha.schedule": "parabolic", "model.backbone": "resnet32",
             "model.shortcut": "pad", "model.classifier": "official", "model.pretrained": "", "data.seed": 0,
             "data.n_max": 0, "data.imbalance_ratio": 100, "eval.alpha": 0.5}


@pytest.mark.parametrize("name,dataset", [("cifar10_lt_bbn", "cifar10_lt"), ("cifar100_lt_bbn", "cifar100_lt")])
def test_bbn_cifar_recipes_match_the_official_config(name, dataset):
    p = flat(params_of(name))
    assert {k: p[k] for k in BBN_CIFAR} == BBN_CIFAR and p["data.name"] == dataset
    assert p["split.use_official_val"] is False and p["split.val_fraction"] > 0  # never the test set


# kaidic/LDAM-DRW cifar_train.py (200 epochs, lr 0.1, warm-up lr*epoch/5, x0.01 after 160 and 180,
# wd 2e-4, no nesterov, DRW from the 161st epoch with beta 0.9999, LDAM s 30 max_m 0.5, focal gamma 1)
LDAM = {"train.epochs": 200, "train.batch_size": 128, "train.lr": 0.1, "train.weight_decay": 2e-4,
        "train.nesterov": False, "train.lr_steps": [160, 180], "train.lr_factor": 0.01, "train.warmup_epochs": 5,
        "train.drop_last": False, "train.baseline.defer_epoch": 160, "train.baseline.cb_beta": 0.9999,
        "train.baseline.ldam_s": 30.0, "train.baseline.ldam_max_m": 0.5, "train.baseline.focal_gamma": 1.0,
        "model.shortcut": "pad", "model.classifier": "separate", "train.augment": "cifar", "train.normalize": "cifar"}


@pytest.mark.parametrize("method", ["ce", "focal", "ce_drw", "ce_drs", "ldam_drw", "cb_focal"])
def test_baseline_recipes_match_the_ldam_drw_reference(method):
    for dataset in ("cifar10_lt", "cifar100_lt"):
        p = flat(params_of(f"{dataset}_{method}"))
        assert {k: p[k] for k in LDAM} == LDAM and p["train.method"] == method and p["data.name"] == dataset


def _div_epoch(epochs: int) -> int:
    """lib/core/combiner.py: MAX_EPOCH, except 90 -> 100 and 180 -> 200."""
    return 100 * (epochs // 100 + 1) if epochs in (90, 180) else epochs


@pytest.mark.parametrize("name,epochs", [("inat2018_bbn_r50", 180), ("inat2017_bbn_r50", 180),
                                         ("inat2019_bbn_r50", 180), ("inat2018_bbn_r50_1x", 90),
                                         ("inat2017_bbn_r50_1x", 90)])
def test_inat_recipes_match_the_official_config(name, epochs):
    # configs/iNaturalist2018.yaml: 180 epochs, batch 128, lr 0.05 multistep [120, 160] x0.1, wd 1e-4, no warm-up
    p = flat(params_of(name))
    assert p["train.epochs"] == epochs and p["train.tmax"] == _div_epoch(epochs)
    assert (p["train.batch_size"], p["train.lr"], p["train.weight_decay"], p["train.lr_factor"]) == (128, 0.05, 1e-4, 0.1)
    assert p["train.lr_steps"] == ([120, 160] if epochs == 180 else [60, 80]) and p["train.warmup_epochs"] == 0
    assert (p["train.augment"], p["train.normalize"], p["train.image_size"]) == ("inception", "imagenet", 224)
    assert p["model.backbone"] == "resnet50" and p["model.pretrained"] == "" and p["model.classifier"] == "official"
    assert p["split.use_official_val"] is True and p["prepare.short_side"] >= 256
    assert p["data.name"] == name.split("_")[0]


def test_study_recipes_are_the_seeds_studies():
    assert {params_of(f"study_tmax{t}")["train"]["tmax"] for t in (60, 180)} == {60, 180}
    for t in (60, 180):
        assert params_of(f"study_tmax{t}")["train"]["lr_steps"] == [15]
    for v in (0, 1):
        alpha = params_of(f"study_alpha{v}")["train"]["alpha"]
        assert alpha == {"schedule": "fixed", "value": float(v)}
    assert params_of("study_pretrained", "model.pretrained=/w.pth")["model"]["pretrained"] == "/w.pth"
    assert params_of("study_image_size")["data"]["name"] == "inat2019"


# ------------------------------------------------------------------ through DVC, one repo
TINY_DATA = ["data.name=digits", "data.n_max=30", "data.imbalance_ratio=10", "data.image_px=16",
             "data.test_per_class=5", "data.val_per_class=1", "train.epochs=1", "train.batch_size=16",
             "train.image_size=16", "train.lr_steps=[1]", "train.warmup_epochs=0", "eval.batch_size=64",
             "split.val_fraction=0.2", "tracking.experiment=recipes"]
FAMILIES = {"cifar10_lt_bbn": ["prepare.short_side=16"], "cifar10_lt_ldam_drw": ["prepare.short_side=16"],
            "inat2018_bbn_r50": ["prepare.short_side=18"],
            "cifar10_lt_manifold_mixup": ["prepare.short_side=16"],
            "cifar10_lt_manifold_mixup_two_samplers": ["prepare.short_side=16"],
            "cifar10_lt_mislas": ["prepare.short_side=16", "classifier.epochs=1"]}  # mixup, then its stage 2


def _apply(repo, name: str, extra: list[str]) -> None:
    args = [a for s in TINY_DATA + extra for a in ("-S", s)]
    sh(repo, sys.executable, "-m", "stages.recipe", name, *args)


@pytest.mark.pipeline
@pytest.mark.timeout(2400)  # six pipelines, one a ResNet-50: ~6 min idle, far longer on a shared machine
def test_every_recipe_family_runs_an_epoch_through_dvc_exp_run(tmp_path):
    repo = make_repo(tmp_path / "recipes")
    families = list(FAMILIES.items())
    for name, extra in families[:-1]:
        _apply(repo, name, extra)
        sh(repo, "dvc", "exp", "run", "--queue")
    sh(repo, "git", "checkout", "params.yaml")
    name, extra = families[-1]
    _apply(repo, name, extra)
    sh(repo, "dvc", "exp", "run", "--temp", timeout=900)
    sh(repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 1800  # six pipelines (one on ResNet-50): minutes on a loaded 2-core machine
    while any(w in sh(repo, "dvc", "queue", "status").stdout for w in ("Queued", "Running")):
        assert time.time() < deadline
        time.sleep(3)
    status = sh(repo, "dvc", "queue", "status").stdout
    assert "Failed" not in status, status
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("recipes").experiment_id])
    finished = [r for r in runs if r.info.status == "FINISHED"]
    by_recipe = {r.data.params["recipe"]: r for r in finished if "bbn.stage" not in r.data.tags}  # training runs
    assert set(by_recipe) == set(FAMILIES)
    # evaluation logs into the run of the model it scores: the training run, or the classifier stage's
    scored = {r.data.params["recipe"]: r for r in finished if "test_top1_error" in r.data.metrics}
    assert set(scored) == set(FAMILIES) and scored["cifar10_lt_mislas"].data.tags["bbn.stage"] == "classifier"
    for name, run in by_recipe.items():
        resolved = yaml.safe_load(client.download_artifacts(run.info.run_id, "params_resolved.yaml", str(tmp_path)) and
                                  (tmp_path / "params_resolved.yaml").read_text())
        recipe = flat(load(name))
        for key, value in flat(resolved).items():  # the recipe's values, where the test did not shrink them
            if key in recipe and not any(s.startswith(key + "=") for s in TINY_DATA + FAMILIES[name]):
                assert value == recipe[key], (name, key)
        assert scored[name].data.tags["val_split"] == ("official" if name.startswith("inat") else "holdout-longtailed")
    assert by_recipe["inat2018_bbn_r50"].data.params["model.backbone"] == "resnet50"
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown
