"""Helpers shared by the tests and bench/pipeline.py: a temporary copy of the repository that DVC and
MLflow really run in (``copy_project``, ``make_repo``, ``prepared_repo``), commands run in it (``sh``,
``stage``), a local HTTP server (``FileServer``) and small synthetic files (``jpeg``, ``targz``,
``cifar10_python``). A plain module (no fixtures, no pytest hooks): import it as ``tests.helpers``."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# A config that exercises every stage in well under a minute on 2 cores.
TINY = {
    "data": {"n_max": 30, "imbalance_ratio": 10, "test_per_class": 5, "val_per_class": 1, "image_px": 16},
    "split": {"val_fraction": 0.2},
    "train": {"epochs": 2, "batch_size": 16, "image_size": 16, "tmax": 2, "lr_steps": [2], "warmup_epochs": 0},
    "eval": {"batch_size": 64},
    "tracking": {"log_model": False},  # seconds per training; tests/test_tracking.py logs and checks the model
}


def dataspec(**data):
    """The library's ``DataSpec`` of a ``data`` section with these fields (the rest: defaults)."""
    from stages.params import DataParams
    from stages.specs import data_spec

    return data_spec(DataParams(**data))


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


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed stage printed on stderr (asserts that it failed, in exactly one line)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    return lines[0]


def jpeg(seed: int, size: int = 20) -> bytes:
    """A ``size`` x ``size`` RGB JPEG of seeded random pixels."""
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def targz(members: dict[str, bytes]) -> bytes:
    """A .tar.gz archive in memory: {member name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cifar10_python(per_class: int = 20, test_per_class: int = 4, meta: bytes | None = None) -> tuple[bytes, dict]:
    """A cifar-10-python.tar.gz in the official format (pickled dicts with bytes keys), and its batches."""
    rng = np.random.default_rng(1)

    def batch(n):
        labels = [c for c in range(10) for _ in range(n)]
        rng.shuffle(labels)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        return {b"batch_label": b"x", b"labels": labels, b"data": data}

    batches = {f"data_batch_{i}": batch(per_class // 5) for i in range(1, 6)} | {"test_batch": batch(test_per_class)}
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    members = {f"cifar-10-batches-py/{k}": pickle.dumps(v, protocol=2) for k, v in batches.items()}
    members["cifar-10-batches-py/batches.meta"] = meta or pickle.dumps({b"label_names": names}, protocol=2)
    return targz(members), batches


KINGDOMS = ["Animalia", "Animalia", "Plantae"]


def inat2019(per_class=(9, 5, 3), evil: bool = False) -> dict[str, bytes]:
    """The five official iNat2019 archives in miniature: same names, layout and JSON schema."""
    cats = [{"id": c, "name": f"Species {c}", "kingdom": KINGDOMS[c], "phylum": "P", "class": f"C{c % 2}",
             "order": "O", "family": "F", "genus": f"G{c}"} for c in range(len(per_class))]
    images, files, split_of = [], {}, {}
    for c, n in enumerate(per_class):
        for k in range(n):
            i = len(images)
            name = f"train_val2019/{KINGDOMS[c]}/{c}/{i:04d}.jpg"
            images.append({"id": i, "file_name": name, "width": 20, "height": 20})
            files[name], split_of[i] = jpeg(i), "val" if k == 0 else "train"

    def doc(split):
        imgs = [im for im in images if split_of[im["id"]] == split]
        ann = [{"id": im["id"], "image_id": im["id"], "category_id": int(im["file_name"].split("/")[2])} for im in imgs]
        return json.dumps({"info": {}, "images": imgs, "annotations": ann, "categories": cats}).encode()

    test_imgs = [{"id": 1000 + k, "file_name": f"test2019/{k:04d}.jpg"} for k in range(4)]
    if evil:
        files["../evil"] = b"evil"
    return {
        "train_val2019.tar.gz": targz(files),
        "train2019.json.tar.gz": targz({"train2019.json": doc("train")}),
        "val2019.json.tar.gz": targz({"val2019.json": doc("val")}),
        "test2019.tar.gz": targz({im["file_name"]: jpeg(im["id"]) for im in test_imgs}),
        "test2019.json.tar.gz": targz({"test2019.json": json.dumps({"images": test_imgs, "categories": cats}).encode()}),
    }


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
