"""`run_self_play(cfg)`: Self-Play AIHF (AIHF Eq. 11) and SPIN (w_P = 0), read top to bottom.

for t = 0..T−1:
  opponent  π_t ← the current policy: π_ref refreshed to it (t > 0; π_0 is the start model)
  sample    y' ∼ π_t(·|x) for every demonstration prompt (stochastic, once per iteration)
  train     --epochs over the demonstrations: each step a batch of (x, y^E, y') and a batch of
            pairs, loss w_D·SPIN(y^E ≻ y'; ref π_t) + w_P·DPO(y_w ≻ y_l; ref π_t)
            (`losses.aihf.self_play_aihf_loss`, through the LM trainer), π_{t+1} initialised
            at π_t
Choice (docs/algorithms.md#aihf-demo): the pairs' reference is π_t too. w_D = 0 is DPO with a moving
reference (one iteration: DPO exactly); w_P = 0 is SPIN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from anyfeedback.feedback import flat_text
from anyfeedback.llm import generate
from anyfeedback.llm.aihf.config import SelfPlayConfig
from anyfeedback.llm.aihf.data import frozen_copy, load_run_data
from anyfeedback.llm.aihf.evaluate import evaluate_held_out
from anyfeedback.llm.batching import collate_pairs
from anyfeedback.llm.config import PolicyStepConfig
from anyfeedback.llm.data import encode_records
from anyfeedback.llm.prompts import encode_prompts, prompts_for_step
from anyfeedback.llm.trainer import Trainer
from anyfeedback.run_dir import check_resume_config
from anyfeedback.runs import (
    MetricsLog,
    atomic_write_json,
    debug_sigkill,
    progress,
)

# settings a resume may change; more iterations extend the run exactly (constant schedule)
RESUME_FREE = ("out", "resume", "overwrite", "save_steps", "progress", "iterations")


@dataclass
class SelfPlayResult:
    out: Path
    iterations: int
    start: dict
    final: dict


def _train_config(cfg: SelfPlayConfig, total: int) -> PolicyStepConfig:
    return PolicyStepConfig(
        model=cfg.model,
        method="self-play-aihf",
        out=cfg.out,
        beta=cfg.beta,
        demo_weight=cfg.demo_weight,
        pref_weight=cfg.pref_weight,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        max_steps=total,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        lora_r=cfg.lora_r,
        bf16=cfg.bf16,
        seed=cfg.seed,
        log_kl_every=0,
        save_steps=cfg.save_steps,
        progress=False,
        logp_reduction="sum",
    )


def run_self_play(cfg: SelfPlayConfig, *, trace: list | None = None) -> SelfPlayResult:
    from anyfeedback.llm.aihf.report import write_outputs
    from anyfeedback.llm.checkpoint import intact_checkpoint

    out = Path(cfg.out)
    ckpt = None
    if cfg.resume:
        check_resume_config(out / "config.json", cfg.to_dict(), ignore=RESUME_FREE)
        ckpt = intact_checkpoint(out / "checkpoints")
    if cfg.gold_reward:  # a bad --gold-reward is an input error now, not after training
        from anyfeedback.rewards import load_reward

        load_reward(cfg.gold_reward)
    data = load_run_data(cfg)
    use_demos = cfg.demo_weight > 0 and bool(data.demos)
    use_pairs = cfg.pref_weight > 0 and bool(data.pairs)
    n = len(data.demos) if use_demos else len(data.pairs)
    per_iter = cfg.epochs * math.ceil(n / cfg.batch_size)
    trainer = Trainer(
        _train_config(cfg, cfg.iterations * per_iter), total_steps=cfg.iterations * per_iter
    )
    tok, pad = trainer.tokenizer, trainer.tokenizer.pad_token_id
    kw = {"max_length": cfg.max_length}
    demos = (
        encode_records(tok, data.demos, "demonstration", **kw, source=cfg.demos).examples
        if use_demos
        else []
    )
    pairs = (
        encode_records(tok, data.pairs, "paired", **kw, source=cfg.pairs).examples
        if use_pairs
        else []
    )
    start_model = frozen_copy(trainer.policy) if data.eval_prompts else None
    eval_ids = encode_prompts(tok, data.eval_prompts)

    def evaluate() -> dict:
        if not data.eval_prompts:
            return {}
        from anyfeedback.rewards import load_reward

        gold = load_reward(cfg.gold_reward) if cfg.gold_reward else None
        ev = evaluate_held_out(
            trainer.policy,
            start_model,
            tok,
            eval_ids,
            [flat_text(p) for p in data.eval_prompts],
            gold,
            seed=cfg.seed + 7919,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
        )
        return {
            "eval/gold_reward": ev.gold_reward,
            "eval/kl_to_start": ev.kl_to_start,
            "eval/kl_per_token": ev.kl_per_token,
        }

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    start = evaluate()  # of the start model, before a checkpoint's weights and RNG are restored
    log = MetricsLog(out / "metrics.jsonl")
    if ckpt is not None:
        trainer.resume(ckpt)
        log.truncate_after(trainer.step)
    else:
        log.log(0, iteration=0, **start)
    final: dict = dict(start)
    first_t, done = divmod(trainer.step, per_iter)
    try:
        with progress("self-play", cfg.iterations * per_iter, disable=not cfg.progress) as (
            bar,
            task,
        ):
            bar.update(task, completed=trainer.step)
            for t in range(first_t, cfg.iterations):
                mid = t == first_t and done > 0  # resumed inside iteration t: π_t is gone
                if t > 0 and not mid:
                    trainer.ref.refresh()  # opponent and reference move to π_t
                samples = None
                kept = out / "samples" / f"iteration-{t}.json"
                if use_demos and mid:  # the samples π_t drew, kept when they were drawn
                    samples = json.loads(kept.read_text(encoding="utf-8"))
                elif use_demos:  # y' ∼ π_t on every demo prompt, once per iteration
                    gen = generate.sample_completions(
                        trainer.policy,
                        tok,
                        [d.prompt_ids for d in demos],
                        k=1,
                        seed=cfg.seed * 7_919 + t,
                        temperature=cfg.temperature,
                        top_p=cfg.top_p,
                        max_new_tokens=cfg.max_new_tokens,
                    )
                    samples = [
                        c[: max(1, cfg.max_length - len(d.prompt_ids))]
                        for c, d in zip(gen.completion_ids, demos, strict=True)
                    ]
                    atomic_write_json(kept, samples)
                    if trace is not None:
                        trace.append(("samples", t, trainer.step))
                for _ in range(per_iter - (done if mid else 0)):
                    s = trainer.step
                    d_idx = (
                        prompts_for_step(len(demos), cfg.batch_size, s, cfg.seed) if demos else []
                    )
                    p_idx = (
                        prompts_for_step(len(pairs), cfg.batch_size, s, cfg.seed + 1)
                        if pairs
                        else []
                    )
                    batch = collate_pairs(
                        [pairs[i] for i in p_idx],
                        pad,
                        demos=[demos[i] for i in d_idx],
                        ref_samples=[samples[i] for i in d_idx] if samples else None,
                    )
                    m = trainer.train_step([batch])
                    row = {"iteration": t + 1, **m}
                    if trainer.step % per_iter == 0:
                        final = evaluate()
                        row.update(final)
                    log.log(trainer.step, **row)
                    bar.update(task, advance=1, info=f"loss {m['loss']:.3f}")
                    if cfg.save_steps and trainer.step % cfg.save_steps == 0:
                        trainer.save_checkpoint(out, {"iteration": t})
                    debug_sigkill(trainer.step)
    finally:
        log.close()
    trainer.save_model(out / "model")
    title = (
        "Self-Play AIHF"
        if cfg.pref_weight > 0 and cfg.demo_weight > 0
        else ("SPIN" if cfg.demo_weight > 0 else "iterated DPO (reference π_t)")
    )
    write_outputs(out, title, start, final, cfg.to_dict())
    from anyfeedback.llm.card import write_run_card

    write_run_card(
        out / "model", cfg.to_dict(), method="self-play-aihf", steps=trainer.step, metrics=final
    )
    return SelfPlayResult(out, cfg.iterations, start, final)
