"""Sequence log-probs and the dense, chunked token KL: hand values, agreement with the naive
full log-softmax, gradients, bounded memory, and why the KL must not be the sample estimate."""

import math
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from anyfeedback.losses import pmpo_loss
from anyfeedback.losses.tokens import (
    LMHead,
    dense_kl,
    fused_token_stats,
    sequence_logps,
    token_logps_and_kl,
)


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


# ---- fused LM head: hidden states + head weight in, no [N, V] logits ------------------------


def naive_head(h, w, b, targets, ref_h=None, ref_w=None, scale=1.0, softcap=None, rev=False):
    """Full-softmax reference: materialise the [N, V] logits of both models."""

    def logits(x, weight):
        z = x @ weight.T + (0 if b is None else b)
        z = z * scale
        return z if softcap is None else softcap * torch.tanh(z / softcap)

    lq = torch.log_softmax(logits(h, w), -1)
    logps = lq.gather(1, targets[:, None]).squeeze(1)
    if ref_h is None:
        return logps, torch.zeros_like(logps), torch.zeros_like(logps)
    lr = torch.log_softmax(logits(ref_h, ref_w), -1)
    kl = (lq.exp() * (lq - lr)).sum(-1) if rev else (lr.exp() * (lr - lq)).sum(-1)
    return logps, kl, lr.gather(1, targets[:, None]).squeeze(1)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("capping", [(1.0, None), (0.5, 3.0)])
@pytest.mark.parametrize("rev", [False, True])
def test_fused_head_matches_full_softmax(tied, with_ref, bias, capping, rev):
    """log π_θ(y), KL(π_ref‖π_θ), log π_ref(y) and the gradients of the hidden states, head
    weight and bias equal the naive full softmax (float64, V = 13, chunks of 3 over N = 10).
    Tied: the head weight is also the embedding that produced the hidden states, so its
    gradient is the sum of both paths. Capping (0.5, 3.0): Cohere-style scale, Gemma-style
    soft-cap. `rev`: the reverse KL(π_θ‖π_ref) of RLOO."""
    g = torch.Generator().manual_seed(0)
    n, h_dim, v = 10, 6, 13
    scale, softcap = capping
    ids = torch.randint(0, v, (n,), generator=g)
    targets = torch.randint(0, v, (n,), generator=g)
    proj = torch.randn(h_dim, h_dim, generator=g, dtype=torch.float64)
    ref_w = torch.randn(v, h_dim, generator=g, dtype=torch.float64)
    ref_h = torch.randn(n, h_dim, generator=g, dtype=torch.float64) if with_ref else None
    w0 = torch.randn(v, h_dim, generator=g, dtype=torch.float64)
    b0 = torch.randn(v, generator=g, dtype=torch.float64) if bias else None
    h0 = torch.randn(n, h_dim, generator=g, dtype=torch.float64)
    coef = torch.randn(3, n, generator=g, dtype=torch.float64)

    def run(fused):
        w = w0.clone().requires_grad_()
        b = None if b0 is None else b0.clone().requires_grad_()
        leaf = h0.clone().requires_grad_()
        h = torch.tanh(w[ids] @ proj) if tied else leaf * 1.0
        if fused:
            head = LMHead(w, b, scale, softcap)
            ref_head = LMHead(ref_w, b0, scale, softcap)
            out = fused_token_stats(h, head, targets, ref_h, ref_head, chunk_size=3, reverse=rev)
        else:
            out = naive_head(h, w, b, targets, ref_h, ref_w, scale, softcap, rev)
            if with_ref and b0 is not None:  # the reference head has its own (constant) bias
                lr = torch.log_softmax(naive_head_logits(ref_h, ref_w, b0, scale, softcap), -1)
                lq = torch.log_softmax(naive_head_logits(h, w, b, scale, softcap), -1)
                kl = (lq.exp() * (lq - lr)).sum(-1) if rev else (lr.exp() * (lr - lq)).sum(-1)
                out = (out[0], kl, lr.gather(1, targets[:, None])[:, 0])
        (out[0] * coef[0] + out[1] * coef[1]).sum().backward()
        grads = [w.grad, leaf.grad if not tied else None, None if b is None else b.grad]
        return [o.detach() for o in out], grads

    (lp, kl, rlp), grads = run(True)
    (lp2, kl2, rlp2), grads2 = run(False)
    torch.testing.assert_close(lp, lp2, atol=1e-5, rtol=0)
    torch.testing.assert_close(kl, kl2, atol=1e-5, rtol=0)
    torch.testing.assert_close(rlp, rlp2, atol=1e-5, rtol=0)
    for a, b in zip(grads, grads2, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    if not with_ref:
        assert not kl.any()


def naive_head_logits(x, w, b, scale, softcap):
    z = (x @ w.T + (0 if b is None else b)) * scale
    return z if softcap is None else softcap * torch.tanh(z / softcap)


def test_fused_head_gradcheck_and_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ref_h = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (5,), generator=g)
    w0 = w.detach().clone()  # π_ref's head: a constant, even where it is the same weights
    torch.autograd.gradcheck(
        lambda a, b: fused_token_stats(a, LMHead(b), t, ref_h, LMHead(w0), chunk_size=2)[:2],
        (h, w),
    )
    # bf16 autocast: the head matmul in bf16 (as the plain head), softmax in float32
    hf, wf = h.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp, kl, _ = fused_token_stats(
            hf, LMHead(wf), t, ref_h.float(), LMHead(w0.float()), chunk_size=2
        )
    assert lp.dtype == torch.float32
    (lp.sum() + kl.sum()).backward()
    assert wf.grad.dtype == torch.float32 and hf.grad.dtype == torch.float32
    ref_lp, ref_kl, _ = naive_head(h.detach(), w.detach(), None, t, ref_h, w.detach())
    torch.testing.assert_close(lp.double(), ref_lp, atol=0.1, rtol=0.05)


def _fused_peak(n, v, chunk=16, h_dim=8):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, h_dim, generator=g, requires_grad=True)
    w = torch.randn(v, h_dim, generator=g, requires_grad=True)
    ref_h = torch.randn(n, h_dim, generator=g)
    t = torch.randint(0, v, (n,), generator=g)
    with LiveBytes() as fwd:
        lp, kl, _ = fused_token_stats(h, LMHead(w), t, ref_h, chunk_size=chunk)
    loss = (lp + kl).sum()
    with LiveBytes() as bwd:
        loss.backward()
    return fwd.peak, bwd.peak


def test_fused_head_peak_memory_bounded_by_chunk_not_n():
    """Peak live bytes of the fused head (dispatch-level tracker), at N = 256 and 1024 rows and
    V = 2048 and 8192, chunks of 16, H = 8. Stated bound: 6 chunks of [16, V] float32, plus the
    [V, H] float32 gradient of W (which the head's backward needs anyway) and O(N) vectors
    (N·(H+8)·4 bytes: gradient of h, log-sum-exps, outputs). A single [N, V] logits tensor —
    what the unfused path materialises per model — is 8-64× one chunk here."""
    for v in (2048, 8192):
        peaks = {}
        for n in (256, 1024):
            fwd, bwd = _fused_peak(n, v)
            bound = 6 * 16 * v * 4 + v * 8 * 4 + n * (8 + 8) * 4
            assert max(fwd, bwd) <= bound, (n, v, fwd, bwd, bound)
            assert max(fwd, bwd) < n * v * 4  # less than one [N, V] float32 logits tensor
            peaks[n] = (fwd, bwd)
        # quadrupling N adds only the O(N) vectors, never another chunk of V
        assert peaks[1024][0] - peaks[256][0] <= 768 * 16 * 4
        assert peaks[1024][1] - peaks[256][1] <= 768 * 16 * 4
