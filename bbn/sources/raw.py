"""One raw dataset tree per dataset version, shared by every experiment of the project.

A dataset is built once (``bbn.sources.datasets.fetch_dataset``) into ``<trees>/<name>-<key>``,
where the key hashes what decides its content: the data arguments, the code that builds it, and a
fingerprint of the user's files (``source_fingerprint``). A run links its own ``data/raw`` to that
tree (``point``) and records the tree's manifest (file count, bytes, ``content_digest``), which
changes exactly when the dataset does. A second run of the same dataset, also in a fresh copy of
the project, finds the tree built and only links to it.

The tree is made of hard links into the extracted archives or the user's own files (never copies;
the caller must keep it out of any cache that would make its files read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from bbn.files import atomic_dir, locked


def source_fingerprint(source: str | Path) -> str:
    """A digest of the user's files at ``source`` as the file system describes them: for a folder,
    every file below it (symbolic links followed) by relative path, size, mtime (ns) and inode; for
    a file, its size, mtime and inode; '' for ''. An image edited in place or replaced under the same
    name changes it (as a change detector that trusts size and mtime would see it), without
    reading a byte: about a second per 250,000 files."""
    if not source:
        return ""
    root = Path(source)
    digest = hashlib.sha256()
    entries = [root] if root.is_file() else sorted(_files(root))
    for path in entries:
        st = path.stat()
        rel = "." if path == root else path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return digest.hexdigest()


def _files(root: Path):
    """Every file below ``root``, symbolic links followed, each folder once (a link loop ends)."""
    seen = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in names:
            yield Path(folder, name)


def dataset_key(params: dict, code: list[Path], fingerprint: str) -> str:
    """16 hex digits naming one dataset version's tree: the ``data`` params (``params``, plain
    data), the bytes of the ``code`` files that build it (in sorted path order) and the
    ``fingerprint`` of the user's files."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in sorted(code):
        digest.update(Path(path).read_bytes())
    digest.update(fingerprint.encode())
    return digest.hexdigest()[:16]


def content_digest(tree: Path) -> dict:
    """``{"files", "bytes", "content"}`` of ``tree``: ``content`` hashes every file's relative path
    and size, and its bytes when the tree holds its only link (files the download wrote: JSON,
    rendered digits, CIFAR PNGs), else the identity of the linked original (inode and mtime, fixed
    by the source fingerprint or the verified archive). A rebuild with new code that gives the same
    dataset gives the same digest, so the stages after it are not rerun."""
    digest, files, size = hashlib.sha256(), 0, 0
    for path in sorted(_files(tree)):
        st = path.stat()
        ident = hashlib.md5(path.read_bytes()).hexdigest() if st.st_nlink == 1 else f"{st.st_ino}:{st.st_mtime_ns}"
        digest.update(f"{path.relative_to(tree).as_posix()}\0{st.st_size}\0{ident}\n".encode())
        files, size = files + 1, size + st.st_size
    return {"files": files, "bytes": size, "content": digest.hexdigest()}


MANIFEST = "manifest.json"  # in each tree: content_digest and the dataset's facts


def shared_tree(trees: Path, name: str, key: str, build: Callable[[Path], dict]) -> tuple[Path, dict, bool]:
    """``(tree, manifest, built)``: ``trees/<name>-<key>``, built by ``build(folder)`` (which fills
    the folder and returns the dataset's facts) unless an earlier run built it, and its manifest
    (the facts and ``content_digest``). One builder per key at a time (a lock file beside the trees):
    a second experiment waits and reuses what the first built. The tree appears only complete
    (``atomic_dir``), so a killed build leaves nothing that looks valid."""
    tree = Path(trees) / f"{name}-{key}"
    tree.parent.mkdir(parents=True, exist_ok=True)
    with locked(tree.parent / f".{tree.name}.lock"):
        built = not (tree / MANIFEST).is_file()
        if built:
            with atomic_dir(tree) as tmp:
                facts = build(tmp)
                manifest = {**facts, **content_digest(tmp)}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    os.utime(tree)  # last used: old trees can be told apart (README: reclaiming disk)
    return tree, json.loads((tree / MANIFEST).read_text()), built


def point(link: Path, tree: Path) -> None:
    """Make ``link`` a symbolic link to ``tree``, replacing whatever is there in one rename (an old
    link, or the folder of hard links an earlier version of the pipeline built there)."""
    link = Path(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and os.readlink(link) == str(tree):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{time.monotonic_ns()}.link")
    os.symlink(tree, tmp, target_is_directory=True)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # hard links only: the files live on in their other links
    os.replace(tmp, link)
