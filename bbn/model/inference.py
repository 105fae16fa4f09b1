"""Inference with a trained network: the device, the branch weight at test time, and predictions.

Both branches see the same image at test time (Zhou et al. 2020, section 3.3); their logits are
mixed as z = alpha * W_c f_c + (1 - alpha) * W_r f_r with alpha from ``test_alpha``.
Evaluation, ``bbn-predict`` and validation during training all go through ``predict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbn.errors import ArgError, BBNError
from bbn.methods import method
from bbn.model.network import BilateralNet

if TYPE_CHECKING:
    from bbn.model.checkpoint import Checkpoint


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA if present, else CPU), 'cpu', 'cuda', 'cuda:N'; ``ArgError('device')`` when CUDA
    is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ArgError("device", f"{name!r} asked for, but no CUDA device is available")
    return torch.device(name)


def test_alpha(ckpt: Checkpoint, eval_alpha: float) -> float:
    """The branch weight for a checkpoint's model: what its method declares
    (``bbn.methods.Method.test_alpha``) given the alpha schedule it was trained with."""
    if ckpt.method is None:
        raise BBNError("checkpoint without a training method: written by an older version; rerun train")
    alpha = ckpt.alpha
    return method(ckpt.method).test_alpha(alpha.get("schedule", "parabolic"), alpha.get("value", 0.5),
                                             eval_alpha)


@torch.inference_mode()
def predict(model: BilateralNet, loader: DataLoader, device: torch.device, alpha: float = 0.5,
            desc: str = "predict", tta_flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, targets (N,) int64) of every item in ``loader``'s order, both branches
    seeing each image. ``tta_flip`` averages the logits of each image and its horizontal mirror."""
    model.eval()
    logits, targets = [], []
    for x, y in tqdm(loader, desc=desc, disable=None, leave=False):
        x = x.to(device, non_blocking=True)
        z = model(x, alpha=alpha)
        if tta_flip:
            z = (z + model(x.flip(-1), alpha=alpha)) / 2
        logits.append(z.float().cpu())
        targets.append(torch.as_tensor(y))
    if not logits:
        return np.zeros((0, model.spec.num_classes), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def validate(model: BilateralNet, loader: DataLoader | None, device: torch.device, alpha: float) -> dict:
    """{'val_loss': mean CE, 'val_acc': top-1 accuracy} at branch weight ``alpha``; NaN without data."""
    if loader is None or len(loader.dataset) == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan")}
    logits, y = predict(model, loader, device, alpha, desc="val")
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    return {"val_loss": loss, "val_acc": float((logits.argmax(1) == y).mean())}
