"""Running a stage: user errors become short messages and a non-zero exit, never a traceback.

SIGTERM (sent by ``timeout``, a scheduler's preemption, or torchrun stopping the other ranks when
one fails) unwinds the stack like Ctrl-C, so every ``atomic_path`` removes its temporary file.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

from bbn.errors import BBNError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that ``finally`` blocks run."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def run(main: Callable[[], None]) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except BBNError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print("error: terminated", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
