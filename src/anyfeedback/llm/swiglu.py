"""A SwiGLU MLP, down(silu(gate(x)) · up(x)), that keeps two [tokens, intermediate] tensors for
backward instead of three.

transformers' Llama-family MLP leaves autograd holding gate(x) (for SiLU's backward), silu(gate(x))
and up(x) (for the product's backward), and the product (the down projection's input). `SiLUMul`
computes silu(g)·u in one autograd function that saves g and u only and recomputes silu(g) and its
derivative in backward: the same forward values bit for bit, the same gradients up to float
rounding, one [tokens, intermediate] activation less per layer (a quarter of the MLP's saved
activations, and the MLP holds most of a layer's). `fuse_swiglu` swaps the forward of the MLPs
whose structure is exactly that (the classes in `SWIGLU_MLPS` with a SiLU activation); any other
model is left as it is.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

# Llama-family MLP classes whose forward is down_proj(act_fn(gate_proj(x)) * up_proj(x))
SWIGLU_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "SmolLM3MLP"})


class SiLUMul(torch.autograd.Function):
    """silu(g)·u, saving (g, u): ∂/∂u = silu(g), ∂/∂g = u·σ(g)·(1 + g·(1 − σ(g)))
    (`aten.silu_backward`, the kernel `F.silu`'s own backward runs)."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        # the same kernels as autograd's own mul and silu backward, and no more temporaries
        d_gate = torch.ops.aten.silu_backward(grad * up, gate)
        d_up = F.silu(gate).mul_(grad)
        return d_gate, d_up


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SiLUMul.apply(self.gate_proj(x), self.up_proj(x)))


def fuse_swiglu(model: torch.nn.Module) -> int:
    """Route every Llama-family SiLU MLP of `model` through `SiLUMul`; returns how many."""
    n = 0
    for module in model.modules():
        act = getattr(module, "act_fn", None)
        silu = isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation"
        if type(module).__name__ in SWIGLU_MLPS and silu:
            module.forward = types.MethodType(_forward, module)
            n += 1
    return n
