"""`train(cfg)`: the offline run, setup → loop → final model. `anyfeedback train` calls it.

setup    check config, load tokenizer and data (every input error is raised here, before the
         model loads), plan the batches, build the `Trainer`, resume if asked
loop     for each optimizer step: collate this process's micro-batches → `train_step` →
         log (console, metrics.jsonl, TensorBoard) → checkpoint every --save-steps
finish   save the final model (save_pretrained), report.md and metrics.png
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from anyfeedback.errors import InputError
from anyfeedback.llm.batching import BatchPlan, collate_demos, collate_pairs, collate_unpaired
from anyfeedback.llm.checkpoint import latest_checkpoint
from anyfeedback.llm.config import TrainConfig
from anyfeedback.llm.data import Encoded, load_training_data
from anyfeedback.llm.model import load_tokenizer
from anyfeedback.llm.report import TensorBoard, require_tensorboard, write_report
from anyfeedback.llm.trainer import NonFiniteLossError, Trainer
from anyfeedback.runs import MetricsLog, atomic_write_json, progress


@dataclass
class TrainResult:
    """What a finished run leaves: its directory, the final model and the last metrics."""

    out: Path
    model_dir: Path
    steps: int
    metrics: dict


def _length(example, shared: bool) -> int:
    """Row tokens of an example: prompt + longest completion, or prompt + all (shared)."""
    if shared and len(example.completion_ids) > 1:
        return len(example.prompt_ids) + sum(map(len, example.completion_ids))
    return example.length


def _plan(cfg: TrainConfig, data: Encoded, world: int, seed: int, batch_size: int) -> BatchPlan:
    plan = BatchPlan(
        [_length(e, cfg.share_prompt) for e in data.examples],
        batch_size=batch_size,
        accumulation=cfg.gradient_accumulation_steps,
        world_size=world,
        seed=seed,
        group_by_length=cfg.group_by_length,
        bucket_batches=cfg.bucket_batches,
    )
    if plan.steps_per_epoch == 0:
        raise InputError(
            f"{len(data.examples)} records are fewer than one global batch of "
            f"{plan.global_size} (batch × accumulation × processes); lower --batch-size",
            source=cfg.data,
        )
    return plan


def _data_info(cfg: TrainConfig, data: Encoded, demos: Encoded | None, plan, total: int):
    info = {
        "records": len(data.examples),
        "record_kind": data.kind,
        "sequences": data.n_sequences,
        "truncated_completions": data.n_truncated,
        "global_batch": plan.global_size,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": total,
        "processes": plan.world_size,
    }
    if data.kind == "unpaired":
        info["accepted"] = sum(bool(e.accepted) for e in data.examples)
        info["rejected"] = len(data.examples) - info["accepted"]
    if demos is not None:
        info.update(demos=len(demos.examples), demo_truncated=demos.n_truncated)
    return info


class _Collator:
    """Records of a micro-batch → `Batch` for the method (AIHF: plus this step's demos)."""

    def __init__(self, cfg, data, demos, demo_plan, ref_samples, pad_id, share_prompt) -> None:
        self.cfg, self.data, self.demos = cfg, data, demos
        self.demo_plan, self.ref_samples, self.pad_id = demo_plan, ref_samples, pad_id
        self.share_prompt = share_prompt

    def __call__(self, step: int, rank: int, indices: list[list[int]]):
        ex = self.data.examples
        method, pad, flat = self.cfg.method, self.pad_id, self.cfg.padding_free
        demo_idx = self.demo_plan.micro_batches(step, rank) if self.demo_plan else None
        out = []
        for a, idx in enumerate(indices):
            items = [ex[i] for i in idx]
            if method in ("pmpo", "kto"):
                out.append(collate_unpaired(items, pad, mismatched=method == "kto", flat=flat))
            elif method == "sft":
                out.append(collate_demos(items, pad, flat=flat))
            else:
                demos = [self.demos.examples[j] for j in demo_idx[a]] if demo_idx else None
                refs = [self.ref_samples[j] for j in demo_idx[a]] if self.ref_samples else None
                out.append(
                    collate_pairs(
                        items,
                        pad,
                        demos=demos,
                        ref_samples=refs,
                        share_prompt=self.share_prompt,
                        flat=flat,
                    )
                )
        return out


def _reference_samples(trainer: Trainer, demos: Encoded, cfg, out: Path) -> list[list[int]]:
    """AIHF-DPO contrastive: one π_ref sample per demo prompt, generated once, kept in OUT."""
    import json

    path = out / "demo_ref_samples.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    prompts = [e.prompt_ids for e in demos.examples]
    samples = trainer.sample_from_reference(prompts, cfg.demo_max_new_tokens, cfg.seed)
    room = [cfg.max_length - len(p) for p in prompts]
    samples = [s[:r] for s, r in zip(samples, room, strict=True)]
    if trainer.accelerator.is_main_process:
        atomic_write_json(path, samples)
    return samples


def _warn_config_changes(cfg: TrainConfig, saved_path: Path) -> None:
    """On resume, name the fields that differ from the run's saved config (they take effect)."""
    import json
    import warnings

    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    harmless = {"resume", "max_steps", "num_epochs", "save_steps", "progress", "tensorboard"}
    changed = sorted(k for k, v in cfg.to_dict().items() if k not in harmless and saved.get(k) != v)
    if changed:
        warnings.warn(f"resuming with changed settings: {', '.join(changed)}", stacklevel=3)


def _setup(cfg: TrainConfig):
    """Everything before the first step. Input errors surface here."""
    import os

    out = Path(cfg.out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tokenizer = load_tokenizer(cfg)
    data, demos = load_training_data(tokenizer, cfg)
    plan = _plan(cfg, data, world, cfg.seed, cfg.batch_size)
    demo_plan = None
    if demos is not None:
        demo_plan = _plan(cfg, demos, world, cfg.seed + 1, cfg.demo_batch_size or cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * plan.steps_per_epoch
    resume_from = None
    if cfg.resume:
        resume_from = latest_checkpoint(out / "checkpoints")
        if resume_from is None:
            print(f"resume: no checkpoint in {out / 'checkpoints'}; starting from step 0")
        else:
            _warn_config_changes(cfg, out / "config.json")
    if cfg.tensorboard:
        require_tensorboard()
    trainer = Trainer(cfg, total_steps=total, tokenizer=tokenizer, resume_from=resume_from)
    info = _data_info(cfg, data, demos, plan, total)
    ref_samples = None
    if demos is not None and cfg.demo_mode == "contrastive":
        ref_samples = _reference_samples(trainer, demos, cfg, out)
    share = cfg.share_prompt and data.kind == "paired" and trainer.shared_prompt_ok()
    info["shared_prompt"] = share
    pad_id = tokenizer.pad_token_id
    collate = _Collator(cfg, data, demos, demo_plan, ref_samples, pad_id, share)
    if trainer.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(out / "run_info.json", info)
    return out, trainer, plan, collate, total, info


def _describe(metrics: dict) -> str:
    keys = ("loss", "logp_accepted", "logp_rejected", "margin", "kl")
    parts = [f"{k} {metrics[k]:.3g}" for k in keys if k in metrics and metrics[k] == metrics[k]]
    return " ".join(parts + [f"{metrics['tokens_per_s']:.0f} tok/s"])


def _debug_sigkill(step: int) -> None:
    """Test hook: ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP=k makes the process SIGKILL itself after
    step k (no cleanup, like an external kill), so resume tests need no timing races."""
    import os
    import signal

    if os.environ.get("ANYFEEDBACK_DEBUG_SIGKILL_AFTER_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.data` with `cfg.method`; see `TrainConfig` for the knobs."""
    out, trainer, plan, collate, total, info = _setup(cfg)
    main = trainer.accelerator.is_main_process
    rank = trainer.accelerator.process_index
    log = MetricsLog(out / "metrics.jsonl") if main else None
    tb = None
    if main and cfg.tensorboard:
        tb = TensorBoard(out)
    if log is not None:
        log.truncate_after(trainer.step)  # drop lines after the checkpoint being resumed
        print(
            f"{cfg.method}: {info['records']} {info['record_kind']} records, "
            f"{info['truncated_completions']} completions truncated to --max-length "
            f"{cfg.max_length}; steps {trainer.step}→{total}, global batch {plan.global_size}"
        )
    metrics: dict = {}
    show = main and cfg.progress
    try:
        with progress(f"train {cfg.method}", total, disable=not show) as (bar, task):
            bar.update(task, completed=trainer.step)
            while trainer.step < total:
                start = time.perf_counter()
                step = trainer.step
                batches = collate(step, rank, plan.micro_batches(step, rank))
                metrics = trainer.train_step(batches)
                metrics = trainer.timing_metrics(metrics, time.perf_counter() - start)
                metrics["epoch"] = step / plan.steps_per_epoch
                if log is not None:
                    log.log(trainer.step, **metrics)
                if tb is not None:
                    tb.log(trainer.step, metrics)
                bar.update(task, advance=1, info=_describe(metrics))
                if cfg.save_steps and trainer.step % cfg.save_steps == 0:
                    trainer.save_checkpoint(out, {"epoch": trainer.step / plan.steps_per_epoch})
                _debug_sigkill(trainer.step)
    except NonFiniteLossError as err:
        last = latest_checkpoint(out / "checkpoints")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"{err}: training stopped and {kept}; lower --learning-rate or raise --beta"
        ) from None
    finally:
        if log is not None:
            log.close()
        if tb is not None:
            tb.close()
    model_dir = trainer.save_model(out / "model")
    if main:
        write_report(out)
    close_process_group(trainer)  # waits for every rank (barrier) before the teardown
    return TrainResult(out, model_dir, trainer.step, metrics)


def close_process_group(trainer=None) -> None:
    """Tear DDP down before the interpreter does: a gloo group left to exit-time destructors
    can abort a rank ("terminate called without an active exception") or hang it joining its
    worker threads (both seen on 2 CPU ranks). The DDP wrapper's reducer holds the group, so
    `trainer`'s wrapper is released first and the group is destroyed here, not at exit."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if trainer is not None:
        trainer.accelerator.free_memory()  # accelerate's references to the DDP model
        trainer.model = trainer.optimizer = None
        gc.collect()
    dist.barrier()  # no rank tears the group down while another still has a collective in flight
    dist.destroy_process_group()
