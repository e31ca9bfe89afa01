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
"""

from __future__ import annotations

import torch

__all__ = ["dense_kl", "sequence_logps", "token_logps_and_kl"]

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
