"""Stage prepare: every usable image stored once at prepare.short_side (params: prepare), and the
sha256 of each copy in ``data/prepared/sha256.csv`` (the content a resumed training must match)."""

import pandas as pd

from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_images
from bbn.data.prepare import DIGESTS, prepare_images, prepared_path
from bbn.files import atomic_dir, read_csv
from stages.params import load_params
from stages.paths import PREPARED, RAW, SPLIT, STATS
from stages.runner import run


def main() -> None:
    p = load_params().prepare
    test = drop_unreadable(load_images(find_json(RAW, "test"), labelled=False), read_csv(STATS / "unreadable.csv"))
    frames = [read_csv(SPLIT / "train.csv"), read_csv(SPLIT / "val.csv"), test]
    sources = sorted(set().union(*(f["path"] for f in frames)))
    with atomic_dir(PREPARED) as out:
        digests = prepare_images(sources, [prepared_path(s, str(RAW), str(out)) for s in sources], p.short_side,
                                 p.quality)
        pd.DataFrame({"path": sources, "sha256": digests}).to_csv(out / DIGESTS, index=False)
    print(f"prepare: {len(sources)} images at short side {p.short_side} in {PREPARED}")


if __name__ == "__main__":
    run(main)
