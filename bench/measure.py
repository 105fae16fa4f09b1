"""Measuring side by side: each side of a row in its own subprocess (a fork server that has imported
torch, timm and bbn), set up and warmed up first, then timed repetitions interleaved A B A B ...;
each side's median, the ratio ours / reference, and each side's peak RSS (see bench/README.md)."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import workloads

CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(workloads.PRELOAD)


class WorkerError(RuntimeError):
    pass


class Side:
    """One measuring subprocess (``bench.workloads.serve``), spoken to through a Pipe."""

    def __init__(self, spec: dict):
        self.spec = spec
        fd, self.log = tempfile.mkstemp(prefix="bbn-bench-", suffix=".log")
        os.close(fd)
        self.conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=workloads.serve, args=(child, spec, self.log))
        self.proc.start()
        child.close()

    def read(self) -> dict:
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join()
            tail = Path(self.log).read_text(errors="replace")[-3000:]
            raise WorkerError(f"worker {self.spec['kind']}/{self.spec.get('impl')} exited "
                              f"{self.proc.exitcode}\n{tail}") from None

    def ask(self, command: str) -> dict:
        self.conn.send(command)
        return self.read()

    def close(self) -> dict:
        final = self.ask("quit")
        self.proc.join()
        os.unlink(self.log)
        return final

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        Path(self.log).unlink(missing_ok=True)


def measure(specs: list[dict], reps: int) -> list[dict]:
    """Start every side (setups overlap), then ``reps`` rounds of one timed run per side in turn.

    Returns per side: ``values`` (all repetitions), ``median``, ``rss_mib`` and any facts it reported.
    """
    sides = [Side(s) for s in specs]
    try:
        for side in sides:
            side.read()  # ready
        log(f"  {len(sides)} side(s) ready: {', '.join(str(s.spec.get('impl', s.spec['kind'])) for s in sides)}")
        values = [[] for _ in sides]
        for _ in range(reps):
            for side, vals in zip(sides, values):
                vals.append(side.ask("run")["value"])
        finals = [side.close() for side in sides]
    finally:
        for side in sides:
            side.kill()
    return [f | {"values": v, "median": statistics.median(v)} for f, v in zip(finals, values)]


@dataclass
class Row:
    section: str
    what: str
    ours: str
    reference: str = "–"
    ratio: str = "–"
    rss: str = "–"


def rate(v: float) -> str:
    return f"{v:,.1f} img/s" if v < 100 else f"{v:,.0f} img/s"


def side_by_side(section: str, what: str, ours: dict, ref: dict, reps: int) -> Row:
    a, b = measure([ours, ref], reps)
    log(f"{section} | {what}: ours {fmt_values(a)}  reference {fmt_values(b)}")
    return Row(section, what, rate(a["median"]), rate(b["median"]), f"{a['median'] / b['median']:.2f}x",
               f"{a['rss_mib']:,.0f} / {b['rss_mib']:,.0f} MiB")


def fmt_values(result: dict) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in result["values"]) + "]"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
