"""`anyfeedback aihf` (Algorithm 1) and `anyfeedback self-play` on the tiny Llama: the order of
Algorithm 1 (policy steps, then agent samples drawn — not greedy — from the latest policy on the
demos' prompts, then the reward step), the special cases at the loop level (w_D = 0 reward step ≡
the `anyfeedback reward` BT step; w_P = 0 is ML-IRL; self-play batches ≡ DPO / SPIN), few-step
end-to-end runs of each command, and one-line errors (exit 2) for bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from anyfeedback.cli import main
from conftest_llm import *  # noqa: F403
from conftest_llm import write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(
    iterations=2,
    policy_steps=2,
    prompts_per_step=2,
    k=2,
    learning_rate=1e-3,
    reward_learning_rate=1e-3,
    reward_batch_size=4,
    max_new_tokens=6,
    progress=False,
)


def _cfg(tiny_model, feedback_files, tmp_path, **fields):
    from anyfeedback.llm.aihf.config import AIHFConfig

    values = dict(
        model=str(tiny_model),
        demos=str(feedback_files["demos"]),
        pairs=str(feedback_files["paired"]),
        out=str(tmp_path / "aihf"),
        **FAST,
    )
    values.update(fields)
    return AIHFConfig(**values)


def test_algorithm1_order_agent_samples_from_latest_policy(
    tiny_model, feedback_files, tmp_path, monkeypatch
):
    from anyfeedback.llm import generate
    from anyfeedback.llm.aihf import loop

    real, calls = generate.sample_completions, []

    def spy(model, tok, ids, **kw):
        original = model.generate

        def gen(*a, **k):
            calls.append((id(model), k["do_sample"], kw["k"]))
            return original(*a, **k)

        model.generate = gen
        try:
            return real(model, tok, ids, **kw)
        finally:
            del model.generate

    monkeypatch.setattr(generate, "sample_completions", spy)
    trace: list = []
    loop.run_aihf(_cfg(tiny_model, feedback_files, tmp_path), trace=trace)
    kinds = [e[0] for e in trace]
    assert kinds == ["policy_step", "policy_step", "agent_samples", "reward_step"] * 2
    # the agent samples are drawn after the k-th iteration's policy steps (π_{k+1}) ...
    assert [e[1] for e in trace if e[0] == "agent_samples"] == [2, 4]
    # ... for the demo batch's own prompts, by sampling, from the policy being trained
    demos = [json.loads(x) for x in feedback_files["demos"].read_text().splitlines()]
    assert all(len(e[2]) == 4 for e in trace if e[0] == "agent_samples")
    assert len(demos) == 64
    assert all(do_sample for _, do_sample, _ in calls)
    assert len({m for m, _, _ in calls}) == 1  # one policy module: RL samples and y^A alike
    assert [k for _, _, k in calls] == [2, 2, 1, 2, 2, 1]


def test_reward_step_special_cases(tiny_model, feedback_files, tmp_path):
    """w_D = 0: one AIHF reward step moves the reward model exactly like `anyfeedback reward`'s
    Bradley–Terry step on the same pairs; w_P = 0: the loss is the demo term alone (ML-IRL)."""
    from anyfeedback.llm.aihf.loop import AIHF
    from anyfeedback.llm.prompts import prompts_for_step
    from anyfeedback.llm.reward.model import load_reward_model
    from anyfeedback.llm.reward.train import bt_step

    cfg = _cfg(tiny_model, feedback_files, tmp_path, demo_weight=0.0)
    run = AIHF(cfg)
    run.reward_step(0, 0)
    rm, tok = load_reward_model(str(tiny_model), seed=cfg.seed)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.reward_learning_rate, weight_decay=0.0)
    idx = prompts_for_step(len(run.data.pairs), cfg.reward_batch_size, 0, cfg.seed + 2)
    bt_step(
        rm,
        tok,
        [run.data.pairs[i] for i in idx],
        opt,
        max_length=cfg.max_length,
        max_grad_norm=1.0,
        clip=cfg.reward_clip,
    )
    for a, b in zip(run.rm.parameters(), rm.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    irl = AIHF(_cfg(tiny_model, feedback_files, tmp_path, pref_weight=0.0, demo_mode="irl_linear"))
    m = irl.reward_step(0, 0)
    assert math.isnan(m["reward/pref_term"])
    assert m["reward/loss"] == pytest.approx(m["reward/demo_term"], abs=1e-6)
    assert m["reward/demo_term"] == pytest.approx(-m["reward/demo_minus_sample"], abs=1e-5)


def test_self_play_batches_are_dpo_and_spin(tiny_model, feedback_files):
    """self-play-aihf batch loss: pairs only ≡ `dpo_batch_loss`; demos + π_t samples only ≡
    `spin_loss` on the demo/sample views (reference π_t)."""
    from anyfeedback.llm import TrainConfig
    from anyfeedback.llm.batching import collate_pairs
    from anyfeedback.llm.data import encode_records
    from anyfeedback.llm.model import load_policy, load_tokenizer
    from anyfeedback.llm.objective import dpo_batch_loss, self_play_aihf_batch_loss
    from anyfeedback.llm.records import load_dataset
    from anyfeedback.llm.reference import Reference
    from anyfeedback.llm.sequence_stats import ref_logps
    from anyfeedback.losses import spin_loss, token_logps_and_kl

    cfg = TrainConfig(model=str(tiny_model), data="x", method="self-play-aihf", beta=0.1)
    tok = load_tokenizer(cfg)
    torch.manual_seed(0)
    policy = load_policy(cfg)
    ref = Reference(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    pad = tok.pad_token_id
    pairs = encode_records(
        tok, load_dataset(str(feedback_files["paired"])).records[:4], "paired", max_length=128
    ).examples
    demos = encode_records(
        tok, load_dataset(str(feedback_files["demos"])).records[:4], "demonstration", max_length=128
    ).examples
    b = collate_pairs(pairs, pad)
    a = self_play_aihf_batch_loss(policy, ref, b, cfg)[0]
    assert a.item() == pytest.approx(dpo_batch_loss(policy, ref, b, cfg)[0].item(), abs=1e-6)
    samples = [p.completion_ids[1] for p in pairs]  # stand-ins for y' ∼ π_t
    b = collate_pairs([], pad, demos=demos, ref_samples=samples)
    a = self_play_aihf_batch_loss(policy, ref, b, cfg)[0]
    from anyfeedback.llm.model import completion_logits

    labels, mask = b.seqs.kept()
    lp = token_logps_and_kl(completion_logits(policy, b.seqs), labels, mask)[0]
    rl = ref_logps(ref, b.seqs, cfg)
    expected = spin_loss(lp[:4], lp[4:], rl[:4], rl[4:], lam=0.1)[0]
    assert a.item() == pytest.approx(expected.item(), abs=1e-6)


def test_commands_end_to_end(tiny_model, feedback_files, tmp_path):
    """aihf (both demo modes), RLHF = aihf with a trained reward model frozen, self-play and
    SPIN: a few steps each; every run leaves config, metrics, plot, report and its models."""
    common = [
        "--model",
        str(tiny_model),
        "--demos",
        str(feedback_files["demos"]),
        "--pairs",
        str(feedback_files["paired"]),
        "--learning-rate",
        "1e-3",
        "--max-new-tokens",
        "6",
        "--eval-prompts",
        str(feedback_files["demos"]),
        "--eval-size",
        "4",
        "--gold-reward",
        "sentiment",
        "--no-progress",
    ]
    aihf = [
        "aihf",
        *common,
        "--iterations",
        "2",
        "--policy-steps",
        "1",
        "--prompts-per-step",
        "2",
        "--k",
        "2",
        "--reward-batch-size",
        "4",
        "--eval-pairs",
        str(feedback_files["paired"]),
    ]
    out = tmp_path / "aihf"
    assert main([*aihf, "--out", str(out), "--demo-mode", "irl_linear", "--save-steps", "2"]) == 0
    for name in ("config.json", "metrics.jsonl", "metrics.png", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "policy" / "config.json").is_file()
    assert (out / "reward_model" / "config.json").is_file()
    assert (out / "checkpoints" / "step-000002").is_dir()
    final = json.loads((out / "summary.json").read_text())["final"]
    assert {"eval/gold_reward", "eval/kl_to_start", "eval/rm_accuracy"} <= set(final)
    rlhf = tmp_path / "rlhf"
    assert (
        main(
            [
                *aihf,
                "--out",
                str(rlhf),
                "--reward-model",
                str(out / "reward_model"),
                "--reward-updates",
                "0",
                "--demo-weight",
                "0",
            ]
        )
        == 0
    )
    before = (out / "reward_model" / "model.safetensors").read_bytes()
    assert (rlhf / "reward_model" / "model.safetensors").read_bytes() == before  # frozen
    for pref in ("1", "0"):  # Self-Play AIHF, then SPIN
        sp = tmp_path / f"self-play-{pref}"
        code = main(
            [
                "self-play",
                *common,
                "--out",
                str(sp),
                "--pref-weight",
                pref,
                "--iterations",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "32",
            ]
        )
        assert code == 0
        rows = [json.loads(x) for x in (sp / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["iteration"] == 2 and "eval/gold_reward" in rows[-1]
        assert (sp / "model" / "config.json").is_file() and (sp / "report.md").is_file()


@pytest.mark.parametrize(
    ("command", "extra", "expect"),
    [
        ("aihf", ["--demo-weight", "0", "--pref-weight", "0"], "both 0"),
        ("self-play", ["--demo-weight", "0", "--pref-weight", "0"], "both 0"),
        ("aihf", ["--beta", "-0.1"], "field 'beta': must be >= 0"),
        ("self-play", ["--beta", "-1"], "field 'beta': must be >= 0"),
        ("aihf", ["--demos", "PROMPTS"], "field 'completion': missing"),
        ("aihf", ["--pairs", "SAME"], "chosen and rejected are identical"),
        ("self-play", ["--pairs", "SAME"], "chosen and rejected are identical"),
    ],
)
def test_bad_inputs_exit_2_one_line(
    tiny_model, feedback_files, tmp_path, capsys, command, extra, expect
):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "a b"}] * 3)
    same = write_jsonl(
        tmp_path / "same.jsonl",
        [
            {"prompt": "p", "chosen": "x", "rejected": "y"},
            {"prompt": "p", "chosen": "x", "rejected": "x"},
        ],
    )
    extra = [{"PROMPTS": str(prompts), "SAME": str(same)}.get(x, x) for x in extra]
    args = [
        command,
        "--model",
        str(tiny_model),
        "--demos",
        str(feedback_files["demos"]),
        "--pairs",
        str(feedback_files["paired"]),
        "--out",
        str(tmp_path / "o"),
        *extra,
    ]
    assert main(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and expect in err[0], err


def test_rloo_batch_penalises_the_dense_kl_to_the_frozen_reference(tiny_model):
    """The RLOO step's KL is Σ_t KL(π_θ‖π_ref) dense over the vocabulary along each sample,
    with π_ref the *start* model (never the sampling policy), in R = r − β·sg(KL) and as the
    differentiable term β·mean KL (`rloo_dense_kl_loss`)."""
    from anyfeedback.llm import TrainConfig
    from anyfeedback.llm.batching import collate_samples
    from anyfeedback.llm.model import completion_logits, load_policy
    from anyfeedback.llm.objective import rloo_batch_loss
    from anyfeedback.llm.reference import Reference
    from anyfeedback.losses import rloo_dense_kl_loss, token_logps_and_kl

    cfg = TrainConfig(model=str(tiny_model), data="x", method="rloo", beta=0.5)
    torch.manual_seed(0)
    policy = load_policy(cfg)
    ref = Reference(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = collate_samples(
        [[1, 5, 7], [1, 9]],
        [[11, 13], [17, 2], [19, 23, 2], [29]],
        [1.0, 0.0, 0.5, 0.2],
        2,
        pad_id=0,
    )
    loss, m = rloo_batch_loss(policy, ref, batch, cfg)
    labels, mask = batch.seqs.kept()
    logits = completion_logits(policy, batch.seqs)
    lp = token_logps_and_kl(logits, labels, mask)[0]
    # reverse KL by swapping the roles: KL(π_θ‖π_ref) = "ref" π_θ, "policy" π_ref
    kl = token_logps_and_kl(ref.logits(batch.seqs), labels, mask, logits.detach())[1]
    assert m["kl_reverse"].item() == pytest.approx(kl.mean().item(), abs=1e-5)
    assert kl.min() > 1e-5  # the policy moved away from π_ref
    expected = rloo_dense_kl_loss(lp, torch.tensor([1.0, 0.0, 0.5, 0.2]), kl, k=2, beta=0.5)[0]
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_train_aihf_dpo_weights_both_zero_is_an_error():
    from anyfeedback.errors import InputError
    from anyfeedback.llm import TrainConfig

    with pytest.raises(InputError, match="both 0"):
        TrainConfig(model="m", data="d", method="aihf-dpo", demo_weight=0.0, pref_weight=0.0)
    with pytest.raises(InputError, match="anyfeedback aihf"):
        from anyfeedback.llm.records import for_method

        for_method("rloo", None)
