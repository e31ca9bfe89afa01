"""accelerate's sharding engines (DeepSpeed ZeRO stage 1/2, FSDP2) under our trainer: what the
trainer must set for them, and what it refuses rather than run wrong.

DeepSpeed: accelerate builds the engine's config from the launch config (recipes/accelerate/
deepspeed_zero2.yaml) and fills its "auto" sizes from the dataloaders passed to `prepare`. Our
trainer passes none (it collates its own micro-batches, `BatchPlan`), so the sizes come from here.
DeepSpeed also owns accumulation, clipping and the optimizer step: `engine.step()` runs inside
`accelerator.backward` at the boundary that `sync_gradients` marks, and `engine.backward` divides
the loss by the accumulation count unless told not to, while our micro-batch losses are already
shares of the step's loss (docs/algorithms.md#normalisation).

Checkpoints (written by the main process) hold whole tensors; with several processes DeepSpeed's
optimizer state and FSDP2's parameters and optimizer state are per-process shards that they do not
gather, so a multi-process run under either engine refuses --save-steps and --resume at start.
The final model is gathered on every process (`checkpoint.full_state_dict`) and saved whole.
"""

from __future__ import annotations

from anyfeedback.errors import InputError


def uses_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def uses_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def configure(accelerator, cfg, world: int) -> None:
    """Refuse checkpoints that a multi-process sharded run would write wrong; under DeepSpeed set
    the engine's micro-batch, accumulation and clipping from the run's flags (where the launch
    config says "auto" or nothing) and refuse a launch config that disagrees with them."""
    engine = (
        "DeepSpeed" if uses_deepspeed(accelerator) else "FSDP" if uses_fsdp(accelerator) else None
    )
    if engine is None:
        return
    if world > 1 and (getattr(cfg, "save_steps", 0) > 0 or getattr(cfg, "resume", False)):
        # each process holds its own shards; a checkpoint keeps the main process's (one process
        # resumes exactly under DeepSpeed), so several would resume wrong: refuse, lose nothing
        raise InputError(
            f"checkpoints under {engine} with {world} processes are not supported yet (each holds "
            "a shard of the training state); use --save-steps 0, or DDP",
            field="--save-steps",
        )
    if engine == "FSDP":
        return
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    if ds.get("zero_optimization", {}).get("stage", 0) == 3:
        raise InputError(
            "ZeRO stage 3 shards the parameters, which the frozen reference copy does not support "
            "(use stage 2, or FSDP with --lora-r)",
            source="accelerate launch config",
            field="deepspeed zero_stage",
        )
    accum = cfg.gradient_accumulation_steps
    wanted = {
        "train_micro_batch_size_per_gpu": (
            "--batch-size",
            max(1, cfg.batch_size // (world * accum)),
        ),
        "gradient_accumulation_steps": ("--gradient-accumulation-steps", accum),
        "gradient_clipping": ("--max-grad-norm", cfg.max_grad_norm),
    }
    for key, (flag, value) in wanted.items():
        have = ds.get(key, "auto")
        if have == "auto":
            ds[key] = value
        elif float(have) != float(value):
            raise InputError(
                f"{have} in the DeepSpeed config, but {flag} makes it {value}; set the same in both",
                source="accelerate launch config",
                field=f"deepspeed {key}",
            )
    if ds.get("train_batch_size", "auto") == "auto":
        ds["train_batch_size"] = ds["train_micro_batch_size_per_gpu"] * accum * world


def backward_options(accelerator, micro_batch: int, n_micro: int) -> dict:
    """Before a micro-batch's backward: under DeepSpeed mark the step's last micro-batch as the
    accumulation boundary (the engine steps there) and keep the loss unscaled (it is already this
    micro-batch's share); nothing otherwise."""
    if not uses_deepspeed(accelerator):
        return {}
    accelerator.sync_gradients = micro_batch == n_micro - 1
    return {"scale_wrt_gas": False}
