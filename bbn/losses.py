"""BBN's bilateral loss: alpha * CE(z, y_c) + (1 - alpha) * CE(z, y_r) on the mixed logits z."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bilateral_loss(z: torch.Tensor, y_c: torch.Tensor, y_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """``z`` mixes both branches; ``y_c`` labels the uniform batch, ``y_r`` the reversed batch."""
    return alpha * F.cross_entropy(z, y_c) + (1.0 - alpha) * F.cross_entropy(z, y_r)
