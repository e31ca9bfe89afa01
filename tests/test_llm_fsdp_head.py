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
