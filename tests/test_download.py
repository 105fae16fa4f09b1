"""Downloads and archives: fetch with md5, resume after a dropped connection or a kill, safe extraction."""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bbn.errors import BBNError
from bbn.sources.download import fetch, safe_extract
from tests.helpers import FileServer


def test_fetch_file_url_and_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello archive" * 100)
    dest, part = tmp_path / "out" / "a.bin", tmp_path / "out" / "a.bin.part"
    with pytest.raises(BBNError, match="md5"):
        fetch(src.as_uri(), dest, "0" * 32)
    assert not dest.exists() and not part.exists()
    assert fetch(src.as_uri(), dest, hashlib.md5(src.read_bytes()).hexdigest()) == dest
    assert dest.read_bytes() == src.read_bytes() and not part.exists()


def test_fetch_http_resumes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    with FileServer({"a.tar.gz": data}, cut={"a.tar.gz": 100_000}) as server:
        dest = fetch(server.url + "a.tar.gz", tmp_path / "a.tar.gz", hashlib.md5(data).hexdigest(),
                     retries=2, timeout=10)
    assert dest.read_bytes() == data
    assert server.requests == [("a.tar.gz", None), ("a.tar.gz", "bytes=100000-")]  # resumed, not restarted
    assert not (tmp_path / "a.tar.gz.part").exists()


def test_fetch_killed_midway_resumes_and_a_corrupt_part_is_never_used(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()  # 3 x fetch's 1 MiB blocks
    md5 = hashlib.md5(data).hexdigest()
    dest, part = tmp_path / "a.tar.gz", tmp_path / "a.tar.gz.part"
    with FileServer({"a.tar.gz": data}, pace=0.02) as server:
        code = f"from bbn.sources.download import fetch; fetch({server.url + 'a.tar.gz'!r}, {str(dest)!r}, {md5!r})"
        proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.time() + 60
        while not (part.exists() and part.stat().st_size >= 1 << 20):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.02)
        proc.kill()  # SIGKILL mid-transfer
        proc.wait()
        have = part.stat().st_size
        assert not dest.exists() and 0 < have < len(data)
        server.pace = 0.0
        assert fetch(server.url + "a.tar.gz", dest, md5, retries=1, timeout=10).read_bytes() == data
        assert server.requests[-1] == ("a.tar.gz", f"bytes={have}-")  # continued, then verified
        # a partial file whose bytes are wrong: continued, fails md5, downloaded again from scratch
        dest.unlink()
        part.write_bytes(b"\0" * 50_000)
        assert fetch(server.url + "a.tar.gz", dest, md5, retries=1, timeout=10).read_bytes() == data
        assert server.requests[-2:] == [("a.tar.gz", "bytes=50000-"), ("a.tar.gz", None)]
        assert not part.exists()


def _tar(path: Path, bad: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("good/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))  # a harmless member first: nothing may be written
        if bad.isreg():
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            tar.addfile(bad)
    return path


ABSOLUTE = f"/tmp/bbn-test-{uuid.uuid4().hex}"


@pytest.mark.parametrize("name, kind", [("../evil", tarfile.REGTYPE), (ABSOLUTE, tarfile.REGTYPE),
                                        ("link", tarfile.SYMTYPE)], ids=["dotdot", "absolute", "symlink"])
def test_safe_extract_rejects(tmp_path, name, kind):
    bad = tarfile.TarInfo(name)
    bad.type, bad.linkname = kind, "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    archive = _tar(tmp_path / "a.tar.gz", bad)
    dest = tmp_path / "out"
    with pytest.raises(BBNError, match=bad.name):
        safe_extract(archive, dest)
    assert not dest.exists() or not any(dest.rglob("*"))
    assert not (tmp_path / "evil").exists() and not Path(ABSOLUTE).exists()


def test_safe_extract_ok(tmp_path):
    safe_extract(_tar(tmp_path / "a.tar.gz", tarfile.TarInfo("good/two.txt")), tmp_path / "out")
    assert [(tmp_path / "out/good" / f).read_bytes() for f in ("ok.txt", "two.txt")] == [b"ok", b"evil"]


@pytest.mark.parametrize("name, link", [("../evil", False), (ABSOLUTE, False), ("good/link", True)])
def test_safe_extract_zip(tmp_path, name, link):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good/ok.txt", b"ok")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if link else b"evil")
    with pytest.raises(BBNError, match=name):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("good/ok.txt", b"ok")
    safe_extract(good, tmp_path / "fine")
    assert (tmp_path / "fine/good/ok.txt").read_bytes() == b"ok"
