"""The SwiGLU MLP through `SiLUMul` (`llm/swiglu.py`): same outputs and gradients as
transformers' own MLP, one [tokens, intermediate] activation less kept for backward per layer."""

from __future__ import annotations

import copy

import torch

from conftest_llm import *  # noqa: F403


def test_silu_mul_matches_autograd_hand_values():
    from anyfeedback.llm.swiglu import SiLUMul

    g = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = SiLUMul.apply(g, u)
    sig = 1 / (1 + torch.exp(-g.detach()))
    # silu(0)·3 = 0; silu(1)·(−1) = −σ(1); silu(−2)·0.5 = −2σ(−2)·0.5
    torch.testing.assert_close(out, g.detach() * sig * u.detach())
    out.sum().backward()
    torch.testing.assert_close(u.grad, g.detach() * sig)
    d_silu = sig * (1 + g.detach() * (1 - sig))  # d/dg g·σ(g)
    torch.testing.assert_close(g.grad, u.detach() * d_silu)
    assert float(d_silu[0]) == 0.5  # σ(0)·(1 + 0) at g = 0


def _saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


def test_fused_mlp_same_gradients_one_activation_less(tiny_model, one_thread):
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.swiglu import fuse_swiglu

    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    fused = copy.deepcopy(plain)
    assert fuse_swiglu(fused) == plain.config.num_hidden_layers
    assert fuse_swiglu(copy.deepcopy(fused).model.layers[0]) == 1  # survives deepcopy
    ids = torch.randint(3, plain.config.vocab_size, (3, 11))
    results = []
    for model in (plain, fused):
        saved, logits = _saved_bytes(lambda m=model: m(input_ids=ids).logits)
        grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
        results.append((saved, logits.detach(), grads))
    (saved_a, out_a, g_a), (saved_b, out_b, g_b) = results
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-7, rtol=1e-6)
    cfg = plain.config
    one_activation = ids.numel() * cfg.intermediate_size * 4  # float32 bytes per layer
    assert saved_a - saved_b == cfg.num_hidden_layers * one_activation


def test_other_mlps_are_left_alone():
    from anyfeedback.llm.swiglu import fuse_swiglu

    class LlamaMLP(torch.nn.Module):  # the right name, but a GELU: not a SwiGLU
        def __init__(self):
            super().__init__()
            self.act_fn = torch.nn.GELU()

    model = torch.nn.Sequential(LlamaMLP(), torch.nn.Linear(2, 2))
    assert fuse_swiglu(model) == 0
    assert "forward" not in model[0].__dict__
