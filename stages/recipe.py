"""Apply a published recipe to params.yaml: ``python -m stages.recipe cifar10_lt_bbn -S data.imbalance_ratio=50``.

A recipe is ``recipes/<name>.yaml``: params sections that set every knob of a published training
recipe, optionally ``extends: <other>`` (applied first; names starting with ``_`` are shared bases,
not recipes). The command merges the recipe, then the ``-S key=value`` overrides (values read as
YAML, as ``dvc exp run -S`` does), into params.yaml, sets ``recipe: <name>`` (so the run records it:
an MLflow param and params_resolved.yaml), validates the result and writes it. A value ``???`` in
a recipe must be given with ``-S``. Then run it as any experiment::

    python -m stages.recipe cifar10_lt_bbn -S data.source=../shared/data/cifar10-jpg.tar.gz
    dvc exp run                                  # or: dvc exp run --queue -S train.seed=0,1,2

``--list`` shows the recipes and their first comment line; ``--show NAME`` prints the resolved
recipe without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from bbn.errors import BBNError
from bbn.files import write_text
from stages.params import validate
from stages.runner import run

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
REQUIRED = "???"


def merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (lists and values replaced)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def names(folder: Path = RECIPES) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_"))


def load(name: str, folder: Path = RECIPES, seen: tuple[str, ...] = ()) -> dict:
    """The recipe's params, ``extends`` resolved; BBNError naming the file for a missing recipe,
    a loop or a file that is not a mapping."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(names(folder))
        raise BBNError(f"{path}: no such recipe (recipes: {known})")
    if name in seen:
        raise BBNError(f"{path}: extends loop {' -> '.join(seen + (name,))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BBNError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise BBNError(f"{path}: expected a mapping of params sections")
    parent = raw.pop("extends", None)
    return merge(load(parent, folder, seen + (name,)), raw) if parent else raw


def override(params: dict, assignment: str) -> dict:
    """``section.key=value`` (value parsed as YAML) applied to ``params``."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise BBNError(f"-S {assignment}: expected key=value, e.g. train.seed=1")
    nested: object = yaml.safe_load(value) if value else ""
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return merge(params, nested)


def _required(params: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in params.items():
        if isinstance(value, dict):
            out += _required(value, f"{prefix}{key}.")
        elif value == REQUIRED:
            out.append(prefix + key)
    return out


def resolve(name: str, sets: list[str], current: dict, folder: Path = RECIPES) -> dict:
    """``current`` params with recipe ``name`` and the ``sets`` applied and ``recipe: name``;
    BBNError when a required value is missing or the result does not validate."""
    params = merge(current, load(name, folder))
    for assignment in sets:
        params = override(params, assignment)
    missing = _required(params)
    if missing:
        raise BBNError(f"recipe {name}: give {missing[0]} with -S {missing[0]}=...")
    params["recipe"] = name
    validate(params, f"recipe {name}")
    return {"recipe": name} | {k: v for k, v in params.items() if k != "recipe"}


def _first_comment(name: str) -> str:
    line = (RECIPES / f"{name}.yaml").read_text().splitlines()[0]
    return line.lstrip("# ").strip()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.recipe", description=__doc__.split("\n")[0])
    ap.add_argument("name", nargs="?", help="a recipe in recipes/ (without .yaml)")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="override after the recipe")
    ap.add_argument("--params", default="params.yaml", help="the params file to update (default: params.yaml)")
    ap.add_argument("--list", action="store_true", help="list the recipes")
    ap.add_argument("--show", action="store_true", help="print the resolved params, write nothing")
    args = ap.parse_args(argv)
    if args.list or not args.name:
        for name in names():
            print(f"{name:26s} {_first_comment(name)}")
        return
    path = Path(args.params)
    current = yaml.safe_load(path.read_text()) or {}
    params = resolve(args.name, args.set, current)
    text = yaml.safe_dump(params, sort_keys=False)
    if args.show:
        print(text, end="")
        return
    write_text(path, f"# recipe {args.name} (recipes/{args.name}.yaml) applied by python -m stages.recipe\n{text}")
    print(f"recipe {args.name} applied to {path}" + (f" with {' '.join(args.set)}" if args.set else ""))


if __name__ == "__main__":
    run(lambda: main(sys.argv[1:]))
