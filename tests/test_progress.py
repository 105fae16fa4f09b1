"""Training progress in a log (stderr not a terminal): whole lines at a steady cadence."""

from __future__ import annotations

import io

from bbn.train.progress import LogProgress, _Bar, epoch_progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_steps_speed_and_eta():
    out, clock = io.StringIO(), Clock()
    progress = LogProgress(400, "epoch 3", interval=30, stream=out, clock=clock)
    for _ in range(400):  # 0.25 s per step of 64 images
        clock.now += 0.25
        progress.update(64)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 3  # at 30 s, 60 s, 90 s of a 100 s epoch (none at the very end)
    assert lines[0] == "epoch 3: 120/400 steps (30%), 256 img/s, ETA 1m10s"
    assert lines[-1].startswith("epoch 3: 360/400 steps (90%)") and lines[-1].endswith("ETA 10s")


def test_terminal_gets_a_bar_and_other_ranks_nothing():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(epoch_progress(10, "epoch 1", stream=Terminal()), _Bar)
    assert isinstance(epoch_progress(10, "epoch 1", stream=io.StringIO()), LogProgress)
    quiet = io.StringIO()
    silent = epoch_progress(10, "epoch 1", enabled=False, stream=quiet)  # never writes, however long
    assert silent.interval == float("inf")
    for _ in range(10):
        silent.update(8)
    assert quiet.getvalue() == ""
