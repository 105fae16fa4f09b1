"""Stage download: the raw dataset in the iNaturalist layout under data/raw (params: data)."""

from bbn.cli import run
from bbn.config import load_params
from bbn.datasets import fetch_dataset
from bbn.io import atomic_dir
from stages.paths import DOWNLOADS, RAW


def main() -> None:
    p = load_params().data
    # Archives are kept in data/downloads (outside DVC) so that an interrupted download resumes;
    # data/raw appears only once complete.
    with atomic_dir(RAW) as out:
        info = fetch_dataset(p, out, DOWNLOADS)
    facts = ", ".join(f"{k} {v}" for k, v in info.items() if k != "name")
    print(f"download: {p.name} ready in {RAW}" + (f" ({facts})" if facts else ""))


if __name__ == "__main__":
    run(main)
