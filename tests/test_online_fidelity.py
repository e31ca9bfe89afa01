"""Sampling and reward choices of the online loops: `--sample-from` (policy or π_ref) and
AIHF's `--truncated-penalty` on completions without EOS."""

from __future__ import annotations

import pytest
import torch

from anyfeedback.errors import InputError
from anyfeedback.llm.aihf.loop import penalise_truncated
from anyfeedback.llm.online.config import OnlineConfig


def test_truncated_penalty_subtracts_from_samples_without_eos():
    """EOS = 2; completions [5, 2] and [7, 2] finished, [5, 6] and [9] truncated; penalty 0.5:
    rewards [1, 0.2, −0.3, 0.4] → [1, −0.3, −0.3, −0.1], 2 truncated. Penalty 0: unchanged."""
    comps = [[5, 2], [5, 6], [7, 2], [9]]
    rewards, n = penalise_truncated([1.0, 0.2, -0.3, 0.4], comps, 2, 0.5)
    assert rewards == pytest.approx([1.0, -0.3, -0.3, -0.1]) and n == 2
    assert penalise_truncated([1.0, 0.2, -0.3, 0.4], comps, 2, 0.0)[0] == [1.0, 0.2, -0.3, 0.4]


def test_truncated_penalty_must_be_non_negative(tmp_path):
    from anyfeedback.llm.aihf.config import AIHFConfig

    with pytest.raises(InputError, match="truncated_penalty"):
        AIHFConfig(model="m", demos="d", pairs="p", truncated_penalty=-1.0)


def test_sample_from_choices_are_checked():
    with pytest.raises(InputError, match="sample_from"):
        OnlineConfig(model="m", prompts="p", sample_from="ref")
    with pytest.raises(InputError, match="sample_from"):
        OnlineConfig(model="m", prompts="p", sample_from="reference", generation_backend="vllm")
    assert OnlineConfig(model="m", prompts="p").sample_from == "policy"


def test_sample_from_reference_samples_pi_ref_not_the_policy(tiny_model, tmp_path, one_thread):
    """After the policy's head is scaled ×0 (uniform next-token distribution), `policy`
    samples differ from the start model's with the same seed; `reference` samples equal them
    (π_ref is still the start model)."""
    from anyfeedback.llm.online.backends import make_sampler
    from anyfeedback.llm.online.steps import hf_sampler
    from anyfeedback.llm.trainer import Trainer

    cfg = OnlineConfig(model=str(tiny_model), prompts="p", k=2, max_new_tokens=6)
    trainer = Trainer(cfg.train_config(), total_steps=1)
    start = hf_sampler(trainer.ref.model, trainer.tokenizer, cfg, cfg.k)
    prompts = [trainer.tokenizer("the movie was").input_ids]
    before = start(prompts, seed=3).completion_ids
    with torch.no_grad():
        trainer.policy.get_output_embeddings().weight.mul_(0.0)
    ref_cfg = OnlineConfig(model=str(tiny_model), prompts="p", k=2, max_new_tokens=6)
    ref_cfg.sample_from = "reference"
    from_ref = make_sampler("hf", trainer, ref_cfg)(prompts, seed=3).completion_ids
    from_policy = make_sampler("hf", trainer, cfg)(prompts, seed=3).completion_ids
    assert from_ref == before
    assert from_policy != before


def test_degeneration_indicators_by_hand():
    """distinct-2 of ["a b c", "a b a b"]: bigrams ab, bc, ab, ba, ab → 3 unique / 5 = 0.6.
    repeat-3: "a b a b a b" has trigrams aba, bab, aba, bab → 2 seen before / 4 = 0.5; "x y z"
    has 0; the mean is 0.25. repeat-2 of "a b a b": ab, ba, ab → 1/3. Flag: distinct-2
    0.2 < ½·0.6, or repeat-2 0.26 − 0.2 > 0.05; not 0.24 − 0.2."""
    from anyfeedback.llm.online.degeneration import degenerate, distinct_n, repeated_ngram_rate

    assert distinct_n(["a b c", "A b a B"]) == pytest.approx(0.6)
    assert repeated_ngram_rate(["a b a b a b", "x y z", "too short"], 3) == pytest.approx(0.25)
    assert repeated_ngram_rate(["a b a b"], 2) == pytest.approx(1 / 3)
    start = {"distinct2": 0.6, "repeat2": 0.2}
    assert degenerate({"distinct2": 0.2, "repeat2": 0.2}, start)
    assert degenerate({"distinct2": 0.6, "repeat2": 0.26}, start)
    assert not degenerate({"distinct2": 0.4, "repeat2": 0.24}, start)


def test_demo_table_renders_summary_json():
    """The README/docs table is a pure function of summary.json."""
    from anyfeedback.llm.demo.table import demo_table

    row = {
        "start reward": 0.3125,
        "final reward": 0.875,
        "win rate vs start": 0.5,
        "held-out KL to start": 4.0,
        "distinct-2 start": 0.9,
        "distinct-2 final": 0.25,
        "repeat-2 start": 0.0,
        "repeat-2 final": 0.5,
        "degenerate": "yes",
    }
    summary = {"methods": {"PMPO-A": row}, "wall_s": 80.4, "cpu_s": 150.2, "cores": 2}
    table = demo_table(summary).splitlines()
    assert table[2] == (
        "| PMPO-A | 0.312 → 0.875 | 0.500 | 4.000 | 0.900 → 0.250 | 0.000 → 0.500 | yes |"
    )
    assert table[-1] == "`anyfeedback demo`: wall 80 s, CPU 150 s on 2 cores."


@pytest.mark.parametrize("method", ["pmpo", "dpo", "kto"])
def test_start_kl_from_the_update_forward_equals_a_separate_forward(method, tiny_model, one_thread):
    """The KL to the start model measured through the update's own policy forward
    (`StartKL` as the tap around `train_step`) equals `kl_to_start` run separately on the same
    micro-batches with the policy before the update; KTO's no-grad mismatched pairs are not
    counted. On the start model itself it is exactly 0."""
    import copy

    from anyfeedback.llm.online.steps import StartKL, build_batches, kl_to_start
    from anyfeedback.llm.state_tap import tap_policy_states
    from anyfeedback.llm.trainer import Trainer

    cfg = OnlineConfig(model=str(tiny_model), prompts="p", method=method, k=4, max_new_tokens=6)
    trainer = Trainer(cfg.train_config(), total_steps=2)
    tcfg, pad = cfg.train_config(), trainer.tokenizer.pad_token_id
    start = copy.deepcopy(trainer.policy).eval()
    prompts = [[5, 6, 7], [8, 9]]
    comps = [[10 + i, 11 + i, 12][: 1 + i % 3] for i in range(8)]
    scores = [0.1, 0.9, -0.3, 0.5, 0.2, 0.0, 0.7, -0.1]
    labels = [False, True, False, True, False, False, True, False]
    batches = build_batches(cfg, prompts, comps, scores, labels, pad)
    zero = StartKL(start, tcfg)
    with tap_policy_states(zero):
        trainer.train_step(batches)
    assert zero.result() == (0.0, 0.0)
    before = copy.deepcopy(trainer.policy)  # after one update: away from the start model
    want = kl_to_start(before, start, batches, tcfg)
    got = StartKL(start, tcfg)
    # π_ref not refreshed yet: the loss's π_ref states stand in for π_start's (never run here)
    assert trainer.ref.exact_initial_copy
    never_run = torch.nn.Linear(1, 1)  # not a language model: running it would raise
    reused = StartKL(never_run, tcfg, ref_is_start=True)
    with tap_policy_states(lambda *a: (got(*a), reused(*a))):
        trainer.train_step(batches)
    assert want[0] > 1e-6
    assert got.result() == pytest.approx(want, rel=1e-5)
    assert reused.result() == pytest.approx(want, rel=1e-5)
    trainer.ref.refresh()
    assert not trainer.ref.exact_initial_copy
