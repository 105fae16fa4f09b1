"""Running a stage: library errors name the params.yaml key they came from, never a traceback.

The library raises ``ArgError(arg, message)`` naming its own argument; each stage says which params
key feeds which argument (``KEYS``), and the error is printed as ``params.yaml: <key>: <message>``.
"""

from __future__ import annotations

from typing import Callable

from bbn.errors import ArgError, BBNError
from bbn.errors import run as _run


def describe(exc: BBNError, keys: dict[str, str]) -> str:
    """The error's text, with a library argument replaced by the params key that set it."""
    if isinstance(exc, ArgError) and exc.arg in keys:
        return f"params.yaml: {keys[exc.arg]}: {exc.message}"
    return str(exc)


def run(main: Callable[[], None], keys: dict[str, str] | None = None) -> None:
    """Run a stage's ``main``; ``keys`` maps library argument names to params keys."""
    _run(main, lambda exc: describe(exc, keys or {}))
