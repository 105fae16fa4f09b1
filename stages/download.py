"""Stage download: the raw dataset in the iNaturalist layout, shared by every experiment (params: data).

The dataset is built once per version into ``<DVC_ROOT>/data/downloads/raw/<name>-<key>``
(``bbn.sources.raw``); ``data/raw`` links to it, and ``data/raw.json``, the stage's one DVC output,
holds its facts and a digest of its content. The stage always runs (``always_changed``): it only
hashes the params, the code and the user's files' sizes and dates, so an edit of a source image reaches the later stages, while an
unchanged dataset costs seconds and leaves ``data/raw.json`` identical, so DVC skips or restores from
its cache everything downstream, also in the fresh copy of a queued experiment.
"""

import time
from dataclasses import asdict, replace

from bbn.files import remove_stale, write_json
from bbn.sources.datasets import fetch_dataset
from bbn.sources.raw import dataset_key, point, shared_tree, source_fingerprint
from stages.deps import code_files
from stages.params import load_params
from stages.paths import DOWNLOADS, RAW, RAW_MANIFEST, resolve
from stages.runner import run
from stages.specs import data_spec


def _dataset_code() -> list:
    """The code that decides a dataset's files: bbn/sources, the image-name rules, this stage (an
    edit of the training code must not rebuild the tree)."""
    return [f for f in code_files("stages.download")
            if "sources" in f.parts or f.name == "decode.py" or f.parts[-2:] == ("stages", "download.py")]


def main() -> None:
    start = time.perf_counter()
    for pattern in (f".{RAW.name}.*.tmp", f".{RAW.name}.*.link"):  # what a killed run left beside data/raw
        remove_stale(RAW.parent, pattern)
    p = data_spec(load_params().data)
    p = replace(p, source=resolve(p.source))  # the same folder in dvc exp run's copies
    content = {k: v for k, v in asdict(p).items() if k not in ("mirror", "keep_archives")}  # not the dataset
    key = dataset_key(content, _dataset_code(), source_fingerprint(p.source))
    # Archives are kept in data/downloads (outside DVC) so that an interrupted download resumes;
    # the tree appears only once complete.
    tree, manifest, built = shared_tree(DOWNLOADS / "raw", p.name, key, lambda out: fetch_dataset(p, out, DOWNLOADS))
    point(RAW, tree)
    write_json(RAW_MANIFEST, manifest)  # changes exactly when the dataset does: DVC reruns what follows
    facts = ", ".join(f"{k} {v}" for k, v in manifest.items() if k not in ("name", "content"))
    how = "built" if built else "unchanged, reused"
    print(f"download: {p.name} {how} in {time.perf_counter() - start:.1f} s: {RAW} -> {tree}" + (f" ({facts})" if facts else ""))


if __name__ == "__main__":
    run(main, {"source": "data.source", "md5": "data.md5", "n_max": "data.n_max"})
