"""The trainer's fused LM head path (hidden states → `fused_token_stats`) gives the numbers of
the plain path (full logits of the scored positions → `token_logps_and_kl`) on a real causal LM,
full fine-tuning and LoRA, values and gradients."""

from __future__ import annotations

import pytest
import torch

from anyfeedback.errors import InputError
from conftest_llm import *  # noqa: F403


@pytest.mark.parametrize("lora_r", [0, 4])
def test_fused_path_equals_logits_path(train_cfg, one_thread, lora_r):
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.data import Example
    from anyfeedback.llm.model import completion_logits, load_policy
    from anyfeedback.llm.reference import Reference
    from anyfeedback.llm.sequence_stats import sequence_stats
    from anyfeedback.losses import token_logps_and_kl

    cfg = train_cfg("pmpo", lora_r=lora_r)
    policy = load_policy(cfg)
    ref = Reference(policy)
    with torch.no_grad():  # move π_θ away from π_ref so the KL is not zero
        for n, p in policy.named_parameters():
            if p.requires_grad and ("lora_B" in n or lora_r == 0):
                p.add_(0.02 * torch.randn_like(p))
    examples = [
        Example([1, 20, 30], ([40, 2],), True),
        Example([5, 6], ([7, 8, 9, 10],), False),
        Example([11, 12, 13, 14], ([15],), True),
    ]
    seqs = collate_unpaired(examples, 0).seqs
    params = [p for p in policy.parameters() if p.requires_grad]

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    stats = sequence_stats(policy, seqs, cfg, ref.scored_states(seqs))
    fused = grads((stats.logps * torch.tensor([1.0, -0.5, 0.3])).sum() + stats.kl.sum())
    labels, mask = seqs.kept()
    ref_logits = ref.logits(seqs)
    lp, kl, counts = token_logps_and_kl(completion_logits(policy, seqs), labels, mask, ref_logits)
    plain = grads((lp * torch.tensor([1.0, -0.5, 0.3])).sum() + kl.sum())
    ref_lp, _, _ = token_logps_and_kl(ref_logits, labels, mask)
    torch.testing.assert_close(stats.logps, lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats.kl, kl, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(stats.ref_logps, ref_lp, atol=1e-5, rtol=1e-5)
    assert stats.counts.tolist() == counts.tolist() == [2.0, 4.0, 1.0]
    assert (stats.kl > 0).all()
    for a, b in zip(fused, plain, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_lora_on_the_lm_head_is_refused_in_one_line(train_cfg):
    from anyfeedback.llm.model import lm_head, load_policy

    policy = load_policy(train_cfg("pmpo", lora_r=2, lora_target_modules="q_proj,lm_head"))
    with pytest.raises(InputError, match="LoRA on the LM head"):
        lm_head(policy)
