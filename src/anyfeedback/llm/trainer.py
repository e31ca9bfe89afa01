"""The offline LLM trainer: plain PyTorch + accelerate, one optimizer step at a time.

`Trainer.train_step(micro_batches)` is generation-free and data-source-free: the offline loop
(`fit`, below) and the online loop feed it batches made by `anyfeedback.llm.batching.collate_*`.
A step reads: count the step's rows (one all-reduce) → forward π_θ and π_ref → loss
(`compute_loss`, each micro-batch's share of the step's loss, docs/algorithms.md#normalisation)
→ backward (accumulated, no DDP sync until the last micro-batch) → finite check → clip → AdamW
→ parameter check → LR schedule → π_ref refresh / EMA. The parameter check stops the run
(`NonFiniteLossError`, before any checkpoint of that state) when a parameter is NaN/inf or ‖θ‖
exceeds PARAM_NORM_BOUND × the norm at the start.

Runs unchanged under `accelerate launch` / `torchrun` (DDP; FSDP/DeepSpeed through accelerate
config files): each process takes its own micro-batches of the global batch (`BatchPlan`).
"""

from __future__ import annotations

import contextlib
import math
import os
import random

import torch

from anyfeedback.errors import DivergenceError
from anyfeedback.llm import engines
from anyfeedback.llm.batching import Batch
from anyfeedback.llm.model import load_policy, load_tokenizer
from anyfeedback.llm.objective import StepCounts, batch_counts, compute_loss
from anyfeedback.llm.reference import Reference
from anyfeedback.llm.report import peak_memory_mib

# A step that multiplies the trainable parameters' global L2 norm by more than this since the start
# is a blow-up, not learning: fine-tuning moves ‖θ‖ by a few percent, a divergent step (lr 1e6:
# Adam moves every weight by ~lr) by orders of magnitude.
PARAM_NORM_BOUND = 100.0


class NonFiniteLossError(DivergenceError):
    """The loss, gradient norm or parameters became NaN/inf (or the parameters blew up); the run
    stops and no checkpoint of that state is written."""


def lr_schedule(kind: str, warmup: int, total: int):
    """Multiplier of the peak LR at optimizer step s: linear warmup, then constant / linear /
    cosine decay to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)


def _tracker_options(cfg) -> dict:
    """`log_with` / `project_config` for the `Accelerator`: the trackers of --report-to (and the
    old --tensorboard), TensorBoard writing under OUT/tensorboard (anyfeedback.trackers)."""
    from anyfeedback.trackers import parse_report_to

    names = parse_report_to(getattr(cfg, "report_to", None))
    if getattr(cfg, "tensorboard", False) and "tensorboard" not in names:
        names.append("tensorboard")
    if not names:
        return {}
    from accelerate.utils import ProjectConfiguration

    out = os.path.abspath(cfg.out)
    project = ProjectConfiguration(project_dir=out, logging_dir=os.path.join(out, "tensorboard"))
    return {"log_with": names, "project_config": project}


class Trainer:
    """Policy, π_ref, optimizer and schedule for `cfg`; `train_step` takes one optimizer step.

    `cfg` is a `PolicyStepConfig` (objective + optimisation + model/out; a `TrainConfig` is one):
    the trainer never reads the data fields.

    `model` / `tokenizer` may be passed in (e.g. by the online loop); otherwise they load from
    `cfg.model`. `total_steps` sets the LR schedule length. `resume_from` (a checkpoint dir)
    restores weights, π_ref, optimizer, scheduler, RNG and the step count."""

    def __init__(
        self, cfg, *, total_steps: int, model=None, tokenizer=None, resume_from=None
    ) -> None:
        from accelerate import Accelerator

        from anyfeedback.llm import checkpoint as ckpt

        mp = "bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "no"
        if cfg.fp16 and not torch.cuda.is_available():
            from anyfeedback.errors import InputError

            raise InputError("--fp16 needs a CUDA GPU (use --bf16 on CPU)", source="config")
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()  # one process may run several trainers (precisions)
        # several processes without a GPU: accelerate only sets up gloo DDP when told "cpu"
        cpu_ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = acc = Accelerator(
            mixed_precision=mp, cpu=cpu_ddp, **_tracker_options(cfg)
        )
        self.cfg = cfg
        self.total_steps = total_steps
        seed_everything(cfg.seed)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
        policy = (model if model is not None else load_policy(cfg)).to(acc.device)
        self.policy = policy  # the unwrapped module: checkpoints, π_ref, saving
        low = torch.bfloat16 if cfg.bf16 else torch.float16 if cfg.fp16 else None
        ref_dtype = low if cfg.ref_ema == 0 else None  # EMA accumulates in float32
        # π_ref = the initial policy
        self.ref = Reference(policy, autocast=acc.autocast, dtype=ref_dtype)
        self.state = {"step": 0, "tokens_seen": 0}
        if resume_from is not None:
            self.ref.load_state_dict(ckpt.load_weights(resume_from, policy))
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        # transformers' rule: warmup_steps if > 0, else ceil(warmup_ratio × total steps)
        warmup = cfg.warmup_steps or math.ceil(getattr(cfg, "warmup_ratio", 0.0) * total_steps)
        factor = lr_schedule(cfg.lr_scheduler_type, warmup, total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        forward = policy
        if cfg.torch_compile:
            forward = torch.compile(policy, backend=cfg.torch_compile_backend, dynamic=True)
        engines.configure(acc, cfg, int(os.environ.get("WORLD_SIZE", "1")))
        self.model, self.optimizer = acc.prepare(forward, optimizer)
        if resume_from is not None:
            self.state = ckpt.load_training_state(resume_from, self.optimizer, self.scheduler)
        # the bound of `_check_parameters`, kept in the checkpoint so a resume uses the same one
        self.state.setdefault("param_norm0", float(self._param_norm()))

    def resume(self, path) -> None:
        """Restore checkpoint `path` after construction (a loop that first copies the start
        model): weights, π_ref, optimizer, scheduler, RNG and step, as `resume_from=` does."""
        from anyfeedback.llm import checkpoint as ckpt

        self.ref.load_state_dict(ckpt.load_weights(path, self.policy))
        self.state = ckpt.load_training_state(path, self.optimizer, self.scheduler)

    def shared_prompt_ok(self) -> bool:
        """Can pairs share their prompt in one row with this model (see `pack_shared`)?"""
        from anyfeedback.llm.model import shared_prompt_supported

        ok = shared_prompt_supported(self.policy, self.tokenizer.pad_token_id)
        if not ok and self.accelerator.is_main_process:
            print("share_prompt: the model's attention ignores block masks; pairs use two rows")
        return ok

    @property
    def step(self) -> int:
        """Optimizer steps taken so far."""
        return int(self.state["step"])

    def _all_reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(x, reduction="mean")

    def _want_kl(self) -> bool:
        if self.cfg.method == "pmpo" and self.cfg.beta > 0:
            return True  # the KL is part of PMPO's loss
        every = self.cfg.log_kl_every
        return bool(every and self.step % every == 0)

    def _check_finite(self, value: torch.Tensor, what: str, taken: bool = False) -> None:
        bad = (~torch.isfinite(value.detach().float())).float().reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            self.optimizer.zero_grad(set_to_none=True)
            done = "the engine had taken the step" if taken else "the step was not taken"
            raise NonFiniteLossError(
                f"non-finite {what} at step {self.step + 1}; {done}; no checkpoint of it is written"
            )

    def step_counts(self, micro_batches: list[Batch]) -> StepCounts:
        """The rows of the whole step: summed over `micro_batches`, then over processes in one
        all-reduce (docs/algorithms.md#normalisation)."""
        totals = sum(batch_counts(b, self.cfg.method) for b in micro_batches)
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals.to(self.accelerator.device), reduction="sum")
        return StepCounts(*(round(x) for x in totals.tolist()))

    def _param_norm(self) -> torch.Tensor:
        norms = [p.detach().float().norm() for p in self.policy.parameters() if p.requires_grad]
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())

    def _check_parameters(self) -> None:
        """After optimizer.step: every trainable parameter finite and ‖θ‖ ≤ PARAM_NORM_BOUND ×
        max(‖θ₀‖, 1); otherwise stop (the caller's last checkpoint is the last healthy state)."""
        norm = float(self._param_norm())
        bound = PARAM_NORM_BOUND * max(float(self.state["param_norm0"]), 1.0)
        if not math.isfinite(norm) or norm > bound:
            what = "non-finite" if not math.isfinite(norm) else f"exploding (norm {norm:.3g})"
            raise NonFiniteLossError(
                f"{what} parameters after step {self.step + 1} (bound: norm <= {bound:.3g}, "
                f"{PARAM_NORM_BOUND:g}x the start); the step is not kept"
            )

    def train_step(self, micro_batches: list[Batch]) -> dict[str, float]:
        """One optimizer step over `micro_batches` (gradient accumulation); returns the step's
        loss (summed shares) and other metrics averaged over micro-batches and processes."""
        acc, cfg = self.accelerator, self.cfg
        self.model.train()
        want_kl, n = self._want_kl(), len(micro_batches)
        step_counts = self.step_counts(micro_batches)
        # DDP averages gradients over processes; the shares already sum to the step's loss
        world = acc.num_processes
        sums: dict[str, list[torch.Tensor]] = {}
        tokens = records = 0
        for i, batch in enumerate(micro_batches):
            batch = batch.to(acc.device)
            sync = acc.no_sync(self.model) if i < n - 1 else contextlib.nullcontext()
            with sync:
                loss, metrics = compute_loss(
                    self.model,
                    self.ref,
                    batch,
                    cfg,
                    want_kl=want_kl,
                    all_reduce_mean=self._all_reduce_mean,
                    step=step_counts,
                )
                self._check_finite(loss, "loss")
                acc.backward(loss * world, **engines.backward_options(acc, i, n))
            for key, value in {"loss": loss.detach(), **metrics}.items():
                sums.setdefault(key, []).append(value.float().reshape(()))
            tokens += batch.seqs.n_tokens
            records += batch.n_records
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        # under DeepSpeed the engine clipped and stepped in the last backward: this reads its
        # gradient norm, and the optimizer calls below are accelerate's no-ops
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), max_norm)
        taken = engines.uses_deepspeed(acc)  # DeepSpeed stepped inside backward
        self._check_finite(torch.as_tensor(grad_norm), "gradient norm", taken=taken)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self._check_parameters()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state["step"] = self.step + 1
        self._update_reference()
        out = self._reduce(sums, tokens, records)
        out.update(grad_norm=float(grad_norm), lr=lr)
        self.state["tokens_seen"] = self.state.get("tokens_seen", 0) + out["tokens"]
        return out

    def _update_reference(self) -> None:
        cfg = self.cfg
        if cfg.ref_ema > 0:
            self.ref.ema(cfg.ref_ema)
        elif cfg.ref_update_every and self.step % cfg.ref_update_every == 0:
            self.ref.refresh()

    def _reduce(self, sums: dict[str, list[torch.Tensor]], tokens: int, records: int):
        """NaN-aware means over micro-batches and processes; the loss (shares of the step's
        loss), completion tokens and token/record totals summed."""
        keys = sorted(sums)
        vals = torch.stack([torch.stack(sums[k]).nan_to_num(0.0).sum() for k in keys])
        counts = torch.stack([torch.stack(sums[k]).isfinite().sum().float() for k in keys])
        totals = torch.tensor([tokens, records], dtype=torch.float64, device=vals.device)
        if self.accelerator.num_processes > 1:
            vals = self.accelerator.reduce(vals, reduction="sum")
            counts = self.accelerator.reduce(counts, reduction="sum")
            totals = self.accelerator.reduce(totals, reduction="sum")
        out = {
            k: (v / c).item() if c > 0 else float("nan")
            for k, v, c in zip(keys, vals, counts, strict=True)
        }
        if "completion_tokens" in out:  # a total, not a mean
            out["completion_tokens"] = int(vals[keys.index("completion_tokens")].item())
        out["loss"] = vals[keys.index("loss")].item()  # the shares add up to the step's loss
        out.update(tokens=int(totals[0].item()), samples=int(totals[1].item()))
        return out

    def timing_metrics(self, metrics: dict[str, float], seconds: float) -> dict[str, float]:
        """Add throughput and memory: tokens/s counts non-padding policy tokens (all processes)."""
        metrics.update(
            step_time_s=seconds,
            tokens_per_s=metrics["tokens"] / seconds,
            samples_per_s=metrics["samples"] / seconds,
            peak_mem_mib=peak_memory_mib(),
        )
        return metrics

    def save_checkpoint(self, out_dir, extra: dict | None = None):
        """Atomic checkpoint of this step under OUT/checkpoints (main process writes)."""
        from anyfeedback.llm import checkpoint as ckpt

        path = None
        if self.accelerator.is_main_process:
            path = ckpt.save_checkpoint(
                out_dir / "checkpoints",
                self.step,
                policy=self.policy,
                reference_state=self.ref.state_dict(),
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state={**self.state, **(extra or {})},
                keep=self.cfg.save_total_limit,
            )
        self.accelerator.wait_for_everyone()
        return path

    def save_model(self, path):
        """Final `save_pretrained` model (LoRA adapter, or merged with --merge-lora)."""
        from anyfeedback.llm.checkpoint import full_state_dict, save_final_model

        state = full_state_dict(self.policy)  # on every process: FSDP2 gathers its shards
        if self.accelerator.is_main_process:
            save_final_model(
                self.policy, self.tokenizer, path, merge_lora=self.cfg.merge_lora, state_dict=state
            )
        self.accelerator.wait_for_everyone()
        return path

    @torch.no_grad()
    def sample_from_reference(self, prompts: list[list[int]], max_new_tokens: int, seed: int):
        """One completion per prompt from π_ref (token ids, cut after EOS); for AIHF-DPO's
        contrastive demo term, generated once."""
        tok, out = self.tokenizer, []
        gen = torch.Generator().manual_seed(seed)
        torch_state = torch.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        with self.ref._as_reference() as model:
            for s in range(0, len(prompts), 32):
                chunk = prompts[s : s + 32]
                width = max(len(p) for p in chunk)
                ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in chunk])
                mask = (
                    torch.arange(width)[None]
                    >= width - torch.tensor([len(p) for p in chunk])[:, None]
                ).long()
                gen_ids = model.generate(
                    input_ids=ids.to(self.accelerator.device),
                    attention_mask=mask.to(self.accelerator.device),
                    do_sample=True,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    use_cache=True,
                )[:, width:].tolist()
                for row in gen_ids:
                    cut = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
                    out.append(row[:cut] or [tok.eos_token_id])
        torch.set_rng_state(torch_state)
        return out


__all__ = ["NonFiniteLossError", "Trainer", "load_policy", "load_tokenizer"]
