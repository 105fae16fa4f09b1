"""Measuring one command of the scale benchmark (``bench/scale.py``): wall, CPU, peak RSS, writes, load.

* CPU seconds: user + sys of the command and every descendant it waited for (``os.wait4``'s rusage:
  DVC, the stage process, its process pool and DataLoader workers).
* Peak RSS: the largest single process of that tree (``ru_maxrss`` from ``wait4``), not a sum.
* Files and bytes written: a walk of the given folders before and after (``.git`` skipped): files
  created or changed, and the bytes of the inodes that are new or changed (a hard link to an
  existing file counts as a file, not as bytes).
* Load average (1 min, the whole machine: shared with other jobs) at the start and the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Timing:
    what: str
    wall_s: float
    cpu_s: float
    rss_mib: float
    files: int
    bytes: int
    load: tuple[float, float]
    ran: list[str] = field(default_factory=list)  # DVC stages that really ran
    output: str = ""


def snapshot(roots: list[Path]) -> dict[str, tuple[int, int, int]]:
    """{path: (inode, size, mtime_ns)} of every file under ``roots`` (``.git`` skipped, no symlinks followed)."""
    out = {}
    stack = [r for r in roots if r.exists()]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out[entry.path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def written(before: dict, after: dict) -> tuple[int, int]:
    """(files created or changed, bytes of new or changed inodes) between two snapshots."""
    old_inodes = {v[0]: v for v in before.values()}
    files, counted, size = 0, set(), 0
    for path, (ino, sz, mtime) in after.items():
        if before.get(path) == (ino, sz, mtime):
            continue
        files += 1
        if ino not in counted and old_inodes.get(ino) != (ino, sz, mtime):
            counted.add(ino)
            size += sz
    return files, size


def disk_bytes(parts: list[Path]) -> dict[str, int]:
    """{part: bytes of the inodes first met under it}, in order: a hard link into an earlier part
    (data/raw into data/downloads) costs nothing."""
    seen, out = set(), {}
    for part in parts:
        inodes = {ino: size for ino, size, _ in snapshot([part]).values() if ino not in seen}
        seen |= inodes.keys()
        out[str(part)] = sum(inodes.values())
    return out


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def timed(what: str, cmd: list[str], cwd: Path, env: dict, roots: list[Path], timeout: float = 3600) -> Timing:
    """Run ``cmd`` (output to a temporary log), measured as the module docstring says; raises
    RuntimeError with the output's tail when it fails or runs past ``timeout`` seconds."""
    before = snapshot(roots)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        timer = _killer(proc, timeout)
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    load1 = os.getloadavg()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode} after {wall:.0f} s\n{output[-4000:]}")
    files, size = written(before, snapshot(roots))
    return Timing(what, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, files, size, (load0, load1),
                  ran(output), output)


def _killer(proc: subprocess.Popen, timeout: float):
    import threading

    timer = threading.Timer(timeout, proc.kill)
    timer.daemon = True
    timer.start()
    return timer
