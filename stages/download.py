"""Stage download: the raw dataset in the iNaturalist layout under data/raw (params: data)."""

from bbn.files import atomic_dir
from bbn.sources.datasets import fetch_dataset
from stages.params import load_params
from stages.paths import DOWNLOADS, RAW, resolve
from stages.runner import run


def main() -> None:
    p = load_params().data
    p = p.model_copy(update={"source": resolve(p.source)})  # the same folder in dvc exp run's copies
    # Archives are kept in data/downloads (outside DVC) so that an interrupted download resumes;
    # data/raw appears only once complete.
    with atomic_dir(RAW) as out:
        info = fetch_dataset(p, out, DOWNLOADS)
    facts = ", ".join(f"{k} {v}" for k, v in info.items() if k != "name")
    print(f"download: {p.name} ready in {RAW}" + (f" ({facts})" if facts else ""))


if __name__ == "__main__":
    run(main, {"source": "data.source", "md5": "data.md5", "n_max": "data.n_max"})
