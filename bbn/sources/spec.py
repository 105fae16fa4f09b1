"""What the dataset builders take (``bbn.sources.datasets.fetch_dataset`` and the builders it calls):
one frozen dataclass, built from the validated ``data`` params by the download stage
(``stages.specs.data_spec``). The defaults and the validation live in the params schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class DataSpec:
    """One dataset version and where it comes from."""

    name: str  # a name of bbn.vocab.DATASETS: digits | cifar10_lt | cifar100_lt | inat2017/2018/2019 | imagefolder
    source: str  # a local folder or archive to build from ('' : download or, for digits, embedded)
    mirror: str  # base URL of the archives instead of the official host ('' : official)
    md5: Mapping[str, str]  # archive name -> md5, beside or instead of the published ones
    imbalance_ratio: float  # long-tailed subsets: N_max / N_min (Cao et al.'s exponential profile)
    n_max: int  # images of the largest class (0: the dataset's own)
    longtail_subsample: bool  # imagefolder: subsample the classes to the exponential profile
    image_px: int  # digits: the side of the generated images, pixels
    test_per_class: int  # digits / imagefolder: test images held out per class
    val_per_class: int  # digits: validation images per class
    seed: int  # the subsampling's seed
    keep_archives: bool  # false: delete each downloaded archive once its extraction is verified
