"""`run_online(cfg)`: the online alignment loop (PMPO §7.4), read top to bottom.

setup (start model, trainer, reward, prompts, sampler) → for each step: prompts → sample K each
from π_θ (or π_ref: --sample-from) → reward → labels → one optimizer step (the offline trainer's
`train_step`, so losses, π_ref refresh, finite checks and checkpoints are the same code) →
metrics → held-out evaluation → checkpoint. Resume is exact: the prompts and the sampling seeds
of a step are pure functions of the step, and the trainer's checkpoint restores weights, π_ref,
optimizer and RNG.

Under `accelerate launch` (DDP) every process runs this same code on its share of the step
(`anyfeedback.llm.online.shard`): it samples, scores and labels its chunks of prompt groups, the step
is gathered, each process trains on as many of the step's micro-batches, and metrics are those of
the whole step (KL to the start model over every process's samples, tokens/s as totals). Held-out
evaluation is sharded the same way. Only process 0 writes config, metrics, checkpoints and the
model, and shows the progress bar.

Every run directory gets `samples.jsonl` (the held-out completions of the start and the current
model at each evaluation), `report.html` and PNG curves (`anyfeedback.llm.online.report`),
including held-out reward against KL to the start model and the degeneration indicators.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from anyfeedback.errors import DivergenceError, InputError
from anyfeedback.feedback import flat_text
from anyfeedback.llm.checkpoint import intact_checkpoint
from anyfeedback.llm.online.backends import make_sampler, resolve_backend
from anyfeedback.llm.online.config import OnlineConfig
from anyfeedback.llm.online.shard import Dist, chunk_plan, sample_and_score
from anyfeedback.llm.online.steps import (
    CollapseDetector,
    Evaluation,
    StartKL,
    build_batches,
    evaluate,
    label_samples,
)
from anyfeedback.llm.prompts import (
    by_length_for_sampling,
    encode_prompts,
    load_prompt_source,
    prompts_for_step,
)
from anyfeedback.llm.state_tap import tap_policy_states
from anyfeedback.llm.trainer import Trainer, seed_everything
from anyfeedback.rewards import load_reward
from anyfeedback.run_dir import check_resume_config
from anyfeedback.runs import (
    MetricsLog,
    atomic_write_json,
    debug_sigkill,
    progress,
)

# --stop-on-collapse: a held-out win rate against the start model below this is a collapse (the
# trained policy loses to where it started on 9 prompts in 10).
COLLAPSE_WIN_RATE = 0.1
# Fields `--resume` may change; `steps` extends the run exactly (the online schedule is constant).
RESUME_FREE = ("out", "resume", "overwrite", "save_steps", "progress", "steps", "stop_on_collapse")


class CollapseWarning(UserWarning):
    """The rejected log-probs keep falling while the KL grows (docs/algorithms.md#online-loop)."""


@dataclass
class OnlineResult:
    out: Path
    steps: int
    start: Evaluation
    final: Evaluation
    eval_prompts: list[str]
    collapsed: bool


def load_prompts(cfg: OnlineConfig) -> tuple[list, list]:
    """(training prompts, held-out prompts): the last `eval_prompts` distinct prompts held out."""
    unique = load_prompt_source(cfg.prompts)
    if len(unique) <= cfg.eval_prompts:
        raise InputError(
            f"{len(unique)} distinct prompts: need more than --eval-prompts ({cfg.eval_prompts})",
            source=cfg.prompts,
        )
    return unique[: -cfg.eval_prompts or None], unique[len(unique) - cfg.eval_prompts :]


def _frozen_copy(model):
    start = copy.deepcopy(model).eval()
    for p in start.parameters():
        p.requires_grad_(False)
    return start


def _trainer_and_start(tcfg, total: int, resume):
    """The trainer (resumed from `resume` if given) and a frozen copy of the start model."""
    from anyfeedback.llm.model import load_policy

    seed_everything(tcfg.seed)  # LoRA's initialisation
    policy = load_policy(tcfg)
    start_model = _frozen_copy(policy)  # π_start, for KL and win rate
    trainer = Trainer(tcfg, total_steps=total, model=policy, resume_from=resume)
    return trainer, start_model.to(trainer.accelerator.device)


def run_online(cfg: OnlineConfig) -> OnlineResult:
    out = Path(cfg.out)
    if cfg.resume:
        check_resume_config(out / "config.json", cfg.to_dict(), ignore=RESUME_FREE)
    tcfg = cfg.train_config()  # validates; warns if β < 1 − α
    backend = resolve_backend(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    train_prompts, eval_prompts = load_prompts(cfg)
    reward = load_reward(cfg.reward)
    resume = intact_checkpoint(out / "checkpoints") if cfg.resume else None
    trainer, start_model = _trainer_and_start(tcfg, cfg.steps, resume)
    dist, tok = Dist.of(trainer.accelerator), trainer.tokenizer
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
    eval_ids = encode_prompts(tok, eval_prompts)
    eval_texts = [flat_text(p) for p in eval_prompts]
    start = evaluate(start_model, tok, eval_ids, eval_texts, reward, cfg, dist=dist)

    def held_out():  # the policy on the held-out prompts, against the start model
        return evaluate(
            trainer.policy,
            tok,
            eval_ids,
            eval_texts,
            reward,
            cfg,
            baseline=start,
            dist=dist,
            start_model=start_model,
            tcfg=tcfg,
        )

    train_ids = encode_prompts(tok, train_prompts)
    sampler = make_sampler(backend, trainer, cfg)
    log = MetricsLog(out / "metrics.jsonl") if dist.main else None
    samples = MetricsLog(out / "samples.jsonl") if dist.main else None
    if log is not None and resume is not None:
        log.truncate_after(trainer.step)
        samples.truncate_after(trainer.step)
    elif log is not None:
        log.log(0, **eval_row(start, start), processes=dist.world)
        log_samples(samples, 0, eval_texts, start, start)
    detector = CollapseDetector()
    share = cfg.share_prompt and cfg.method in ("pmpo", "dpo") and trainer.shared_prompt_ok()
    run = _Run(
        cfg,
        tcfg,
        trainer,
        start_model,
        reward,
        sampler,
        train_ids,
        train_prompts,
        dist,
        detector,
        share,
    )
    show = cfg.progress and dist.main
    last = None  # the held-out evaluation of the final step, when the loop made one
    try:
        with progress(f"online {cfg.method}", cfg.steps, disable=not show) as (bar, task):
            bar.update(task, completed=trainer.step)
            while trainer.step < cfg.steps:
                row = _one_step(run)
                step = trainer.step
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    ev = held_out()
                    row.update(eval_row(ev, start))
                    log_samples(samples, step, eval_texts, start, ev)
                    last = ev if step == cfg.steps else None
                if log is not None:
                    log.log(step, **row)
                _stop_on_collapse(cfg, row, step)
                bar.update(task, advance=1, info=f"reward {row['train/reward_mean']:+.3f}")
                if cfg.save_steps and step % cfg.save_steps == 0:
                    trainer.save_checkpoint(out)
                debug_sigkill(step)
    finally:
        for f in (log, samples):
            if f is not None:
                f.close()
    final = last if last is not None else held_out()
    trainer.save_model(out / "model")
    if dist.main:
        from anyfeedback.llm.card import write_run_card

        scores = {"eval/reward_mean": final.reward_mean, "eval/win_rate": final.win_rate}
        write_run_card(
            out / "model", cfg.to_dict(), method=cfg.method, steps=trainer.step, metrics=scores
        )
    from anyfeedback.llm.fit import close_process_group

    close_process_group(trainer)
    result = OnlineResult(out, trainer.step, start, final, eval_texts, detector.fired)
    if dist.main:
        from anyfeedback.llm.online.report import write_run_report

        write_run_report(result, cfg)
    return result


def eval_row(ev: Evaluation, start: Evaluation) -> dict:
    """Metrics of one held-out evaluation (the start model's own: win rate ½, KL 0)."""
    return {
        "eval/reward_mean": ev.reward_mean,
        "eval/win_rate": 0.5 if ev is start else ev.win_rate,
        "eval/kl_start": ev.kl_start,
        **{f"eval/{k}": v for k, v in ev.degeneration.items()},
    }


def log_samples(samples, step: int, prompts: list[str], start: Evaluation, ev: Evaluation):
    """One `samples.jsonl` row per held-out prompt: the start model's and the current model's
    completion and reward at this evaluation (process 0 only: `samples` is None elsewhere)."""
    if samples is None:
        return
    for i, prompt in enumerate(prompts):
        samples.log(
            step,
            prompt=prompt,
            start=start.texts[i],
            start_reward=start.rewards[i],
            completion=ev.texts[i],
            reward=ev.rewards[i],
        )


@dataclass
class _Run:
    """What every step of one `run_online` call uses (fixed for the run)."""

    cfg: OnlineConfig
    tcfg: object  # PolicyStepConfig
    trainer: Trainer
    start_model: object  # frozen π_start
    reward: object
    sampler: object
    train_ids: list[list[int]]
    train_prompts: list
    dist: Dist
    detector: CollapseDetector
    share: bool  # --share-prompt, where the method and the model allow it


def _one_step(run: _Run):
    """Sample → score → label → update for one step; returns the step's metrics row."""
    cfg, tcfg, trainer, dist = run.cfg, run.tcfg, run.trainer, run.dist
    train_ids, detector = run.train_ids, run.detector
    step = trainer.step
    idx = prompts_for_step(len(train_ids), cfg.prompts_per_step, step, cfg.seed)
    calls = len(chunk_plan(len(idx), cfg.k, cfg.generation_batch_size, dist.world))
    idx = by_length_for_sampling(idx, train_ids, calls)
    prompt_ids = [train_ids[i] for i in idx]
    got = sample_and_score(
        run.sampler,
        prompt_ids,
        [flat_text(run.train_prompts[i]) for i in idx],
        run.reward,
        k=cfg.k,
        seed=cfg.seed * 7_919 + step,
        rows=cfg.generation_batch_size,
        dist=dist,
        label=lambda scores: label_samples(scores, cfg),
    )
    scores, labels = got.scores, got.labels
    pad = trainer.tokenizer.pad_token_id
    batches = build_batches(
        cfg, prompt_ids, got.completion_ids, scores, labels, pad, dist, share_prompt=run.share
    )
    row = {
        "train/reward_mean": sum(scores) / len(scores),
        "train/reward_accepted": _mean([s for s, lab in zip(scores, labels, strict=True) if lab]),
        "train/reward_rejected": _mean(
            [s for s, lab in zip(scores, labels, strict=True) if lab is False]
        ),
        "train/n_accepted": sum(lab is True for lab in labels),
        "train/n_rejected": sum(lab is False for lab in labels),
        "gen/new_tokens": got.new_tokens,
        "gen/tokens_per_s": got.tokens_per_second,
    }
    if not batches:  # every group tied (the same on every process): no preference signal
        trainer.state["step"] = step + 1
        return {**row, "train/skipped": 1}
    t0 = time.perf_counter()
    # from the update's own policy forward (and π_ref's, while π_ref is π_start)
    start_kl = StartKL(run.start_model, tcfg, ref_is_start=trainer.ref.exact_initial_copy)
    with tap_policy_states(start_kl):
        metrics = trainer.train_step(batches)
    metrics = trainer.timing_metrics(metrics, time.perf_counter() - t0)
    kl_start, kl_token = start_kl.result(dist)
    row.update({f"train/{k}": v for k, v in metrics.items()})
    row["train/kl_init"], row["train/kl_init_per_token"] = kl_start, kl_token
    if detector.update(metrics.get("logp_rejected", float("nan")), kl_start, kl_token):
        if dist.main:
            warnings.warn(
                f"step {step + 1}: the rejected samples' log-prob keeps falling while the KL to "
                f"the start model grows (collapse; docs/algorithms.md#pmpo): alpha={cfg.alpha}, "
                f"beta={tcfg.beta}",
                CollapseWarning,
                stacklevel=2,
            )
        row["train/collapse_detected"] = 1
    return row


def _stop_on_collapse(cfg, row: dict, step: int) -> None:
    """--stop-on-collapse: raise before this step's state is checkpointed."""
    win = row.get("eval/win_rate")
    low = win is not None and win == win and win < COLLAPSE_WIN_RATE
    if cfg.stop_on_collapse and (row.get("train/collapse_detected") or low):
        why = f"held-out win rate {win:.2f} < {COLLAPSE_WIN_RATE}" if low else "collapse warning"
        raise DivergenceError(
            f"step {step}: {why}; stopped by --stop-on-collapse, the last checkpoint in "
            f"{cfg.out} is the last state before it"
        )


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
