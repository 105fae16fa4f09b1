"""CIFAR-10/100 from the official python tarballs, read without unpickling arbitrary objects.

The batches are Python pickles of dicts holding numpy arrays. Instead of ``pickle.load`` (which
would run whatever a tampered archive asks for) an unpickler that resolves only the numpy
constructors an array needs reads them; anything else is refused.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from bbn.errors import BBNError

# name: (official URL, md5, train members, test members, label key, names member, names key)
ARCHIVES = {
    "cifar10_lt": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                   [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels",
                   "batches.meta", b"label_names"),
    "cifar100_lt": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                    ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        if module.startswith("numpy.core"):  # numpy 2 moved it; the archives name the old place
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core")
        return super().find_class(module, name)


def _load(tar: tarfile.TarFile, archive: Path, member: str) -> dict:
    found = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == member]
    if not found:
        raise BBNError(f"{archive}: member {member} not found (not a CIFAR python archive?)")
    try:
        return _ArrayUnpickler(tar.extractfile(found[0]), encoding="bytes").load()
    except Exception as exc:
        raise BBNError(f"{archive}: {found[0].name}: cannot read ({exc})") from None


def read_archive(archive: str | Path, name: str) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(class names, {"train": (images N x 32 x 32 x 3 uint8, labels), "test": (...)})."""
    archive = Path(archive)
    _, _, train_m, test_m, label_key, meta_m, names_key = ARCHIVES[name]
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise BBNError(f"{archive}: cannot open ({exc})") from None
    with tar:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in _load(tar, archive, meta_m)[names_key]]
        out = {}
        for split, members in (("train", train_m), ("test", test_m)):
            xs, ys = [], []
            for m in members:
                batch = _load(tar, archive, m)
                try:
                    xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    ys.append(np.asarray(batch[label_key], dtype=np.int64))
                except (KeyError, ValueError) as exc:
                    raise BBNError(f"{archive}: {m}: unexpected content ({exc})") from None
            out[split] = (np.concatenate(xs).transpose(0, 2, 3, 1), np.concatenate(ys))
    for split, (x, y) in out.items():
        if len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() >= len(names))):
            raise BBNError(f"{archive}: {split}: {len(x)} images but {len(y)} labels in 0..{len(names) - 1}")
    return names, out
