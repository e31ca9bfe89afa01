"""Per-token log-probs and dense KL(π_ref ‖ π_θ) from LM logits, in bounded memory.

Shapes: B sequences, T positions, V vocabulary, N selected (completion) tokens in the batch.
  logits, ref_logits  [B, T, V]  as returned by a causal LM for `input_ids`
  labels              [B, T]     the token ids (usually `input_ids` itself)
  mask                [B, T]     True where `labels[b, t]` is a completion token to score
Logits at position t predict the token at t+1 (the usual causal shift), handled by indexing, so
no shifted copy of the logits is made.

Memory: the log-softmax of a whole [B, T, V] batch in float32 is often the largest tensor in LM
fine-tuning (8 × 512 × 256k × 4 B = 4 GiB). Here the forward pass walks the N selected rows in
chunks of `chunk_size` and keeps only [N] results; the backward pass recomputes each chunk's
softmax and writes the gradient straight into its rows. Peak extra memory, forward or backward:
about 5 × chunk_size × V × 4 bytes of float32 temporaries (the two log-softmaxes of a chunk,
π_ref, the log-ratio and their product; measured in tests/test_losses_tokens.py), independent of B and T, plus the [B, T, V] gradient
of the logits in their own dtype, which any backward pass through the LM head needs anyway.
Padding and prompt tokens are never touched.

The fused LM head (`fused_token_stats`) goes one step further: it takes the final hidden states
h [N, H] of the scored positions and the head (W [V, H], bias, scaling), so not even the policy's
or π_ref's [N, V] logits exist — each chunk's logits are computed, reduced and dropped, and the
backward pass recomputes them. Peak extra memory: about 6 × chunk_size × V × 4 bytes plus the
[V, H] gradient of W (measured in tests/test_losses_tokens.py), independent of N.
See docs/algorithms.md#token-kl.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LMHead", "dense_kl", "fused_token_stats", "sequence_logps", "token_logps_and_kl"]

DEFAULT_CHUNK = 1024


def _selected_rows(labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat row indices into logits.view(B*T, V) of every scored position, and their targets."""
    _, t = labels.shape
    shifted = mask[:, 1:].bool()  # [B, T-1]: does position t predict a scored token?
    b_idx, t_idx = shifted.nonzero(as_tuple=True)
    rows = b_idx * t + t_idx  # logits row predicting labels[b, t+1]
    targets = labels[b_idx, t_idx + 1]
    return rows, targets


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """At least float32 for the softmax (bf16/fp16 logits are upcast per chunk; float64 kept)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class _ChunkedTokenStats(torch.autograd.Function):
    """Row-wise log π_θ(target) and Σ_v π_ref(v)[log π_ref(v) − log π_θ(v)], chunked both ways."""

    @staticmethod
    def forward(ctx, logits, ref_logits, rows, targets, chunk_size):  # noqa: D102
        v = logits.shape[-1]
        flat = logits.reshape(-1, v)
        ref_flat = None if ref_logits is None else ref_logits.reshape(-1, v)
        n = rows.numel()
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logps = torch.empty(n, dtype=dtype, device=logits.device)
        kl = torch.zeros(n, dtype=dtype, device=logits.device)
        for start in range(0, n, chunk_size):
            sl = slice(start, start + chunk_size)
            log_q = torch.log_softmax(_upcast(flat.index_select(0, rows[sl])), dim=-1)  # [C, V]
            logps[sl] = log_q.gather(1, targets[sl, None]).squeeze(1)
            if ref_flat is not None:
                log_r = torch.log_softmax(_upcast(ref_flat.index_select(0, rows[sl])), dim=-1)
                kl[sl] = (log_r.exp() * (log_r - log_q)).sum(-1)
        ctx.save_for_backward(logits, ref_logits, rows, targets)
        ctx.chunk_size = chunk_size
        return logps, kl

    @staticmethod
    def backward(ctx, grad_logps, grad_kl):  # noqa: D102
        logits, ref_logits, rows, targets = ctx.saved_tensors
        v = logits.shape[-1]
        grad = torch.zeros_like(logits)
        grad_flat = grad.view(-1, v)
        flat = logits.reshape(-1, v)
        ref_flat = None if ref_logits is None else ref_logits.reshape(-1, v)
        for start in range(0, rows.numel(), ctx.chunk_size):
            sl = slice(start, start + ctx.chunk_size)
            p = torch.softmax(_upcast(flat.index_select(0, rows[sl])), dim=-1)  # [C, V]
            # ∂ log q(y)/∂z = onehot(y) − q ;  ∂ KL/∂z = q − r   (r = π_ref, constant)
            g = p * (grad_kl[sl] - grad_logps[sl]).unsqueeze(1)
            g.scatter_add_(1, targets[sl, None], grad_logps[sl, None])
            if ref_flat is not None:
                r = torch.softmax(_upcast(ref_flat.index_select(0, rows[sl])), dim=-1)
                g.sub_(r * grad_kl[sl].unsqueeze(1))
            grad_flat.index_copy_(0, rows[sl], g.to(grad.dtype))
        return grad, None, None, None, None


def token_logps_and_kl(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    ref_logits: torch.Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence sums over completion tokens: (Σ log π_θ(y_t), Σ_t KL_t, token count), each [B].

    One fused pass serves both PMPO terms: ℓ_θ and the dense per-token
    KL(π_ref‖π_θ)_t = Σ_v π_ref(v|x,y_<t)[log π_ref(v|·) − log π_θ(v|·)]
    (docs/algorithms.md#token-kl). The KL is
    zero when `ref_logits` is None. `ref_logits` must not require grad (π_ref is a constant).
    """
    if ref_logits is not None and ref_logits.requires_grad:
        raise ValueError("ref_logits must be computed without grad (π_ref is a constant)")
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, labels "
            f"{tuple(labels.shape)}, mask {tuple(mask.shape)}"
        )
    rows, targets = _selected_rows(labels, mask)
    row_logps, row_kl = _ChunkedTokenStats.apply(logits, ref_logits, rows, targets, chunk_size)
    b, t = labels.shape
    seq = torch.div(rows, t, rounding_mode="floor")  # which sequence each row belongs to
    zeros = row_logps.new_zeros(b)
    logps = zeros.index_add(0, seq, row_logps)
    kl = zeros.index_add(0, seq, row_kl)
    counts = zeros.index_add(0, seq, torch.ones_like(row_logps))
    return logps, kl, counts


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    average: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """ℓ_θ(x, y) = Σ_t log π_θ(y_t | x, y_<t) over completion tokens. Returns [B] (≥ float32).

    `average=True` divides by the number of completion tokens (the length-normalised variant,
    e.g. for IPO, docs/algorithms.md#ipo). A sequence with no completion token gets 0.
    """
    logps, _, counts = token_logps_and_kl(logits, labels, mask, chunk_size=chunk_size)
    return logps / counts.clamp(min=1) if average else logps


def dense_kl(
    ref_logits: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Σ_t KL(π_ref(·|x,y_<t) ‖ π_θ(·|x,y_<t)) over completion positions, dense over V. Returns [B].

    Positions follow `mask` with the causal shift (logits at t score the token at t+1). `labels`
    is only needed for its shape; it defaults to zeros.
    """
    if labels is None:
        labels = torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    _, kl, _ = token_logps_and_kl(logits, labels, mask, ref_logits, chunk_size=chunk_size)
    return kl


class LMHead(NamedTuple):
    """An LM head: logits = c·tanh(s·(h Wᵀ + b) / c) with softcap c, or s·(h Wᵀ + b) without.
    `scale` s covers Cohere's `logit_scale` and Granite's 1/`logits_scaling`; `softcap` c is
    Gemma 2/3's `final_logit_softcapping`. A tied head is simply the embedding matrix."""

    weight: torch.Tensor  # [V, H]
    bias: torch.Tensor | None = None  # [V]
    scale: float = 1.0
    softcap: float | None = None


class TokenStats(NamedTuple):
    """Per scored token, each [N]: log π_θ(y), KL(π_ref‖π_θ) (0 without π_ref), log π_ref(y)."""

    logps: torch.Tensor
    kl: torch.Tensor
    ref_logps: torch.Tensor


def _compute_dtype(h: torch.Tensor, w: torch.Tensor) -> torch.dtype:
    """The matmul dtype the plain LM head would use: autocast's when it is on, else the inputs'."""
    kind = h.device.type
    if torch.is_autocast_enabled(kind) and w.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        return torch.get_autocast_dtype(kind)
    return torch.promote_types(h.dtype, w.dtype)


def _chunk_logits(h, w, head_params) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits [C, V] in ≥ float32, tanh(·) [C, V] when soft-capped, for the backward)."""
    bias, scale, softcap = head_params
    z = _upcast(h.to(w.dtype) @ w.T)  # [C, V]
    if bias is not None:
        z = z + bias.to(z.dtype)
    if scale != 1.0:
        z = z * scale
    if softcap is None:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


class _FusedHeadStats(torch.autograd.Function):
    """TokenStats from hidden states and heads, chunked over N both ways (module docstring)."""

    @staticmethod
    def forward(ctx, h, w, b, ref_h, ref_w, ref_b, targets, scaling, chunk_size, reverse):  # noqa: D102
        ctx.set_materialize_grads(False)
        kind = h.device.type
        cd = _compute_dtype(h, w)
        with torch.autocast(kind, enabled=False):
            wc = w.to(cd)  # one cast per pass, as autocast does for the LM head
            ref_wc = None if ref_h is None else ref_w.to(_compute_dtype(ref_h, ref_w))
            n, out_dtype = h.shape[0], torch.promote_types(cd, torch.float32)
            logps = torch.empty(n, dtype=out_dtype, device=h.device)
            kl = torch.zeros(n, dtype=out_dtype, device=h.device)
            ref_logps = torch.zeros(n, dtype=out_dtype, device=h.device)
            lse = torch.empty(n, dtype=out_dtype, device=h.device)  # log Σ_v exp z_v, for backward
            ref_lse = torch.empty(n if ref_h is not None else 0, dtype=out_dtype, device=h.device)
            for start in range(0, n, chunk_size):
                sl = slice(start, start + chunk_size)
                tgt = targets[sl, None]
                z, _ = _chunk_logits(h[sl], wc, (b, *scaling[:2]))  # [C, V]
                lse[sl] = torch.logsumexp(z, -1)
                log_q = z.sub_(lse[sl, None])  # in place: z is not needed again
                logps[sl] = log_q.gather(1, tgt).squeeze(1)
                if ref_h is not None:
                    zr, _ = _chunk_logits(ref_h[sl], ref_wc, (ref_b, *scaling[2:]))
                    ref_lse[sl] = torch.logsumexp(zr, -1)
                    log_r = zr.sub_(ref_lse[sl, None])
                    ref_logps[sl] = log_r.gather(1, tgt).squeeze(1)
                    p_first = log_q.exp() if reverse else log_r.exp()  # KL's first argument
                    kl[sl] = (p_first * (log_q - log_r if reverse else log_r - log_q)).sum(-1)
                del z, log_q
        ctx.save_for_backward(h, w, b, ref_h, ref_w, ref_b, targets, lse, ref_lse, kl)
        ctx.scaling, ctx.chunk_size, ctx.cd, ctx.reverse = scaling, chunk_size, cd, reverse
        ctx.mark_non_differentiable(ref_logps)
        return logps, kl, ref_logps

    @staticmethod
    def backward(ctx, grad_logps, grad_kl, _grad_ref):  # noqa: D102
        h, w, b, ref_h, ref_w, ref_b, targets, lse, ref_lse, kl = ctx.saved_tensors
        n = h.shape[0]
        if grad_logps is None:
            grad_logps = lse.new_zeros(n)
        use_kl = grad_kl is not None and ref_h is not None
        cd = ctx.cd
        with torch.autocast(h.device.type, enabled=False):
            wc = w.to(cd)
            ref_wc = ref_w.to(_compute_dtype(ref_h, ref_w)) if use_kl else None
            grad_h = torch.zeros_like(h) if ctx.needs_input_grad[0] else None
            acc = torch.promote_types(w.dtype, torch.float32)
            grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
            grad_b = None if b is None else torch.zeros(b.shape, dtype=acc, device=b.device)
            softcap, scale = ctx.scaling[1], ctx.scaling[0]
            for start in range(0, n, ctx.chunk_size):
                sl = slice(start, start + ctx.chunk_size)
                z, t = _chunk_logits(h[sl], wc, (b, scale, softcap))
                log_q = z.sub_(lse[sl, None])
                g = log_q.exp()  # q [C, V]
                # ∂ log q(y)/∂z = onehot(y) − q ;  ∂ KL(r‖q)/∂z = q − r   (r = π_ref, constant);
                # ∂ KL(q‖r)/∂z = q ⊙ (log q − log r − KL(q‖r))
                glp = grad_logps[sl, None]
                if use_kl and ctx.reverse:
                    zr, _ = _chunk_logits(ref_h[sl], ref_wc, (ref_b, *ctx.scaling[2:]))
                    d = log_q.sub_(zr.sub_(ref_lse[sl, None])).sub_(kl[sl, None])
                    g.mul_(d.mul_(grad_kl[sl, None]).sub_(glp))
                    del zr, d
                elif use_kl:
                    g.mul_(grad_kl[sl, None] - glp)
                    zr, _ = _chunk_logits(ref_h[sl], ref_wc, (ref_b, *ctx.scaling[2:]))
                    g.sub_(zr.sub_(ref_lse[sl, None]).exp_().mul_(grad_kl[sl, None]))
                    del zr
                else:
                    g.mul_(-glp)
                g.scatter_add_(1, targets[sl, None], glp)
                if t is not None:  # through c·tanh(u/c): ∂/∂u = 1 − tanh²
                    g.mul_(1 - t * t)
                if scale != 1.0:
                    g.mul_(scale)
                if grad_h is not None:
                    grad_h[sl] = (g.to(cd) @ wc).to(h.dtype)
                grad_w.add_((g.to(cd).T @ h[sl].to(cd)).to(acc))
                if grad_b is not None:
                    grad_b.add_(g.sum(0).to(acc))
                del z, t, g, log_q
        grad_w = grad_w.to(w.dtype) if ctx.needs_input_grad[1] else None
        grad_b = grad_b.to(b.dtype) if grad_b is not None and ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None


def fused_token_stats(
    hidden: torch.Tensor,
    head: LMHead,
    targets: torch.Tensor,
    ref_hidden: torch.Tensor | None = None,
    ref_head: LMHead | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    reverse: bool = False,
) -> TokenStats:
    """log π_θ(y_i), KL(π_ref‖π_θ)_i and log π_ref(y_i) for N scored tokens, from the final hidden
    states `hidden` [N, H] (position i predicts `targets[i]`) and the LM head; no [N, V] tensor.

    KL_i = Σ_v π_ref(v|h_i)[log π_ref(v|h_i) − log π_θ(v|h_i)] (docs/algorithms.md#token-kl),
    exact over the vocabulary; zero (and `ref_logps` zero) without `ref_hidden`. π_ref is a
    constant: `ref_hidden` must not require grad and `ref_logps` carries none. Gradients flow to
    `hidden`, `head.weight` and `head.bias` (a tied head's weight is the embedding matrix, so its
    gradient simply adds to the embedding's). Under autocast the head matmuls run in the autocast
    dtype, like the plain head; softmaxes and reductions in float32 (float64 stays float64).
    `reverse=True` gives the reverse KL(π_θ‖π_ref)_i = Σ_v π_θ(v|h_i)[log π_θ − log π_ref]
    instead (RLHF's penalty, docs/algorithms.md#rloo), still differentiable in π_θ only.
    """
    if ref_hidden is not None and ref_hidden.requires_grad:
        raise ValueError("ref_hidden must be computed without grad (π_ref is a constant)")
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(
            f"hidden [N, H] and targets [N] expected, got {tuple(hidden.shape)}, "
            f"{tuple(targets.shape)}"
        )
    ref_head = head if ref_head is None else ref_head
    scaling = (head.scale, head.softcap, ref_head.scale, ref_head.softcap)
    stats = _FusedHeadStats.apply(
        hidden,
        head.weight,
        head.bias,
        ref_hidden,
        ref_head.weight if ref_hidden is not None else None,
        ref_head.bias if ref_hidden is not None else None,
        targets,
        scaling,
        chunk_size,
        reverse,
    )
    return TokenStats(*stats)
