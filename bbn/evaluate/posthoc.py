"""Post-hoc logit adjustment (Menon et al., "Long-Tail Learning via Logit Adjustment", ICLR 2021).

Saved logits z become z - tau * log pi (pi: the training label prior), with tau chosen on the val
split alone by balanced (macro) accuracy; the test set is never used to choose it.
"""

from __future__ import annotations

import numpy as np

from bbn.evaluate.metrics import balanced_accuracy


def posthoc_adjust(logits: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """z - tau * log pi; ``logits`` (N, C), ``log_prior`` (C,)."""
    return np.asarray(logits) - tau * np.asarray(log_prior)


def tune_tau(logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray,
             taus=np.linspace(0, 2, 21)) -> tuple[float, float]:
    """The tau in ``taus`` maximising balanced accuracy of ``posthoc_adjust`` on validation logits.

    Returns ``(best_tau, its_balanced_accuracy)``; ties go to the smallest tau.
    """
    labels = np.asarray(labels)
    best_tau, best_acc = None, -1.0
    for tau in sorted(float(t) for t in taus):  # ascending + strict ">" -> smallest tau wins ties
        acc = balanced_accuracy(posthoc_adjust(logits, log_prior, tau).argmax(axis=1), labels)
        if acc > best_acc:
            best_tau, best_acc = tau, acc
    return best_tau, best_acc
