"""KTO's mismatched pairs run as continuations of the matched rows' KV cache
(`llm.continuation`) give the losses, reference point, log-probs and gradients of running the
mismatched rows on their own (sdpa attention on a real causal LM, full and LoRA); eager attention, which reads a
boolean 4D mask as additive, is detected and keeps the rows path."""

from __future__ import annotations

import pytest
import torch

from conftest_llm import *  # noqa: F403


def _examples():
    from anyfeedback.llm.data import Example

    prompts = [[1, 20, 30], [5, 6], [11, 12, 13, 14, 15, 16], [7]]
    comps = [[40, 2], [7, 8, 9, 10, 2], [15], [21, 22, 23]]
    return [
        Example(p, (c,), i % 2 == 0) for i, (p, c) in enumerate(zip(prompts, comps, strict=True))
    ]


@pytest.mark.parametrize("lora_r", [0, 4])
def test_kto_continuation_equals_mismatched_rows(train_cfg, one_thread, monkeypatch, lora_r):
    from anyfeedback.llm import objective, sequence_stats
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.continuation import continuation_supported, kto_terms
    from anyfeedback.llm.model import load_policy
    from anyfeedback.llm.reference import Reference

    cfg = train_cfg("kto", attn_implementation="sdpa", beta=0.5, lora_r=lora_r)
    policy = load_policy(cfg)
    ref = Reference(policy)
    with torch.no_grad():  # π_θ ≠ π_ref, so ℓ_θ − ℓ_ref and the KL are not zero
        for p in (p for p in policy.parameters() if p.requires_grad):
            p.add_(0.05 * torch.randn_like(p))
    assert continuation_supported(policy)
    batch = collate_unpaired(_examples(), 0, mismatched=True)
    params = [p for p in policy.parameters() if p.requires_grad]

    # the mismatched log-probs themselves: continuation vs the rows (x_i, y_{i+1}) alone
    terms = kto_terms(policy, ref, batch, cfg, want_kl=True)
    assert terms is not None
    rows_lp, _, _ = sequence_stats.policy_stats(policy, batch.mismatched, cfg)
    rows_ref = sequence_stats.ref_logps(ref, batch.mismatched, cfg)
    torch.testing.assert_close(terms.mm_logps, rows_lp.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms.mm_ref_logps, rows_ref.clone(), atol=1e-5, rtol=1e-5)
    assert not (terms.mm_logps - terms.mm_ref_logps).abs().lt(1e-3).all()

    results = []
    for continued in (True, False):
        if not continued:
            monkeypatch.setattr(objective, "kto_terms", lambda *a, **k: None)
        for want_kl in (False, True):
            loss, metrics = objective.compute_loss(policy, ref, batch, cfg, want_kl=want_kl)
            results.append((loss.detach(), metrics, torch.autograd.grad(loss, params)))
    for (loss_a, m_a, g_a), (loss_b, m_b, g_b) in zip(results[:2], results[2:], strict=True):
        torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-5)
        for key in ("z_ref", "reward_accepted", "reward_rejected", "kl"):
            torch.testing.assert_close(m_a[key], m_b[key], atol=1e-5, rtol=1e-5, equal_nan=True)
        for a, b in zip(g_a, g_b, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_continuation_falls_back_for_flat_rows():
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.continuation import continuation_of

    flat = collate_unpaired(_examples(), 0, mismatched=True, flat=True)
    assert continuation_of(flat.seqs, flat.mismatched) is None
    rows = collate_unpaired(_examples(), 0, mismatched=True)
    tail = continuation_of(rows.seqs, rows.mismatched)
    # row i continues prompt i with completion i+1: its tail holds that completion's tokens
    comps = [[7, 8, 9, 10, 2], [15], [21, 22, 23], [40, 2]]
    for i, c in enumerate(comps):
        assert tail.input_ids[i, : len(c)].tolist() == c
    assert tail.first.numel() == 4 and tail.rest.numel() == sum(len(c) - 1 for c in comps)


def test_eager_attention_keeps_the_rows_path(train_cfg, one_thread):
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.continuation import continuation_supported, kto_terms
    from anyfeedback.llm.model import load_policy
    from anyfeedback.llm.reference import Reference

    cfg = train_cfg("kto", attn_implementation="eager")
    policy = load_policy(cfg)
    assert not continuation_supported(policy)
    batch = collate_unpaired(_examples(), 0, mismatched=True)
    assert kto_terms(policy, Reference(policy), batch, cfg, want_kl=False) is None


def test_gradient_checkpointing_keeps_the_rows_path(train_cfg, one_thread):
    """Under gradient checkpointing the model keeps no cache: the rows path, same loss."""
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.continuation import kto_terms
    from anyfeedback.llm.model import load_policy
    from anyfeedback.llm.objective import compute_loss
    from anyfeedback.llm.reference import Reference

    batch = collate_unpaired(_examples(), 0, mismatched=True)
    losses = []
    for checkpointing in (False, True):
        cfg = train_cfg("kto", gradient_checkpointing=checkpointing)
        policy = load_policy(cfg)
        policy.train()
        ref = Reference(policy)
        terms = kto_terms(policy, ref, batch, cfg, want_kl=False)
        assert (terms is None) == checkpointing
        losses.append(compute_loss(policy, ref, batch, cfg, want_kl=False)[0].detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)


def test_tail_groups_by_hand():
    """Sorted lengths 50, 48, 5, 4, 3 padded as one group: 5 × 50 = 250 positions; split after
    2 rows: 2 × 50 + 3 × 5 + 64 (the extra call) = 179, the cheapest split (after 1: 306,
    after 3: 222, after 4: 267). Lengths 5, 3, 2, 1 save less than a call: one group."""
    from anyfeedback.llm.continuation import tail_groups

    groups = tail_groups(torch.tensor([5, 50, 3, 48, 4]))
    assert [g.tolist() for g in groups] == [[1, 3], [0, 4, 2]]
    assert [g.tolist() for g in tail_groups(torch.tensor([5, 1, 3, 2]))] == [[0, 1, 2, 3]]


def test_tails_in_groups_equal_one_group(train_cfg, one_thread):
    """The tails run in groups on their rows of the cache (cut to the group's longest prompt)
    give the hidden states of running them all at once: two groups, and one row at a time."""
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.continuation import continuation_of, hidden_and_cache, tail_hidden
    from anyfeedback.llm.model import load_policy

    policy = load_policy(train_cfg("kto", attn_implementation="sdpa")).eval()
    batch = collate_unpaired(_examples(), 0, mismatched=True)
    tail = continuation_of(batch.seqs, batch.mismatched)
    order = torch.argsort(tail.lengths, descending=True)
    splits = [None, [order[:2], order[2:]], [order[i : i + 1] for i in range(4)]]
    with torch.inference_mode():
        got = []
        for groups in splits:
            _, _, cache = hidden_and_cache(policy, batch.seqs, tail.first_at)  # a fresh cache
            got.append(tail_hidden(policy, tail, cache, groups))
    for g in got[1:]:
        torch.testing.assert_close(g, got[0], atol=1e-5, rtol=1e-5)
