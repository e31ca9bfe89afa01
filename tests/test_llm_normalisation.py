"""Pooled normalisation (docs/algorithms.md#normalisation): PMPO's per-set means and KL mean are
over the whole optimizer step, so how a step is split into micro-batches or processes changes
neither its loss nor its gradient; per-token ℓ comes with the per-token KL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anyfeedback.losses import pmpo_loss

# 7 records: 3 accepted, 3 rejected, 1 unlabelled (a tie): micro-batch 1 = records 0–3
# (3 accepted, 1 rejected), micro-batch 2 = records 4–6 (0 accepted, 2 rejected, 1 unlabelled)
LABELS = [True, True, True, False, False, False, None]
SPLIT = 4


def test_pooled_parts_add_up_to_the_whole_step():
    """α = β = ½. Whole step: accepted ℓ [−1, −3], rejected ℓ [−2, −4, −6], KL [1, 2, 3, 3, 5]:
        L = −½·(−2) + ½·(−4) + ½·2.8 = 0.4.
    Part 1 (accepted [−1, −3], rejected [−2], KL [1, 2, 3]) with the step's N_a = 2, N_r = 3,
    N_KL = 5:  −½·(−4)/2 + ½·(−2)/3 + ½·6/5 = 1 − ⅓ + 0.6 = 19/15;
    part 2 (rejected [−4, −6], KL [3, 5]): ½·(−10)/3 + ½·8/5 = −5/3 + 4/5 = −13/15.
    19/15 − 13/15 = 0.4. The mean of the per-part means would be (1 + (−0.5))/2 = 0.25."""
    t = torch.tensor
    whole, _ = pmpo_loss(t([-1.0, -3.0]), t([-2.0, -4.0, -6.0]), t([1.0, 2, 3, 3, 5]))
    assert whole.item() == pytest.approx(0.4)
    pooled = dict(n_accepted=2, n_rejected=3, n_kl=5)
    p1, _ = pmpo_loss(t([-1.0, -3.0]), t([-2.0]), t([1.0, 2, 3]), **pooled)
    p2, _ = pmpo_loss(t([]), t([-4.0, -6.0]), t([3.0, 5.0]), **pooled)
    assert p1.item() == pytest.approx(19 / 15)
    assert p2.item() == pytest.approx(-13 / 15)
    own1, _ = pmpo_loss(t([-1.0, -3.0]), t([-2.0]), t([1.0, 2, 3]))
    own2, _ = pmpo_loss(t([]), t([-4.0, -6.0]), t([3.0, 5.0]))
    assert (own1.item() + own2.item()) / 2 == pytest.approx(0.25)  # what the old split gave


def test_pooled_global_normalisation_divides_by_every_sample():
    """`global`: (α·Σ_a − (1−α)·Σ_r)/N with N = the step's samples, labelled or not (here 5):
    part 2 alone gives −(0 − ½·(−10))/5 + ½·8/5 = −1 + 0.8 = −0.2."""
    t = torch.tensor
    p2, _ = pmpo_loss(
        t([]), t([-4.0, -6.0]), t([3.0, 5.0]), normalization="global", num_samples=5, n_kl=5
    )
    assert p2.item() == pytest.approx(-0.2)


def _records(tokenizer):
    from anyfeedback.llm.data import Example

    gen = torch.Generator().manual_seed(3)
    out = []
    for i, label in enumerate(LABELS):
        prompt = torch.randint(5, 300, (3 + i % 3,), generator=gen).tolist()
        completion = torch.randint(5, 300, (2 + (i * 2) % 5,), generator=gen).tolist()
        out.append(Example(prompt, (completion + [tokenizer.eos_token_id],), label))
    return out


def _step(cfg, parts: list[list[int]]):
    """One PMPO step of a fresh trainer on the micro-batches `parts` (record indices): the
    step's loss and the gradient the optimizer saw (flattened)."""
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.trainer import Trainer

    trainer = Trainer(cfg, total_steps=1)
    records = _records(trainer.tokenizer)
    pad = trainer.tokenizer.pad_token_id
    seen = {}
    inner = trainer.optimizer.step

    def step(*args, **kwargs):
        seen["grad"] = torch.cat([p.grad.flatten() for p in trainer.policy.parameters()])
        return inner(*args, **kwargs)

    trainer.optimizer.step = step
    batches = [collate_unpaired([records[i] for i in part], pad) for part in parts]
    metrics = trainer.train_step(batches)
    return metrics, seen["grad"].clone()


def _cfg(tiny_model, out, **fields):
    from anyfeedback.llm import TrainConfig

    values = dict(
        model=str(tiny_model),
        data="<test>",
        method="pmpo",
        alpha=0.5,
        beta=0.5,
        out=str(out),
        max_grad_norm=0.0,
        save_steps=0,
        progress=False,
    )
    return TrainConfig(**{**values, **fields})


def test_two_micro_batches_with_different_label_ratios_equal_one(tiny_model, tmp_path, one_thread):
    """Records 0–3 (3 accepted, 1 rejected) and 4–6 (2 rejected, 1 unlabelled) as two
    micro-batches give the one-micro-batch loss and gradient (the old mean of micro-batch
    means weighed the lone accepted-free micro-batch's rejected set 3× too much)."""
    cfg = _cfg(tiny_model, tmp_path)
    one, g1 = _step(cfg, [list(range(7))])
    two, g2 = _step(cfg, [list(range(SPLIT)), list(range(SPLIT, 7))])
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    torch.testing.assert_close(g2, g1, atol=1e-6, rtol=1e-4)


def test_mean_reduction_uses_the_per_token_kl(tiny_model, tmp_path, one_thread):
    """`--logp-reduction mean`: the KL term (and the reported kl) is Σ_t KL / T per sequence,
    the same per-token scale as ℓ; with sum it is Σ_t KL. Checked on a step after which the
    policy has moved from π_ref (the first step's KL is 0)."""
    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.objective import compute_loss
    from anyfeedback.llm.sequence_stats import policy_stats
    from anyfeedback.llm.trainer import Trainer

    cfg = _cfg(tiny_model, tmp_path, logp_reduction="mean", learning_rate=1e-2)
    trainer = Trainer(cfg, total_steps=2)
    batch = collate_unpaired(_records(trainer.tokenizer), trainer.tokenizer.pad_token_id)
    trainer.train_step([batch])
    with torch.no_grad():
        _, metrics = compute_loss(trainer.model, trainer.ref, batch, cfg)
        sum_cfg = _cfg(tiny_model, tmp_path, logp_reduction="sum")
        _, kl, counts = policy_stats(
            trainer.model, batch.seqs, sum_cfg, trainer.ref.scored_states(batch.seqs)
        )
    assert kl.mean().item() > 1e-4
    assert metrics["kl"].item() == pytest.approx((kl / counts).mean().item(), rel=1e-5)
    assert metrics["kl"].item() < kl.mean().item()


def ddp_worker(tiny_model: str, out: str) -> None:
    """One of 2 gloo processes: rank r trains on micro-batch r of the 2-way split; rank 0
    writes the step's loss and gradient."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    cfg = _cfg(tiny_model, out)
    parts = [list(range(SPLIT)), list(range(SPLIT, 7))]
    metrics, grad = _step(cfg, [parts[rank]])
    if rank == 0:
        torch.save({"loss": metrics["loss"], "grad": grad}, Path(out) / "ddp.pt")
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_equal_one(tiny_model, tmp_path, one_thread):
    """2 processes, one micro-batch each (different label ratios), one all-reduce of the
    counts: the same loss and gradient as one process with one micro-batch."""
    from test_llm_ddp import _free_port

    port = _free_port()
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from test_llm_normalisation import ddp_worker; "
        f"ddp_worker({str(tiny_model)!r}, {str(tmp_path)!r})"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", WORLD_SIZE="2")
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    logs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt")
    one, g1 = _step(_cfg(tiny_model, tmp_path), [list(range(7))])
    assert ddp["loss"] == pytest.approx(one["loss"], abs=1e-5)
    torch.testing.assert_close(ddp["grad"], g1, atol=1e-6, rtol=1e-4)
