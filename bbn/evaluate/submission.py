"""The Kaggle iNat2019 submission: ``id,predicted`` with up to 5 space-separated category ids.

``validate_submission`` checks a file against the test annotation file before it is accepted:
one row per test image id, no duplicates, no unknown ids, 1-5 known category ids per row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bbn.errors import BBNError
from bbn.files import atomic_path


def top_k_ids(logits: np.ndarray, category_ids: np.ndarray, k: int) -> list[str]:
    """For each row, the k most likely category ids, best first, space-separated."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [" ".join(str(c) for c in row) for row in category_ids[order]]


def validate_submission(frame: pd.DataFrame, image_ids, category_ids, source: str = "submission.csv") -> None:
    if list(frame.columns) != ["id", "predicted"]:
        raise BBNError(f"{source}: header must be 'id,predicted', got {','.join(map(str, frame.columns))}")
    ids = pd.to_numeric(frame["id"], errors="coerce")
    if ids.isna().any():
        raise BBNError(f"{source}: row {int(ids.isna().to_numpy().argmax()) + 2}: id is not a number")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise BBNError(f"{source}: duplicate id {int(dup.iloc[0])}")
    expected = set(int(i) for i in image_ids)
    missing, unknown = expected - set(ids.astype(int)), set(ids.astype(int)) - expected
    if missing:
        raise BBNError(f"{source}: {len(missing)} test image id(s) missing, e.g. {min(missing)}")
    if unknown:
        raise BBNError(f"{source}: id {min(unknown)} is not a test image")
    known = {str(int(c)) for c in category_ids}
    for row, value in enumerate(frame["predicted"].astype(str), start=2):
        labels = value.split()
        if not 1 <= len(labels) <= 5:
            raise BBNError(f"{source}: row {row}: predicted must hold 1-5 category ids, got {len(labels)}")
        bad = [c for c in labels if c not in known]
        if bad:
            raise BBNError(f"{source}: row {row}: unknown category id {bad[0]}")


def write_submission(target: str | Path, image_ids, logits: np.ndarray, category_ids: np.ndarray,
                     k: int = 5, expected_ids=None) -> pd.DataFrame:
    """Rank, validate against ``expected_ids`` (the test file's ids), then write atomically."""
    frame = pd.DataFrame({"id": np.asarray(image_ids, dtype=int),
                          "predicted": top_k_ids(logits, np.asarray(category_ids), k)})
    validate_submission(frame, image_ids if expected_ids is None else expected_ids, category_ids, str(target))
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    return frame
