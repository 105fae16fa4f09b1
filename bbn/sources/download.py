"""Fetch an archive, verify its checksum, extract it safely.

* ``fetch``: http(s) with resume (HTTP Range on a ``.part`` file), retries with back-off and a tqdm
  bar; ``file://`` URLs and plain paths use the same code. The file only gets its final name after
  the md5 matched, so a partial or corrupt download never looks valid.
* ``safe_extract``: every member is checked before anything is written; absolute paths (also a
  Windows drive), ``..``, links that point outside the tree and device files are refused (links
  inside the tree are extracted as links; the dataset walk follows them). Names are read as the
  user saw them when packing (``zip_name``): Windows tools' backslash separators, names in the DOS
  code page or in UTF-8 without the zip's UTF-8 flag, Info-ZIP's Unicode Path field. OS metadata
  (``__MACOSX/``, ``._*``, ``.DS_Store``, ``Thumbs.db``, ...: ``bbn.data.decode.is_os_metadata``)
  is checked like every member but not extracted.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import struct
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlparse

from tqdm import tqdm

from bbn.data.decode import is_os_metadata
from bbn.errors import BBNError
from bbn.files import file_hash

CHUNK = 1 << 20


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


def _progress(total: int | None, initial: int, name: str) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name,
                disable=None, leave=False)  # disable=None: quiet when not a TTY


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


def _copy_local(src: Path, part: Path, digest: _PartDigest) -> None:
    if not src.is_file():
        raise BBNError(f"{src}: source archive not found")
    with open(src, "rb") as fin, open(part, "wb") as fout, _progress(src.stat().st_size, 0, src.name) as bar:
        digest.sync(part)
        for block in iter(lambda: fin.read(CHUNK), b""):
            fout.write(block)
            digest.update(block)
            bar.update(len(block))


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
        with open(part, "ab" if have else "wb") as fh, _progress(total, have, Path(part.name).stem) as bar:
            digest.sync(part)
            for block in iter(lambda: resp.read(CHUNK), b""):
                fh.write(block)
                digest.update(block)
                bar.update(len(block))
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


def _check_member(archive: Path, name: str, link: str | None, special: bool) -> None:
    """Refuse what is really unsafe: an absolute or ``..`` path (also a Windows drive), a link whose
    target is absolute or leaves the tree (``link``: its target, relative to the member's folder for
    a symbolic link, to the archive's root for a tar hard link), a device or FIFO."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or PureWindowsPath(name).drive:
        raise BBNError(f"{archive}: unsafe member {name!r} (absolute or '..' path); nothing extracted")
    if link is not None:
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(name), link)) if not link.startswith("/") else ""
        if not inside or inside == ".." or inside.startswith("../") or PureWindowsPath(link).drive:
            raise BBNError(f"{archive}: member {name!r} is a link to {link!r}, outside the archive; nothing extracted")
    if special:
        raise BBNError(f"{archive}: member {name!r} is a device or other special file; nothing extracted")


def _unicode_path(info: zipfile.ZipInfo) -> str | None:
    """The name in Info-ZIP's Unicode Path extra field (0x7075: version, CRC-32 of the header's name,
    UTF-8 name), which 7-Zip, WinRAR and Info-ZIP add beside a name in a legacy code page; None when
    absent or stale (its CRC does not match the header's name)."""
    extra = info.extra
    while len(extra) >= 4:
        kind, size = struct.unpack("<HH", extra[:4])
        data, extra = extra[4 : 4 + size], extra[4 + size :]
        if kind == 0x7075 and len(data) > 5 and data[0] == 1:
            raw = info.orig_filename.encode("cp437", errors="replace")
            if struct.unpack("<L", data[1:5])[0] == zlib.crc32(raw):
                return data[5:].decode("utf-8", errors="replace")
    return None


def zip_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as the user saw it when packing: the Unicode Path extra field when there is
    one; for a name without the UTF-8 flag, its bytes as UTF-8 when they are valid UTF-8 (macOS and
    Linux tools write UTF-8 without the flag), else as the DOS code page (cp437, Windows Explorer's);
    Windows tools' backslash separators as ``/`` (in a zip name a backslash is never a character)."""
    name = info.filename
    if not info.flag_bits & 0x800:
        name = _unicode_path(info) or name
        if name == info.filename:
            try:
                name = name.encode("cp437").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                pass
    return name.replace("\\", "/")


def _members(opened) -> list[tuple[object, str, str | None, bool]]:
    """(member, name, link target or None, is special) for a tar or zip archive; zip names as
    ``zip_name``, a zip's symbolic link (Unix mode) with its target (the entry's content)."""
    if isinstance(opened, zipfile.ZipFile):
        out = []
        for info in opened.infolist():
            info.filename = zip_name(info)  # what extract() writes; the header check uses orig_filename
            is_link = stat.S_ISLNK(info.external_attr >> 16)
            out.append((info, info.filename, opened.read(info).decode("utf-8", "replace") if is_link else None, False))
        return out
    return [_tar_member(m) for m in opened.getmembers()]


def _tar_member(m: tarfile.TarInfo) -> tuple[tarfile.TarInfo, str, str | None, bool]:
    """``_members``' tuple for one tar member."""
    link = (m.linkname if m.issym() else posixpath.relpath(m.linkname, posixpath.dirname(m.name) or ".")) \
        if m.issym() or m.islnk() else None
    return m, m.name, link, not (m.isfile() or m.isdir() or m.issym() or m.islnk())


def _extract_zip_link(member: zipfile.ZipInfo, target: str, dest: Path) -> None:
    path = dest / member.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.symlink(target, path)


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a tar or zip archive into ``dest`` after checking every member."""
    archive, dest = Path(archive), Path(dest)
    try:
        is_zip = zipfile.is_zipfile(archive)
        with (zipfile.ZipFile(archive) if is_zip else tarfile.open(archive)) as opened:
            members = _members(opened)
            for _, name, link, special in members:
                _check_member(archive, name, link, special)
            members = [m for m in members if not is_os_metadata(m[1])]
            dest.mkdir(parents=True, exist_ok=True)
            for member, _, link, _ in tqdm(members, desc=f"extract {archive.name}", unit="file", disable=None,
                                           leave=False):
                if is_zip and link is not None:
                    _extract_zip_link(member, link, dest)
                elif is_zip:
                    opened.extract(member, dest)
                else:
                    opened.extract(member, dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise BBNError(f"{archive}: cannot extract ({exc})") from None


class _HashingReader:
    """A read-only file object that feeds every byte read through ``digest``."""

    def __init__(self, raw, digest):
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


def stream_extract(archive: str | Path, dest: str | Path) -> str:
    """Extract a tar archive (any compression) into ``dest`` in one pass over its bytes, checking
    each member as ``safe_extract`` does before writing it, and return the archive's md5, computed
    on the same pass (verification and extraction in one read of an 80 GB archive instead of three:
    md5, listing, extraction). A zip, which needs random access, goes through ``safe_extract``.

    ``dest`` must be a temporary folder the caller discards on error (``bbn.files.atomic_dir``): an
    unsafe member stops the extraction with what came before it already written there."""
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        safe_extract(archive, dest)
        return md5sum(archive)
    digest = hashlib.md5()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with open(archive, "rb") as raw, _progress(archive.stat().st_size, 0, f"extract {archive.name}") as bar:
            reader = _HashingReader(raw, digest)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:
                for member in tar:
                    _check_member(archive, *_tar_member(member)[1:])
                    if not is_os_metadata(member.name):
                        tar.extract(member, dest, filter="data")
                    bar.update(raw.tell() - bar.n)
            for _ in iter(lambda: reader.read(CHUNK), b""):  # the end-of-archive padding
                pass
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BBNError(f"{archive}: cannot extract ({exc})") from None
    return digest.hexdigest()
