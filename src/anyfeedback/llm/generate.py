"""Batched sampling of K completions per prompt from token ids (HF `generate`).

Prompts come in as token ids encoded exactly as the trainer encodes them, and completions come
back as token ids (cut after EOS) plus their decoded text: the update then scores exactly the
tokens that were sampled, with no decode/re-encode round trip. Sampling is always stochastic
(do_sample): the labels, and AIHF's agent samples, must be draws from the current policy.
Randomness is seeded per call and the global RNG is left untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class Generations:
    """K completions per prompt, prompt-major: index i·K + j is sample j of prompt i.
    `prompt_ids` are the prompts' token ids as sent (one per prompt), whatever the backend."""

    completion_ids: list[list[int]]
    texts: list[str]
    k: int
    new_tokens: int
    seconds: float
    prompt_ids: list[list[int]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.seconds, 1e-9)


def cut_at_eos(row: list[int], eos: int) -> list[int]:
    """Token ids up to and including the first EOS (a lone EOS for an empty completion)."""
    cut = row.index(eos) + 1 if eos in row else len(row)
    return row[:cut] or [eos]


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    lengths = torch.tensor([len(p) for p in prompts])
    mask = (torch.arange(width)[None] >= width - lengths[:, None]).long()
    return ids, mask


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    *,
    k: int = 4,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> Generations:
    """Sample `k` completions per prompt; returns ids cut after the first EOS and their text."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids_out: list[list[int]] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        per_call = max(1, batch_size // k)
        for i in range(0, len(prompt_ids), per_call):
            ids, mask = _left_pad(prompt_ids[i : i + per_call], pad)
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=k,
                pad_token_id=pad,
                eos_token_id=eos,
                use_cache=True,
            )
            for row in out[:, ids.shape[1] :].tolist():  # [rows·k, new]
                ids_out.append(cut_at_eos(row, eos))
    model.train(was_training)
    seconds = time.perf_counter() - start
    texts = tokenizer.batch_decode(ids_out, skip_special_tokens=True)
    return Generations(ids_out, texts, k, sum(len(c) for c in ids_out), seconds, prompt_ids)
