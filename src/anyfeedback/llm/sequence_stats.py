"""Per-sequence statistics of a batch's scored views: ℓ_θ, the dense KL(π_ref‖π_θ) and ℓ_ref, from
the final hidden states of the N scored tokens through the fused chunked LM head
(`losses.tokens.fused_token_stats`), without any [N, V] logits (docs/algorithms.md#token-kl).
The method losses of `objective.py` and the online loop's KL to the start model read them.

Shapes: M scored sequences (views) of a `Packed`, N scored tokens, H hidden size, V vocabulary.
ℓ = Σ_t log π(y_t|x, y_<t) over completion tokens (or the per-token mean, `cfg.average_logps`).
KL = Σ_t KL(π_ref(·|x,y_<t) ‖ π_θ(·|x,y_<t)), dense over V along the completion, chunked
(docs/algorithms.md#pmpo-kl; never ℓ_ref − ℓ_θ on the same samples).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from anyfeedback.llm.model import ScoredStates, scored_states
from anyfeedback.llm.packing import Packed
from anyfeedback.llm.reference import Reference
from anyfeedback.llm.state_tap import notify_policy_states
from anyfeedback.losses.tokens import fused_token_stats


class SequenceStats(NamedTuple):
    """Per view, each [M]: ℓ_θ (sum or mean), Σ_t KL(π_ref‖π_θ), token count, ℓ_ref (like ℓ_θ)."""

    logps: torch.Tensor
    kl: torch.Tensor
    counts: torch.Tensor
    ref_logps: torch.Tensor


def sequence_stats(
    policy, seqs: Packed, cfg, ref_states: ScoredStates | None = None, *, reverse: bool = False
):
    """One policy forward to the final hidden states, then the fused chunked LM head
    (`fused_token_stats`): no [M, K, V] logits of either model. KL and ℓ_ref are zeros without
    `ref_states` (π_ref's hidden states and head, `Reference.scored_states`); `reverse` gives
    KL(π_θ‖π_ref) instead of KL(π_ref‖π_θ)."""
    states = scored_states(policy, seqs)  # [N, H]
    notify_policy_states(seqs, states, ref_states)  # llm/state_tap.py
    _, _, targets, view = seqs.scored()  # [N]
    ref_hidden, ref_head = ref_states if ref_states is not None else (None, None)
    tok = fused_token_stats(
        states.hidden,
        states.head,
        targets,
        ref_hidden,
        ref_head,
        chunk_size=cfg.kl_chunk_size,
        reverse=reverse,
    )
    zeros = tok.logps.new_zeros(seqs.n_views)
    logps, kl, ref_lp, counts = (
        zeros.index_add(0, view, x)
        for x in (tok.logps, tok.kl, tok.ref_logps, torch.ones_like(tok.logps))
    )
    if cfg.average_logps:
        logps, ref_lp = logps / counts.clamp(min=1), ref_lp / counts.clamp(min=1)
    return SequenceStats(logps, kl, counts, ref_lp)


def policy_stats(policy, seqs: Packed, cfg, ref_states: ScoredStates | None = None):
    """ℓ_θ [M] (sum or mean), Σ_t KL [M] (zeros without `ref_states`), token counts [M]."""
    logps, kl, counts, _ = sequence_stats(policy, seqs, cfg, ref_states)
    return logps, kl, counts


@torch.inference_mode()
def ref_logps(ref: Reference, seqs: Packed, cfg) -> torch.Tensor:
    """ℓ_ref [M] without grad, reduced like ℓ_θ."""
    states = ref.inference_states(seqs)
    _, _, targets, view = seqs.scored()
    tok = fused_token_stats(states.hidden, states.head, targets, chunk_size=cfg.kl_chunk_size)
    logps = tok.logps.new_zeros(seqs.n_views).index_add(0, view, tok.logps)
    if cfg.average_logps:
        counts = torch.bincount(view, minlength=seqs.n_views).clamp(min=1)
        logps = logps / counts
    return logps.clone()
