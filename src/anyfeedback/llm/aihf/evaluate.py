"""Held-out evaluation shared by every AIHF run and baseline: the gold reward of one sampled
completion per held-out prompt, and the KL of the policy to the start model on those samples.

KL(π_θ‖π_start)(x) = E_{y∼π_θ} Σ_t KL(π_θ(·|x,y_<t) ‖ π_start(·|x,y_<t)): estimated on the
policy's own samples with the exact dense per-token KL (`fused_token_stats` with the two
models' roles swapped), summed over the completion, averaged over prompts (nats/sequence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anyfeedback.llm.generate import sample_completions
from anyfeedback.llm.model import scored_states
from anyfeedback.llm.packing import pack
from anyfeedback.losses.tokens import fused_token_stats
from anyfeedback.rewards import checked_scores


@dataclass
class HeldOut:
    gold_reward: float
    kl_to_start: float
    kl_per_token: float
    texts: list[str]
    rewards: list[float]


@torch.no_grad()
def kl_on_samples(policy, start_model, prompt_ids, completion_ids, pad_id: int):
    """(mean Σ_t KL(π_θ‖π_start) per sequence, per token) on the given completions."""
    device = next(policy.parameters()).device
    seqs = pack(prompt_ids, completion_ids, pad_id).to(device)
    was = policy.training
    policy.eval()
    states = scored_states(policy, seqs)  # [N, H]
    start_states = scored_states(start_model, seqs)
    policy.train(was)
    _, _, targets, view = seqs.scored()
    # roles swapped: kl = Σ_v π_θ(v)(log π_θ(v) − log π_start(v)) per scored position
    tok = fused_token_stats(*start_states, targets, *states)
    kl = tok.kl.new_zeros(seqs.n_views).index_add(0, view, tok.kl)
    counts = torch.bincount(view, minlength=seqs.n_views)
    return float(kl.mean()), float(kl.sum() / counts.sum().clamp(min=1))


def evaluate_held_out(
    policy,
    start_model,
    tokenizer,
    prompt_ids,
    prompt_texts,
    gold,
    *,
    seed: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> HeldOut:
    """One sampled completion per held-out prompt (fixed seed): gold reward and KL to start."""
    gen = sample_completions(
        policy,
        tokenizer,
        prompt_ids,
        k=1,
        seed=seed,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    rewards = checked_scores(gold, prompt_texts, gen.texts) if gold is not None else []
    kl, kl_tok = kl_on_samples(
        policy, start_model, prompt_ids, gen.completion_ids, tokenizer.pad_token_id
    )
    mean = sum(rewards) / len(rewards) if rewards else float("nan")
    return HeldOut(mean, kl, kl_tok, gen.texts, rewards)


def evaluate_model_dir(
    model_dir, start_dir, prompts, gold, *, seed: int = 0, max_new_tokens: int = 24
) -> HeldOut:
    """`evaluate_held_out` for saved models (experiments: SFT/DPO/… from `anyfeedback train`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anyfeedback.feedback import flat_text
    from anyfeedback.llm.prompts import encode_prompts

    tok = AutoTokenizer.from_pretrained(str(start_dir))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    policy = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    start = AutoModelForCausalLM.from_pretrained(str(start_dir)).eval()
    ids = encode_prompts(tok, prompts)
    return evaluate_held_out(
        policy,
        start,
        tok,
        ids,
        [flat_text(p) for p in prompts],
        gold,
        seed=seed,
        max_new_tokens=max_new_tokens,
    )
