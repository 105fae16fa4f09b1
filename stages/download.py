"""Stage download: the raw dataset in the iNaturalist layout under data/raw (params: data)."""

import tempfile
from pathlib import Path

from bbn.cli import run
from bbn.config import load_params
from bbn.download import fetch, safe_extract
from bbn.embedded import build_archive
from bbn.io import atomic_dir
from stages.paths import RAW


def main() -> None:
    p = load_params().data
    with tempfile.TemporaryDirectory() as tmp:
        # The embedded dataset is packed like a mirror's archive and then goes through the same
        # fetch -> md5 check -> safe extraction as a real download.
        archive, md5 = build_archive(p, Path(tmp) / "mirror")
        local = fetch(archive.as_uri(), Path(tmp) / "downloads" / archive.name, md5)
        with atomic_dir(RAW) as out:
            safe_extract(local, out)
    print(f"download: {p.name} extracted to {RAW}")


if __name__ == "__main__":
    run(main)
