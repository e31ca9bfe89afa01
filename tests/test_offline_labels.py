"""Offline PMPO maths by hand: n-step targets, advantage-sign labels, the value fit on a
hand-built dataset whose advantages are known, and the per-preset loss (config.py's weights)."""

import numpy as np
import pytest
import torch

from anyfeedback.control.offline.config import PRESETS
from anyfeedback.control.offline.labels import advantage_sign_labels, label_stats
from anyfeedback.control.offline.train import policy_losses
from anyfeedback.control.offline.value import fit_values, nstep_targets
from anyfeedback.control.rollouts import Transitions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nstep_targets_by_hand():
    """Two episodes [0, 0, 0] and [1, 1], rewards 1, 2, 3 | 4, 5, γ = 0.5, n = 2, discounts 1
    except d_1 = 0 (a terminal after step 1):
      t=0: ret = 1 + 0.5·2 = 2,    disc = 0.5·1·0.5·0 = 0 (d_1 = 0), boot = 1
      t=1: ret = 2 + 0.5·d_1·3 = 2 (d_1 gates the next reward), disc = 0.5²·d_1·d_2 = 0, boot = 2
      t=2: episode ends: ret = 3, disc = 0.5·d_2 = 0.5, boot = 2
      t=3: ret = 4 + 0.5·5 = 6.5, disc = 0.25, boot = 4;  t=4: ret = 5, disc = 0.5, boot = 4."""
    rewards = np.array([1, 2, 3, 4, 5], np.float32)
    discounts = np.array([1, 0, 1, 1, 1], np.float32)
    ids = np.array([0, 0, 0, 1, 1])
    ret, disc, boot = nstep_targets(rewards, discounts, ids, n=2, gamma=0.5)
    np.testing.assert_allclose(ret, [2, 2, 3, 6.5, 5])
    np.testing.assert_allclose(disc, [0, 0, 0.5, 0.25, 0.5])
    np.testing.assert_array_equal(boot, [1, 2, 2, 4, 4])


def test_advantage_sign_labels_by_hand():
    """A = Q − V: [0.5, −0.5, 0, 2 − 3] -> accepted [T, F, F, F], rejected [F, T, F, T]
    (A = 0 is neither); stats: 1/4 accepted, 2/4 rejected, group 0 (rows 0, 1) 1/2 accepted."""
    acc, rej = advantage_sign_labels(np.array([1.0, 0.0, 2.0, 2.0]), np.array([0.5, 0.5, 2, 3]))
    assert acc.tolist() == [True, False, False, False]
    assert rej.tolist() == [False, True, False, True]
    stats = label_stats(acc, rej, np.array([0, 0, 1, 1]))
    assert stats == {"accepted": 0.25, "rejected": 0.5, "accepted_by_group": {0: 0.5, 1: 0.0}}


def _one_step_dataset(n: int = 400) -> Transitions:
    """Single-step episodes (discount 0, so y = r): state s = ±1, action a = ±0.5, reward 1 iff
    sign(a) = sign(s). Half the actions are right, so Q(s, right) = 1, Q(s, wrong) = 0,
    V(s) = ½ and A = ±½: every right action accepted, every wrong one rejected."""
    rng = np.random.default_rng(0)
    s = rng.choice([-1.0, 1.0], n).astype(np.float32)
    a = rng.choice([-0.5, 0.5], n).astype(np.float32)
    r = (np.sign(a) == np.sign(s)).astype(np.float32)
    obs = s[:, None]
    return Transitions(obs, a[:, None], r, np.zeros(n, np.float32), obs, np.arange(n))


def test_value_fit_labels_a_hand_built_dataset():
    tr = _one_step_dataset()
    fns = fit_values(
        tr, [0, 1], steps=300, batch_size=64, hidden=32, lr=3e-3, gamma=0.99, n_step=3, tau=0.05
    )
    q, v = fns.advantages(tr)  # [2, T]
    right = tr.rewards == 1
    np.testing.assert_allclose(v, 0.5, atol=0.1)
    np.testing.assert_allclose(q[:, right], 1.0, atol=0.1)
    np.testing.assert_allclose(q[:, ~right], 0.0, atol=0.1)
    acc, rej = advantage_sign_labels(q, v)
    assert (acc == right).all() and (rej == ~right).all()


@pytest.mark.parametrize("name", ["bc", "accept", "accept-bc", "reject-bc", "accept-reject-bc"])
def test_policy_loss_weights_by_hand(name):
    """ℓ = [−1, −2, −3, −4], accepted rows 0, 1, rejected 2, 3 (per-set means):
    L = −α·mean(−1, −2) + (1−α)·mean(−3, −4) + β·mean(1, 2, 3, 4) = 1.5α − 3.5(1−α) + 2.5β,
    and plain BC (no labels) = β·2.5 with β = 1."""
    p = PRESETS[name]
    logps = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    acc = torch.tensor([[True, True, False, False]])
    loss, m = policy_losses(logps, acc, ~acc, -logps, [p])  # --kl sample
    want = 2.5 * p.beta + (1.5 * p.alpha - 3.5 * (1 - p.alpha) if p.labelled else 0.0)
    assert loss.item() == pytest.approx(want)
    assert m["bc_nll"].item() == pytest.approx(2.5)
