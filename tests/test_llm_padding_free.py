"""Padding-free micro-batches (`pack_flat`: one row, positions restarting per sequence) give
the losses and gradients of right-padded, length-bucketed rows (`pack`), for sdpa and eager
attention on a real causal LM."""

from __future__ import annotations

import pytest
import torch

from conftest_llm import *  # noqa: F403


def _examples(paired: bool):
    from anyfeedback.llm.data import Example

    prompts = [[1, 20, 30], [5, 6], [11, 12, 13, 14, 15, 16], [7]]
    comps = [[40, 2], [7, 8, 9, 10, 2], [15], [21, 22, 23]]
    if paired:
        return [Example(p, (c, c[::-1] + [3]), None) for p, c in zip(prompts, comps, strict=True)]
    return [
        Example(p, (c,), i % 2 == 0) for i, (p, c) in enumerate(zip(prompts, comps, strict=True))
    ]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("method", ["pmpo", "kto", "dpo"])
def test_flat_and_padded_batches_agree(train_cfg, one_thread, attn, method):
    from anyfeedback.llm.batching import collate_pairs, collate_unpaired
    from anyfeedback.llm.model import load_policy
    from anyfeedback.llm.objective import compute_loss
    from anyfeedback.llm.reference import Reference

    cfg = train_cfg(method, attn_implementation=attn, beta=0.5)
    policy = load_policy(cfg)
    ref = Reference(policy)
    with torch.no_grad():  # π_θ ≠ π_ref, so the KL and the DPO margins are not zero
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    params = [p for p in policy.parameters() if p.requires_grad]
    results = []
    for flat in (False, True):
        if method == "dpo":
            batch = collate_pairs(_examples(True), 0, flat=flat)
        else:
            batch = collate_unpaired(_examples(False), 0, mismatched=method == "kto", flat=flat)
        assert batch.seqs.input_ids.shape[0] == (1 if flat else batch.seqs.n_views)
        loss, metrics = compute_loss(policy, ref, batch, cfg, want_kl=True)
        grads = torch.autograd.grad(loss, params)
        results.append((loss.detach(), metrics, grads))
    (loss_a, m_a, g_a), (loss_b, m_b, g_b) = results
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m_b["kl"], m_a["kl"], atol=1e-6, rtol=1e-4)
    assert m_a["completion_tokens"] == m_b["completion_tokens"]
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_padding_free_training_run_matches_padded(train_cfg, one_thread, tmp_path):
    """`--padding-free` end to end: 3 PMPO steps give the padded run's losses and KL."""
    from anyfeedback.llm import train
    from anyfeedback.runs import read_metrics

    runs = []
    for flat in (False, True):
        out = tmp_path / ("flat" if flat else "padded")
        train(train_cfg("pmpo", max_steps=3, padding_free=flat, out=str(out)))
        runs.append(read_metrics(out / "metrics.jsonl"))
    assert len(runs[0]) == len(runs[1]) == 3
    for a, b in zip(*runs, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4, rel=1e-4)
        assert b["kl"] == pytest.approx(a["kl"], abs=1e-5, rel=1e-3)
