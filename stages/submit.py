"""Stage submit: submission.csv in the Kaggle iNat2019 format, validated (params: submit)."""

import json

import numpy as np

from bbn.cli import run
from bbn.config import load_params
from bbn.inat import find_json, load_images
from bbn.submission import write_submission
from bbn.tracking import Tracker
from stages.paths import PREDICTIONS, RAW, RUN, SUBMISSION


def main() -> None:
    params = load_params()
    pred = np.load(PREDICTIONS / "test.npz")
    test_ids = load_images(find_json(RAW, "test"), labelled=False, check_files=False)["image_id"]
    frame = write_submission(SUBMISSION, pred["image_id"], pred["logits"], pred["category_ids"],
                             params.submit.top_k, expected_ids=test_ids)
    Tracker(params.tracking, json.loads(RUN.read_text())["run_id"]).log_artifact(SUBMISSION)
    print(f"submit: {len(frame)} rows written to {SUBMISSION}")


if __name__ == "__main__":
    run(main)
