"""bbn-predict says when an image looks nothing like the training images (bbn.model.inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bbn.cli.predict import main
from bbn.model.checkpoint import Checkpoint
from bbn.model.inputs import profile, unlike
from bbn.model.network import ModelSpec, build_model


def _digits(folder: Path, n: int = 12) -> list[str]:
    """Grey 32x32 'digits': dark strokes on white, a little noise (as the embedded dataset)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        a = np.full((32, 32), 255.0)
        a[8:24, 10 + i % 5:14 + i % 5] = 30.0
        a = np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([a] * 3, 2)).save(folder / f"{i}.jpg", quality=95)
        paths.append(str(folder / f"{i}.jpg"))
    return paths


def _photo(path: Path, size=(800, 600)) -> str:
    """A colourful photo-sized image (a green-brown gradient with a red patch, like a bird on a branch)."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    a = np.stack([80 + 100 * x, 140 + 60 * y, 40 + 30 * x * y], 2)
    a[h // 3:h // 2, w // 3:w // 2] = [200, 30, 30]
    Image.fromarray(a.astype(np.uint8)).save(path, quality=90)
    return str(path)


def test_profile_and_unlike_name_size_and_colour(tmp_path):
    ref = profile(_digits(tmp_path / "train"))
    assert ref["images"] == 12 and ref["short_side"] == [32, 32]
    assert ref["saturation"][0] < 0.05 and ref["brightness"][0] > 0.7  # grey ink on white
    assert unlike(ref, _digits(tmp_path / "new", 2)[1]) == ""  # another digit: nothing to say
    why = unlike(ref, _photo(tmp_path / "bird.jpg"))
    assert "short side 600 px (training 32–32 px)" in why and "saturation" in why, why
    small = _photo(tmp_path / "small_bird.jpg", (32, 32))
    assert "short side" not in unlike(ref, small) and "saturation" in unlike(ref, small)
    assert unlike({}, small) == ""  # no profile (an older checkpoint): no claim either way


def test_bbn_predict_warns_and_fills_the_column(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    Checkpoint.of(build_model(ModelSpec("resnet32", 2, "off", 3)), 16, [0, 1], ["zero", "one"], epochs=1,
                  inputs=profile(_digits(tmp_path / "train"))).save(ckpt)
    digit, bird = _digits(tmp_path / "new", 1)[0], _photo(tmp_path / "bird.jpg")
    main([digit, bird, "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.csv"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert "warning: 1 of 2 image(s) look nothing like the training images" in err and "bird.jpg" in err
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert table["unlike_training"].tolist()[0] == "" and "short side 600 px" in table["unlike_training"][1]
    assert table["category_id"].notna().all()  # still classified: a warning, not a refusal
