"""The test tiers, kept honest at run time (a pytest plugin; ``tests/conftest.py`` loads it).

Two tiers: the fast tier (``-m "not pipeline and not slow"``: in-process unit tests, the inner loop)
and the pipeline tier (``-m "pipeline and not slow"``). A test that starts DVC, a stage process
(``python -m stages.X``), torchrun, an MLflow server or a bench script (``bench/*.py``, ``bench/*.sh``:
the training loop end to end) belongs to the pipeline tier and must be marked
``@pytest.mark.pipeline`` (or ``pytestmark = pytest.mark.pipeline`` for a module). This plugin wraps
``subprocess.Popen`` (which ``subprocess.run`` and asyncio use too) and fails an unmarked test, or its
fixtures, the moment it launches one of them, in every run, so the fast tier stays fast. It sees the
command a test launches itself (also through ``bash -c``), not what a launched script runs in turn.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import PurePath

import pytest

MARK = "pipeline"
WRAPPERS = {"env", "exec", "nohup", "nice", "time", "setsid", "timeout", "stdbuf"}
_SHELL_SEPARATORS = set(";&|()\n")
_running: list[pytest.Item] = []  # the test whose setup, call or teardown runs now
_violations = pytest.StashKey[list]()  # what an unmarked test launched
_popen_init = subprocess.Popen.__init__


def _commands(args, shell: bool) -> list[list[str]]:
    """``Popen``'s ``args`` as a list of commands (a shell line is split at ``;``, ``&&``, ``|`` ...)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        if not shell:
            return [[text]]
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:  # unbalanced quotes: let the shell report it
            return []
    else:
        words = [os.fsdecode(a) for a in args]
        if not shell:
            return [words]
    commands, current = [], []
    for word in words:
        if word and set(word) <= _SHELL_SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(word)
    return [*commands, current]


def _heavy(cmd: list[str]) -> str | None:
    while cmd and ("=" in cmd[0] or cmd[0][:1] == "-" or cmd[0][:1].isdigit() or PurePath(cmd[0]).name in WRAPPERS):
        cmd = cmd[1:]  # VAR=value, env -i, timeout 600, ...
    if not cmd:
        return None
    prog, rest = PurePath(cmd[0]).name, cmd[1:]
    if prog in ("dvc", "torchrun"):
        return prog
    if prog == "mlflow" and rest[:1] in (["server"], ["ui"]):
        return f"mlflow {rest[0]}"
    shell = prog in ("bash", "sh", "dash", "zsh")
    if shell and "-c" in rest[:-1]:
        return heavy_command(rest[rest.index("-c") + 1], shell=True)
    if not (shell or prog.startswith("python") or cmd[0] == sys.executable):
        return None
    if not shell and "-m" in rest[:-1]:
        module, after = rest[rest.index("-m") + 1], rest[rest.index("-m") + 2:]
        if module == "dvc" or module.startswith(("stages.", "bench.")):
            return f"python -m {module}"
        if module in ("torch.distributed.run", "torch.distributed.launch"):
            return "torchrun"
        if module == "mlflow" and after[:1] in (["server"], ["ui"]):
            return f"mlflow {after[0]}"
        return None
    script = next((a for a in rest if not a.startswith("-")), "")
    return script if PurePath(script).parent.name in ("stages", "bench") and script.endswith((".py", ".sh")) else None


def heavy_command(args, shell: bool = False) -> str | None:
    """What a ``subprocess.Popen(args, shell=shell)`` starts that belongs to the pipeline tier
    (``"dvc"``, ``"python -m stages.train"``, ``"torchrun"``, ``"mlflow server"``, ``"bench/gpu.sh"``),
    else None."""
    return next(filter(None, (_heavy(cmd) for cmd in _commands(args, shell))), None)


def _guarded_init(self, args, *rest, **kwargs):
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker(MARK) is None:
        what = heavy_command(args, kwargs.get("shell", False))
        if what:
            message = (f"{item.nodeid} starts `{what}` but is not marked @pytest.mark.{MARK}: mark it (the fast "
                       f"tier runs no DVC, stage process, torchrun, MLflow server or bench script; tests/tiers.py)")
            item.stash.setdefault(_violations, []).append(message)
            pytest.fail(message, pytrace=False)
    _popen_init(self, args, *rest, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}: starts DVC, a stage process, torchrun, an MLflow server or a "
                                       "bench script (the second tier; tests/tiers.py fails an unmarked test that does)")
    subprocess.Popen.__init__ = _guarded_init


def pytest_unconfigure(config: pytest.Config) -> None:
    subprocess.Popen.__init__ = _popen_init


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A launch that the test swallowed (a broad ``except``, a thread) still fails it."""
    report = yield
    pending = item.stash.get(_violations, [])
    if pending and report.passed:
        report.outcome, report.longrepr = "failed", "\n".join(pending)
        pending.clear()
    elif pending and report.failed:
        pending.clear()
    return report
