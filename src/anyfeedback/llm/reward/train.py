"""`train_reward(cfg)`: fit r_φ with the Bradley–Terry loss, report held-out pairwise accuracy.

setup (pairs checked, held-out split, backbone + scalar head) → for each step: a batch of pairs
→ r(chosen), r(rejected) in one forward → `bradley_terry_loss` → AdamW → log → held-out
accuracy every --eval-every → atomic checkpoint every --save-steps → save_pretrained to OUT/model,
metrics.png, report.md.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from anyfeedback.feedback.checks import load_pairs
from anyfeedback.llm.reward.config import RewardConfig
from anyfeedback.llm.reward.model import load_reward_model, pair_accuracy, score
from anyfeedback.losses import bradley_terry_loss
from anyfeedback.runs import MetricsLog, atomic_write_json, atomic_write_text, plot_metrics
from anyfeedback.runs import progress as progress_bar


@dataclass
class RewardResult:
    out: Path
    model_dir: Path
    steps: int
    start_accuracy: float
    accuracy: float
    eval_loss: float
    n_train: int
    n_eval: int


def split_pairs(cfg: RewardConfig):
    """(train pairs, held-out pairs): --eval-data, or the last --eval-fraction of --data."""
    pairs = load_pairs(cfg.data)
    if cfg.eval_data:
        return pairs, load_pairs(cfg.eval_data)
    n_eval = max(1, round(len(pairs) * cfg.eval_fraction))
    if len(pairs) - n_eval < 1:
        from anyfeedback.errors import InputError

        raise InputError(f"{len(pairs)} pairs: too few to hold out {n_eval}", source=cfg.data)
    return pairs[:-n_eval], pairs[-n_eval:]


def bt_step(model, tok, batch, optimizer, *, max_length: int, max_grad_norm: float, clip=0.0):
    """One Bradley–Terry step on `batch` (pairs): returns (loss, train accuracy, margin)."""
    n = len(batch)
    r = score(
        model,
        tok,
        [p.prompt for p in batch] * 2,
        [p.chosen for p in batch] + [p.rejected for p in batch],
        max_length=max_length,
        clip=clip,
    )  # [2n]
    loss, d = bradley_terry_loss(r[:n], r[n:])
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), float(d.accuracy), float(d.margin)


def train_reward(cfg: RewardConfig) -> RewardResult:
    from anyfeedback.llm.checkpoint import intact_checkpoint, save_checkpoint, save_final_model
    from anyfeedback.run_dir import check_resume_config
    from anyfeedback.runs import debug_sigkill

    out = Path(cfg.out)
    resume_from = None
    if cfg.resume:  # length may grow: the schedule is constant and the data order per epoch
        free = ("out", "resume", "overwrite", "save_steps", "progress", "max_steps", "num_epochs")
        check_resume_config(out / "config.json", cfg.to_dict(), ignore=free)
        resume_from = intact_checkpoint(out / "checkpoints")
    train_pairs, eval_pairs = split_pairs(cfg)
    model, tok = load_reward_model(cfg.model, seed=cfg.seed)
    total = (
        cfg.max_steps
        if cfg.max_steps > 0
        else max(1, cfg.num_epochs * (len(train_pairs) // min(cfg.batch_size, len(train_pairs))))
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    rng = random.Random(cfg.seed)
    order: list[int] = []
    start_acc, start_loss = pair_accuracy(model, tok, eval_pairs, max_length=cfg.max_length)
    acc, eval_loss = start_acc, start_loss
    log = MetricsLog(out / "metrics.jsonl")
    first = _resume(resume_from, model, optimizer, scheduler, rng, order)
    if first:
        log.truncate_after(first)
    else:
        log.log(0, **{"eval/accuracy": start_acc, "eval/loss": start_loss})
    model.train()
    try:
        with progress_bar("reward", total, disable=not cfg.progress) as (bar, task):
            bar.update(task, completed=first)
            for step in range(first + 1, total + 1):
                t0 = time.perf_counter()
                if len(order) < cfg.batch_size:  # next epoch: a fresh seeded permutation
                    perm = list(range(len(train_pairs)))
                    rng.shuffle(perm)
                    order += perm
                batch = [train_pairs[i] for i in order[: cfg.batch_size]]
                del order[: cfg.batch_size]
                loss, train_acc, margin = bt_step(
                    model,
                    tok,
                    batch,
                    optimizer,
                    max_length=cfg.max_length,
                    max_grad_norm=cfg.max_grad_norm,
                )
                scheduler.step()
                row = {
                    "loss": loss,
                    "accuracy": train_acc,
                    "margin": margin,
                    "step_time_s": time.perf_counter() - t0,
                }
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
                    acc, eval_loss = pair_accuracy(
                        model, tok, eval_pairs, max_length=cfg.max_length
                    )
                    row.update({"eval/accuracy": acc, "eval/loss": eval_loss})
                log.log(step, **row)
                bar.update(task, advance=1, info=f"loss {loss:.3f} held-out acc {acc:.3f}")
                if cfg.save_steps and step % cfg.save_steps == 0:
                    save_checkpoint(
                        out / "checkpoints",
                        step,
                        policy=model,
                        reference_state={},
                        optimizer=optimizer,
                        scheduler=scheduler,
                        state={"step": step, "order": order, "data_rng": rng.getstate()},
                        keep=2,
                    )
                debug_sigkill(step)
    finally:
        log.close()
    if not cfg.eval_every:
        acc, eval_loss = pair_accuracy(model, tok, eval_pairs, max_length=cfg.max_length)
    model_dir = save_final_model(model, tok, out / "model", merge_lora=False)
    result = RewardResult(
        out, model_dir, total, start_acc, acc, eval_loss, len(train_pairs), len(eval_pairs)
    )
    _write_outputs(out, result)
    from anyfeedback.llm.card import write_run_card

    scores = {"eval/accuracy": acc, "eval/loss": eval_loss}
    write_run_card(model_dir, cfg.to_dict(), method="reward-model", steps=total, metrics=scores)
    return result


def _resume(ckpt, model, optimizer, scheduler, rng: random.Random, order: list[int]) -> int:
    """Restore a checkpoint (weights, optimizer, RNGs, the data order); return its step."""
    if ckpt is None:
        return 0
    from anyfeedback.llm.checkpoint import load_training_state, load_weights

    load_weights(ckpt, model)
    state = load_training_state(ckpt, optimizer, scheduler)
    version, internal, gauss = state["data_rng"]
    rng.setstate((version, tuple(internal), gauss))
    order[:] = state["order"]
    return int(state["step"])


def _write_outputs(out: Path, r: RewardResult) -> None:
    from anyfeedback.runs import read_metrics

    rows = read_metrics(out / "metrics.jsonl")
    plot_metrics(
        rows,
        ["loss", "accuracy", "eval/accuracy", "eval/loss"],
        out / "metrics.png",
        title="Bradley–Terry reward model",
    )
    summary = {
        "steps": r.steps,
        "train_pairs": r.n_train,
        "eval_pairs": r.n_eval,
        "eval_accuracy_start": r.start_accuracy,
        "eval_accuracy": r.accuracy,
        "eval_loss": r.eval_loss,
        "model": str(r.model_dir),
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(
        out / "report.md",
        (
            "# Reward model (Bradley–Terry)\n\n"
            f"- {r.n_train} training pairs, {r.n_eval} held-out pairs, {r.steps} steps\n"
            f"- held-out pairwise accuracy: {r.start_accuracy:.3f} at the start → "
            f"**{r.accuracy:.3f}** (chance 0.5); held-out BT loss {r.eval_loss:.4f}\n"
            f"- model (HF format): `{r.model_dir}`; use it as `--reward {r.model_dir}`\n\n"
            "![metrics](metrics.png)\n"
        ),
    )
