"""`train(cfg)`: the offline run, setup → loop → final model. `anyfeedback train` calls it.

setup    check config, load tokenizer and data (every input error is raised here, before the
         model loads), plan the batches, build the `Trainer`, resume if asked
loop     for each optimizer step: collate this process's micro-batches → `train_step` →
         log (console, metrics.jsonl, --report-to trackers) → evaluate every --eval-steps →
         checkpoint every --save-steps
finish   evaluate, save the final model (save_pretrained; the best evaluated one with
         --load-best-model-at-end) with its model card, report.md and metrics.png, push to the Hub
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from anyfeedback.errors import InputError
from anyfeedback.llm.batching import BatchPlan, collate_demos, collate_pairs, collate_unpaired
from anyfeedback.llm.checkpoint import intact_checkpoint, latest_checkpoint
from anyfeedback.llm.config import TrainConfig
from anyfeedback.llm.data import Encoded, load_train_eval_data
from anyfeedback.llm.evaluate import Evaluator
from anyfeedback.llm.model import load_tokenizer
from anyfeedback.llm.report import write_report
from anyfeedback.llm.trainer import NonFiniteLossError, Trainer
from anyfeedback.runs import MetricsLog, atomic_write_json, debug_sigkill, progress
from anyfeedback.trackers import Trackers, parse_report_to, require_trackers


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


# Fields a resume may change: how the run is shown and saved, and its length (`_check_resume`).
RESUME_FREE = (
    "out",
    "resume",
    "overwrite",
    "save_steps",
    "save_total_limit",
    "progress",
    "tensorboard",
    "logging_steps",
    "report_to",
    "run_name",
    "push_to_hub",
    "hub_model_id",
    "eval_steps",
    "per_device_eval_batch_size",
)
EXTENDABLE = ("max_steps", "num_epochs")


def _check_resume(cfg: TrainConfig, out: Path, total: int) -> None:
    """Refuse a resume whose settings differ from the run's (one line naming them). The length
    (--max-steps / --num-epochs) may change only with --lr-scheduler-type constant: a decaying
    schedule depends on the total, so the steps already taken would differ from those of an
    uninterrupted run of the new length."""
    import json

    from anyfeedback.run_dir import check_resume_config

    check_resume_config(out / "config.json", cfg.to_dict(), ignore=RESUME_FREE + EXTENDABLE)
    info = out / "run_info.json"
    if not info.is_file():
        return
    try:
        saved_total = json.loads(info.read_text(encoding="utf-8")).get("total_steps")
    except (UnicodeDecodeError, ValueError, AttributeError):
        raise InputError("is not a run's JSON run info", source=str(info)) from None
    if saved_total is not None and saved_total != total and cfg.lr_scheduler_type != "constant":
        raise InputError(
            f"--resume changes the run's length ({saved_total} -> {total} steps), which changes "
            f"its {cfg.lr_scheduler_type} learning-rate schedule; only runs with "
            "--lr-scheduler-type constant can be extended",
            field="max_steps",
        )


def one_sided_defaults(cfg: TrainConfig, data: Encoded) -> str | None:
    """PMPO on accepted-only (rejected-only) data: α not given → α = 1 (α = 0, β = 2 unless
    given), said in the returned line; a given α that ignores the only set present is refused
    (it would train with loss 0). docs/algorithms.md#pmpo"""
    if cfg.method != "pmpo" or data.kind != "unpaired":
        return None
    n_acc = sum(bool(e.accepted) for e in data.examples)
    only = "accepted" if n_acc == len(data.examples) else "rejected" if n_acc == 0 else None
    if only is None:
        return None
    useless = 0.0 if only == "accepted" else 1.0
    if cfg.alpha_given and cfg.alpha == useless:
        raise InputError(
            f"--alpha {cfg.alpha:g} gives the {only} records weight 0 and the data holds only "
            f"{only} records: nothing to learn (leave --alpha out, or use "
            f"--alpha {1 - useless:g})",
            source="config",
            field="alpha",
        )
    if cfg.alpha_given:
        return None
    cfg.alpha = 1.0 - useless
    if not cfg.beta_given:
        cfg.beta = 0.0 if only == "accepted" else 2.0
    return f"note: the data holds only {only} records: using α={cfg.alpha:g}, β={cfg.beta:g}"


def _check_outputs(cfg: TrainConfig) -> None:
    """Trackers' packages and Hub access, before the model loads."""
    names = parse_report_to(cfg.report_to)
    if cfg.tensorboard and "tensorboard" not in names:
        names.append("tensorboard")
    require_trackers(names)
    if cfg.push_to_hub:
        from anyfeedback.llm.card import check_hub_access

        check_hub_access(cfg.hub_model_id)


def _setup(cfg: TrainConfig):
    """Everything before the first step. Input errors surface here."""
    import os

    out = Path(cfg.out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    _check_outputs(cfg)
    tokenizer = load_tokenizer(cfg)
    data, demos, evals = load_train_eval_data(tokenizer, cfg)
    note = one_sided_defaults(cfg, data)
    plan = _plan(cfg, data, world, cfg.seed, cfg.batch_size)
    demo_plan = None
    if demos is not None:
        demo_plan = _plan(cfg, demos, world, cfg.seed + 1, cfg.demo_batch_size or cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * plan.steps_per_epoch
    resume_from = None
    if cfg.resume:
        _check_resume(cfg, out, total)
        resume_from = intact_checkpoint(out / "checkpoints")
        if resume_from is None:
            print(f"resume: no checkpoint in {out / 'checkpoints'}; starting from step 0")
    trainer = Trainer(cfg, total_steps=total, tokenizer=tokenizer, resume_from=resume_from)
    if note and trainer.accelerator.is_main_process:
        print(note)
    info = _data_info(cfg, data, demos, plan, total)
    if evals is not None:
        info["eval_records"] = len(evals.examples)
    ref_samples = None
    if demos is not None and cfg.demo_mode == "contrastive":
        ref_samples = _reference_samples(trainer, demos, cfg, out)
    share = cfg.share_prompt and data.kind == "paired" and trainer.shared_prompt_ok()
    info["shared_prompt"] = share
    # what accelerate actually set up (NO, MULTI_GPU, MULTI_CPU, FSDP, DEEPSPEED): a launch config
    # the installed accelerate does not honour shows here, not only in its log
    info["distributed_type"] = trainer.accelerator.distributed_type.value
    info["mixed_precision"] = trainer.accelerator.mixed_precision
    pad_id = tokenizer.pad_token_id
    collate = _Collator(cfg, data, demos, demo_plan, ref_samples, pad_id, share)
    if trainer.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(out / "run_info.json", info)
    return out, trainer, plan, collate, total, info, evals


def _describe(metrics: dict) -> str:
    keys = ("loss", "logp_accepted", "logp_rejected", "margin", "kl")
    parts = [f"{k} {metrics[k]:.3g}" for k in keys if k in metrics and metrics[k] == metrics[k]]
    return " ".join(parts + [f"{metrics['tokens_per_s']:.0f} tok/s"])


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.data` with `cfg.method`; see `TrainConfig` for the knobs."""
    out, trainer, plan, collate, total, info, evals = _setup(cfg)
    main = trainer.accelerator.is_main_process
    rank = trainer.accelerator.process_index
    log = MetricsLog(out / "metrics.jsonl") if main else None
    names = parse_report_to(cfg.report_to) + (["tensorboard"] if cfg.tensorboard else [])
    trackers = Trackers(
        trainer.accelerator,
        list(dict.fromkeys(names)),
        project="anyfeedback",
        run_name=cfg.run_name or out.resolve().name,
        out=out,
        config=cfg.to_dict(),
    )
    evaluator = Evaluator(cfg, trainer, evals, out)
    if log is not None:
        log.truncate_after(trainer.step)  # drop lines after the checkpoint being resumed
        print(
            f"{cfg.method}: {info['records']} {info['record_kind']} records, "
            f"{info['truncated_completions']} completions truncated to --max-length "
            f"{cfg.max_length}; steps {trainer.step}→{total}, global batch {plan.global_size}"
        )
    metrics: dict = {}
    show = main and cfg.progress
    desc = f"train {cfg.method}"
    try:
        with progress(desc, total, disable=not show, every=cfg.logging_steps) as (bar, task):
            bar.update(task, completed=trainer.step)
            while trainer.step < total:
                start = time.perf_counter()
                step = trainer.step
                batches = collate(step, rank, plan.micro_batches(step, rank))
                metrics = trainer.train_step(batches)
                metrics = trainer.timing_metrics(metrics, time.perf_counter() - start)
                metrics["epoch"] = step / plan.steps_per_epoch
                if evaluator.due(trainer.step) or (evals is not None and trainer.step == total):
                    metrics.update(evaluator(trainer.step))
                if log is not None:
                    log.log(trainer.step, **metrics)
                trackers.log(trainer.step, metrics)
                bar.update(task, advance=1, info=_describe(metrics))
                if cfg.save_steps and trainer.step % cfg.save_steps == 0:
                    trainer.save_checkpoint(out, {"epoch": trainer.step / plan.steps_per_epoch})
                debug_sigkill(trainer.step)
    except NonFiniteLossError as err:
        last = latest_checkpoint(out / "checkpoints")
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"{err}: training stopped and {kept}; lower --learning-rate or raise --beta"
        ) from None
    finally:
        if log is not None:
            log.close()
        trackers.end()
    model_dir = _final_model(cfg, trainer, evaluator, out)
    if main:
        _finish_outputs(cfg, info, trainer.step, metrics, model_dir, out)
    close_process_group(trainer)  # waits for every rank (barrier) before the teardown
    return TrainResult(out, model_dir, trainer.step, metrics)


def _final_model(cfg: TrainConfig, trainer: Trainer, evaluator: Evaluator, out: Path) -> Path:
    """OUT/model: the last weights, or the best evaluated ones with --load-best-model-at-end."""
    import shutil

    model_dir = out / "model"
    if cfg.load_best_model_at_end and evaluator.best_dir.is_dir():
        if trainer.accelerator.is_main_process:
            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.copytree(evaluator.best_dir, model_dir)
            (model_dir / "best.json").unlink(missing_ok=True)
        trainer.accelerator.wait_for_everyone()
        return model_dir
    return trainer.save_model(model_dir)


def _finish_outputs(cfg, info: dict, steps: int, metrics: dict, model_dir: Path, out: Path):
    """Model cards (final and best model), report.md / metrics.png, and the Hub upload."""
    import json

    from anyfeedback.llm.card import push_to_hub, train_card_fields, write_model_card

    shown = {k: v for k, v in metrics.items() if k == "loss" or k.startswith("eval/")}
    best = evaluator_record = None
    if (out / "best_model" / "best.json").is_file():
        evaluator_record = json.loads((out / "best_model" / "best.json").read_text())
        best = {evaluator_record["metric"]: evaluator_record["value"]}
        write_model_card(
            out / "best_model", **train_card_fields(cfg, info, evaluator_record["step"], best)
        )
    if cfg.load_best_model_at_end and evaluator_record is not None:  # the best, not the last
        steps, shown = evaluator_record["step"], best
    write_model_card(model_dir, **train_card_fields(cfg, info, steps, shown))
    write_report(out)
    if cfg.push_to_hub:
        url = push_to_hub(model_dir, cfg.hub_model_id)
        print(f"pushed {model_dir} to {url}")


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
