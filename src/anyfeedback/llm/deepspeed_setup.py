"""DeepSpeed (ZeRO stage 1/2) through accelerate: the engine's sizes from this run's flags, and how
a step's micro-batches map onto the engine's accumulation.

accelerate builds the DeepSpeed config from the launch config (recipes/accelerate/
deepspeed_zero2.yaml) and fills its "auto" sizes from the dataloaders passed to `prepare`. Our
trainer passes none (it collates its own micro-batches, `BatchPlan`), so the sizes come from here.
DeepSpeed also owns accumulation, clipping and the optimizer step: `engine.step()` runs inside
`accelerator.backward` at the boundary that `sync_gradients` marks, and `engine.backward` divides
the loss by the accumulation count unless told not to, while our micro-batch losses are already
shares of the step's loss (docs/algorithms.md#normalisation).
"""

from __future__ import annotations

from anyfeedback.errors import InputError


def uses_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def configure(accelerator, cfg, world: int) -> None:
    """Set the engine's micro-batch, accumulation and clipping from the run's flags (where the
    launch config says "auto" or nothing), and refuse a launch config that disagrees with them."""
    if not uses_deepspeed(accelerator):
        return
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    if world > 1 and (getattr(cfg, "save_steps", 0) > 0 or getattr(cfg, "resume", False)):
        # each process holds its own optimizer partition; checkpoints keep one (tested: one
        # process resumes exactly), so several would resume wrong: refuse rather than lose work
        raise InputError(
            f"checkpoints under DeepSpeed with {world} processes are not supported (each holds a "
            "partition of the optimizer); use --save-steps 0, FSDP, or DDP",
            field="--save-steps",
        )
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
