"""Classify images with a trained checkpoint: ``bbn-predict --checkpoint models/final.pt photos/``.

Inputs are image files, folders (searched recursively for image files) or ``.txt`` files that
list one image path per line. The CSV holds, per image, the top-1 category id, name and
probability, and the top-k ids and probabilities (space-separated, best first), and an ``error``
column: a file that cannot be read (empty, truncated, not an image: ``bbn.data.imagecheck``) gets a
row with the reason there and no prediction, and the other images are still classified. Each original
goes through the prepare step in memory (resize to the checkpoint's prepare short side, JPEG re-encode
at its quality: ``bbn.data.prepare.prepared_image``), then the evaluation stage's transform and
both-branch inference: the network sees the tensor evaluation got from the prepared copy, so the
top-1 agrees with ``predictions/test.npz``.

A model answers for any image. When an image looks nothing like the training images (its size or
colour statistics far from those the checkpoint recorded: ``bbn.model.inputs``), its row says why in
the ``unlike_training`` column and one warning on stderr says that such predictions are guesses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bbn.data.imagecheck import check_image
from bbn.errors import BBNError, run
from bbn.evaluate.metrics import softmax
from bbn.evaluate.predictions import predict_frame
from bbn.files import atomic_path
from bbn.model.checkpoint import Checkpoint, load_checkpoint
from bbn.model.inference import resolve_device, test_alpha
from bbn.model.inputs import unlike
from bbn.sources.walk import image_files

DEFAULT_CHECKPOINTS = ("models/final.pt", "models/model.pt")  # after the classifier stage; after train


def default_checkpoint() -> str:
    """The project's current model in the working directory: ``models/final.pt`` (what evaluate
    scores), unless ``models/model.pt`` is newer (train ran again, the classifier stage not yet)."""
    final, trained = map(Path, DEFAULT_CHECKPOINTS)
    if trained.is_file() and (not final.is_file() or trained.stat().st_mtime > final.stat().st_mtime):
        return str(trained)
    return str(final)


def collect_images(inputs: list[str]) -> list[str]:
    """Image paths from files, folders and list files, in the order given (folders sorted)."""
    paths: list[str] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += [str(p) for p in image_files(item)]  # the dataset walk: nothing hidden, links followed
        elif item.suffix.lower() == ".txt" and item.is_file():
            base = item.parent
            for n, line in enumerate(item.read_text().splitlines(), 1):
                if line.strip():
                    path = Path(line.strip())
                    path = path if path.is_absolute() or path.exists() else base / path
                    if not path.is_file():
                        raise BBNError(f"{item}:{n}: {line.strip()}: no such image file")
                    paths.append(str(path))
        elif item.is_file():
            paths.append(str(item))
        else:
            raise BBNError(f"{item}: no such file or folder")
    if not paths:
        raise BBNError(f"no images found in {' '.join(inputs)}")
    return paths


def classify(checkpoint: str | Path, paths: list[str], top_k: int = 5, batch_size: int = 0,
             alpha: float | None = None, tta_flip: bool = False, device: str = "auto") -> pd.DataFrame:
    """One row per image, in the order given: path, category_id, name, probability, top-k ids and
    probabilities, error ('' or why the file cannot be read; then no prediction). BBNError when no
    image can be read."""
    reasons = [check_image(p) for p in tqdm(paths, desc="check images", unit="img", disable=None, leave=False)]
    readable = [p for p, why in zip(paths, reasons) if not why]
    if not readable:
        load_checkpoint(checkpoint, torch.device("cpu"))  # a bad checkpoint is still the first thing to say
        raise BBNError(f"{paths[0]}: cannot read image ({reasons[0]}); no image could be read")
    table = _classify(checkpoint, readable, top_k, batch_size, alpha, tta_flip, device).assign(error="")
    table["unlike_training"] = unlike_training(checkpoint, readable)
    predicted = iter(table.to_dict("records"))
    rows = [{"path": p, "error": why} if why else next(predicted) for p, why in zip(paths, reasons)]
    return pd.DataFrame(rows, columns=table.columns).astype({"category_id": "Int64"})


def unlike_training(checkpoint: str | Path, paths: list[str]) -> list[str]:
    """Per image, why it looks nothing like the training images ('' when it does; ``bbn.model.inputs``);
    one warning on stderr when any does, or when the checkpoint predates the recorded profile."""
    reference = Checkpoint.load(checkpoint).inputs
    if not reference:
        print(f"bbn-predict: {checkpoint} records no profile of its training images (an older checkpoint): "
              "images unlike them cannot be pointed out", file=sys.stderr)
        return [""] * len(paths)
    reasons = [unlike(reference, p) for p in tqdm(paths, desc="compare with training", unit="img", disable=None,
                                                  leave=False)]
    odd = [(p, why) for p, why in zip(paths, reasons) if why]
    if odd:
        print(f"bbn-predict: warning: {len(odd)} of {len(paths)} image(s) look nothing like the training images "
              f"({odd[0][0]}: {odd[0][1]}); their predictions are guesses (column unlike_training)", file=sys.stderr)
    return reasons


def _classify(checkpoint: str | Path, paths: list[str], top_k: int, batch_size: int, alpha: float | None,
              tta_flip: bool, device: str) -> pd.DataFrame:
    """The rows of ``classify`` for readable images."""
    dev = resolve_device(device)
    model, ckpt = load_checkpoint(checkpoint, dev)
    frame = pd.DataFrame({"path": paths, "category_id": -1})
    if alpha is None:  # as the evaluation stage: what the model's method declares (bbn.methods)
        alpha = test_alpha(ckpt, 0.5)
    elif ckpt.alpha.get("schedule") == "fixed" and alpha != test_alpha(ckpt, alpha):
        print(f"bbn-predict: warning: {checkpoint} fixes alpha at {test_alpha(ckpt, alpha)} (trained with a fixed "
              f"alpha, or its classifier re-trained on one branch by the classifier stage); --alpha {alpha} mixes "
              "in a branch it was not trained or re-trained for", file=sys.stderr)
    if not ckpt.prepare:
        print(f"bbn-predict: {checkpoint} does not record its prepare step (an older checkpoint): "
              "images are decoded as they are, and may classify differently from evaluation", file=sys.stderr)
    logits, _ = predict_frame(model, ckpt, frame, "predict", batch_size, 0, alpha, tta_flip, dev, originals=True)
    probs = softmax(logits.astype(np.float64))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    ids, names = np.asarray(ckpt.category_ids), np.asarray(ckpt.names, dtype=object)
    top = probs[np.arange(len(paths))[:, None], order]
    return pd.DataFrame({
        "path": paths,
        "category_id": ids[order[:, 0]],
        "name": names[order[:, 0]],
        "probability": top[:, 0].round(6),
        f"top{top_k}_category_ids": [" ".join(map(str, ids[row])) for row in order],
        f"top{top_k}_probabilities": [" ".join(f"{p:.6f}" for p in row) for row in top],
    })


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bbn-predict", description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="image files, folders, or .txt files listing image paths")
    ap.add_argument("--checkpoint", default=None,
                    help="a checkpoint of this project (default: models/final.pt, the model evaluate scores, "
                         "else models/model.pt, the trained one, before the classifier stage has run)")
    ap.add_argument("--out", default="predict.csv", help="CSV to write (default: predict.csv)")
    ap.add_argument("--top-k", type=int, default=5, help="categories per image in the CSV (default 5)")
    ap.add_argument("--batch-size", type=int, default=0, help="default 0: 64 on CPU, 256 on GPU")
    ap.add_argument("--alpha", type=float, default=None,
                    help="branch weight at inference (default: as evaluate, what the checkpoint's method "
                         "declares: 0.5 for BBN, 1 for a baseline, the re-trained branch after the classifier stage)")
    ap.add_argument("--tta-flip", action="store_true", help="average with the horizontal mirror")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--show", type=int, default=20, help="rows to print (default 20)")
    args = ap.parse_args(argv)
    if args.top_k < 1:
        ap.error("--top-k must be >= 1")
    if args.batch_size < 0:
        ap.error("--batch-size must be >= 0 (0: by device)")
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        ap.error("--alpha must be in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    checkpoint = args.checkpoint or default_checkpoint()
    print(f"bbn-predict: checkpoint {checkpoint}", file=sys.stderr)
    table = classify(checkpoint, collect_images(args.inputs), args.top_k, args.batch_size,
                     args.alpha, args.tta_flip, args.device)
    with atomic_path(Path(args.out), suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    shown = table[["path", "category_id", "name", "probability", "error"]].head(args.show)
    print(shown.to_string(index=False))
    more, failed = len(table) - len(shown), int((table["error"] != "").sum())
    print(f"{len(table) - failed} images classified{f' ({more} more not shown)' if more > 0 else ''}"
          f"{f', {failed} unreadable (see the error column)' if failed else ''}: {args.out}")


def cli() -> None:
    run(lambda: main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
