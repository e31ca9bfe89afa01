"""The pieces of one online step: prompts for a step, labelled batches, KL to the start model,
held-out evaluation, and the collapse detector.

Shapes: P prompts per step, K samples per prompt, prompt-major flat lists of P·K samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from anyfeedback.feedback import label_groups
from anyfeedback.llm.batching import Batch, collate_pairs, collate_shared_prompts, collate_unpaired
from anyfeedback.llm.data import Example
from anyfeedback.llm.generate import sample_completions
from anyfeedback.llm.model import ScoredStates, scored_states
from anyfeedback.llm.online.shard import Dist, my_share, sample_and_score, split_micro_batches
from anyfeedback.llm.sequence_stats import policy_stats
from anyfeedback.losses.tokens import fused_token_stats


def label_samples(scores: list[float], cfg) -> list[bool | None]:
    """Per prompt group: the configured rule; PMPO-A keeps only accepted, PMPO-R only rejected."""
    if cfg.labelling == "rank":
        labels = label_groups(scores, cfg.k, "rank", k_accept=cfg.k_accept, k_reject=cfg.k_reject)
    elif cfg.labelling == "threshold":
        labels = label_groups(scores, cfg.k, "threshold", threshold=cfg.threshold)
    else:
        labels = label_groups(scores, cfg.k, "group-mean")
    if cfg.method == "pmpo" and cfg.alpha >= 1.0:
        labels = [lab if lab else None for lab in labels]
    if cfg.method == "pmpo" and cfg.alpha <= 0.0:
        labels = [lab if lab is False else None for lab in labels]
    return labels


def build_examples(cfg, prompt_ids, completion_ids, scores, labels) -> list[Example]:
    """The step's training records: best-vs-worst pairs (DPO), labelled samples (KTO), or every
    sample (PMPO: unlabelled ones — ties, the other set for PMPO-A/-R — enter only the KL term,
    which averages over all K samples of the step, docs/algorithms.md#normalisation; none when
    no sample is labelled, as there is then no preference signal)."""
    k = cfg.k
    if cfg.method == "pmpo":
        if all(lab is None for lab in labels):
            return []
        return [
            Example(prompt_ids[j // k], (completion_ids[j],), lab) for j, lab in enumerate(labels)
        ]
    if cfg.method != "dpo":
        return [
            Example(prompt_ids[j // k], (completion_ids[j],), lab)
            for j, lab in enumerate(labels)
            if lab is not None
        ]
    examples = []
    for i, p in enumerate(prompt_ids):
        group = scores[i * k : (i + 1) * k]
        best = max(range(k), key=lambda j: (group[j], -j))
        worst = min(range(k), key=lambda j: (group[j], -j))
        if group[best] > group[worst]:
            examples.append(
                Example(p, (completion_ids[i * k + best], completion_ids[i * k + worst]))
            )
    return examples


def build_batches(
    cfg, prompt_ids, completion_ids, scores, labels, pad_id, dist=Dist(), *, share_prompt=False
):
    """This process's micro-batches of the step (`split_micro_batches`: as many on every
    process); [] when the step has too few records (KTO needs 2 per micro-batch).
    `share_prompt`: a prompt is computed once for all its samples in the micro-batch (DPO: its
    pair, `collate_pairs`; PMPO: its K samples, `collate_shared_prompts`, where they come as
    runs of one size), else once per sample."""
    examples = build_examples(cfg, prompt_ids, completion_ids, scores, labels)
    kto = cfg.method == "kto"
    slices = split_micro_batches(len(examples), cfg.micro_batch_size, dist.world, 2 if kto else 1)

    def collate(ex):
        if cfg.method == "dpo":
            return collate_pairs(ex, pad_id, share_prompt=share_prompt)
        shared = collate_shared_prompts(ex, pad_id) if share_prompt and not kto else None
        return shared if shared is not None else collate_unpaired(ex, pad_id, mismatched=kto)

    return [collate([examples[i] for i in slices[m]]) for m in my_share(len(slices), dist)]


class StartKL:
    """Dense KL(π_start ‖ π_θ) along the samples a step trains on, for the policy that drew
    them (before the step's update), from the hidden states of the update's own policy forward
    (`state_tap.tap_policy_states`): only π_start runs again, the policy does not — and not even
    π_start while π_ref is still an exact copy of it (`ref_is_start`: before π_ref's first
    refresh), as the loss's π_ref forward on the same rows then gives the same states. Use as
    the tap around `Trainer.train_step`; `result(dist)` gives the mean per completion and the
    mean per completion token over every micro-batch of every process."""

    def __init__(self, start_model, tcfg, *, ref_is_start: bool = False) -> None:
        self.start_model, self.chunk = start_model, tcfg.kl_chunk_size
        self.ref_is_start = ref_is_start
        self.totals = torch.zeros(3, dtype=torch.float64)  # Σ KL, completions, tokens

    @torch.no_grad()
    def __call__(self, seqs, states: ScoredStates, ref_states: ScoredStates | None = None):
        if self.ref_is_start and ref_states is not None:
            start = ref_states
        else:
            start = scored_states(self.start_model, seqs)
        _, _, targets, _ = seqs.scored()
        tok = fused_token_stats(
            states.hidden, states.head, targets, start.hidden, start.head, chunk_size=self.chunk
        )
        counts = torch.tensor([seqs.n_views, targets.numel()], dtype=torch.float64)
        step = torch.cat([tok.kl.sum().double().reshape(1), counts.to(tok.kl.device)])
        self.totals = self.totals.to(step.device) + step

    def result(self, dist=Dist()) -> tuple[float, float]:
        device = next(self.start_model.parameters()).device
        kl_sum, n, tokens = dist.sum(self.totals.to(device)).tolist()
        return kl_sum / max(n, 1), kl_sum / max(tokens, 1)


@torch.no_grad()
def kl_to_start(policy, start_model, batches: list[Batch], tcfg, dist=Dist()):
    """Dense KL(π_start ‖ π_θ) on the step's sampled completions (no grad), over every
    micro-batch of every process: the mean per completion and the mean per completion token."""
    device = next(policy.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # Σ KL, sequences, tokens
    for batch in batches:
        seqs = batch.seqs.to(device)
        _, kl, counts = policy_stats(policy, seqs, tcfg, scored_states(start_model, seqs))
        totals += torch.stack([kl.sum(), kl.new_tensor(kl.numel()), counts.sum()]).double()
    kl_sum, n, tokens = dist.sum(totals).tolist()
    return kl_sum / max(n, 1), kl_sum / max(tokens, 1)


@dataclass
class Evaluation:
    """One completion per held-out prompt, its reward, the win rate against the start, the
    dense KL(π_start ‖ π_θ) per completion along these completions, and their degeneration
    indicators (`degeneration.degeneration`)."""

    texts: list[str]
    rewards: list[float]
    reward_mean: float
    win_rate: float | None = None
    kl_start: float = 0.0
    degeneration: dict[str, float] = field(default_factory=dict)


def hf_sampler(model, tokenizer, cfg, k: int):
    """`sample(prompt_ids, seed=)` → `Generations` with HF `generate`: one call per chunk."""

    def sample(prompt_ids, *, seed):
        return sample_completions(
            model,
            tokenizer,
            prompt_ids,
            k=k,
            seed=seed,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=len(prompt_ids) * k,
        )

    return sample


@torch.no_grad()
def held_out_kl(model, start_model, prompt_ids, completion_ids, tcfg, pad_id: int) -> float:
    """Mean dense KL(π_start ‖ π_θ) per completion along the held-out completions, in chunks of
    16 (every process holds all of them after the gather, so no reduction)."""
    rows = [Example(p, (c,), True) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    batches = [collate_unpaired(rows[i : i + 16], pad_id) for i in range(0, len(rows), 16)]
    return kl_to_start(model, start_model, batches, tcfg)[0]


def evaluate(
    model,
    tokenizer,
    prompt_ids,
    prompt_texts,
    reward,
    cfg,
    *,
    baseline=None,
    dist=Dist(),
    start_model=None,
    tcfg=None,
):
    """Sample one completion per held-out prompt with a fixed seed (HF `generate` whatever the
    backend; sharded over processes like the training prompts), score it, and compare with the
    start model's completions (`baseline`): win 1, tie ½, loss 0. With `start_model` (and the
    update's `tcfg`), also the KL to it along these completions."""
    from anyfeedback.llm.online.degeneration import degeneration

    got = sample_and_score(
        hf_sampler(model, tokenizer, cfg, 1),
        prompt_ids,
        prompt_texts,
        reward,
        k=1,
        seed=cfg.seed + 7919,
        rows=cfg.generation_batch_size,
        dist=dist,
    )
    rewards = got.scores
    result = Evaluation(got.texts, rewards, sum(rewards) / len(rewards))
    result.degeneration = degeneration(got.texts)
    if start_model is not None and model is not start_model:
        pad = tokenizer.pad_token_id
        result.kl_start = held_out_kl(model, start_model, prompt_ids, got.completion_ids, tcfg, pad)
    if baseline is not None:
        wins = [
            1.0 if a > b else 0.5 if a == b else 0.0
            for a, b in zip(rewards, baseline.rewards, strict=True)
        ]
        result.win_rate = sum(wins) / len(wins)
    return result


@dataclass
class CollapseDetector:
    """Collapse guard (docs/algorithms.md#online-loop). Fires (once) when the mean rejected log-prob
    keeps falling — by more than `drop` nats since the first step and strictly over the last
    `window` steps — while the KL to the start model keeps growing; or when that KL exceeds
    `kl_per_token` nats per token, a policy no longer near the start model (aligned chat models sit
    around 0.05–0.2)."""

    window: int = 4
    drop: float = 5.0
    kl_per_token: float = 2.0
    logps: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    fired: bool = False

    def update(self, logp_rejected: float, kl_start: float, kl_start_per_token: float = 0.0):
        """Record a step; True the first time a collapse is seen."""
        if self.fired:
            return False
        if kl_start_per_token > self.kl_per_token:
            self.fired = True
            return True
        if logp_rejected != logp_rejected:  # NaN: no rejected samples this step
            return False
        self.logps.append(logp_rejected)
        self.kls.append(kl_start)
        w = self.window
        if len(self.logps) <= w:
            return False
        lp, kl = self.logps[-w - 1 :], self.kls[-w - 1 :]
        falling = all(b < a for a, b in zip(lp, lp[1:], strict=False))
        growing = all(b > a for a, b in zip(kl, kl[1:], strict=False))
        if falling and growing and self.logps[0] - lp[-1] > self.drop:
            self.fired = True
            return True
        return False
