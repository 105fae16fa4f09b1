"""Progress of a training epoch: a tqdm bar on a terminal, a plain line at a steady cadence in a log.

tqdm with ``disable=None`` is silent when stderr is not a terminal (``nohup``, a job queue, CI),
so an epoch of several minutes printed nothing until it ended. There each update is counted and a
line such as ``epoch 3: 120/400 steps (30%), 512 img/s, ETA 1m20s`` is written to stderr every
``interval`` seconds (default 30): whole lines, no carriage returns, readable in any log viewer.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between two progress lines in a log


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogProgress:
    """Counts steps and images; writes a progress line to ``stream`` at most every ``interval`` s."""

    def __init__(self, total: int, desc: str, interval: float = LOG_INTERVAL, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.interval = total, desc, interval
        self.stream, self.clock = stream or sys.stderr, clock
        self.start = self.last = clock()
        self.steps = self.images = 0

    def update(self, images: int) -> None:
        """One step done, ``images`` images through the network (BBN: uniform and reversed batches)."""
        self.steps += 1
        self.images += images
        now = self.clock()
        if now - self.last >= self.interval and self.steps < self.total:
            self.last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        eta = elapsed / self.steps * (self.total - self.steps)
        return (f"{self.desc}: {self.steps}/{self.total} steps ({100 * self.steps / self.total:.0f}%), "
                f"{self.images / elapsed:.0f} img/s, ETA {_duration(eta)}")

    def close(self) -> None:
        pass


class _Bar:
    """tqdm with the ``update(images)`` of ``LogProgress`` (the bar counts steps)."""

    def __init__(self, total: int, desc: str):
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def update(self, images: int) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def epoch_progress(total: int, desc: str, enabled: bool = True, stream: TextIO | None = None):
    """A progress reporter for ``total`` steps: a tqdm bar when ``stream`` (stderr) is a terminal,
    ``LogProgress`` lines otherwise, nothing when not ``enabled`` (ranks other than 0)."""
    stream = stream or sys.stderr
    if not enabled or total == 0:
        return LogProgress(total, desc, interval=float("inf"), stream=stream)
    if stream.isatty():
        return _Bar(total, desc)
    return LogProgress(total, desc, stream=stream)
