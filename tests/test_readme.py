"""README.md's commands and code, run as a reader would, in one copy of the project on the tiny config.

How a README code block is treated — an HTML comment alone on the line right before its fence
(GitHub does not show it) says what this test does with it:

  no marker                               ```bash and ```python blocks are run, in README order, in
                                          the same copy: a bash block as one script (stopping at the
                                          first command that fails; the error names it), a python
                                          block as one script; each must exit 0.
  <!-- readme-test: illustrative: why --> shown, never run (a GPU, a real dataset, hours); say why.
  <!-- readme-test: params -->            `dvc exp run` commands are checked, not run (each trains a
                                          model): their -S overrides (each value of a sweep a,b,c) are
                                          applied to params.yaml as DVC applies them (YAML 1.2) and
                                          validated by the params schema. `dvc queue start` is not
                                          run; every other command is. params.yaml is restored after.

Other fences (```text, ```yaml, none) are output or file contents and never run. Everywhere, the
commands that set up the machine are skipped: `python3 -m venv`, `. .venv/bin/activate`, `pip
install` (the environment is installed; the README's install figures come from a fresh clone), and
`python -m pytest` (this suite). `mlflow ui ...` is started on a free port and must serve its page.
The console scripts (bbn-predict, bbn-report, bbn-relog: pyproject's [project.scripts]) run the
copy's code. The files a reader brings (photo.jpg, more.jpg, photos/, list.txt) are test images of
the tiny dataset. Adding a README section: leave a block unmarked when it runs on the tiny config
in seconds, else mark it; an unknown marker fails this test.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from stages.params import validate
from tests.helpers import ROOT, env, make_repo, read_params, sh

pytestmark = pytest.mark.pipeline

MARKS = {"run", "illustrative", "params"}
SETUP = re.compile(r"(python3? -m venv |\. \.venv/bin/activate|source \.venv/bin/activate|pip install |"
                   r"python3? -m pytest)")


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    mark: str


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the marker on the line before its fence."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.match(r"```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = re.match(r"<!--\s*readme-test:\s*([\w-]+)", lines[i - 1].strip()) if i else None
        out.append(Block(i + 1, fence.group(1), "\n".join(lines[i + 1:end]), marker.group(1) if marker else "run"))
        i = end + 1
    return out


def commands(body: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comment lines dropped, ``a && b`` split."""
    joined = re.sub(r"\s*\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            out += [c.strip() for c in _split_and(line)]
    return out


def _split_and(line: str) -> list[str]:
    """``line`` split at the ``&&`` outside quotes."""
    parts, quote, start, i = [], "", 0, 0
    while i < len(line):
        c = line[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif line.startswith("&&", i):
            parts.append(line[start:i])
            start, i = i + 2, i + 1
        i += 1
    return parts + [line[start:]]


def console_scripts() -> dict[str, str]:
    """{script: python command running the copy's entry point} from pyproject.toml."""
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.]+:\w+)"', section, re.M))  # Python 3.10: no tomllib
    assert {"bbn-predict", "bbn-report"} <= set(scripts), section
    return {name: f"{sys.executable} -c 'import {target.split(':')[0]} as m; m.{target.split(':')[1]}()'"
            for name, target in scripts.items()}


def as_run(command: str) -> str:
    """The command as this test runs it (a skipped one becomes ':')."""
    if SETUP.match(command):
        return f": skipped {shlex.quote(command)}"
    first, _, rest = command.partition(" ")
    scripts = console_scripts()
    if first in scripts:
        return f"{scripts[first]} {rest}"
    return re.sub(r"^python3? ", f"{sys.executable} ", command)


def run_bash(repo: Path, block: Block, cmds: list[str]) -> None:
    script = "set -eo pipefail\ntrap 'echo \"README command failed: $BASH_COMMAND\" >&2' ERR\n" + "\n".join(cmds)
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"README.md:{block.line}: {proc.stderr[-3000:]}\n{proc.stdout[-2000:]}"


def check_mlflow_ui(repo: Path, command: str) -> None:
    """``mlflow ui ...`` started on a free port: it must serve its page, then it is stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = shlex.split(command.split("#")[0]) + ["--port", str(port)]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", *args[1:]], cwd=repo, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200 and b"<html" in page.read().lower()
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"{command}: nothing served on 127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _sweep(values: str) -> list[str]:
    """The values of ``-S key=a,b,c`` (commas inside [..] belong to a list value)."""
    return re.split(r",(?![^\[]*\])", values)


def _apply(params: dict, name: str, text: str) -> None:
    """``-S name=text`` into ``params``: the value read as YAML 1.2, as DVC reads it."""
    from ruamel.yaml import YAML

    *path, leaf = name.lstrip("+").split(".")
    for part in path:
        params = params.setdefault(part, {})
    params[leaf] = YAML(typ="safe", pure=True).load(text)


def check_params(repo: Path, block: Block, command: str) -> None:
    """A `dvc exp run` command's -S overrides (each value of a sweep, with the others' first values)
    applied to params.yaml as DVC would, validated by the params schema."""
    tokens = shlex.split(command.split(" #")[0])
    sets = [tokens[i + 1] for i, t in enumerate(tokens) if t in ("-S", "--set-param")]
    for k, assignment in enumerate(sets):
        key, _, values = assignment.partition("=")
        for value in _sweep(values):
            params = read_params(repo / "params.yaml")
            for j, other in enumerate(sets):
                name, _, text = other.partition("=")
                _apply(params, name, value if j == k else _sweep(text)[0])
            try:
                validate(params)
            except Exception as exc:
                raise AssertionError(f"README.md:{block.line}: {command}: -S {key}={value}: {exc}") from None


def bring_files(repo: Path) -> None:
    """photo.jpg, more.jpg, photos/ and list.txt: test images of the tiny dataset."""
    tests = sorted((repo / "data/raw").rglob("test*/**/*.jpg")) or sorted((repo / "data/raw").rglob("*.jpg"))
    shutil.copy(tests[0], repo / "photo.jpg")
    shutil.copy(tests[-1], repo / "more.jpg")
    (repo / "photos").mkdir(exist_ok=True)
    for p in tests[1:3]:
        shutil.copy(p, repo / "photos" / p.name)
    (repo / "list.txt").write_text(f"{tests[3].relative_to(repo)}\n")


def run_block(repo: Path, block: Block) -> None:
    if block.lang == "python":
        proc = subprocess.run([sys.executable, "-c", block.body], cwd=repo, env=env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"README.md:{block.line}: python block failed\n{proc.stderr[-3000:]}"
        return
    pending: list[str] = []
    for command in commands(block.body):
        if block.mark == "params" and command.startswith("dvc exp run"):
            run_bash(repo, block, pending)  # the commands before it (a recipe) first
            pending = []
            check_params(repo, block, command)
        elif block.mark == "params" and command.startswith("dvc queue start"):
            pending.append(f": not run {shlex.quote(command)}")
        elif command.startswith("mlflow ui"):
            run_bash(repo, block, pending)
            pending = []
            check_mlflow_ui(repo, command)
        else:
            pending.append(as_run(command))
    run_bash(repo, block, pending)
    if block.mark == "params":
        sh(repo, "git", "checkout", "params.yaml")


def test_blocks_are_found_and_every_marker_is_known():
    """The parser sees the README's blocks and markers (a typo in a marker would skip a block silently)."""
    found = blocks((ROOT / "README.md").read_text())
    runnable = [b for b in found if b.lang in ("bash", "python")]
    assert {b.mark for b in found} <= MARKS, {b.mark for b in found} - MARKS
    assert any(b.mark == "run" and "dvc repro" in b.body for b in runnable)
    assert any(b.lang == "python" and b.mark == "run" for b in runnable)
    assert _split_and("a 'x && y' && b") == ["a 'x && y' ", " b"]
    assert commands("a \\\n  b # c\n# d\nx && y") == ["a b # c", "x", "y"]


def test_readme_blocks_run_on_the_tiny_config(tmp_path):
    """Every bash and python block of README.md, in order, as its marker says (module docstring)."""
    repo = make_repo(tmp_path / "readme", {"tracking": {"log_model": True}})
    ran = []
    for block in blocks((repo / "README.md").read_text()):
        if block.lang not in ("bash", "python") or block.mark == "illustrative":
            continue
        if not (repo / "photo.jpg").exists() and (repo / "data/raw").exists():
            bring_files(repo)
        run_block(repo, block)
        ran.append(block.line)
    assert len(ran) >= 8, ran


def test_a_broken_block_fails_naming_its_line_and_command(tmp_path):
    """What the README test reports when a shown command, snippet or override is wrong."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(AssertionError, match=r"README.md:7: .*README command failed: false"):
        run_block(tmp_path, Block(7, "bash", "echo fine\nfalse  # a command that fails\necho never", "run"))
    with pytest.raises(AssertionError, match=r"README.md:9: python block failed"):
        run_block(tmp_path, Block(9, "python", 'import mlflow\nraise SystemExit("Registered Model not found")', "run"))
    with pytest.raises(AssertionError, match=r"README.md:11: .*-S train.tmaks=60"):
        check_params(tmp_path, Block(11, "bash", "", "params"), "dvc exp run --queue -S train.tmaks=60")
    with pytest.raises(AssertionError, match=r"-S train.seed=-1"):
        check_params(tmp_path, Block(11, "bash", "", "params"), "dvc exp run -S train.seed=0,-1")
    check_params(tmp_path, Block(11, "bash", "", "params"), "dvc exp run -S train.seed=0,1 -S train.lr=1e-5")
