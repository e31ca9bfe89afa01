"""Advantage-sign labels for offline PMPO (arXiv 2410.04166 §5.3): a transition is accepted when
its advantage under the learned value function is positive, rejected when it is negative, and
neither when it is exactly zero. Pure functions, no learning.

Shapes: `...` any leading dims (E seeds), T transitions.
  A(s_t, a_t) = Q(s_t, a_t) − V(s_t)                    q, v [..., T] -> masks [..., T]
"""

from __future__ import annotations

import numpy as np


def advantage_sign_labels(q: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, rejected) boolean masks: A = q − v > 0 accepted, A < 0 rejected, A = 0 neither."""
    adv = np.asarray(q) - np.asarray(v)
    return adv > 0, adv < 0


def label_stats(accepted: np.ndarray, rejected: np.ndarray, groups: np.ndarray | None) -> dict:
    """Fraction accepted / rejected overall and, with `groups` [T] (e.g. behaviour ids), per group.
    accepted, rejected [T] boolean."""
    out = {"accepted": float(accepted.mean()), "rejected": float(rejected.mean())}
    if groups is not None:
        out["accepted_by_group"] = {
            int(g): float(accepted[groups == g].mean()) for g in np.unique(groups)
        }
    return out
