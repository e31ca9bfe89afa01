"""SwiGLU MLPs and RMSNorms through `SiLUMul` / `RMSNormFn` (`llm/fused_blocks.py`): the same
outputs and gradients as transformers' own modules, fewer activations kept for backward."""

from __future__ import annotations

import copy

import torch

from conftest_llm import *  # noqa: F403


def test_silu_mul_hand_values():
    from anyfeedback.llm.fused_blocks import SiLUMul

    g = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    out = SiLUMul.apply(g, u)
    sig = 1 / (1 + torch.exp(-g.detach()))
    torch.testing.assert_close(out, g.detach() * sig * u.detach())  # silu(g)·u
    out.sum().backward()
    torch.testing.assert_close(u.grad, g.detach() * sig)
    d_silu = sig * (1 + g.detach() * (1 - sig))  # d/dg g·σ(g)
    torch.testing.assert_close(g.grad, u.detach() * d_silu)
    assert float(d_silu[0]) == 0.5  # σ(0)·(1 + 0) at g = 0


def test_rms_norm_hand_values():
    from anyfeedback.llm.fused_blocks import RMSNormFn

    # x = (3, 4): mean(x²) = 12.5, r = 1/√12.5; w = (1, 2); y = (3r, 8r)
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    y = RMSNormFn.apply(x, w, 0.0)
    r = 12.5**-0.5
    torch.testing.assert_close(y, torch.tensor([[3 * r, 8 * r]]))
    y[0, 0].backward()  # ∂y0/∂x = w0·r·(e0 − x·x0/(2·12.5)), ∂y0/∂w = (3r, 0)
    torch.testing.assert_close(x.grad, torch.tensor([[r * (1 - 9 / 25), r * (-12 / 25)]]))
    torch.testing.assert_close(w.grad, torch.tensor([3 * r, 0.0]))


def _saved_bytes(fn):
    """Bytes of the distinct storages autograd keeps for backward while `fn` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def test_fused_blocks_same_gradients_fewer_activations(tiny_model, one_thread):
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.fused_blocks import fuse_blocks

    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():  # norm weights ≠ 1, so their gradients are checked in earnest
        for name, p in plain.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    fused = copy.deepcopy(plain)
    layers = plain.config.num_hidden_layers
    assert fuse_blocks(fused) == 3 * layers + 1  # MLP and two norms per layer, final norm
    assert fuse_blocks(copy.deepcopy(fused).model.layers[0]) == 3  # survives deepcopy
    ids = torch.randint(3, plain.config.vocab_size, (3, 11))
    results = []
    for model in (plain, fused):
        saved, logits = _saved_bytes(lambda m=model: m(input_ids=ids).logits)
        grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
        results.append((saved, logits.detach(), grads))
    (saved_a, out_a, g_a), (saved_b, out_b, g_b) = results
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    cfg, n = plain.config, ids.numel()
    mlp, norm = n * cfg.intermediate_size * 4, n * cfg.hidden_size * 4  # float32 bytes
    # per layer: silu(gate) and the product (the down projection's input); per norm: x·r
    assert saved_a - saved_b == 2 * layers * mlp + (2 * layers + 1) * norm


def test_other_modules_are_left_alone():
    from anyfeedback.llm.fused_blocks import fuse_blocks

    class LlamaMLP(torch.nn.Module):  # the right name, but a GELU: not a SwiGLU
        def __init__(self):
            super().__init__()
            self.act_fn = torch.nn.GELU()

    class GemmaRMSNorm(torch.nn.Module):  # w is (1 + weight) there: another formula
        variance_epsilon = 1e-6

    model = torch.nn.Sequential(LlamaMLP(), GemmaRMSNorm(), torch.nn.Linear(2, 2))
    assert fuse_blocks(model) == 0
    assert all("forward" not in m.__dict__ for m in model)


def test_swiglu_down_hand_values_bias_and_hooked_fallback():
    """down(silu(g)·u) with W = [[1, 2]], b = [0.5]: g = (0, 1), u = (3, −1) → silu = (0, σ(1)),
    out = 0·1 + (−σ(1))·2 + 0.5; ∂out/∂W = (0, −σ(1)), ∂out/∂b = 1, ∂out/∂u = silu(g)·W. A hooked
    down projection is called as a module (the hook runs) and gives the same gradients."""
    from anyfeedback.llm.fused_blocks import SwiGLUDown, _mlp_forward

    s1 = 1 / (1 + torch.exp(torch.tensor(-1.0, dtype=torch.float64)))
    g = torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([[3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    out = SwiGLUDown.apply(g, u, w, b)
    torch.testing.assert_close(out, (-2 * s1 + 0.5).reshape(1, 1))
    out.sum().backward()
    torch.testing.assert_close(w.grad, torch.stack([torch.zeros(()), -s1]).reshape(1, 2))
    torch.testing.assert_close(b.grad, torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(u.grad, torch.stack([torch.zeros(()), 2 * s1]).reshape(1, 2))

    mlp = torch.nn.Module()
    mlp.gate_proj, mlp.up_proj = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    mlp.down_proj = torch.nn.Linear(4, 3)
    mlp.act_fn = torch.nn.SiLU()
    x = torch.randn(5, 3)
    want = mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    ref = torch.autograd.grad(want.square().sum(), list(mlp.parameters()))
    calls = []
    for hooked in (False, True):
        if hooked:
            mlp.down_proj.register_forward_hook(lambda m, i, o: calls.append(1))
        got = _mlp_forward(mlp, x)
        torch.testing.assert_close(got, want)
        grads = torch.autograd.grad(got.square().sum(), list(mlp.parameters()))
        for a, c in zip(ref, grads, strict=True):
            torch.testing.assert_close(c, a)
    assert calls == [1]  # the fused path skipped the module, the hooked one called it
