"""The classifier of one branch choice as one linear map, read out of and written back into the network.

Whatever the network's classifier form (``bbn.model.network``: ``separate`` heads or the
``official`` one FC), the classifier stage sees the features f of its ``branch`` and logits
z = V f + c, V (C, D), c (C,):

    branch         f (D)          separate (W_c, W_r heads)           official (one FC W, b)
    conventional   f_c (d)        V = W_c, c = b_c                    V = 2 W[:, :d], c = b
    reversed       f_r (d)        V = W_r, c = b_r                    V = 2 W[:, d:], c = b
    both           [f_c ; f_r]    V = [W_c, W_r] / 2, c = (b_c+b_r)/2 V = W, c = b

``both`` is the test-time classifier at alpha 0.5 (BBN's valid.py: cat(f_c, f_r) through the FC).
``write_linear`` stores (V, c) so that the network's ``forward(x, BRANCH_ALPHA[branch])`` returns
V f + c exactly; the checkpoint then fixes that alpha (``test_alpha_record``) so evaluation,
``bbn-predict`` and the MLflow model use it whatever ``eval.alpha`` says.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bbn.model.network import BilateralNet, build_model

BRANCH_ALPHA = {"conventional": 1.0, "reversed": 0.0, "both": 0.5}  # the branch weight that isolates each


def branch_features(model: BilateralNet, x: torch.Tensor, branch: str) -> torch.Tensor:
    """Pooled features (N, D) of ``branch`` for images ``x`` (N, 3, H, W): f_c, f_r or [f_c ; f_r]."""
    if branch == "both":
        return torch.cat(model.features(x), dim=1)
    block = model.cb_block if branch == "conventional" else model.rb_block
    return model.pool(block(model.trunk(x)))


def read_linear(model: BilateralNet, branch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(V (C, D), c (C,)), detached copies, of ``branch`` (module docstring). A cosine classifier
    (no bias, normalised rows) is not linear: ``ValueError`` (``bbn.classifier.spec.check`` refuses it)."""
    if model.spec.head == "cosine":
        raise ValueError("a cosine classifier has no linear form; re-train it (crt)")
    with torch.no_grad():
        if model.spec.classifier == "official":
            w, b, d = model.fc.weight, model.fc.bias, model.fc.weight.shape[1] // 2
            v = {"conventional": 2 * w[:, :d], "reversed": 2 * w[:, d:], "both": w}[branch]
            return v.clone(), b.clone()
        c, r = model.cb_fc, model.rb_fc
        if branch == "both":
            return torch.cat([c.weight, r.weight], 1) / 2, (c.bias + r.bias) / 2
        fc = c if branch == "conventional" else r
        return fc.weight.clone(), fc.bias.clone()


def write_linear(model: BilateralNet, branch: str, v: torch.Tensor, c: torch.Tensor) -> None:
    """Store z = V f + c as ``branch``'s classifier (module docstring), in place. With
    ``conventional`` or ``reversed`` the other branch's head is left as it was (alpha 1 or 0 gives
    it no weight); the official FC's shared bias becomes c."""
    with torch.no_grad():
        if model.spec.classifier == "official":
            d = model.fc.weight.shape[1] // 2
            cols = {"conventional": slice(0, d), "reversed": slice(d, 2 * d), "both": slice(0, 2 * d)}[branch]
            model.fc.weight[:, cols] = v if branch == "both" else v / 2
            model.fc.bias.copy_(c)
            return
        if branch == "both":
            d = v.shape[1] // 2
            pairs = [(model.cb_fc, 2 * v[:, :d]), (model.rb_fc, 2 * v[:, d:])]
        else:
            pairs = [(model.cb_fc if branch == "conventional" else model.rb_fc, v)]
        for fc, weight in pairs:
            fc.weight.copy_(weight)
            fc.bias.copy_(c)


def with_linear_heads(model: BilateralNet) -> BilateralNet:
    """``model`` itself, or for a cosine classifier (LDAM) a copy whose heads are plain linear layers
    (spec ``head`` 'linear', freshly initialised) and whose trunk and branch blocks are ``model``'s:
    the network cRT re-trains. The spec change travels in the checkpoint, so loaders build the same."""
    if model.spec.head != "cosine":
        return model
    new = build_model(dataclasses.replace(model.spec, head="linear"))
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(("cb_fc.", "rb_fc.", "fc."))}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(("cb_fc.", "rb_fc.")) for k in missing), (missing, unexpected)
    return new.to(next(model.parameters()).device)


def fresh_linear(width: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, c) of a newly initialised ``nn.Linear(width, num_classes)`` (PyTorch's default init, as
    classifier-balancing's DotProductClassifier for cRT: models/DotProductClassifier.py)."""
    fc = nn.Linear(width, num_classes)
    return fc.weight.detach().clone(), fc.bias.detach().clone()


def tau_normalise(v: torch.Tensor, tau: float) -> torch.Tensor:
    """Kang et al. 2020's tau-normalised weights: row i of ``v`` (C, D) divided by ||v_i||_2^tau
    (classifier-balancing tau_norm.py ``pnorm``; its logits have no bias: ``dotproduct_similarity``)."""
    return v / v.norm(dim=1, keepdim=True).pow(tau)


def test_alpha_record(branch: str) -> dict:
    """The checkpoint's alpha record for a bilateral network whose ``branch`` classifier was
    re-trained: alpha fixed at the weight that isolates it (``bbn.methods.Method.test_alpha`` returns
    a fixed schedule's value), so every loader of the checkpoint tests what the stage trained."""
    return {"schedule": "fixed", "value": BRANCH_ALPHA[branch]}
