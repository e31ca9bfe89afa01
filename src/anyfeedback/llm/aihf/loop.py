"""`run_aihf(cfg)`: AIHF Algorithm 1 for language models (docs/algorithms.md#aihf), read top to
bottom.

setup: π_0 = π_ref (the start/SFT model, a `Trainer` with method rloo), reward model r_θ
(scalar head on a causal LM), optional BT warm start θ_0 on the pairs. Then for k = 0..K−1:

  policy step  --policy-steps RLOO steps on r_θk: P prompts × K samples ∼ π, rewards r_θk
               (clamped, no grad), R = r − β·Σ_t KL(π‖π_ref) (dense over the vocabulary,
               also a differentiable term), leave-one-out advantages
               (`losses.rl.rloo_dense_kl_loss`) → π_{k+1}
  sample       a demo batch (x, y^E); y^A ∼ π_{k+1}(·|x), *sampled* from the latest policy for
               the demos' own prompts; a preference batch (x, y_w, y_l)
  reward step  θ_{k+1} = θ_k − η·∇[w_D·D(r(y^E), r(y^A)) + w_P·BT(r(y_w), r(y_l))]
               (`losses.aihf.aihf_reward_loss`, AdamW), --reward-updates times

Special cases (docs/algorithms.md#aihf): w_D = 0 is RLHF with the BT reward trained interleaved; w_P
= 0 is ML-IRL; --reward-updates 0 with a trained --reward-model is plain RLHF (RL on a fixed
reward).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from anyfeedback.feedback import flat_text
from anyfeedback.llm import generate
from anyfeedback.llm.aihf.config import AIHFConfig
from anyfeedback.llm.aihf.data import distinct, frozen_copy, load_run_data
from anyfeedback.llm.aihf.evaluate import evaluate_held_out
from anyfeedback.llm.batching import collate_samples
from anyfeedback.llm.config import PolicyStepConfig
from anyfeedback.llm.prompts import encode_prompts, prompts_for_step
from anyfeedback.llm.reward.model import load_reward_model, pair_accuracy, score
from anyfeedback.llm.trainer import Trainer
from anyfeedback.losses import aihf_reward_loss
from anyfeedback.runs import MetricsLog, atomic_write_json, progress


@dataclass
class AIHFResult:
    out: Path
    iterations: int
    start: dict
    final: dict


def penalise_truncated(
    rewards: list[float], completion_ids: list[list[int]], eos: int, penalty: float
) -> tuple[list[float], int]:
    """r − `penalty` for each completion without EOS (truncated at the token limit); returns
    the rewards and how many were truncated (docs/algorithms.md#rloo)."""
    truncated = [eos not in c for c in completion_ids]
    out = [r - penalty if t else r for r, t in zip(rewards, truncated, strict=True)]
    return out, sum(truncated)


def policy_train_config(cfg) -> PolicyStepConfig:
    """The `PolicyStepConfig` of the RLOO policy step (π_ref = the start model, never refreshed)."""
    return PolicyStepConfig(
        model=cfg.model,
        method="rloo",
        out=cfg.out,
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        max_steps=cfg.iterations * cfg.policy_steps,
        batch_size=cfg.prompts_per_step * cfg.k,
        max_length=cfg.max_length,
        lora_r=cfg.lora_r,
        bf16=cfg.bf16,
        seed=cfg.seed,
        log_kl_every=0,
        progress=False,
        logp_reduction="sum",
    )


class AIHF:
    """State of one run; `policy_step`, `reward_step` and `evaluate` are Algorithm 1's parts.
    `trace` (a list) records the order of events for tests."""

    def __init__(self, cfg: AIHFConfig, trace: list | None = None) -> None:
        self.cfg, self.trace = cfg, trace
        self.data = load_run_data(cfg)
        self.trainer = Trainer(
            policy_train_config(cfg), total_steps=cfg.iterations * cfg.policy_steps
        )
        self.tok = self.trainer.tokenizer
        ref = self.trainer.ref
        self.start_model = ref.model if ref.model is not None else frozen_copy(self.trainer.policy)
        self.rm, self.rm_tok = load_reward_model(cfg.reward_model or cfg.model, seed=cfg.seed)
        self.rm_opt = torch.optim.AdamW(
            [p for p in self.rm.parameters() if p.requires_grad],
            lr=cfg.reward_learning_rate,
            weight_decay=cfg.reward_weight_decay,
        )
        rl = self.data.demos + self.data.pairs
        if cfg.prompts:
            from anyfeedback.llm.prompts import load_prompt_source

            self.rl_prompts = load_prompt_source(cfg.prompts)
        else:
            self.rl_prompts = distinct([r.prompt for r in rl])
        self.rl_ids = encode_prompts(self.tok, self.rl_prompts)
        self.demo_ids = encode_prompts(self.tok, [d.prompt for d in self.data.demos])
        self.eval_ids = encode_prompts(self.tok, self.data.eval_prompts)

    def _score(self, prompts, completions, grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            return score(
                self.rm,
                self.rm_tok,
                prompts,
                completions,
                max_length=self.cfg.max_length,
                clip=self.cfg.reward_clip,
            )

    def policy_step(self) -> dict:
        """One RLOO step of π on the current reward (no reward gradient)."""
        cfg, tr = self.cfg, self.trainer
        idx = prompts_for_step(len(self.rl_ids), cfg.prompts_per_step, tr.step, cfg.seed)
        ids = [self.rl_ids[i] for i in idx]
        gen = generate.sample_completions(
            tr.policy,
            self.tok,
            ids,
            k=cfg.k,
            seed=cfg.seed * 7_919 + tr.step,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
        )
        texts = [flat_text(self.rl_prompts[i]) for i in idx for _ in range(cfg.k)]
        rewards = self._score(texts, gen.texts, grad=False).tolist()
        room = [cfg.max_length - len(p) for p in ids for _ in range(cfg.k)]
        comps = [c[: max(1, r)] for c, r in zip(gen.completion_ids, room, strict=True)]
        rewards, n_truncated = penalise_truncated(
            rewards, comps, self.tok.eos_token_id, cfg.truncated_penalty
        )
        batch = collate_samples(ids, comps, rewards, cfg.k, self.tok.pad_token_id)
        metrics = tr.train_step([batch])
        metrics["truncated_fraction"] = n_truncated / len(comps)
        if self.trace is not None:
            self.trace.append(("policy_step", tr.step))
        return metrics

    def reward_step(self, iteration: int, update: int) -> dict:
        """One joint reward step on a demo batch with fresh agent samples and a pair batch."""
        cfg, data, n = self.cfg, self.data, self.cfg.reward_batch_size
        at = iteration * max(1, cfg.reward_updates) + update
        prompts, comps, n_d, n_p = [], [], 0, 0
        if cfg.demo_weight > 0 and data.demos:
            idx = prompts_for_step(len(data.demos), n, at, cfg.seed + 1)
            demos = [data.demos[i] for i in idx]
            ids = [self.demo_ids[i] for i in idx]
            gen = generate.sample_completions(  # y^A ∼ π_{k+1}(·|x), the demos' own prompts
                self.trainer.policy,
                self.tok,
                ids,
                k=1,
                seed=cfg.seed * 7_919 + 10**6 + at,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens,
            )
            if self.trace is not None:
                self.trace.append(("agent_samples", self.trainer.step, ids))
            prompts += [d.prompt for d in demos] * 2
            comps += [d.completion for d in demos] + gen.texts
            n_d = len(demos)
        if cfg.pref_weight > 0 and data.pairs:
            idx = prompts_for_step(len(data.pairs), n, at, cfg.seed + 2)
            pairs = [data.pairs[i] for i in idx]
            prompts += [p.prompt for p in pairs] * 2
            comps += [p.chosen for p in pairs] + [p.rejected for p in pairs]
            n_p = len(pairs)
        self.rm.train()
        r = self._score(prompts, comps, grad=True)  # [2·n_d + 2·n_p], one forward
        e, a, w, lo = r[:n_d], r[n_d : 2 * n_d], r[2 * n_d : 2 * n_d + n_p], r[2 * n_d + n_p :]
        loss, d = aihf_reward_loss(
            e if n_d else None,
            a if n_d else None,
            w if n_p else None,
            lo if n_p else None,
            demo_weight=cfg.demo_weight,
            pref_weight=cfg.pref_weight,
            demo_mode=cfg.demo_mode,
            beta=1.0,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.rm.parameters(), 1.0)
        self.rm_opt.step()
        self.rm_opt.zero_grad(set_to_none=True)
        if self.trace is not None:
            self.trace.append(("reward_step", self.trainer.step))
        out = {
            "reward/loss": float(loss.detach()),
            "reward/demo_term": float(d.demo_term),
            "reward/pref_term": float(d.pref_term),
        }
        if n_d:
            out["reward/demo_minus_sample"] = float((e - a).detach().mean())
        return out

    def warm_start(self) -> None:
        """θ_0: --reward-warmup-steps Bradley–Terry steps on the pairs."""
        from anyfeedback.llm.reward.train import bt_step

        cfg = self.cfg
        for s in range(cfg.reward_warmup_steps if self.data.pairs else 0):
            idx = prompts_for_step(len(self.data.pairs), cfg.reward_batch_size, s, cfg.seed + 3)
            bt_step(
                self.rm,
                self.rm_tok,
                [self.data.pairs[i] for i in idx],
                self.rm_opt,
                max_length=cfg.max_length,
                max_grad_norm=1.0,
                clip=cfg.reward_clip,
            )

    def evaluate(self) -> dict:
        cfg, out = self.cfg, {}
        if self.data.eval_prompts:
            from anyfeedback.rewards import load_reward

            if not hasattr(self, "_gold"):
                self._gold = load_reward(cfg.gold_reward) if cfg.gold_reward else None
            ev = evaluate_held_out(
                self.trainer.policy,
                self.start_model,
                self.tok,
                self.eval_ids,
                [flat_text(p) for p in self.data.eval_prompts],
                self._gold,
                seed=cfg.seed + 7919,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
            )
            out.update(
                {
                    "eval/gold_reward": ev.gold_reward,
                    "eval/kl_to_start": ev.kl_to_start,
                    "eval/kl_per_token": ev.kl_per_token,
                }
            )
        if self.data.eval_pairs:
            acc, loss = pair_accuracy(
                self.rm, self.rm_tok, self.data.eval_pairs, max_length=cfg.max_length
            )
            out.update({"eval/rm_accuracy": acc, "eval/rm_loss": loss})
        return out


# settings a resume may change; more iterations extend the run exactly (constant schedules)
RESUME_FREE = ("out", "resume", "overwrite", "save_steps", "progress", "iterations")


def _resume(run: AIHF, out: Path) -> int:
    """Restore the newest iteration whose policy and reward checkpoints are both intact (one
    warning line per newer one skipped); return that iteration, 0 if there is none."""
    import json
    import sys

    from anyfeedback.llm import checkpoint as ckpt

    for policy in reversed(ckpt.list_checkpoints(out / "checkpoints")):
        state = json.loads((policy / "trainer_state.json").read_text(encoding="utf-8"))
        reward = out / "reward_checkpoints" / f"{ckpt.PREFIX}{state.get('iteration', -1):06d}"
        problem = ckpt.checkpoint_problem(policy) or (
            ckpt.checkpoint_problem(reward) if reward.is_dir() else "no reward checkpoint"
        )
        if problem is None:
            run.trainer.resume(policy)
            ckpt.load_weights(reward, run.rm)
            ckpt.load_training_state(reward, run.rm_opt, run.trainer.scheduler)
            return int(state["iteration"])
        print(
            f"warning: checkpoint {policy} is not usable ({problem}); trying an older one",
            file=sys.stderr,
        )
    return 0


def run_aihf(cfg: AIHFConfig, *, trace: list | None = None) -> AIHFResult:
    from anyfeedback.llm.aihf.report import write_outputs
    from anyfeedback.llm.checkpoint import save_checkpoint, save_final_model
    from anyfeedback.run_dir import check_resume_config
    from anyfeedback.runs import debug_sigkill

    out = Path(cfg.out)
    if cfg.resume:
        check_resume_config(out / "config.json", cfg.to_dict(), ignore=RESUME_FREE)
    if cfg.gold_reward:  # a bad --gold-reward is an input error now, not after training
        from anyfeedback.rewards import load_reward

        load_reward(cfg.gold_reward)
    run = AIHF(cfg, trace)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    run.warm_start()
    start = run.evaluate()  # of the start models, before a checkpoint is restored
    log = MetricsLog(out / "metrics.jsonl")
    first = _resume(run, out) if cfg.resume else 0
    if first:
        log.truncate_after(run.trainer.step)
    else:
        log.log(0, iteration=0, **start)
    row: dict = {}
    try:
        with progress("aihf", cfg.iterations, disable=not cfg.progress) as (bar, task):
            bar.update(task, completed=first)
            for it in range(first + 1, cfg.iterations + 1):
                t0 = time.perf_counter()
                row = {"iteration": it}
                for _ in range(cfg.policy_steps):  # (a) policy improvement first
                    m = run.policy_step()
                row.update({f"policy/{k}": v for k, v in m.items()})
                for u in range(cfg.reward_updates):  # (b) then the reward step
                    row.update(run.reward_step(it - 1, u))
                if it == cfg.iterations or (cfg.eval_every and it % cfg.eval_every == 0):
                    row.update(run.evaluate())
                row["time_s"] = time.perf_counter() - t0
                log.log(run.trainer.step, **row)
                bar.update(task, advance=1, info=f"r {m['reward']:+.3f} kl {m['kl_reverse']:.2f}")
                if cfg.save_steps and it % cfg.save_steps == 0:
                    run.trainer.save_checkpoint(out, {"iteration": it})
                    save_checkpoint(
                        out / "reward_checkpoints",
                        it,
                        policy=run.rm,
                        reference_state={},
                        optimizer=run.rm_opt,
                        scheduler=run.trainer.scheduler,
                        state={"iteration": it},
                        keep=2,
                    )
                debug_sigkill(it)
    finally:
        log.close()
    final = {k: v for k, v in row.items() if k.startswith("eval/")}
    run.trainer.save_model(out / "policy")
    save_final_model(run.rm, run.rm_tok, out / "reward_model", merge_lora=False)
    from anyfeedback.llm.card import write_run_card

    steps = run.trainer.step
    write_run_card(out / "policy", cfg.to_dict(), method="rloo", steps=steps, metrics=final)
    write_run_card(
        out / "reward_model", cfg.to_dict(), method="reward-model", steps=steps, metrics=final
    )
    write_outputs(out, "AIHF (Algorithm 1)", start, final, cfg.to_dict())
    return AIHFResult(out, cfg.iterations, start, final)
