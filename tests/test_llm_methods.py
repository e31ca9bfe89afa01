"""Each method, on the tiny model and toy feedback, moves the right way; reference-policy options.

Metrics come from the run's metrics.jsonl: step 1 is measured at θ = θ_0 (= π_ref), later steps
after updates. Runs are ~15-30 steps of a 2-layer, hidden-64 Llama on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from anyfeedback.llm import train
from anyfeedback.losses import BetaBelowBoundWarning
from anyfeedback.runs import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def _series(cfg, key: str) -> list[float]:
    rows = read_metrics(Path(cfg.out) / "metrics.jsonl")
    return [r[key] for r in rows]


def _tail(values: list[float], n: int = 5) -> float:
    return sum(values[-n:]) / n


def test_pmpo_accept_only_raises_accepted_logp(train_cfg):
    cfg = train_cfg("pmpo", "accepted_only", alpha=1.0)  # PMPO-A: β defaults to 0
    assert cfg.beta == 0.0
    train(cfg)
    logp = _series(cfg, "logp_accepted")
    assert _tail(logp) > logp[0] + 3.0
    assert _series(cfg, "kl")[0] == pytest.approx(0.0, abs=1e-5)  # π_θ = π_ref at step 1


def test_pmpo_reject_only_lowers_rejected_logp_and_stays_bounded_with_beta_2(train_cfg):
    bounded = train_cfg("pmpo", "rejected_only", alpha=0.0, beta=2.0, max_steps=30)
    train(bounded)
    logp, kl = _series(bounded, "logp_rejected"), _series(bounded, "kl")
    assert _tail(logp) < logp[0] - 2.0  # pushed down
    assert all(math.isfinite(v) for v in logp + kl)
    assert max(kl) < 15.0  # the KL term holds π_θ near π_ref
    with pytest.warns(BetaBelowBoundWarning):  # β < 1 − α: config-time warning
        collapsing = train_cfg(
            "pmpo", "rejected_only", alpha=0.0, beta=0.1, max_steps=30, out=bounded.out + "-low"
        )
    with pytest.warns(BetaBelowBoundWarning):
        train(collapsing)
    low_logp, low_kl = _series(collapsing, "logp_rejected"), _series(collapsing, "kl")
    assert _tail(low_logp) < _tail(logp) - 20.0  # below the bound the rejected log-probs run off
    assert _tail(low_kl) > 3 * _tail(kl)


@pytest.mark.parametrize("method", ["dpo", "ipo"])
def test_pair_methods_grow_the_margin(train_cfg, method):
    cfg = train_cfg(method, "paired")
    train(cfg)
    margin = _series(cfg, "margin")
    assert margin[0] == pytest.approx(0.0, abs=1e-5)
    assert _tail(margin) > 0.5
    assert _tail(_series(cfg, "accuracy")) > 0.8


def test_kto_loss_falls(train_cfg):
    cfg = train_cfg("kto", "unpaired")
    train(cfg)
    loss = _series(cfg, "loss")
    assert loss[0] == pytest.approx(0.5, abs=1e-4)  # 1 − σ(0) at π_θ = π_ref, z_ref = 0
    assert _tail(loss) < loss[0] - 0.08


def test_sft_loss_falls_on_demonstrations(train_cfg):
    cfg = train_cfg("sft", "demos", max_steps=10)
    train(cfg)
    loss = _series(cfg, "loss")
    assert _tail(loss, 3) < loss[0] - 3.0


def test_aihf_dpo_with_demo_weight_0_reproduces_dpo_exactly(train_cfg, feedback_files):
    dpo = train_cfg("dpo", "paired", max_steps=6)
    aihf = train_cfg(
        "aihf-dpo", "paired", max_steps=6, demo_weight=0.0, demo_data=str(feedback_files["demos"])
    )
    train(dpo)
    train(aihf)
    assert _series(aihf, "loss") == _series(dpo, "loss")  # bitwise
    assert _series(aihf, "margin") == _series(dpo, "margin")


@pytest.mark.parametrize("mode", ["nll", "contrastive"])
def test_aihf_dpo_demo_term_is_trained(train_cfg, feedback_files, mode):
    cfg = train_cfg(
        "aihf-dpo", "paired", max_steps=8, demo_mode=mode, demo_data=str(feedback_files["demos"])
    )
    train(cfg)
    demo, pref = _series(cfg, "demo_term"), _series(cfg, "pref_term")
    assert _tail(demo, 3) < demo[0] and _tail(pref, 3) < pref[0]
    if mode == "contrastive":
        assert demo[0] == pytest.approx(math.log(2), abs=1e-5)  # DPO at π_θ = π_ref
        assert (Path(cfg.out) / "demo_ref_samples.json").is_file()


@pytest.mark.parametrize("lora_r", [0, 4])
def test_reference_refresh_makes_the_kl_zero_after_each_refresh(train_cfg, lora_r):
    cfg = train_cfg("pmpo", "unpaired", lora_r=lora_r, ref_update_every=4, max_steps=9)
    train(cfg)
    kl = _series(cfg, "kl")  # kl[s] is measured at step s+1, before its update
    for s in (0, 4, 8):
        assert kl[s] == pytest.approx(0.0, abs=1e-5)
    assert min(kl[1:4] + kl[5:8]) > 1e-3


def test_lora_reference_is_the_base_with_the_adapter_disabled_and_ema_moves_it(train_cfg):
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.data import Example
    from anyfeedback.llm.model import completion_logits, load_policy
    from anyfeedback.llm.reference import Reference

    policy = load_policy(train_cfg("pmpo", lora_r=4))
    ref = Reference(policy)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    seqs = collate_unpaired([Example([1, 20, 30], ([40, 2],), True)], 0).seqs
    with torch.no_grad(), policy.disable_adapter():
        base = completion_logits(policy, seqs)
    with torch.no_grad():
        current = completion_logits(policy, seqs)
    assert not torch.allclose(base, current)
    torch.testing.assert_close(ref.logits(seqs), base)  # π_ref = base, no second model
    ref.ema(0.5)  # π_ref moves halfway (on the factors) toward π_θ
    moved = ref.logits(seqs)
    assert not torch.allclose(moved, base) and not torch.allclose(moved, current)
    ref.refresh()
    torch.testing.assert_close(ref.logits(seqs), current)
    assert ref.model is None  # no copy of the model was made
    assert sum(p.numel() for p in policy.parameters() if p.requires_grad) < 20_000


def test_lora_run_saves_an_adapter_and_a_merged_model(train_cfg):
    from transformers import AutoModelForCausalLM

    cfg = train_cfg("dpo", "paired", lora_r=4, max_steps=3, merge_lora=True)
    result = train(cfg)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_chat_records_train(train_cfg):
    cfg = train_cfg("pmpo", "chat_unpaired", max_steps=4, bf16=True)
    train(cfg)
    assert all(math.isfinite(v) for v in _series(cfg, "loss"))


def test_gradient_checkpointing_and_compile_keep_the_numbers(train_cfg):
    plain = train_cfg("dpo", "paired", max_steps=3)
    other = train_cfg(
        "dpo",
        "paired",
        max_steps=3,
        gradient_checkpointing=True,
        torch_compile=True,
        torch_compile_backend="eager",
        out=plain.out + "-gc",
    )
    train(plain)
    train(other)
    assert _series(other, "loss") == pytest.approx(_series(plain, "loss"), rel=1e-5, abs=1e-6)


def test_reference_ema_tracks_the_policy_and_epochs_set_the_length(train_cfg):
    """--ref-ema: π_ref trails π_θ, so the KL stays well below the fixed-reference run's;
    --num-epochs with --max-steps -1: 64 records / 8 per step × 2 epochs = 16 steps."""
    fixed = train_cfg("pmpo", max_steps=-1, num_epochs=2)
    ema = train_cfg("pmpo", max_steps=-1, num_epochs=2, ref_ema=0.5, out=fixed.out + "-ema")
    train(fixed)
    train(ema)
    kl_fixed, kl_ema = _series(fixed, "kl"), _series(ema, "kl")
    assert len(kl_fixed) == len(kl_ema) == 16
    assert 0 < _tail(kl_ema) < 0.5 * _tail(kl_fixed)
