"""One micro-batch → (loss, metrics) for each method, on top of the pure loss core.

`compute_loss(policy, ref, batch, cfg)` is the reusable per-batch function (offline trainer and
online loop). The method is picked at the edge from `BATCH_LOSSES`; each function reads: π_ref
forward → policy forward → per-sequence ℓ_θ (and dense KL, ℓ_ref) → loss from
`anyfeedback.losses`. Both forwards stop at the final hidden states of the N scored tokens; the
fused chunked LM head (`llm.sequence_stats`, `losses.tokens.fused_token_stats`) turns them into
log-probs and the KL without any [N, V] logits (docs/algorithms.md#token-kl).

Shapes: M scored sequences (views) of `batch.seqs`; ℓ and KL per view as in `llm.sequence_stats`
(sums over the completion, or per-token means with `cfg.average_logps`). With per-token mean ℓ
the PMPO KL term is the per-token mean KL too, so β weighs the same kind of quantity as the ℓ
terms.

Pooled normalisation (docs/algorithms.md#normalisation): given the optimizer step's `StepCounts`
(every micro-batch of every process, counted before any forward), each micro-batch's loss is
its share of the whole step's loss, so the step's gradient does not depend on how the step is
split into micro-batches and processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from anyfeedback.llm.batching import Batch
from anyfeedback.llm.continuation import kto_terms
from anyfeedback.llm.packing import cat_rows
from anyfeedback.llm.reference import Reference
from anyfeedback.llm.sequence_stats import policy_stats, ref_logps, sequence_stats
from anyfeedback.losses import (
    aihf_dpo_loss,
    dpo_loss,
    ipo_loss,
    kto_loss,
    pmpo_loss,
    rloo_dense_kl_loss,
    self_play_aihf_loss,
    sft_loss,
)

Metrics = dict[str, torch.Tensor]


class StepCounts(NamedTuple):
    """Rows of one whole optimizer step, summed over its micro-batches and processes: the
    records every method averages over (pairs for paired methods), PMPO's accepted and rejected
    labelled rows, and the rows its KL term averages over (every sample, labelled or not)."""

    records: int
    accepted: int
    rejected: int
    kl: int


def labelled_sets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(accepted [M], rejected [M]) bool masks; unlabelled rows are in neither."""
    labelled = batch.labelled if batch.labelled is not None else torch.ones_like(batch.accepted)
    return batch.accepted & labelled, ~batch.accepted & labelled


def batch_counts(batch: Batch, method: str) -> torch.Tensor:
    """This micro-batch's contribution to `StepCounts`, as a float64 [4] tensor (to be summed
    over micro-batches and all-reduced over processes in one call)."""
    acc = rej = kl = 0
    if method == "pmpo":
        a, r = labelled_sets(batch)
        acc, rej, kl = int(a.sum()), int(r.sum()), batch.n_records
    return torch.tensor([_records(batch), acc, rej, kl], dtype=torch.float64)


def _records(batch: Batch) -> int:
    """Records a micro-batch's mean runs over: its records, plus its demonstrations (AIHF-DPO,
    Self-Play AIHF; SPIN has demonstrations only)."""
    return batch.n_records + batch.n_demos


def own_counts(batch: Batch, method: str) -> StepCounts:
    """The counts of a step made of this one micro-batch."""
    return StepCounts(*(int(x) for x in batch_counts(batch, method).tolist()))


def pmpo_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=True, all_reduce_mean=None, step=None
):
    """PMPO (Eq. 10): −α·mean_{D_a} ℓ_θ + (1−α)·mean_{D_r} ℓ_θ + β·mean KL(π_ref‖π_θ), the
    means over the whole step (`step`: its `StepCounts`; None: this batch is the step). The KL
    mean is over every row, labelled or not (all samples of the step come from the sampler)."""
    step = step or own_counts(batch, "pmpo")
    need_ref = cfg.beta > 0 or want_kl  # PMPO-A (β = 0) needs π_ref only for the diagnostic
    ref_states = ref.scored_states(batch.seqs) if need_ref else None  # [N, H], constant
    logps, kl, counts = policy_stats(policy, batch.seqs, cfg, ref_states)
    if cfg.average_logps:  # per-token KL beside per-token ℓ: β keeps its meaning
        kl = kl / counts.clamp(min=1)
    acc, rej = labelled_sets(batch)  # [M] bool each
    loss, d = pmpo_loss(
        logps[acc],
        logps[rej],
        kl if cfg.beta > 0 else kl.detach(),
        alpha=cfg.alpha,
        beta=cfg.beta,
        normalization=cfg.pmpo_normalization,
        num_samples=step.kl,
        n_accepted=step.accepted,
        n_rejected=step.rejected,
        n_kl=step.kl,
    )
    nan = loss.new_tensor(float("nan"))
    return loss, {
        "logp_accepted": d.logp_accepted,
        "logp_rejected": d.logp_rejected,
        "kl": d.kl if need_ref else nan,
        "completion_tokens": counts.sum().detach(),
    }


def _pair_terms(policy, ref, batch: Batch, cfg, want_kl: bool):
    """ℓ_θ and ℓ_ref of every row, and the KL diagnostic (rows: chosen, rejected, demos…), from
    one fused pass over both models' hidden states."""
    logps, kl, counts, ref_lp = sequence_stats(
        policy, batch.seqs, cfg, ref.scored_states(batch.seqs)
    )
    kl_mean = kl.detach().mean() if want_kl else logps.new_tensor(float("nan"))
    return logps, ref_lp, kl_mean, counts


def _pair_metrics(d, logps, n: int, kl, counts) -> Metrics:
    return {
        "logp_chosen": logps[:n].detach().mean(),
        "logp_rejected": logps[n : 2 * n].detach().mean(),
        "reward_chosen": d.reward_chosen,
        "reward_rejected": d.reward_rejected,
        "margin": d.margin,
        "accuracy": d.accuracy,
        "kl": kl,
        "completion_tokens": counts.sum().detach(),
    }


def dpo_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """DPO (Eq. 7): −mean log σ(β·h), h = ρ(chosen) − ρ(rejected); one forward for both."""
    logps, ref_lp, kl, counts = _pair_terms(policy, ref, batch, cfg, want_kl)
    n = batch.n_pairs
    loss, d = dpo_loss(logps[:n], logps[n:], ref_lp[:n], ref_lp[n:], beta=cfg.beta)
    return loss, _pair_metrics(d, logps, n, kl, counts)


def ipo_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """IPO (Eq. 17): mean (h − 1/(2τ))², τ = `cfg.beta`, per-token mean ℓ by default."""
    logps, ref_lp, kl, counts = _pair_terms(policy, ref, batch, cfg, want_kl)
    n = batch.n_pairs
    loss, d = ipo_loss(logps[:n], logps[n:], ref_lp[:n], ref_lp[n:], tau=cfg.beta)
    return loss, _pair_metrics(d, logps, n, kl, counts)


def aihf_dpo_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """AIHF-DPO (AIHF Eq. 10): w_P·DPO(pairs) + w_D·D(demos), D = NLL or demo ≻ π_ref sample.
    With no demo rows (w_D = 0) this is exactly `dpo_batch_loss`."""
    logps, ref_lp, kl, counts = _pair_terms(policy, ref, batch, cfg, want_kl)
    n, m = batch.n_pairs, batch.n_demos
    demos = logps[2 * n : 2 * n + m] if m else None
    extra = {}
    if batch.n_ref_samples:
        s = 2 * n + m
        extra = {
            "ref_demos": ref_lp[2 * n : s],
            "policy_ref_samples": logps[s:],
            "ref_ref_samples": ref_lp[s:],
        }
    loss, d = aihf_dpo_loss(
        logps[:n],
        logps[n : 2 * n],
        ref_lp[:n],
        ref_lp[n : 2 * n],
        policy_demos=demos,
        demo_mode=cfg.demo_mode,
        beta=cfg.beta,
        demo_weight=cfg.demo_weight,
        pref_weight=cfg.pref_weight,
        **extra,
    )
    _, pair = dpo_loss(logps[:n], logps[n : 2 * n], ref_lp[:n], ref_lp[n : 2 * n], beta=cfg.beta)
    metrics = _pair_metrics(pair, logps, n, kl, counts)
    metrics.update(demo_term=d.demo_term, pref_term=d.pref_term)
    if m:
        metrics["logp_demos"] = demos.detach().mean()
    return loss, metrics


def kto_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """KTO: λ·(1 − σ(±β·(ρ − z_ref))), z_ref from mismatched (x_i, y_{i+1}) pairs, detached,
    averaged over processes, clamped at 0. The mismatched pairs run as continuations of the
    matched rows' prompts where the model allows it (`llm.continuation`), else as rows."""
    terms = kto_terms(policy, ref, batch, cfg, want_kl)
    if terms is None:
        ref_states = ref.scored_states(batch.seqs) if want_kl else None
        logps, kl, counts = policy_stats(policy, batch.seqs, cfg, ref_states)
        with torch.no_grad():
            mm_logps = policy_stats(policy, batch.mismatched, cfg)[0]
        both = cat_rows(batch.seqs, batch.mismatched)  # one π_ref forward for both: [2R, T]
        ref_lp = ref_logps(ref, both, cfg)
        r = batch.n_records
        ref_lp, mm_ref_lp = ref_lp[:r], ref_lp[r:]
    else:
        logps, kl, counts, ref_lp, mm_logps, mm_ref_lp = terms
    loss, d = kto_loss(
        logps,
        ref_lp,
        batch.accepted,
        mm_logps,
        mm_ref_lp,
        beta=cfg.beta,
        lambda_d=cfg.desirable_weight,
        lambda_u=cfg.undesirable_weight,
        all_reduce_mean=all_reduce_mean,
    )
    acc, nan = batch.accepted, loss.new_tensor(float("nan"))
    lp = logps.detach()
    return loss, {
        "logp_accepted": lp[acc].mean() if acc.any() else nan,
        "logp_rejected": lp[~acc].mean() if (~acc).any() else nan,
        "reward_accepted": d.reward_desirable,
        "reward_rejected": d.reward_undesirable,
        "z_ref": d.z_ref,
        "kl": kl.detach().mean() if want_kl else nan,
        "completion_tokens": counts.sum().detach(),
    }


def sft_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """SFT: −mean ℓ_θ over demonstrations (same reduction as PMPO, so PMPO-A ≡ SFT)."""
    ref_states = ref.scored_states(batch.seqs) if want_kl else None  # KL diagnostic only
    logps, kl, counts = policy_stats(policy, batch.seqs, cfg, ref_states)
    loss, d = sft_loss(logps)
    kl = kl.detach().mean() if want_kl else loss.new_tensor(float("nan"))
    return loss, {"logp_accepted": d.logp, "kl": kl, "completion_tokens": counts.sum().detach()}


def self_play_aihf_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """Self-Play AIHF (AIHF Eq. 11): w_D·SPIN(demo vs y' ∼ π_t) + w_P·DPO(pairs), with π_ref =
    the opponent π_t (the loop refreshes it every iteration). Views: chosen, rejected, demos,
    then the opponent's samples for the demo prompts. No pairs and w_P = 0 is SPIN."""
    logps, ref_lp, kl, counts = _pair_terms(policy, ref, batch, cfg, want_kl)
    n, m = batch.n_pairs, batch.n_demos
    s = 2 * n + m
    loss, d = self_play_aihf_loss(
        logps[2 * n : s],
        logps[s:],
        ref_lp[2 * n : s],
        ref_lp[s:],
        logps[:n],
        logps[n : 2 * n],
        ref_lp[:n],
        ref_lp[n : 2 * n],
        beta=cfg.beta,
        demo_weight=cfg.demo_weight,
        pref_weight=cfg.pref_weight,
    )
    _, pair = dpo_loss(logps[:n], logps[n : 2 * n], ref_lp[:n], ref_lp[n : 2 * n], beta=cfg.beta)
    metrics = _pair_metrics(pair, logps, n, kl, counts) if n else {"kl": kl}
    metrics.update(
        demo_term=d.demo_term, pref_term=d.pref_term, completion_tokens=counts.sum().detach()
    )
    if m:
        metrics["logp_demos"] = logps[2 * n : s].detach().mean()
        metrics["logp_samples"] = logps[s:].detach().mean()
    return loss, metrics


def rloo_batch_loss(
    policy, ref, batch: Batch, cfg, *, want_kl=False, all_reduce_mean=None, step=None
):
    """RLOO with the dense KL (docs/algorithms.md#rloo): −mean A_i·ℓ_θ(y_i) + β·mean KL_i,
    KL_i = Σ_t KL(π_θ‖π_ref) along sample i, exact over the vocabulary and differentiable;
    R_i = r_i − β·sg(KL_i), leave-one-out baseline per prompt group. Needs summed log-probs."""
    logps, kl, counts, _ = sequence_stats(
        policy, batch.seqs, cfg, ref.scored_states(batch.seqs), reverse=True
    )
    loss, d = rloo_dense_kl_loss(logps, batch.rewards, kl, k=batch.group_size, beta=cfg.beta)
    return loss, {
        "reward": d.reward,
        "kl_reverse": d.kl,
        "penalised_reward": d.penalised_reward,
        "advantage_abs": d.advantage_abs,
        "logp": logps.detach().mean(),
        "kl": d.kl if want_kl else loss.new_tensor(float("nan")),
        "completion_tokens": counts.sum().detach(),
    }


BATCH_LOSSES: dict[str, Callable] = {
    "pmpo": pmpo_batch_loss,
    "dpo": dpo_batch_loss,
    "ipo": ipo_batch_loss,
    "kto": kto_batch_loss,
    "sft": sft_batch_loss,
    "aihf-dpo": aihf_dpo_batch_loss,
    "self-play-aihf": self_play_aihf_batch_loss,
    "rloo": rloo_batch_loss,
}


def compute_loss(
    policy,
    ref: Reference,
    batch: Batch,
    cfg,
    *,
    want_kl: bool = True,
    all_reduce_mean=None,
    step: StepCounts | None = None,
):
    """(loss, metrics) of one micro-batch for `cfg.method`; metrics are detached 0-d tensors.
    `cfg` needs only the `ObjectiveConfig` fields (method, α, β, reductions, weights).

    `policy` is the (possibly DDP-wrapped) model, `ref` a `Reference`, `batch` from the
    `collate_*` functions; `want_kl` adds the dense KL diagnostic for methods without a KL term;
    `all_reduce_mean` averages KTO's reference point over processes. `step`: the optimizer
    step's `StepCounts`; the loss is then this micro-batch's share of the step's loss (summing
    the shares gives the loss of the whole step). None: the batch is the whole step.
    PMPO pools each set's mean and the KL mean; the methods whose loss is one mean over records
    weigh their micro-batch mean by records / step records (docs/algorithms.md#normalisation)."""
    fn = BATCH_LOSSES[cfg.method]
    loss, metrics = fn(
        policy, ref, batch, cfg, want_kl=want_kl, all_reduce_mean=all_reduce_mean, step=step
    )
    if step is not None and cfg.method != "pmpo":
        loss = loss * (_records(batch) / max(step.records, 1))
    return loss, metrics
