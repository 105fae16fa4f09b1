"""Stage submit: submission.csv in the Kaggle iNat2019 format, validated (params: submit)."""

import numpy as np

from bbn.data.inat import find_json, load_images
from bbn.evaluate.submission import write_submission
from bbn.files import read_csv
from stages.params import load_params
from stages.paths import PREDICTIONS, RAW, SPLIT, SUBMISSION
from stages.runner import run
from stages.runs import result_run, training_run_id


def main() -> None:
    params = load_params()
    pred = np.load(PREDICTIONS / "test.npz")
    test_ids = load_images(find_json(RAW, "test"), labelled=False, check_files=False)["image_id"]
    ids, logits = pred["image_id"], pred["logits"]
    missing = np.setdiff1d(test_ids, ids)  # unreadable test images: Kaggle still wants a row
    if len(missing):
        counts = read_csv(SPLIT / "classes.csv")["train_count"].to_numpy()
        prior = np.log(counts + 1.0)[None, :].repeat(len(missing), axis=0)  # most frequent classes first
        ids, logits = np.concatenate([ids, missing]), np.concatenate([logits, prior])
        print(f"submit: {len(missing)} unreadable test image(s) get the most frequent training classes")
    frame = write_submission(SUBMISSION, ids, logits, pred["category_ids"], params.submit.top_k,
                             expected_ids=test_ids)
    mlrun, started = result_run(params, training_run_id(), "submit")
    mlrun.log_artifact(SUBMISSION)
    if started:
        mlrun.finish()
    else:
        mlrun.close()
    print(f"submit: {len(frame)} rows written to {SUBMISSION}")


if __name__ == "__main__":
    run(main)
