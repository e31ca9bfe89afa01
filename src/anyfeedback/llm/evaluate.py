"""Held-out evaluation inside `anyfeedback train`: loss and each method's diagnostics on an eval
set, logged under the names TRL users know (docs/algorithms.md#dpo, #ipo, #kto, #pmpo).

  dpo, ipo, aihf-dpo  eval/loss, eval/rewards/chosen, eval/rewards/rejected,
                      eval/rewards/margins, eval/rewards/accuracies, eval/logps/chosen,
                      eval/logps/rejected; rewards are β·(ℓ_θ − ℓ_ref) as in TRL (IPO: τ·ρ;
                      aihf-dpo is scored on its pairs, so eval/loss is the DPO loss)
  pmpo                eval/loss, eval/logps/accepted, eval/logps/rejected, eval/kl
  kto                 eval/loss, eval/rewards/chosen, eval/rewards/rejected, eval/z_ref (the
                      reference point TRL logs as "kl"), eval/kl
  sft                 eval/loss, eval/logps/accepted, eval/kl

eval/kl is the dense KL(π_ref‖π_θ) per sequence (docs/algorithms.md#token-kl). Evaluation runs
under `torch.no_grad` with the policy in eval mode, in batches of --per-device-eval-batch-size,
each process taking every W-th batch; means are weighted by records and reduced over processes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from anyfeedback.errors import InputError
from anyfeedback.llm.batching import collate_demos, collate_pairs, collate_unpaired
from anyfeedback.llm.data import Encoded
from anyfeedback.llm.objective import BATCH_LOSSES
from anyfeedback.runs import atomic_write_json

# our per-batch metric → its TRL name (without the eval/ prefix)
TRL_NAMES = {
    "loss": "loss",
    "reward_chosen": "rewards/chosen",
    "reward_rejected": "rewards/rejected",
    "margin": "rewards/margins",
    "accuracy": "rewards/accuracies",
    "logp_chosen": "logps/chosen",
    "reward_accepted": "rewards/chosen",
    "logp_accepted": "logps/accepted",
    "logp_rejected": "logps/rejected",
    "z_ref": "z_ref",
    "kl": "kl",
}
PAIR_METHODS = ("dpo", "ipo", "aihf-dpo")


def eval_batches(data: Encoded, size: int, method: str) -> list[list[int]]:
    """Record indices in consecutive batches of `size`; KTO's last batch of 1 joins the one
    before (its reference point pairs records)."""
    idx = list(range(len(data.examples)))
    batches = [idx[i : i + size] for i in range(0, len(idx), size)]
    if method == "kto" and len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] += batches.pop()
    return batches


def _collate(method: str, items, pad_id: int):
    if method in ("pmpo", "kto"):
        return collate_unpaired(items, pad_id, mismatched=method == "kto")
    if method == "sft":
        return collate_demos(items, pad_id)
    return collate_pairs(items, pad_id)


def _rename(method: str, key: str, value: float, beta: float) -> tuple[str, float] | None:
    if key == "logp_rejected" and method in PAIR_METHODS:
        return "eval/logps/rejected", value
    name = TRL_NAMES.get(key)
    if name is None:
        return None
    if method == "ipo" and key in ("reward_chosen", "reward_rejected", "margin"):
        value = beta * value  # the IPO diagnostic is the raw ρ; TRL reports β·ρ
    return f"eval/{name}", value


@torch.no_grad()
def evaluate(trainer, data: Encoded, cfg) -> dict[str, float]:
    """Mean loss and diagnostics of `trainer`'s policy on `data` (see the module docstring)."""
    acc = trainer.accelerator
    method = cfg.method
    loss_fn = BATCH_LOSSES["dpo" if method == "aihf-dpo" else method]
    pad = trainer.tokenizer.pad_token_id
    batches = eval_batches(data, cfg.per_device_eval_batch_size, method)
    mine = batches[acc.process_index :: acc.num_processes]
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    # the unwrapped policy: a DDP wrapper would broadcast buffers in every forward, and the
    # processes may hold different numbers of eval batches
    policy = trainer.policy
    was_training = policy.training
    policy.eval()
    try:
        for idx in mine:
            batch = _collate(method, [data.examples[i] for i in idx], pad).to(acc.device)
            loss, metrics = loss_fn(policy, trainer.ref, batch, cfg, want_kl=True)
            for key, value in {"loss": loss, **metrics}.items():
                value = value.detach().float().reshape(())
                if key == "completion_tokens" or not torch.isfinite(value):
                    continue
                sums[key] = sums.get(key, 0.0) + value * len(idx)
                weights[key] = weights.get(key, 0.0) + float(len(idx))
    finally:
        policy.train(was_training)
    keys = _metric_keys(method)
    vals = torch.stack([torch.as_tensor(sums.get(k, 0.0), device=acc.device) for k in keys])
    counts = torch.tensor([weights.get(k, 0.0) for k in keys], device=acc.device)
    if acc.num_processes > 1:
        vals, counts = acc.reduce(vals, reduction="sum"), acc.reduce(counts, reduction="sum")
    out = {}
    for key, v, c in zip(keys, vals.tolist(), counts.tolist(), strict=True):
        if c > 0 and (named := _rename(method, key, v / c, cfg.beta)) is not None:
            out[named[0]] = named[1]
    return out


def _metric_keys(method: str) -> list[str]:
    """Every metric key the method reports, whether or not this process saw a batch (all
    processes must reduce the same tensor)."""
    common = {"loss", "kl"}
    per_method = {
        "pmpo": {"logp_accepted", "logp_rejected"},
        "kto": {"reward_accepted", "reward_rejected", "z_ref"},
        "sft": {"logp_accepted"},
    }
    pairs = {
        "reward_chosen",
        "reward_rejected",
        "margin",
        "accuracy",
        "logp_chosen",
        "logp_rejected",
    }
    return sorted(common | per_method.get(method, pairs))


def is_better(metric: str, value: float, best: float | None) -> bool:
    """transformers' rule: lower is better for a metric ending in `loss`, higher otherwise."""
    if best is None:
        return True
    return value < best if metric.endswith("loss") else value > best


def eval_metric_name(name: str) -> str:
    """`eval_loss`, `loss` or `eval/loss` → `eval/loss` (TRL and transformers spell it so)."""
    for prefix in ("eval/", "eval_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return f"eval/{name}"


class Evaluator:
    """Evaluation every --eval-steps and at the end; keeps the best weights in OUT/best_model
    when --metric-for-best-model is set (its score in OUT/best_model/best.json)."""

    def __init__(self, cfg, trainer, evals: Encoded | None, out: Path):
        import json

        self.cfg, self.trainer, self.evals = cfg, trainer, evals
        self.best_dir = out / "best_model"
        self.metric = eval_metric_name(cfg.metric_for_best_model or "") if evals else None
        self.best = None
        saved = self.best_dir / "best.json"
        if self.metric and cfg.metric_for_best_model and saved.is_file():  # resumed run
            self.best = json.loads(saved.read_text(encoding="utf-8")).get("value")

    def due(self, step: int) -> bool:
        every = self.cfg.eval_steps
        return self.evals is not None and bool(every) and step % every == 0

    def __call__(self, step: int) -> dict:
        metrics = evaluate(self.trainer, self.evals, self.cfg)
        if self.cfg.metric_for_best_model:
            if self.metric not in metrics:
                raise InputError(
                    f"no eval metric {self.metric} (has: {', '.join(sorted(metrics))})",
                    source="config",
                    field="metric_for_best_model",
                )
            if is_better(self.metric, metrics[self.metric], self.best):
                self.best = metrics[self.metric]
                self.trainer.save_model(self.best_dir)
                if self.trainer.accelerator.is_main_process:
                    record = {"metric": self.metric, "value": self.best, "step": step}
                    atomic_write_json(self.best_dir / "best.json", record)
        return metrics
