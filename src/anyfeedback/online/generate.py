"""Batched sampling of K completions per prompt with the Hugging Face `generate` API.

Decoder-only models need left padding for batched generation; the tokenizer's padding side is
set for the call and restored. Completions are decoded without special tokens and cut at EOS.
An optional vLLM backend is used when `backend="vllm"` (extra `vllm`, GPU only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class Generations:
    """K completions per prompt, flattened prompt-major: index i·K + k is sample k of prompt i."""

    prompts: list[str]
    completions: list[str]
    k: int
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.seconds, 1e-9)

    def group(self, i: int) -> list[str]:
        return self.completions[i * self.k : (i + 1) * self.k]


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    prompts: list[str],
    *,
    k: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    generator_seed: int | None = None,
) -> Generations:
    """Sample `k` completions for each prompt (do_sample=True; never greedy: the loop's labels
    and AIHF's agent samples must be draws from the current policy)."""
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    completions: list[str] = []
    new_tokens = 0
    start = time.perf_counter()
    try:
        per_call = max(1, batch_size // k)
        for i in range(0, len(prompts), per_call):
            chunk = prompts[i : i + per_call]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {key: v.to(device) for key, v in enc.items() if key != "token_type_ids"}
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                num_return_sequences=k,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            gen = out[:, enc["input_ids"].shape[1] :]  # [len(chunk)·k, new]
            not_pad = gen != tokenizer.pad_token_id
            if tokenizer.eos_token_id is not None:
                # count tokens up to and including the first EOS
                is_eos = gen == tokenizer.eos_token_id
                after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
                not_pad &= ~after_eos
            new_tokens += int(not_pad.sum())
            completions.extend(tokenizer.batch_decode(gen, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    seconds = time.perf_counter() - start
    return Generations(list(prompts), completions, k, new_tokens, seconds)
