"""tau-normalisation (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020): w_i / ||w_i||^tau, no bias (facebookresearch/classifier-balancing tau_norm.py:
``pnorm`` and ``dotproduct_similarity``), tau from a grid (its ``np.linspace(0, 2, 21)``).

tau is chosen on the val split alone, by balanced (macro) accuracy, ties to the smallest tau, as
the post-hoc logit adjustment chooses its tau (``bbn.evaluate.posthoc.tune_tau``); the test set is
never used. (The official script prints every tau's accuracy on whichever split it is given.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbn.classifier.heads import branch_features, read_linear, tau_normalise, write_linear
from bbn.errors import ArgError
from bbn.evaluate.metrics import balanced_accuracy
from bbn.model.network import BilateralNet


@torch.inference_mode()
def extract_features(model: BilateralNet, loader: DataLoader, branch: str,
                     device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """(features (N, D) float32 on the CPU, labels (N,) int64) of every image in ``loader``."""
    model.eval()
    feats, labels = [], []
    for x, y in tqdm(loader, desc="val features", disable=None, leave=False):
        feats.append(branch_features(model, x.to(device), branch).float().cpu())
        labels.append(torch.as_tensor(y))
    if not feats:
        return torch.zeros(0, 0), np.zeros(0, np.int64)
    return torch.cat(feats), torch.cat(labels).numpy()


def choose_tau(feats: torch.Tensor, labels: np.ndarray, v: torch.Tensor,
               grid) -> tuple[float, float, dict[float, float]]:
    """(tau, its balanced accuracy, {tau: balanced accuracy}) over ``grid`` for logits
    f . tau_normalise(v, tau) of val features ``feats`` (N, D); ties go to the smallest tau.
    ``ArgError('tau_grid')`` for an empty grid or, with more than one tau, no val images."""
    taus = sorted(float(t) for t in grid)
    if not taus:
        raise ArgError("tau_grid", "empty: give at least one tau")
    if len(taus) > 1 and len(labels) == 0:
        raise ArgError("tau_grid", "tau is chosen on the val split, which has no images; give one tau or a val split")
    v = v.float().cpu()
    table = {t: balanced_accuracy((feats @ tau_normalise(v, t).T).argmax(1).numpy(), labels) if len(labels)
             else float("nan") for t in taus}
    best = taus[0]
    for t in taus:  # ascending + strict ">": the smallest tau wins ties
        if table[t] > table[best]:
            best = t
    return best, table[best], table


def tau_normalise_model(model: BilateralNet, branch: str, tau: float) -> None:
    """Replace ``branch``'s classifier by its tau-normalised weights and no bias, in place."""
    v, c = read_linear(model, branch)
    write_linear(model, branch, tau_normalise(v, tau), torch.zeros_like(c))
