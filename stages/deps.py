"""Each stage's code, computed from its imports: what ``dvc.yaml`` must list as the stage's deps
and what the train stage's resume key hashes. One definition of "the code", by construction.

A stage's code is its module, the ``stages`` modules it imports and the ``bbn`` subpackages (whole
folders) and top-level ``bbn`` modules it imports, transitively (imports inside functions count).
``python -m stages.deps`` prints every stage's list; the tests check dvc.yaml against it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bbn", "stages")


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runtime_nodes(node: ast.AST):
    """``node`` and everything below it but the bodies of ``if TYPE_CHECKING:`` (annotations only:
    those imports never run, so they are not the code of a stage)."""
    yield node
    for child in ast.iter_child_nodes(node):
        test = child.test if isinstance(child, ast.If) else None
        if isinstance(test, (ast.Name, ast.Attribute)) and ast.unparse(test).endswith("TYPE_CHECKING"):
            yield from (n for branch in child.orelse for n in _runtime_nodes(branch))
            continue
        yield from _runtime_nodes(child)


def _imports(path: Path, root: Path) -> set[str]:
    """Project modules that ``path`` imports (``from a.b import c`` counts a.b.c when c is a module)."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES and _module_file(n, root)}
    return found


def closure(module: str, root: Path = ROOT) -> set[str]:
    """``module`` and every project module it imports, transitively (with their parent packages)."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if parent not in seen and _module_file(parent, root):
                seen.add(parent)
                todo.append(parent)
        path = _module_file(name, root)
        if path is not None:
            todo += [n for n in _imports(path, root) if n not in seen]
    return seen


def code_deps(module: str, root: Path = ROOT) -> list[str]:
    """dvc.yaml dep entries covering ``module``'s code: ``bbn/<sub>`` folders, other files as paths."""
    out = set()
    for name in closure(module, root):
        parts = name.split(".")
        if parts[0] == "bbn" and len(parts) > 1 and (root / "bbn" / parts[1]).is_dir():
            out.add(f"bbn/{parts[1]}")
        else:
            out.add(str(_module_file(name, root).relative_to(root)))
    return sorted(out)


def code_files(module: str, root: Path = ROOT) -> list[Path]:
    """The Python files of ``code_deps`` (folders expanded), sorted: what the resume key hashes."""
    files = []
    for dep in code_deps(module, root):
        path = root / dep
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def missing_deps(dvc_yaml: dict, root: Path = ROOT) -> dict[str, list[str]]:
    """Per stage of ``dvc_yaml`` run as ``python -m <module>``: code deps it does not list."""
    out = {}
    for name, stage in dvc_yaml.get("stages", {}).items():
        cmd = stage.get("cmd", "")
        if not cmd.startswith("python -m "):
            continue
        listed = {d.rstrip("/") for d in stage.get("deps", [])}
        missing = [d for d in code_deps(cmd.split()[2], root) if d not in listed]
        if missing:
            out[name] = missing
    return out


if __name__ == "__main__":
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage_name, body in stages.items():
        print(f"{stage_name}: {' '.join(code_deps(body['cmd'].split()[2]))}")
    sys.exit(1 if missing_deps({"stages": stages}) else 0)
