"""Llama-family SwiGLU MLPs and RMSNorms as autograd functions that keep fewer activations for
backward; the same forward values bit for bit.

transformers' SwiGLU MLP, down(silu(gate(x)) · up(x)), leaves autograd holding gate(x) (for
SiLU's backward), silu(gate(x)) and up(x) (for the product's backward) and the product (the down
projection's input). `SwiGLUDown` computes down(silu(g)·u) in one function that saves g, u and
the down weight only, recomputing the product in backward for the weight's gradient; it runs the
same backward kernels (`aten.silu_backward`, the matmuls): the same gradients, two [tokens,
intermediate] tensors less per layer. Where the down projection is not a bare `nn.Linear` (LoRA,
quantized, hooked), `SiLUMul` fuses the product alone (one tensor less).

transformers' RMSNorm, w ⊙ x·r with r = (mean(x²) + ε)^(−1/2), keeps x (for the square) and the
normalised x·r (for the weight's product). `RMSNormFn` keeps x and r ([tokens, 1]) and recomputes
x·r in backward: dx = r·(d − x·r²·mean(d ⊙ x)) with d = g ⊙ w, dw = Σ g ⊙ x·r. One [tokens,
hidden] tensor less per norm (two per layer, plus the final norm); the gradients equal autograd's
up to float rounding (the same formula, summed in another order).

Together a quarter or so of what a decoder layer keeps for backward; peak memory of a training
step is mostly these activations. `fuse_blocks` swaps the forward of the modules whose structure
is exactly that (the classes named in `SWIGLU_MLPS` with a SiLU activation, and `RMS_NORMS`);
any other model is left as it is.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

# MLP classes whose forward is down_proj(act_fn(gate_proj(x)) * up_proj(x))
SWIGLU_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "SmolLM3MLP"})
# RMSNorm classes whose forward is weight * (x.float() * rsqrt(mean(x²) + eps)).to(x.dtype)
RMS_NORMS = frozenset(
    {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "SmolLM3RMSNorm"}
)


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


class RMSNormFn(torch.autograd.Function):
    """w ⊙ (x·r) with r = (mean(x²) + ε)^(−1/2) over the last axis, saving x and r."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.to(torch.float32)
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]
        ctx.save_for_backward(x, weight, r)
        return weight * (xf * r).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, r = ctx.saved_tensors
        xf = x.to(torch.float32)
        normed = (xf * r).to(x.dtype)
        d_weight = None
        if ctx.needs_input_grad[1]:
            prod = grad * normed
            d_weight = prod.reshape(-1, prod.shape[-1]).sum(0).to(weight.dtype)
            del prod
        del normed
        d = (grad * weight).to(torch.float32)  # ∂L/∂(x·r); in place below: few temporaries
        dot = (d * xf).mean(-1, keepdim=True)
        d_x = d.sub_(xf * (r * r * dot)).mul_(r)
        return d_x.to(x.dtype), d_weight, None


class SwiGLUDown(torch.autograd.Function):
    """down(silu(g)·u) = (silu(g)·u) Wᵀ (+ b), saving (g, u, W): the product silu(g)·u, which the
    down projection would keep as its input, is recomputed in backward (one elementwise pass)
    for ∂L/∂W = gradᵀ · (silu(g)·u). ∂L/∂(silu(g)·u) = grad · W, then `SiLUMul`'s backward.
    Under autocast the forward's matmul runs in the autocast dtype and backward in the dtype of
    the incoming gradient (the forward output's), like the plain linear."""

    @staticmethod
    def forward(ctx, gate, up, weight, bias):
        out = F.linear(F.silu(gate) * up, weight, bias)
        ctx.save_for_backward(gate, up, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up, weight = ctx.saved_tensors
        dtype = grad.dtype
        grad2 = grad.reshape(-1, grad.shape[-1])
        d_prod = grad @ weight.to(dtype)
        d_weight = d_bias = None
        if ctx.needs_input_grad[2]:
            prod = (F.silu(gate) * up).to(dtype)
            d_weight = (grad2.t() @ prod.reshape(-1, prod.shape[-1])).to(weight.dtype)
            del prod
        if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
            d_bias = grad2.sum(0).to(ctx.bias_dtype)
        d_prod = d_prod.to(gate.dtype)
        d_gate = torch.ops.aten.silu_backward(d_prod * up, gate)
        d_up = F.silu(gate).mul_(d_prod)
        return d_gate, d_up, d_weight, d_bias


def _plain_linear(module: torch.nn.Module) -> bool:
    """A bare nn.Linear with no hooks (not a LoRA or quantized layer, no offloading hooks):
    calling its weight directly is then exactly calling the module."""
    return (
        type(module) is torch.nn.Linear
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and not torch.nn.modules.module._global_forward_hooks
        and not torch.nn.modules.module._global_forward_pre_hooks
    )


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    gate, up = self.gate_proj(x), self.up_proj(x)
    down = self.down_proj
    if _plain_linear(down):  # checked at each call: hooks or adapters may come later
        return SwiGLUDown.apply(gate, up, down.weight, down.bias)
    return down(SiLUMul.apply(gate, up))


def _norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    return RMSNormFn.apply(x, self.weight, self.variance_epsilon)


def fuse_blocks(model: torch.nn.Module) -> int:
    """Route every Llama-family SiLU MLP and RMSNorm of `model` through `SiLUMul` /
    `RMSNormFn`; returns how many modules."""
    n = 0
    for module in model.modules():
        name = type(module).__name__
        act = getattr(module, "act_fn", None)
        silu = isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation"
        if name in SWIGLU_MLPS and silu:
            module.forward = types.MethodType(_mlp_forward, module)
            n += 1
        elif name in RMS_NORMS and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_norm_forward, module)
            n += 1
    return n
