"""The library's shape: it knows nothing of DVC, evaluation never loads the training loop, every
stage's dvc.yaml deps cover the code it imports, and methods are told apart in one registry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bbn.errors import ArgError
from bbn.methods import METHODS
from stages.deps import code_deps, code_files, missing_deps
from stages.params import TrainParams
from stages.runner import describe

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = sorted((ROOT / "bbn").rglob("*.py"))


def test_library_knows_nothing_of_dvc_or_the_params_file():
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in LIBRARY
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"DVC_|params\.yaml|\bdvc\b", line, re.IGNORECASE)]
    assert not hits, "\n".join(hits)


def test_library_does_not_import_stages():
    hits = [str(p.relative_to(ROOT)) for p in LIBRARY if re.search(r"^\s*(from|import) stages\b", p.read_text(), re.M)]
    assert not hits


def test_evaluation_and_prediction_do_not_import_the_training_loop():
    code = ("import sys, bbn.evaluate, bbn.evaluate.predictions, bbn.evaluate.plots, bbn.evaluate.submission, "
            "bbn.cli.predict, bbn.model.inference; print(sorted(m for m in sys.modules if m.startswith('bbn.train')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("stage", ["download", "check", "split", "stats", "submit", "classifier"])
def test_stages_that_train_nothing_start_without_torch_or_mlflow(stage):
    """~3 s of imports a stage process: in every dvc repro, queued experiment and pipeline test."""
    code = f"import sys, stages.{stage}; print(sorted({{'torch', 'mlflow'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dvc_yaml_deps_cover_every_stage_import():
    assert missing_deps(yaml.safe_load((ROOT / "dvc.yaml").read_text())) == {}


def test_a_missing_dep_is_reported(tmp_path):
    """A toy dvc.yaml whose train stage forgot the model subpackage: the check names it."""
    deps = [d for d in code_deps("stages.train") if d != "bbn/model"]
    toy = {"stages": {"train": {"cmd": "python -m stages.train", "deps": deps + ["data/split"]},
                      "shell": {"cmd": "echo not a python stage"}}}
    assert missing_deps(toy) == {"train": ["bbn/model"]}


def test_imports_for_annotations_only_are_not_a_stage_dependency(tmp_path):
    from stages.deps import _imports

    (tmp_path / "bbn").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "bbn" / f"{name}.py").write_text("")
    mod = tmp_path / "m.py"
    mod.write_text("from typing import TYPE_CHECKING\nimport bbn.a\nif TYPE_CHECKING:\n    import bbn.b\n"
                   "else:\n    import bbn.c\n")
    assert _imports(mod, tmp_path) == {"bbn.a", "bbn.c"}


def test_stage_code_follows_imports_transitively():
    evaluate = code_deps("stages.evaluate")
    assert {"bbn/model", "bbn/evaluate", "bbn/data", "stages/evaluate.py"} <= set(evaluate)
    assert "bbn/train" not in evaluate  # evaluation needs no training code
    # the resume key hashes the same code that dvc.yaml lists for train
    files = {str(p.relative_to(ROOT)) for p in code_files("stages.train")}
    assert {"bbn/train/loop.py", "bbn/model/network.py", "bbn/data/samplers.py", "stages/train.py"} <= files


def test_train_does_not_depend_on_eval_params():
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    assert not [p for p in train["params"] if str(p).startswith("eval")]


def test_methods_come_from_the_registry_and_nowhere_else():
    allowed = TrainParams.model_fields["method"].annotation.__args__
    assert tuple(allowed) == tuple(METHODS)
    code = sorted((ROOT / "stages").glob("*.py")) + [p for p in LIBRARY if p.name != "methods.py"]
    compare = re.compile(r"""method\W.*(==|!=)\s*["']bbn["']|["']bbn["']\s*(==|!=).*method""")
    hits = [f"{p.relative_to(ROOT)}: {line}" for p in code for line in p.read_text().splitlines() if compare.search(line)]
    assert not hits


def test_registry_declares_samplers_heads_and_test_alpha():
    assert METHODS["bbn"].samplers(0, 30) == ("uniform", "reversed")
    assert METHODS["ce_drs"].samplers(29, 30) == ("uniform",) and METHODS["ce_drs"].samplers(30, 30) == ("balanced",)
    assert METHODS["ce_rs"].samplers(0, 30) == ("balanced",)
    assert METHODS["ldam_drw"].head == "cosine" and METHODS["ce"].head == "linear"
    assert METHODS["bbn"].test_alpha("parabolic", 0.5, 0.3) == 0.3
    assert METHODS["bbn"].test_alpha("fixed", 0.0, 0.5) == 0.0
    assert METHODS["focal"].test_alpha("parabolic", 0.5, 0.5) == 1.0


def test_stem_antialias_needs_a_stem_pool():
    from bbn.model.network import ModelSpec, antialias_sites, build_model
    assert antialias_sites("resnet50", "stem") == (True, False)
    assert antialias_sites("resnet32", "full") == (False, True)
    with pytest.raises(ArgError, match="resnet32 does not have"):
        build_model(ModelSpec("resnet32", 3, "stem"))


def test_stage_runner_names_the_params_key():
    err = ArgError("source", "/x not found")
    assert describe(err, {"source": "data.source"}) == "params.yaml: data.source: /x not found"
    assert describe(err, {}) == "source: /x not found"


def test_test_repos_hold_only_project_files_not_a_checkouts_leftovers(tmp_path):
    """A user's checkout after an interrupted `dvc exp run` (resume state, data, store, model): the
    fixtures' repositories are built from the files git knows, so none of it leaks into a test."""
    from tests.helpers import copy_project, sh

    checkout = copy_project(tmp_path / "checkout")
    sh(checkout, "git", "init", "-q", "-b", "main")
    sh(checkout, "git", "add", "-A")
    sh(checkout, "git", "commit", "-q", "-m", "clone")
    leftovers = ["checkpoints/train-0123456789abcdef.pt", "data/raw/x.jpg", "mlflow.db", "models/model.pt",
                 "data/downloads/extracted/tmpabc/y.jpg", "predictions/test.npz"]
    for name in leftovers:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_bytes(b"stale")
    copy = copy_project(tmp_path / "fixture", root=checkout)
    assert not [name for name in leftovers if (copy / name).exists()]
    assert (copy / "stages/train.py").is_file() and (copy / "dvc.yaml").is_file()
