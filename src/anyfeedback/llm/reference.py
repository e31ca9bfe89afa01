"""The reference policy π_ref of the LM losses.

π_ref is a constant of every loss (docs/algorithms.md#pmpo-kl): its forward runs under
`torch.inference_mode`, in eval mode (no dropout). Two implementations behind one interface:

  copy  a frozen deep copy of the initial policy (full fine-tuning)
  LoRA  the same module: with the adapter disabled (π_ref = base) until the first refresh, then
        with a frozen copy of the adapter tensors swapped in for the reference forward, so
        there is never a second model in memory.

Refresh (`--ref-update-every N`): π_ref ← π_θ. EMA (`--ref-ema τ`): π_ref ← (1−τ)·π_ref + τ·π_θ
after every optimizer step; with LoRA the EMA acts on the adapter factors (A, B), so π_ref stays in
the LoRA family (it is not the EMA of the product B·A).
"""

from __future__ import annotations

import contextlib
import copy

import torch

from anyfeedback.llm.model import (
    ScoredStates,
    completion_logits,
    is_lora,
    scored_states,
)
from anyfeedback.llm.packing import Packed


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module):
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


class Reference:
    """π_ref for the losses: `logits(seqs)` under inference mode, `refresh()`, `ema(tau)`,
    and `state_dict()` / `load_state_dict()` for checkpoints (empty while π_ref is the initial
    model, which the checkpoint can rebuild)."""

    def __init__(
        self,
        policy: torch.nn.Module,
        *,
        autocast=contextlib.nullcontext,
        dtype: torch.dtype | None = None,
    ) -> None:
        """`dtype` stores a full (non-LoRA) π_ref copy in that precision: under --bf16 autocast
        rounds its weights to bf16 at every forward anyway, so a bf16 copy gives the same matmuls
        without the per-forward casts and with half the memory. Keep float32 for EMA updates
        (bf16 cannot hold small τ steps)."""
        self.policy = policy  # the unwrapped policy module (not DDP / compiled wrappers)
        self.autocast = autocast
        self.lora = is_lora(policy)
        self.model = None
        self.adapter: dict[str, torch.Tensor] | None = None  # LoRA: frozen adapter copy
        self.moved = False  # has π_ref left the initial model?
        self.cast = dtype is not None and not self.lora  # a lower-precision copy?
        if self.lora:  # the initial adapter (B = 0, so base ≡ initial adapter); EMA starts here
            self._initial = {n: p.detach().clone() for n, p in self._adapter_params().items()}
        else:
            self.model = copy.deepcopy(policy).eval().requires_grad_(False)
            if dtype is not None:
                self.model.to(dtype)

    @property
    def exact_initial_copy(self) -> bool:
        """Is π_ref still a full-precision copy of the initial policy (its forwards then equal
        those of any other such copy, e.g. the online loop's π_start)?"""
        return not (self.moved or self.lora or self.cast)

    def _adapter_params(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.policy.named_parameters() if p.requires_grad}

    @contextlib.contextmanager
    def _as_reference(self):
        """The module to run as π_ref (LoRA: adapter disabled, or reference adapter swapped in)."""
        if not self.lora:
            yield self.model
            return
        with _eval_mode(self.policy):
            if self.adapter is None:
                with self.policy.disable_adapter():
                    yield self.policy
                return
            params = self._adapter_params()
            saved = {n: p.data for n, p in params.items()}
            try:
                for n, p in params.items():
                    p.data = self.adapter[n]
                yield self.policy
            finally:
                for n, p in params.items():
                    p.data = saved[n]

    def logits(self, seqs: Packed) -> torch.Tensor:
        """π_ref logits of the kept positions, [M, K, V], a plain (non-inference) tensor so
        the fused KL can save it for backward."""
        return self.inference_logits(seqs).clone()

    def scored_states(self, seqs: Packed) -> ScoredStates:
        """π_ref's hidden states [N, H] at the scored positions (a plain tensor, so the fused
        head can save it for backward) and its head: inputs of `fused_token_stats`."""
        hidden, head = self.inference_states(seqs)
        return ScoredStates(hidden.clone(), head)

    @torch.inference_mode()
    def inference_states(self, seqs: Packed) -> ScoredStates:
        """Like `scored_states` but the hidden states are an inference tensor (no backward)."""
        with self._as_reference() as model, self.autocast():
            return scored_states(model, seqs)

    @torch.inference_mode()
    def inference_logits(self, seqs: Packed) -> torch.Tensor:
        """Like `logits` but an inference tensor (use inside `torch.inference_mode` only)."""
        with self._as_reference() as model, self.autocast():
            return completion_logits(model, seqs)

    @torch.no_grad()
    def refresh(self) -> None:
        """π_ref ← π_θ."""
        if self.lora:
            self.adapter = {n: p.detach().clone() for n, p in self._adapter_params().items()}
        else:
            for r, p in zip(self.model.parameters(), self.policy.parameters(), strict=True):
                r.copy_(p)
        self.moved = True

    @torch.no_grad()
    def ema(self, tau: float) -> None:
        """π_ref ← (1−τ)·π_ref + τ·π_θ (LoRA: on the adapter factors)."""
        if self.lora:
            if self.adapter is None:
                self.adapter = {n: t.clone() for n, t in self._initial.items()}
            for n, p in self._adapter_params().items():
                self.adapter[n].lerp_(p, tau)
        else:
            for r, p in zip(self.model.parameters(), self.policy.parameters(), strict=True):
                r.lerp_(p, tau)
        self.moved = True

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.moved:
            return {}
        if self.lora:
            return {n: t.detach().contiguous() for n, t in self.adapter.items()}
        return {n: p.detach().contiguous() for n, p in self.model.named_parameters()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        if self.lora:
            self.adapter = {n: t.clone() for n, t in state.items()}
        else:
            params = dict(self.model.named_parameters())
            for n, t in state.items():
                params[n].copy_(t)
        self.moved = True
