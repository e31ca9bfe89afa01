"""Data of an AIHF / self-play run: checked demonstrations and pairs, RL and held-out prompts,
and the frozen start model (π_start = π_ref) for the KL."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from anyfeedback.feedback import Demonstration, Paired, Text
from anyfeedback.feedback.checks import load_demos, load_pairs


@dataclass
class RunData:
    demos: list[Demonstration] = field(default_factory=list)
    pairs: list[Paired] = field(default_factory=list)
    eval_prompts: list[Text] = field(default_factory=list)
    eval_pairs: list[Paired] = field(default_factory=list)


def load_run_data(cfg) -> RunData:
    """Demonstrations (if w_D > 0 or given), pairs (if w_P > 0 or given), held-out prompts and
    pairs; every problem is a one-line InputError before any model loads."""
    from anyfeedback.llm.prompts import load_prompt_source

    data = RunData()
    if cfg.demos:
        data.demos = load_demos(cfg.demos)
    if cfg.pairs:
        data.pairs = load_pairs(cfg.pairs)
    if cfg.eval_prompts:
        data.eval_prompts = load_prompt_source(cfg.eval_prompts)[: cfg.eval_size]
    if getattr(cfg, "eval_pairs", None):
        data.eval_pairs = load_pairs(cfg.eval_pairs)
    return data


def distinct(prompts: list[Text]) -> list[Text]:
    seen, out = set(), []
    for p in prompts:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def frozen_copy(model):
    start = copy.deepcopy(model).eval()
    for p in start.parameters():
        p.requires_grad_(False)
    return start
