"""The one walk over a dataset folder that every entry point uses (ImageFolder and CIFAR trees,
extracted archives, iNaturalist trees, ``bbn-predict`` folders).

* Hidden files and folders (a name starting with ``.``: ``.picasaoriginals/``, ``.thumbnails/``,
  ``.hidden.jpg``) and OS metadata (``bbn.data.decode.is_os_metadata``: ``__MACOSX/``, ``@eaDir/``,
  ``Thumbs.db``, ...) are skipped at every depth below the root, as file managers hide them.
* Symbolic links to files and folders are followed: what is found is the linked content, under the
  link's own name. An image link whose target is missing, or a folder link that leads back to a
  folder it is inside of (a loop), is refused with one line (``BBNError``).
* Every file with an image suffix is found (``bbn.data.decode.is_image_name``): also those Pillow
  may not read (``.heic``), which the readability check then lists as "unsupported format" instead
  of their being dropped without a word.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from bbn.data.decode import is_image_name, is_os_metadata
from bbn.errors import BBNError


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden from a file manager's view: a dot name or OS metadata."""
    return name.startswith(".") or is_os_metadata(name)


def visible_folders(root: str | Path) -> list[Path]:
    """The sub-folders of ``root`` (links to folders included), sorted, none hidden (``is_hidden``)."""
    root = Path(root)
    return sorted(root / e.name for e in _entries(root) if not is_hidden(e.name) and (root / e.name).is_dir())


def image_files(root: str | Path) -> list[Path]:
    """Every image file below ``root`` (``is_image_name``), sorted, skipping what is hidden at any
    depth and following links (module docstring). Paths are ``root``-based, not resolved."""
    return files(root, lambda name: is_image_name(name))


def files(root: str | Path, wanted: Callable[[str], bool]) -> list[Path]:
    """Every file below ``root`` whose name ``wanted`` accepts, walked as ``image_files`` walks."""
    root = Path(root)
    found: list[Path] = []
    _walk(root, {os.path.realpath(root)}, wanted, found)
    return sorted(found)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise BBNError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _walk(folder: Path, ancestors: set[str], wanted: Callable[[str], bool], found: list[Path]) -> None:
    for entry in _entries(folder):
        if is_hidden(entry.name):
            continue
        path = folder / entry.name
        if path.is_symlink() and not path.exists():
            if wanted(entry.name):  # a link to nothing where an image should be
                raise BBNError(f"{path}: symbolic link to {os.readlink(path)}, which does not exist")
            continue
        if path.is_dir():
            real = os.path.realpath(path)
            if real in ancestors:
                raise BBNError(f"{path}: symbolic link loops back to {real}, a folder it is inside of")
            _walk(path, ancestors | {real}, wanted, found)
        elif path.is_file() and wanted(entry.name):
            found.append(path)
