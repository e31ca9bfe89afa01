"""Sequence log-probs and the dense, chunked token KL: hand values, agreement with the naive
full log-softmax, gradients, bounded memory, and why the KL must not be the sample estimate."""

import math
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from anyfeedback.losses import pmpo_loss
from anyfeedback.losses.tokens import dense_kl, sequence_logps, token_logps_and_kl


def naive(logits, labels, mask, ref_logits=None):
    """Unchunked reference: full [B, T, V] log-softmax, shifted copies."""
    lq = torch.log_softmax(logits[:, :-1].double(), -1)
    m = mask[:, 1:].double()
    logps = (lq.gather(-1, labels[:, 1:, None]).squeeze(-1) * m).sum(-1)
    if ref_logits is None:
        return logps, None
    lr = torch.log_softmax(ref_logits[:, :-1].double(), -1)
    kl = ((lr.exp() * (lr - lq)).sum(-1) * m).sum(-1)
    return logps, kl


def random_batch(b=3, t=7, v=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    ref = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[0, 3:] = True  # prompt of 3 tokens, completion to the end
    mask[1, 2:5] = True  # completion followed by padding
    mask[2:, 1:2] = True  # one completion token
    return logits, ref, labels, mask


def test_sequence_logps_hand_value():
    """V = 3. Position 0 logits (0,0,0) → log(1/3) for any token; position 1 logits (ln 2, 0, 0)
    → p = (1/2, 1/4, 1/4). labels = (·, 0, 2), mask = (0, 1, 1):
    ℓ = log(1/3) + log(1/4) = −1.0986123 − 1.3862944 = −2.4849066; averaged over 2 tokens:
    −1.2424533. Position 2's logits predict nothing (no token after it)."""
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[1, 0, 2]])
    mask = torch.tensor([[False, True, True]])
    assert sequence_logps(logits, labels, mask).item() == pytest.approx(-2.4849066, abs=1e-6)
    assert sequence_logps(logits, labels, mask, average=True).item() == pytest.approx(
        -1.2424533, abs=1e-6
    )


def test_dense_kl_hand_value():
    """V = 2, π_ref = (½, ½), π_θ = (¾, ¼) at the single completion position:
    KL = ½ ln(½/¾) + ½ ln(½/¼) = ½(−0.4054651) + ½(0.6931472) = 0.1438410."""
    ref = torch.zeros(1, 2, 2)
    logits = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[False, True]])
    assert dense_kl(ref, logits, mask).item() == pytest.approx(0.1438410, abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 5, 4096])
def test_matches_naive_values_and_gradients(chunk):
    """Chunked = unchunked, in value and in the gradient w.r.t. the logits."""
    logits, ref, labels, mask = random_batch()
    x = logits.clone().requires_grad_()
    lp, kl, n = token_logps_and_kl(x, labels, mask, ref, chunk_size=chunk)
    assert n.tolist() == [4.0, 3.0, 1.0]  # completion tokens: t=3..6, t=2..4, t=1
    x2 = logits.double().clone().requires_grad_()
    lp2, kl2 = naive(x2, labels, mask, ref)
    assert torch.allclose(lp.double(), lp2, atol=1e-5)
    assert torch.allclose(kl.double(), kl2, atol=1e-5)
    w1, w2 = torch.tensor([0.3, -1.2, 0.7]), torch.tensor([1.1, 0.4, -0.5])
    ((lp * w1).sum() + (kl * w2).sum()).backward()
    ((lp2 * w1.double()).sum() + (kl2 * w2.double()).sum()).backward()
    assert torch.allclose(x.grad.double(), x2.grad, atol=1e-5)


def test_gradcheck_double():
    logits, ref, labels, mask = random_batch(b=2, t=4, v=5, seed=3)
    x = logits.double().requires_grad_()
    torch.autograd.gradcheck(
        lambda z: token_logps_and_kl(z, labels, mask, ref.double(), chunk_size=2)[:2], (x,)
    )


def test_kl_zero_at_reference_and_non_negative():
    logits, _, labels, mask = random_batch(seed=5)
    assert torch.allclose(dense_kl(logits, logits, mask), torch.zeros(3), atol=1e-6)
    _, ref, _, _ = random_batch(seed=6)
    assert (dense_kl(ref, logits, mask) > 0).all()
    with pytest.raises(ValueError):
        dense_kl(ref.requires_grad_(), logits, mask)


class LiveBytes(TorchDispatchMode):
    """Tracks the bytes of tensors created inside the mode that are still alive; keeps the peak."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = set()

    def _track(self, out, input_ptrs):
        if isinstance(out, torch.Tensor):
            st = out.untyped_storage()
            key = st.data_ptr()
            # views and in-place results share an input's storage: they allocate nothing
            if key in self._seen or key in input_ptrs or st.nbytes() == 0:
                return
            self._seen.add(key)
            self.live += st.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(out, self._release, key, st.nbytes())
        elif isinstance(out, (list, tuple)):
            for o in out:
                self._track(o, input_ptrs)

    def _release(self, key, nbytes):
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = list(args) + list((kwargs or {}).values())
        ptrs = {a.untyped_storage().data_ptr() for a in flat if isinstance(a, torch.Tensor)}
        self._track(out, ptrs)
        return out


def _peak_bytes(chunk, b=4, t=64, v=4096):
    logits, ref = torch.randn(b, t, v, requires_grad=True), torch.randn(b, t, v)
    labels = torch.randint(0, v, (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    with LiveBytes() as fwd:
        lp, kl, _ = token_logps_and_kl(logits, labels, mask, ref, chunk_size=chunk)
    loss = (lp + kl).sum()
    with LiveBytes() as bwd:
        loss.backward()
    return fwd.peak, bwd.peak


def test_chunked_peak_memory_is_bounded():
    """Measured peak of live temporaries (a dispatch-level allocation tracker on CPU).
    B·T = 256 rows of V = 4096 float32 = 4 MiB per full [B, T, V] tensor. With chunk 16 the
    forward peak stays within 5 chunks of [16, V] float32 (1.25 MiB; +1 % for [N] vectors) — a fraction of one full
    tensor — and the backward peak under one [B, T, V] gradient (which the LM head needs anyway)
    plus 6 chunks. Unchunked, the forward alone holds several full-size float32 tensors."""
    full = 4 * 64 * 4096 * 4
    chunk_bytes = 16 * 4096 * 4
    fwd, bwd = _peak_bytes(16)
    assert fwd <= 5.05 * chunk_bytes < full
    assert bwd <= full + 6 * chunk_bytes
    fwd_unchunked, _ = _peak_bytes(4096)
    assert fwd_unchunked >= 3 * full


def test_dense_kl_keeps_rejected_gradient_at_beta_equal_one_minus_alpha():
    """docs/algorithms.md#pmpo-kl: with the *sample* KL estimate mean(ℓ_ref − ℓ_θ) over the same
    labelled samples (global normalisation, N = 2, one accepted, one rejected), the rejected
    sample's ℓ_θ gets coefficient (β − (1−α))/N, which is 0 at β = 1 − α: AR degenerates to A. With
    the dense KL the rejected term keeps its −(1−α) pull, so AR ≠ A."""
    alpha, beta = 0.5, 0.5
    logits, ref, labels, mask = random_batch(b=2, t=5, v=7, seed=9)
    mask[:] = False
    mask[:, 2:] = True

    def rejected_grad(kl_mode):
        x = logits.clone().requires_grad_()
        lp, kl, _ = token_logps_and_kl(x, labels, mask, ref)
        if kl_mode == "sample":
            ref_lp, _, _ = token_logps_and_kl(ref, labels, mask)
            kl = ref_lp - lp  # the forbidden estimate, on the same two samples
        loss, _ = pmpo_loss(lp[:1], lp[1:], kl, alpha=alpha, beta=beta, normalization="global")
        loss.backward()
        return x.grad[1]

    assert torch.allclose(rejected_grad("sample"), torch.zeros(5, 7), atol=1e-6)
    assert rejected_grad("dense").abs().max() > 1e-3
