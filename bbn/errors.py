"""The errors users see, and the runner that turns them into short messages instead of tracebacks.

``BBNError``: bad input or a failed precondition, worded for the person running the pipeline.
``ArgError``: the same, caused by one argument of a library function; it carries the argument's
name so that a caller who knows where the value came from (a pipeline stage: its parameter key; a CLI: a
flag) can say so (``stages/runner.py``).

A full disk, a quota, a read-only file system or a missing permission (``OSError`` with errno ENOSPC,
EDQUOT, EROFS, EACCES or EPERM) is reported as ``error: <path>: <reason>``, not as a traceback.

SIGTERM (sent by ``timeout``, a scheduler's preemption, or torchrun stopping the other ranks when one
fails) unwinds the stack like Ctrl-C, so every ``atomic_path`` removes its temporary file.
"""

from __future__ import annotations

import errno
import signal
import sys
import warnings
from typing import Callable


class BBNError(Exception):
    """Bad input or a failed precondition, worded for the person running the pipeline."""


class ArgError(BBNError):
    """A bad value of the library argument ``arg``; ``str(err)`` is ``"<arg>: <message>"``."""

    def __init__(self, arg: str, message: str):
        super().__init__(f"{arg}: {message}")
        self.arg, self.message = arg, message


class BBNWarning(UserWarning):
    """Something the person running the pipeline should know that does not stop it (a tracking
    call not logged, a fallback taken); printed by ``run`` as one line ``warning: <message>``."""


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, BBNWarning):
        return f"warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


_default_format = warnings.formatwarning


# what the user must fix outside the program: free space, quota, permissions
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def describe_os_error(exc: OSError, destination: bool = False) -> str | None:
    """``<path>: <reason>`` for an error of the environment (``ENVIRONMENT_ERRNOS``), else None; of
    an error naming two files (a copy) the first, or the second with ``destination``."""
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    first, second = (exc.filename2, exc.filename) if destination else (exc.filename, exc.filename2)
    path = first if first is not None else second
    reason = exc.strerror or str(exc)
    return f"{path}: {reason}" if path is not None else reason


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that ``finally`` blocks run."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def run(main: Callable[[], None], describe: Callable[[BBNError], str] = str) -> None:
    """Call ``main``; a BBNError becomes ``error: <line>`` per line on stderr and exit status 1,
    a BBNWarning one line ``warning: <message>``,
    an environment ``OSError`` (disk full, permissions: ``describe_os_error``) one line and exit 1,
    SIGTERM exit 143, Ctrl-C exit 130. ``describe`` words the error (a stage names the params key)."""
    signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _format_warning
    try:
        main()
    except BBNError as exc:
        for line in describe(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        line = describe_os_error(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print("error: terminated", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
