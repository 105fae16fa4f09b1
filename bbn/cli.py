"""Running a stage: user errors become short messages and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from bbn.errors import BBNError


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except BBNError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
