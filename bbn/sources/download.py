"""Fetch an archive and verify its checksum (extraction: ``bbn.sources.extract``).

``fetch``: http(s) with resume (HTTP Range on a ``.part`` file), retries with back-off and a tqdm
bar; ``file://`` URLs and plain paths use the same code. The md5 is computed as the bytes are
written; the file only gets its final name after it matched, so a partial or corrupt download never
looks valid. One process at a time per file (a lock beside it): parallel experiments never write
into the same ``.part``.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from bbn.errors import BBNError
from bbn.files import file_hash, locked
from bbn.sources.extract import CHUNK, byte_progress, check_cancel


def md5sum(path: str | Path) -> str:
    return file_hash(path, "md5")


def verified(path: Path, md5: str, record: Path) -> bool:
    """Whether ``path`` has checksum ``md5``; ``record`` remembers a success for this exact file
    (size and mtime), so an 80 GB archive is hashed once, not at every run."""
    if record.exists() and record.read_text().strip() == _stamp(path, md5):
        return True
    if md5sum(path) != md5:
        return False
    _remember(path, md5, record)
    return True


def _stamp(path: Path, md5: str) -> str:
    stat = path.stat()
    return f"{md5} {stat.st_size} {stat.st_mtime_ns}"


def _remember(path: Path, md5: str, record: Path) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(_stamp(path, md5) + "\n")


class _PartDigest:
    """The md5 of a ``.part`` file, computed as its bytes are written (no second pass over the
    download); ``sync`` makes it cover exactly the file's current bytes (a part left by an earlier
    run is read once, a part truncated for a restart starts it again)."""

    def __init__(self):
        self.md5, self.n = hashlib.md5(), 0

    def sync(self, part: Path) -> None:
        size = part.stat().st_size if part.exists() else 0
        if size < self.n:
            self.md5, self.n = hashlib.md5(), 0
        if size > self.n:
            with open(part, "rb") as fh:
                fh.seek(self.n)
                for block in iter(lambda: fh.read(min(CHUNK, size - self.n)), b""):
                    self.update(block)

    def update(self, block: bytes) -> None:
        self.md5.update(block)
        self.n += len(block)


def _append(read, fh, digest: _PartDigest, bar) -> None:
    """Copy ``read(CHUNK)``'s blocks into ``fh`` until it returns b'', hashing and counting each;
    stops at the next block when the download is cancelled (``check_cancel``)."""
    for block in iter(lambda: read(CHUNK), b""):
        check_cancel()
        fh.write(block)
        digest.update(block)
        bar.update(len(block))


def _copy_local(src: Path, part: Path, digest: _PartDigest) -> None:
    if not src.is_file():
        raise BBNError(f"{src}: source archive not found")
    with open(src, "rb") as fin, open(part, "wb") as fout, byte_progress(src.stat().st_size, 0, src.name) as bar:
        digest.sync(part)
        _append(fin.read, fout, digest, bar)


def _http_once(url: str, part: Path, timeout: float, digest: _PartDigest) -> None:
    """Download into ``part``, continuing from its current size when the server allows it."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is complete
            return
        raise
    with resp:
        if have and resp.status != 206:  # server ignored Range: start again
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length else None
        with open(part, "ab" if have else "wb") as fh, byte_progress(total, have, Path(part.name).stem) as bar:
            digest.sync(part)
            _append(resp.read, fh, digest, bar)
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def _download(url: str, part: Path, retries: int, timeout: float) -> str:
    """Download ``url`` into ``part`` (continuing it); return the md5 of the whole part."""
    parsed, digest = urlparse(url), _PartDigest()
    if parsed.scheme not in ("http", "https"):
        _copy_local(Path(parsed.path if parsed.scheme == "file" else url), part, digest)
        return digest.md5.hexdigest()
    for attempt in range(retries + 1):
        try:
            _http_once(url, part, timeout, digest)
            digest.sync(part)
            return digest.md5.hexdigest()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            if attempt == retries:
                raise BBNError(f"{url}: download failed after {retries + 1} attempts ({exc})") from None
            time.sleep(min(2**attempt, 30))


def fetch(url: str, dest: str | Path, md5: str, retries: int = 5, timeout: float = 60.0) -> Path:
    """Make ``dest`` a verified copy of ``url``. An existing verified ``dest`` is kept as it is.

    A ``.part`` file left by an interrupted run is continued; if the result then fails the md5
    check (the part was corrupt), it is deleted and the file downloaded once more from the start.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest.with_name(f".{dest.name}.lock")):  # another experiment may be fetching it too
        return _fetch(url, dest, md5, retries, timeout)


def _fetch(url: str, dest: Path, md5: str, retries: int, timeout: float) -> Path:
    record = dest.with_name(dest.name + ".md5")
    if dest.exists() and verified(dest, md5, record):
        return dest
    part = dest.with_name(dest.name + ".part")
    resumed = part.exists() and part.stat().st_size > 0
    got = _download(url, part, retries, timeout)  # hashed as written: no second pass
    if got != md5 and resumed:
        print(f"warning: {dest.name}: md5 mismatch after resuming a partial download; downloading it again")
        part.unlink()
        got = _download(url, part, retries, timeout)
    if got != md5:
        part.unlink(missing_ok=True)  # a corrupt download must not be resumed or used
        raise BBNError(f"{url}: md5 mismatch (expected {md5}, got {got}); the download was deleted")
    os.replace(part, dest)
    _remember(dest, md5, record)
    return dest
