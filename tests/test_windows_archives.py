"""Issue 26, archives made on other systems: what Windows tools write (backslash separators, names in
the DOS code page, UTF-8 names without the zip's UTF-8 flag, Info-ZIP's Unicode Path field) is read as
the user named it; only what is really unsafe is refused, in one line."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from bbn.errors import BBNError
from bbn.sources.datasets import fetch_dataset
from bbn.sources.extract import safe_extract
from tests.helpers import dataspec, jpeg


def _zip(path: Path, members: dict[bytes, bytes], extra: dict[bytes, bytes] | None = None) -> Path:
    """A zip whose member names are exactly the given bytes, without the UTF-8 flag (as Windows
    Explorer and older tools write them): written under ASCII placeholders of the same length, then
    the placeholders replaced in the local and central headers."""
    with zipfile.ZipFile(path, "w") as z:
        for i, (raw, data) in enumerate(members.items()):
            info = zipfile.ZipInfo(chr(ord("A") + i) * len(raw))
            info.extra = (extra or {}).get(raw, b"")
            z.writestr(info, data)
    blob = path.read_bytes()
    for i, raw in enumerate(members):
        placeholder = chr(ord("A") + i).encode() * len(raw)
        assert blob.count(placeholder) == 2
        blob = blob.replace(placeholder, raw)
    path.write_bytes(blob)
    return path


def _unicode_extra(raw: bytes, name: str) -> bytes:
    data = b"\x01" + struct.pack("<L", zlib.crc32(raw)) + name.encode("utf-8")
    return struct.pack("<HH", 0x7075, len(data)) + data


def test_a_windows_explorer_zip_with_backslashes_and_dos_code_page_names(tmp_path):
    members = {}
    for c, cls in enumerate(("Käfer", "Möwe")):  # cp437: one byte per umlaut, no UTF-8 flag
        for i in range(4):
            members[f"tiere\\{cls}\\Foto {i}.jpg".encode("cp437")] = jpeg(10 * c + i)
    members[b"tiere\\Thumbs.db"] = b"\xd0\xcf\x11\xe0"
    archive = _zip(tmp_path / "tiere.zip", members)
    out = tmp_path / "raw"
    fetch_dataset(dataspec(name="imagefolder", source=str(archive), test_per_class=1), out, tmp_path / "dl")
    train = json.loads((out / "train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["Käfer", "Möwe"]
    names = [im["file_name"] for im in train["images"]]
    assert len(names) == 6 and all("\\" not in n for n in names) and "imagefolder/train/Käfer/Foto 1.jpg" in names


def test_utf8_names_without_the_flag_and_the_unicode_path_field(tmp_path):
    hanzi = "鸟/0.jpg".encode("gbk")  # a Chinese Windows' code page, with Info-ZIP's UTF-8 copy beside it
    archive = _zip(tmp_path / "a.zip", {"Vögel/0.jpg".encode(): jpeg(1), hanzi: jpeg(2)},
                   extra={hanzi: _unicode_extra(hanzi, "鸟/0.jpg")})
    safe_extract(archive, tmp_path / "x")
    assert sorted(str(p.relative_to(tmp_path / "x")) for p in (tmp_path / "x").rglob("*.jpg")) == [
        "Vögel/0.jpg", "鸟/0.jpg"]


@pytest.mark.parametrize("name", [b"C:\\Users\\x\\evil.jpg", b"a\\..\\..\\evil.jpg", b"\\evil.jpg"])
def test_really_unsafe_windows_names_are_refused_in_one_line(tmp_path, name):
    archive = _zip(tmp_path / "evil.zip", {b"ok/0.jpg": jpeg(1), name: jpeg(2)})
    with pytest.raises(BBNError, match=r"evil.zip: unsafe member .* nothing extracted$"):
        safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "x").exists()
