"""Shared fixtures: a temporary copy of the repository that DVC and MLflow really run in."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# A config that exercises every stage in well under a minute on 2 cores.
TINY = {
    "data": {"n_max": 30, "imbalance_ratio": 10, "test_per_class": 5, "val_per_class": 1, "image_px": 16},
    "split": {"val_fraction": 0.2},
    "train": {"epochs": 2, "batch_size": 16, "image_size": 16, "tmax": 2, "lr_steps": [2], "warmup_epochs": 0},
    "eval": {"batch_size": 64},
    "tracking": {"log_model": False},  # seconds per training; tests/test_tracking.py logs and checks the model
}


def read_params(path: Path) -> dict:
    """A params.yaml as DVC and the stages read it (YAML 1.2: ``off`` is a string, as ``dvc exp run -S``
    writes it). PyYAML's 1.1 reading would turn it into False, and its dump would then write ``false``."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(path.read_text()) or {}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def env() -> dict:
    e = dict(os.environ)
    e.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
             GIT_COMMITTER_EMAIL="t@t", PYTHONPATH=str(ROOT), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    e.pop("DVC_ROOT", None)
    e.pop("DVC_EXP_NAME", None)
    return e


def sh(cwd: Path, *cmd: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command in ``cwd``; on failure show its output in the assertion."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def stage(cwd: Path, name: str, check: bool = False) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", f"stages.{name}", check=check)


def project_files(root: Path = ROOT) -> list[str]:
    """The files a fresh clone has (tracked, plus new files git does not ignore): never outputs,
    caches, resume states or stores that a user's checkout may hold."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def copy_project(dest: Path, overrides: dict | None = None, root: Path = ROOT) -> Path:
    """Copy the project's files (``project_files``) into ``dest``, without dvc.lock, with the tiny params."""
    for name in project_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    params = read_params(root / "params.yaml")
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(merge(params, TINY), overrides or {}), sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    return dest


def make_repo(dest: Path, overrides: dict | None = None) -> Path:
    """A fresh git + DVC repo: ``copy_project`` and one commit."""
    copy_project(dest, overrides)
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-q", "-m", "tiny")
    return dest


def prepared_repo(dest: Path, overrides: dict | None = None) -> Path:
    """``make_repo`` with the data stages run (download … prepare): ready for train."""
    make_repo(dest, overrides)
    sh(dest, "dvc", "repro", "prepare", "stats")  # stats: the shot groups evaluation reads
    return dest


def set_params(repo: Path, overrides: dict) -> None:
    """Merge ``overrides`` into the repo's params.yaml."""
    params = read_params(repo / "params.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "bbn")


class FileServer:
    """Serve ``files`` ({url path: bytes}) on 127.0.0.1 with HTTP Range support.

    ``cut`` ({url path: bytes}): the first request for that path sends only that many bytes and
    drops the connection, as a flaky network would. ``requests`` records (path, Range header).
    ``pace``: seconds to wait after each 16 KiB sent (a slow link, to interrupt a download midway).
    """

    def __init__(self, files: dict[str, bytes], cut: dict[str, int] | None = None, pace: float = 0.0):
        self.files, self.cut, self.requests, self.pace = files, dict(cut or {}), [], pace
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path, rng = self.path.lstrip("/"), self.headers.get("Range")
                server.requests.append((path, rng))
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                start = int(rng.removeprefix("bytes=").removesuffix("-")) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.cut:
                    body = body[: server.cut.pop(path)]
                    self.close_connection = True
                if not server.pace:
                    self.wfile.write(body)
                    return
                try:
                    for i in range(0, len(body), 16384):
                        self.wfile.write(body[i:i + 16384])
                        self.wfile.flush()
                        time.sleep(server.pace)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> "FileServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
