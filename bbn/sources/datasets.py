"""Every dataset into ``data/raw`` in the iNaturalist layout: the download stage's one entry point.

* ``digits``: the embedded archive, through the same fetch -> md5 -> safe-extract path as a mirror.
* ``inat2017/2018/2019``: the official archives (published md5s), from the official bucket, a
  ``data.mirror``, or ``data.source`` = a folder holding the archives (verified where they lie) or
  the extracted tree.

Images are never copied: archives are extracted once under ``downloads`` (kept for resumption and
reuse) and the output tree is made of hard links into that or into the user's own files, so the
caller must not let a cache take over (move, or make read-only) that tree.
* ``cifar10_lt`` / ``cifar100_lt``: the official python tarball (URL + md5, or ``data.source``), or
  ``data.source`` = an ImageFolder tree or archive of one (``cifar10/{train,test}/<class>/*.jpg``);
  the training set subsampled to the long-tail profile, the test set kept balanced.
* ``imagefolder``: ``data.source`` = ``root/<class>/*.jpg`` (see ``bbn.sources.imagefolder``).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from bbn.data.decode import is_image_name
from bbn.errors import ArgError, BBNError
from bbn.files import atomic_dir, locked, remove_stale
from bbn.sources import cifar, embedded, imagefolder, walk
from bbn.sources.download import fetch
from bbn.sources.extract import CANCEL, safe_extract, stream_extract
from bbn.sources.layout import Record, link, write_dataset
from bbn.sources.longtail import index_digest, longtail_subsample
from bbn.sources.spec import DataSpec

INAT_URL = "https://ml-inat-competition-datasets.s3.amazonaws.com/{year}/"
# Published md5s (visipedia/inat_comp, <year>/README.md). None: not published; give it in data.md5.
INAT = {
    "inat2017": {"train_val_images.tar.gz": "7c784ea5e424efaec655bd392f87301f",
                 "train_val2017.zip": None,
                 "test2017.tar.gz": "7d9b096fa1cd94d67a0fa779ea301234",
                 "test2017.zip": None},
    "inat2018": {"train_val2018.tar.gz": "b1c6952ce38f31868cc50ea72d066cc3",
                 "train2018.json.tar.gz": "bfa29d89d629cbf04d826a720c0a68b0",
                 "val2018.json.tar.gz": "f2ed8bfe3e9901cdefceb4e53cd3775d",
                 "test2018.tar.gz": "4b71d44d73e27475eefea68886c7d1b1",
                 "test2018.json.tar.gz": "fc717a7f53ac72ed8b250221a08a4502"},
    "inat2019": {"train_val2019.tar.gz": "c60a6e2962c9b8ccbd458d12c8582644",
                 "train2019.json.tar.gz": "b06a6683537867c0d5c7a45f407a306d",
                 "val2019.json.tar.gz": "5cc5509b0fe495f1c8c1362612448497",
                 "test2019.tar.gz": "6966703cc589a877689dc8993bb3e55e",
                 "test2019.json.tar.gz": "f3208996d9f675462cb00d2f18cbb28c"},
}


def _md5_for(p: DataSpec, name: str, official: str | None) -> str:
    md5 = p.md5.get(name, official)
    if not md5:
        raise ArgError("md5", f"no checksum known for {name}; add `{name}: <md5>`")
    return md5


def _source(p: DataSpec) -> Path:
    src = Path(p.source).expanduser()
    if not src.exists():
        raise ArgError("source", f"{p.source} not found")
    return src


def _source_tree(p: DataSpec, downloads: Path) -> Path:
    """``data.source`` as a folder: itself, or the archive it names extracted once."""
    src = _source(p)
    return src if src.is_dir() else _unpacked(src, downloads)


def _link_tree(src: Path, out: Path) -> None:
    """Hard-link an extracted dataset (JSONs and images, found by ``bbn.sources.walk``: nothing
    hidden, links followed) into ``out``, file by file."""
    files = walk.files(src, lambda name: name.endswith(".json") or is_image_name(name))
    for f in tqdm(files, desc=f"link {src.name}", unit="file", disable=None, leave=False):
        dst = out / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        link(f, dst)


def fetch_inat(p: DataSpec, out: Path, downloads: Path) -> dict:
    """The official archives, each fetched (or read from ``data.source``), verified and extracted
    once, in parallel (one thread per archive: md5 and zlib release the GIL), then linked into ``out``."""
    files = {name: _md5_for(p, name, md5) for name, md5 in INAT[p.name].items()}
    if p.source and any(_source(p).glob("train*.json")):
        _link_tree(_source(p), out)
        return {"source": "linked"}
    trees = _in_parallel(lambda item: _inat_archive(p, *item, downloads), list(files.items()))
    for tree in trees:
        _link_tree(tree, out)
    return {"source": "archives"}


def _in_parallel(job, items: list) -> list:
    """``job`` of each item in threads, results in order; on an error or Ctrl-C the other threads
    stop at their next block or member (``extract.CANCEL``) and the first error is raised."""
    pool = ThreadPoolExecutor(max_workers=len(items))
    try:
        futures = [pool.submit(job, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            CANCEL.set()
            raise failed[0].exception()
        return [f.result() for f in futures]
    except BaseException:
        CANCEL.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        CANCEL.clear()


def _inat_archive(p: DataSpec, name: str, md5: str, downloads: Path) -> Path:
    """``name`` extracted under ``downloads/extracted``, verified against ``md5``. An extraction
    that exists is used as it is: no download, no hashing. ``data.keep_archives`` false deletes a
    downloaded archive once its verified extraction is complete (also one left by a run killed
    between the two); the user's own archives (``data.source``) are never deleted."""
    dest = _extraction(downloads, name, md5)
    if p.source:
        local = _source(p) / name
        if not dest.is_dir() and not local.is_file():
            raise ArgError("source", f"{local} not found (expected the official archives)")
        return dest if dest.is_dir() else _unpacked(local, downloads, md5)  # verified while extracted
    local, record = downloads / name, downloads / f"{name}.md5"
    with locked(downloads / f".{name}.archive.lock"):  # parallel experiments: one fetches, the others wait
        if not dest.is_dir():
            base = p.mirror or INAT_URL.format(year=p.name.removeprefix("inat"))
            try:
                _unpacked(fetch(base.rstrip("/") + "/" + name, local, md5), downloads, md5)
            except BBNError:  # changed on disk since its verification: never trusted again
                local.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
                raise
        if not p.keep_archives:  # the extraction is complete: one copy of the images on disk
            local.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
    return dest


def _is_python_cifar(path: Path) -> bool:
    try:
        with tarfile.open(path) as tar:
            return any(Path(m).name in ("data_batch_1", "train") and "-py" in m for m in tar.getnames())
    except (tarfile.TarError, OSError) as exc:
        raise BBNError(f"{path}: cannot open ({exc})") from None


def _extraction(downloads: Path, name: str, key: str) -> Path:
    return downloads / "extracted" / f"{name}-{key[:12]}"


def _unpacked(archive: Path, downloads: Path, md5: str | None = None) -> Path:
    """``archive`` extracted once under ``downloads/extracted`` (kept while the archive is unchanged),
    so that rebuilding data/raw, e.g. for a new dataset version, only links files. With ``md5`` the
    bytes are verified on the same pass as the extraction (``stream_extract``) and a mismatch keeps
    nothing; without, the folder is named by the archive's size and date. One extraction per archive
    at a time (a lock each, so different archives extract in parallel); what a killed one left is removed."""
    st = archive.stat()
    dest = _extraction(downloads, archive.name, md5 or hashlib.md5(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest.parent / f".{dest.name}.lock"):
        for pattern in ("tmp*", ".*.tmp"):  # killed extractions, of this archive or another (unless running)
            remove_stale(dest.parent, pattern)
        if not dest.is_dir():
            with atomic_dir(dest) as tmp:
                got = stream_extract(archive, tmp)
                if md5 and got != md5:
                    raise BBNError(f"{archive}: md5 mismatch (expected {md5}, got {got}); re-download it")
    return dest


def fetch_cifar(p: DataSpec, out: Path, downloads: Path) -> dict:
    url, md5 = cifar.ARCHIVES[p.name][:2]
    if p.source and (_source(p).is_dir() or not _is_python_cifar(_source(p))):
        return _imagefolder(p, _source_tree(p, downloads), out, longtail=True)
    if p.source:
        archive = _source(p)
    else:
        name = Path(url).name
        base = p.mirror.rstrip("/") + "/" if p.mirror else url.removesuffix(name)
        archive = fetch(base + name, downloads / name, _md5_for(p, name, md5))
    names, sets = cifar.read_archive(archive, p.name)
    (x, y), (tx, ty) = sets["train"], sets["test"]
    keep = longtail_subsample(y, len(names), p.n_max, p.imbalance_ratio, p.seed, what=str(archive))
    train = [Record(f"{p.name}/train/{names[y[i]]}/{i:05d}.png", int(y[i]), pixels=x[i]) for i in keep]
    test = [Record(f"{p.name}/test/{names[ty[i]]}/{i:05d}.png", int(ty[i]), pixels=tx[i]) for i in range(len(ty))]
    categories = [{"id": c, "name": n} for c, n in enumerate(names)]
    write_dataset(out, categories, {"train": train, "val": [], "test": test}, f"{p.name} (IR {p.imbalance_ratio:g})")
    return _longtail_info(out, [r.file_name for r in train])


def _longtail_info(out: Path, kept: list[str]) -> dict:
    (out / "longtail_index.txt").write_text("\n".join(kept) + "\n")
    return {"longtail_images": len(kept), "longtail_index_sha256": index_digest(kept)}


def _imagefolder(p: DataSpec, src: Path, out: Path, longtail: bool) -> dict:
    categories, splits = imagefolder.records(src, p, longtail, prefix=p.name)
    write_dataset(out, categories, splits, f"{p.name} from {src}")
    if not longtail:
        return {}
    return _longtail_info(out, [r.file_name for r in splits["train"]])


def fetch_dataset(p: DataSpec, out: str | Path, downloads: str | Path) -> dict:
    """Build ``out`` (the staging folder of data/raw); return facts for ``dataset.json``."""
    out, downloads = Path(out), Path(downloads)
    downloads.mkdir(parents=True, exist_ok=True)
    if p.name == "digits":
        with tempfile.TemporaryDirectory() as tmp:
            archive, md5 = embedded.build_archive(p, Path(tmp) / "mirror")
            safe_extract(fetch(archive.as_uri(), Path(tmp) / "downloads" / archive.name, md5), out)
        info = {}
    elif p.name.startswith("inat"):
        info = fetch_inat(p, out, downloads)
    elif p.name in cifar.ARCHIVES:
        info = fetch_cifar(p, out, downloads)
    else:
        if not p.source:
            raise ArgError("source", "required for data.name imagefolder (root/<class>/*.jpg)")
        info = _imagefolder(p, _source_tree(p, downloads), out, longtail=p.longtail_subsample)
    info = {"name": p.name, **info}
    (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
