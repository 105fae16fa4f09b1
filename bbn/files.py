"""Atomic output: write to a temporary name beside the target, fsync, then rename.

A killed stage therefore never leaves a file that looks complete; readers see the old file or the
new one, nothing in between. A writer holds an ``flock`` on its temporary while it lives, so the next
writer of the same target removes what a SIGKILLed one left (``remove_stale``) and nothing else.

Write errors of the environment that name no file (a full disk) are raised naming the target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote


def named(exc: BaseException, target: Path) -> BaseException:
    """A write error that does not say which file (``OSError(ENOSPC)`` from ``write``, torch's
    ``RuntimeError`` when its writer fails on a full disk: "file write failed", "[enforce fail at
    inline_container.cc] unexpected pos ...") as an OSError naming ``target``."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))
    if isinstance(exc, RuntimeError) and _disk_full(target.parent):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    return exc


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``. A write error
    that names no file is raised as an ``OSError`` naming ``target`` (``bbn.errors.run`` prints it).
    Temporaries of ``target`` left by a killed writer are removed first (``remove_stale``)."""
    target = Path(target)
    tmp, fd = _temporary(target, suffix, directory=False)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        error = named(exc, target)
        if error is exc:
            raise
        raise error from exc
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``hashlib`` ``algorithm``), read 1 MiB at a time; raises
    OSError when it cannot be read."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(target: str | Path, obj: object) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it in whole when the block succeeds.
    Temporaries of ``target`` left by a killed builder are removed first (``remove_stale``)."""
    target = Path(target)
    tmp, fd = _temporary(target, "", directory=True)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def _temporary(target: Path, suffix: str, directory: bool) -> tuple[Path, int]:
    """A new ``.<name>.<random><suffix>.tmp`` beside ``target`` and an open descriptor holding
    ``flock`` on it for as long as the writer lives; earlier ones nobody holds are removed first.
    Both happen under a lock on the folder, so a cleaner never takes a temporary being born."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _folder_locked(target.parent):
        _remove_unheld(target.parent, f".{glob.escape(target.name)}.*.tmp")
        if directory:
            tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Path(tmp), fd


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_unheld(folder: Path, pattern: str) -> list[Path]:
    removed = []
    for path in sorted(folder.glob(pattern)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or a link (not ours)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def remove_stale(folder: str | Path, pattern: str) -> list[Path]:
    """Remove the files and folders in ``folder`` matching ``pattern`` that no live process holds
    (``atomic_path``/``atomic_dir`` temporaries of a SIGKILLed writer, which no ``finally`` could
    remove); return them. The kernel drops a dead holder's ``flock``, so this is safe while other
    writers run."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    with _folder_locked(folder):
        return _remove_unheld(folder, pattern)


def try_lock(path: str | Path):
    """An exclusive lock on ``path`` (an open file; closing it releases the lock), or None when
    another process holds it. The kernel releases it when the holder dies, even by SIGKILL."""
    fh = open(path, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


# columns that hold names and paths: read as text, exactly as written ("NA", "None", "001", "nan", "True")
TEXT_COLUMNS = ("name", "path", "file_name", "reason", "split", "group", "level", "value", "sha256")
NUMERIC_NA = ["", "nan", "NaN"]  # what pandas writes for a missing number


def read_csv(path: str | Path):
    """A CSV written by ``write_csv``, identifiers read back exactly as written: ``TEXT_COLUMNS`` as
    strings without pandas' NA guessing (a class named ``NA`` or ``None`` stays that, ``001`` keeps
    its zeros), ``image_id`` as integers when every id is written as one (iNaturalist's), else as
    the strings written. Other columns are numbers (empty cells NaN). Returns a pandas DataFrame."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    text = [c for c in header if c in TEXT_COLUMNS or c == "image_id"]
    frame = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False,
                        na_values={c: NUMERIC_NA for c in header if c not in text})
    if "image_id" in frame.columns:
        frame["image_id"] = _ids(frame["image_id"])
    return frame


def _ids(ids):
    """Ids as int64 when each is an integer written canonically ("12", "-3", not "012"), else text."""
    if ids.str.fullmatch(r"0|-?[1-9][0-9]{0,17}").all():
        return ids.astype("int64")
    return ids


def write_csv(target: str | Path, frame, **kwargs) -> None:
    """A pandas DataFrame as CSV, atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, **kwargs)


def sqlite_uri(path: str | Path) -> str:
    """The SQLAlchemy/MLflow URI of the sqlite database file ``path`` (made absolute): ``sqlite:///``
    and the path percent-encoded, so that a folder name with ``%``, ``?``, ``#``, spaces or non-ASCII
    letters names that folder (unescaped, ``?`` starts a query and ``%2b`` reads as ``+``)."""
    return "sqlite:///" + quote(str(Path(path).absolute()), safe="/")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite_uri``'s inverse), None for other URIs."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").split("?")[0]))


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, waiting for it."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
