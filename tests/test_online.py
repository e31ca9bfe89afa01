"""The online loop: labelling per method, the prompt schedule, DPO pairs, the collapse detector,
and tiny end-to-end runs (exact resume, a bad reward stopping cleanly, the collapse warning)."""

import warnings

import pytest
import torch

import custom_rewards
from anyfeedback.cli import main
from anyfeedback.llm.checkpoint import latest_checkpoint
from anyfeedback.llm.online.config import OnlineConfig
from anyfeedback.llm.online.loop import CollapseWarning, run_online
from anyfeedback.llm.online.steps import (
    CollapseDetector,
    build_batches,
    build_examples,
    label_samples,
)
from anyfeedback.llm.prompts import prompts_for_step
from anyfeedback.losses import BetaBelowBoundWarning
from anyfeedback.rewards import RewardError

T, F, N = True, False, None


def cfg_of(**kw):
    base = dict(model="m", prompts="p")
    return OnlineConfig(**{**base, **kw})


def test_label_samples_per_method():
    """Rank labels of [0.1, 0.9, -0.3, 0.5] are [F, T, F, T]; PMPO-A keeps only the accepted,
    PMPO-R only the rejected, AR and KTO both."""
    scores = [0.1, 0.9, -0.3, 0.5]
    assert label_samples(scores, cfg_of(alpha=0.5)) == [F, T, F, T]
    assert label_samples(scores, cfg_of(alpha=1.0)) == [N, T, N, T]
    assert label_samples(scores, cfg_of(alpha=0.0)) == [F, N, F, N]
    assert label_samples(scores, cfg_of(method="kto")) == [F, T, F, T]
    assert label_samples(scores, cfg_of(labelling="group-mean")) == [F, T, F, T]  # mean 0.3
    assert label_samples(scores, cfg_of(labelling="threshold", threshold=0.2)) == [F, T, F, T]


def test_prompt_schedule_is_a_function_of_the_step():
    """Each epoch is a permutation: steps 0–2 of 3 prompts per step over 9 prompts cover all."""
    seen = [i for s in range(3) for i in prompts_for_step(9, 3, s, seed=0)]
    assert sorted(seen) == list(range(9))
    assert prompts_for_step(9, 3, 5, seed=0) == prompts_for_step(9, 3, 5, seed=0)
    assert prompts_for_step(9, 3, 0, seed=0) != prompts_for_step(9, 3, 0, seed=1)


def test_dpo_pairs_best_vs_worst_and_ties_skipped():
    """Prompt 0 scores [1, 3, 2, 0] → pair (sample 1, sample 3); prompt 1 all equal → no pair."""
    cfg = cfg_of(method="dpo")
    comps = [[10 + j] for j in range(8)]
    batches = build_batches(cfg, [[1, 2], [3]], comps, [1, 3, 2, 0, 5, 5, 5, 5], [None] * 8, 0)
    assert len(batches) == 1 and batches[0].n_pairs == 1
    ids = batches[0].seqs.input_ids.tolist()
    assert ids[0][-1] == 11 and ids[1][-1] == 13  # chosen row, then rejected row
    assert build_batches(cfg_of(method="kto"), [[1]], [[5]] * 4, [0] * 4, [T, N, N, N], 0) == []


def test_collapse_detector():
    """Falling rejected log-probs with a growing KL fire it (once); a rise in between does not;
    a per-token KL above the limit fires at once."""
    d = CollapseDetector(window=3, drop=5.0)
    fired = [d.update(lp, kl, 0.1) for lp, kl in [(-10, 1), (-12, 2), (-15, 3), (-18, 4)]]
    assert fired == [False, False, False, True] and not d.update(-30, 9, 0.1)
    d2 = CollapseDetector(window=3, drop=5.0)
    assert not any(d2.update(lp, kl) for lp, kl in [(-10, 1), (-12, 2), (-11, 3), (-18, 4)])
    assert not d2.update(float("nan"), 5.0)
    assert CollapseDetector().update(-5.0, 60.0, kl_start_per_token=2.5)


def _config(tmp_path, tiny_model, feedback_files, **kw):
    base = dict(
        model=str(tiny_model),
        prompts=str(feedback_files["paired"]),
        out=str(tmp_path),
        reward="custom_rewards:toy_sentiment",
        k=4,
        prompts_per_step=3,
        steps=3,
        max_new_tokens=10,
        learning_rate=1e-3,
        eval_every=2,
        eval_prompts=6,
        save_steps=1,
        ref_update_every=2,
        progress=False,
    )
    return OnlineConfig(**{**base, **kw})


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model" / "model.safetensors"))


def test_end_to_end_and_exact_resume(tmp_path, tiny_model, feedback_files):
    """3 steps in one go == 1 step, then `resume` to 3: identical final weights on CPU."""
    full = run_online(_config(tmp_path / "full", tiny_model, feedback_files))
    assert full.steps == 3 and full.final.win_rate is not None
    run_online(_config(tmp_path / "cut", tiny_model, feedback_files, steps=1))
    resumed = run_online(_config(tmp_path / "cut", tiny_model, feedback_files, resume=True))
    assert resumed.steps == 3
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from anyfeedback.runs import read_metrics

    rows = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert "eval/win_rate" in rows[-1] and "train/kl_init" in rows[-1]
    # every online run directory: held-out samples at each evaluation, report and curves
    full_rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert full_rows[0]["eval/kl_start"] == 0.0 and full_rows[-1]["eval/kl_start"] > 0.0
    assert 0.0 <= full_rows[-1]["eval/repeat2"] <= 1.0 and full_rows[-1]["eval/distinct2"] > 0.0
    samples = read_metrics(tmp_path / "full" / "samples.jsonl")
    assert [r["step"] for r in samples] == [0] * 6 + [2] * 6 + [3] * 6
    assert samples[0]["completion"] == samples[0]["start"]
    assert {"prompt", "start_reward", "reward"} <= samples[-1].keys()
    for name in ("report.html", "reward_kl.png", "eval_reward.png", "summary.json"):
        assert (tmp_path / "full" / name).is_file(), name
    assert "degenerate" in (tmp_path / "full" / "report.html").read_text()


def test_bad_reward_stops_with_prompt_index_and_keeps_checkpoint(
    tmp_path, tiny_model, feedback_files, capsys
):
    """The 4th reward call (step 3) returns NaN for sample 1: the run stops naming the prompt
    index, exit code 2, and the checkpoint of step 2 is intact."""
    custom_rewards.CALLS["n"] = 0
    args = [
        "online",
        "--model",
        str(tiny_model),
        "--prompts",
        str(feedback_files["paired"]),
        "--out",
        str(tmp_path),
        "--reward",
        "custom_rewards:nan_from_fourth_call",
        "--steps",
        "4",
        "--prompts-per-step",
        "2",
        "--max-new-tokens",
        "8",
        "--eval-every",
        "0",
        "--eval-prompts",
        "4",
        "--save-steps",
        "1",
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "prompt index 1" in err[-1]
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.name.endswith("2")


def test_pmpo_r_small_beta_warns_and_detects_collapse(tmp_path, tiny_model, feedback_files):
    """Reject-only PMPO with β = 0.1 < 1 − α: the config warns, and a high learning rate makes
    the rejected log-probs fall while the KL to the start model grows: the detector fires."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_online(
            _config(
                tmp_path,
                tiny_model,
                feedback_files,
                alpha=0.0,
                beta=0.1,
                steps=4,
                learning_rate=2e-2,
                eval_every=0,
                save_steps=0,
                ref_update_every=0,
            )
        )
    kinds = {w.category for w in caught}
    assert BetaBelowBoundWarning in kinds
    assert result.collapsed and CollapseWarning in kinds


def test_online_config_errors():
    with pytest.raises(Exception, match="method"):
        cfg_of(method="ppo")
    with pytest.raises(Exception, match="k"):
        cfg_of(method="dpo", k=1)
    with pytest.raises(RewardError):
        raise RewardError("x")


def test_pmpo_r_kl_covers_every_sample_of_the_step():
    """PMPO-R (α = 0) on scores [0.1, 0.9, −0.3, 0.5]: labels [F, N, F, N]. All 4 samples go into
    the batch; only the 2 rejected enter the ℓ term, all 4 (the accepted and unlabelled ones
    too) the KL mean: StepCounts(records 4, accepted 0, rejected 2, kl 4). Every group tied
    (no label) gives no batch."""
    from anyfeedback.llm.objective import batch_counts, labelled_sets

    cfg = cfg_of(alpha=0.0)
    scores = [0.1, 0.9, -0.3, 0.5]
    labels = label_samples(scores, cfg)
    comps = [[10 + j] for j in range(4)]
    (batch,) = build_batches(cfg, [[1, 2]], comps, scores, labels, 0)
    assert batch.n_records == 4
    assert batch.labelled.tolist() == [T, F, T, F]
    acc, rej = labelled_sets(batch)
    assert acc.tolist() == [F, F, F, F] and rej.tolist() == [T, F, T, F]
    assert batch_counts(batch, "pmpo").tolist() == [4, 0, 2, 4]
    assert build_batches(cfg, [[1, 2]], comps, [0.0] * 4, [N] * 4, 0) == []


def test_shared_prompt_batches_by_hand_and_same_step(tiny_model, one_thread):
    """Prompts [1, 2] and [3] with 2 samples each (labels T, N | F, T): one row per prompt,
    views completion-major (samples 0, 2, then 1, 3), labels following them; runs of unequal
    size fall back to rows. A PMPO step on the shared rows gives the loss and gradients of
    the same step on one row per sample."""
    from anyfeedback.llm.batching import collate_shared_prompts
    from anyfeedback.llm.trainer import Trainer

    cfg = cfg_of(k=2, k_accept=1, k_reject=1)
    comps = [[10], [11, 12], [13, 14, 15], [16]]
    scores, labels = [0.5, 0.0, -1.0, 1.0], [T, N, F, T]
    (shared,) = build_batches(cfg, [[1, 2], [3]], comps, scores, labels, 0, share_prompt=True)
    (rows,) = build_batches(cfg, [[1, 2], [3]], comps, scores, labels, 0)
    assert shared.seqs.input_ids.tolist() == [[1, 2, 10, 11, 12], [3, 13, 14, 15, 16]]
    assert shared.seqs.rows.tolist() == [0, 1, 0, 1]
    assert shared.accepted.tolist() == [T, F, F, T] and shared.labelled.tolist() == [T, T, F, T]
    assert rows.seqs.input_ids.shape[0] == 4
    ragged = build_examples(cfg, [[1, 2], [3]], comps, scores, labels)[:3]
    assert collate_shared_prompts(ragged, 0) is None

    tcfg = OnlineConfig(model=str(tiny_model), prompts="p", k=2).train_config()
    got = []
    for batch in (rows, shared):
        trainer = Trainer(tcfg, total_steps=1)
        metrics = trainer.train_step([batch])
        got.append((metrics, [p.detach().clone() for p in trainer.policy.parameters()]))
    (m_rows, w_rows), (m_shared, w_shared) = got
    for key in ("loss", "kl", "logp_accepted", "logp_rejected", "grad_norm"):
        assert m_shared[key] == pytest.approx(m_rows[key], rel=1e-4, abs=1e-5), key
    for a, b in zip(w_rows, w_shared, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
