"""Under FSDP2 the LM head weight is a DTensor shard outside the module's forward; `lm_head`
gathers it (differentiably), so the fused head's gradient reaches the sharded parameter. One
process, gloo, CPU: the gradient equals the unsharded model's."""

from __future__ import annotations

import copy

import pytest
import torch


def test_fused_head_gradient_reaches_an_fsdp2_sharded_head(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    fsdp = pytest.importorskip("torch.distributed.fsdp")
    from torch.distributed.device_mesh import init_device_mesh

    from anyfeedback.llm.model import lm_head
    from anyfeedback.losses.tokens import fused_token_stats

    class Tiny(torch.nn.Module):  # the accessor a causal LM offers
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 6)
            self.head = torch.nn.Linear(6, 9, bias=False)

        def get_output_embeddings(self):
            return self.head

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    plain = Tiny()
    sharded = copy.deepcopy(plain)
    x, targets = torch.randn(5, 4), torch.randint(0, 9, (5,))
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        mesh = init_device_mesh("cpu", (1,))
        fsdp.fully_shard(sharded.body, mesh=mesh)
        fsdp.fully_shard(sharded.head, mesh=mesh)
        fsdp.fully_shard(sharded, mesh=mesh)
        grads = []
        for model in (plain, sharded):
            h = model(x)
            head = lm_head(model)
            assert not hasattr(head.weight, "full_tensor")  # a plain tensor for the fused head
            fused_token_stats(h, head, targets).logps.sum().backward()
            g = model.head.weight.grad
            grads.append(g.full_tensor() if hasattr(g, "full_tensor") else g)
        assert hasattr(sharded.head.weight, "full_tensor")  # it really was sharded
        torch.testing.assert_close(grads[1], grads[0])
    finally:
        dist.destroy_process_group()


def test_fsdp2_sharded_policy_saves_whole_weights(tiny_model, tmp_path):
    """`save_pretrained` cannot write DTensor parameters; the final model and a checkpoint's
    tensors are gathered whole first, and equal the unsharded model's."""
    dist = pytest.importorskip("torch.distributed")
    fsdp = pytest.importorskip("torch.distributed.fsdp")
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anyfeedback.llm.checkpoint import full_state_dict, save_final_model, trainable_state

    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    sharded = copy.deepcopy(plain)
    assert full_state_dict(plain) is None  # plain tensors: save_pretrained reads them itself
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        mesh = init_device_mesh("cpu", (1,))
        for layer in sharded.model.layers:
            fsdp.fully_shard(layer, mesh=mesh)
        fsdp.fully_shard(sharded, mesh=mesh)
        assert hasattr(sharded.model.layers[0].mlp.up_proj.weight, "full_tensor")  # sharded
        state = full_state_dict(sharded)
        tensors = trainable_state(sharded)
        out = save_final_model(
            sharded,
            AutoTokenizer.from_pretrained(tiny_model),
            tmp_path / "model",
            merge_lora=False,
            state_dict=state,
        )
    finally:
        dist.destroy_process_group()
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    for name, p in plain.named_parameters():
        torch.testing.assert_close(tensors[name], p.detach(), rtol=0, atol=0)
        torch.testing.assert_close(reloaded.get_parameter(name), p, rtol=0, atol=0)
