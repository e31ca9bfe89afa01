"""Shared pieces of the AIHF experiments (Figs. 2–4 analogues, docs/results/aihf.md), offline on
CPU.

Task: continue a review opening (the demo's generated review corpus and its small Llama LMs);
gold reward = VADER sentiment of the continuation (hidden from every learner). From the start
(SFT) model we build, once per data setting:
  demonstrations  the best of 4 start-model samples per prompt by gold reward (high-reward texts)
  pairs           2 start-model samples per prompt, chosen = higher gold reward (ties dropped),
                  each label flipped with probability --noise
  held-out        40 held-out openings (evaluation: each twice, 80 samples); 128 noise-free
                  held-out pairs on them for reward-model accuracy
Every method gets the same data and budget; every final policy is evaluated the same way: one
sampled completion per held-out prompt (fixed seed), mean gold reward, and the KL(π‖π_start)
estimated with the exact per-token KL on those samples (`anyfeedback.llm.aihf.evaluate`).
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from anyfeedback.llm.demo.pretrain import DemoModelSpec, demo_model

SIZES = {
    "S": DemoModelSpec(hidden_size=64, num_layers=2, num_heads=4),
    "L": DemoModelSpec(),  # the demo model: hidden 128, 4 layers
}
MAX_NEW = 24
# budgets (same for every method of a figure)
RL = dict(
    iterations=30,
    policy_steps=2,
    prompts_per_step=8,
    k=4,
    learning_rate=2e-4,
    beta=0.05,
    reward_learning_rate=2e-4,
    reward_batch_size=16,
    max_new_tokens=MAX_NEW,
    max_length=96,
    eval_every=0,
    progress=False,
)
OFFLINE = dict(
    learning_rate=5e-4,
    lr_scheduler_type="constant",
    batch_size=16,
    max_steps=24,
    max_length=96,
    save_steps=0,
    log_kl_every=0,
    progress=False,
)
RM = dict(
    learning_rate=5e-4, batch_size=16, num_epochs=10, max_length=96, eval_every=0, progress=False
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def start_model(size: str) -> Path:
    return demo_model(SIZES[size], log=lambda *_: None)


@dataclass
class TaskData:
    demos: Path
    pairs: Path
    eval_prompts: Path
    eval_pairs: Path
    info: dict


def _samples(model_dir: Path, prompts: list[str], k: int, seed: int) -> list[list[str]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anyfeedback.llm.generate import sample_completions
    from anyfeedback.llm.prompts import encode_prompts

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    gen = sample_completions(
        model, tok, encode_prompts(tok, prompts), k=k, seed=seed, max_new_tokens=MAX_NEW
    )
    return [gen.texts[i * k : (i + 1) * k] for i in range(len(prompts))]


def _pairs(prompts, groups, gold, noise: float, rng: random.Random) -> list[dict]:
    out = []
    for p, (a, b) in zip(prompts, groups, strict=True):
        ra, rb = gold([p, p], [a, b])
        if ra == rb or a == b:
            continue
        chosen, rejected = (a, b) if ra > rb else (b, a)
        if rng.random() < noise:
            chosen, rejected = rejected, chosen
        out.append({"prompt": p, "chosen": chosen, "rejected": rejected})
    return out


def build_task(
    root: Path,
    *,
    n_demos: int = 128,
    n_pairs: int = 128,
    noise: float = 0.0,
    source_size: str = "L",
) -> TaskData:
    """Data of one setting under `root` (cached: rebuilt only if missing)."""
    from anyfeedback.llm.corpus import demo_prompts
    from anyfeedback.rewards import VaderSentiment

    tag = f"d{n_demos}_p{n_pairs}_n{noise:g}"
    d = root / "data" / tag
    files = TaskData(
        d / "demos.jsonl",
        d / "pairs.jsonl",
        root / "data" / "eval_prompts.jsonl",
        root / "data" / "eval_pairs.jsonl",
        {},
    )
    if (d / "info.json").is_file():
        files.info = json.loads((d / "info.json").read_text())
        return files
    gold, model = VaderSentiment(), start_model(source_size)
    prompts = list(dict.fromkeys(demo_prompts(3000, seed=1)))  # 168 distinct review openings
    train_p, eval_p = prompts[:-40], prompts[-40:]  # 128 training, 40 held-out openings

    def cycle(ps: list[str], n: int) -> list[str]:
        return [ps[i % len(ps)] for i in range(n)]

    demo_p, pair_p = cycle(train_p, n_demos), cycle(train_p[::-1], int(n_pairs * 1.5) + 8)
    if not files.eval_prompts.is_file():
        write_jsonl(files.eval_prompts, [{"prompt": p} for p in cycle(eval_p, 80)])
        eval_pair_p = cycle(eval_p, 200)
        groups = _samples(model, eval_pair_p, 2, seed=99)
        write_jsonl(
            files.eval_pairs, _pairs(eval_pair_p, groups, gold, 0.0, random.Random(0))[:128]
        )
    demos = []
    for p, group in zip(demo_p, _samples(model, demo_p, 4, seed=11), strict=True):
        scores = gold([p] * 4, group)
        demos.append(
            {
                "prompt": p,
                "completion": group[max(range(4), key=scores.__getitem__)],
                "gold": max(scores),
            }
        )
    pairs = _pairs(pair_p, _samples(model, pair_p, 2, seed=12), gold, noise, random.Random(13))[
        :n_pairs
    ]
    write_jsonl(files.demos, demos)
    write_jsonl(files.pairs, pairs)
    files.info = {
        "demos": len(demos),
        "pairs": len(pairs),
        "noise": noise,
        "demo_gold_mean": statistics.mean(r["gold"] for r in demos),
    }
    (d / "info.json").write_text(json.dumps(files.info))
    return files


# ---- methods: each returns the final policy directory (and extra numbers) ----


def run_sft(start: Path, data: TaskData, out: Path, seed: int) -> Path:
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.fit import train

    cfg = TrainConfig(
        model=str(start), data=str(data.demos), method="sft", out=str(out), seed=seed, **OFFLINE
    )
    return train(cfg).model_dir


def run_offline(method: str, start: Path, data: TaskData, out: Path, seed: int, **kw) -> Path:
    """dpo | ipo | aihf-dpo on the pairs (+ demonstrations)."""
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.fit import train

    extra = {"demo_data": str(data.demos)} if method == "aihf-dpo" else {}
    cfg = TrainConfig(
        model=str(start),
        data=str(data.pairs),
        method=method,
        out=str(out),
        seed=seed,
        **OFFLINE,
        **extra,
        **kw,
    )
    return train(cfg).model_dir


def run_reward_model(start: Path, data: TaskData, out: Path, seed: int):
    from anyfeedback.llm.reward.config import RewardConfig
    from anyfeedback.llm.reward.train import train_reward

    cfg = RewardConfig(
        model=str(start),
        data=str(data.pairs),
        eval_data=str(data.eval_pairs),
        out=str(out),
        seed=seed,
        **RM,
    )
    return train_reward(cfg)


def run_rl(
    start: Path, data: TaskData, out: Path, seed: int, rm_dir: Path, *, joint: bool, **kw
) -> dict:
    """RLHF (joint=False: RLOO on the frozen BT reward model) or AIHF (joint=True: the same RL
    steps, plus one joint reward step per iteration, reward initialised at the same RM)."""
    from anyfeedback.llm.aihf.config import AIHFConfig
    from anyfeedback.llm.aihf.loop import run_aihf

    cfg = AIHFConfig(
        model=str(start),
        demos=str(data.demos),
        pairs=str(data.pairs),
        out=str(out),
        reward_model=str(rm_dir),
        seed=seed,
        eval_pairs=str(data.eval_pairs),
        reward_updates=1 if joint else 0,
        demo_weight=1.0 if joint else 0.0,
        **{**RL, **kw},
    )
    result = run_aihf(cfg)
    return {"policy": out / "policy", "rm_accuracy": result.final.get("eval/rm_accuracy")}


def run_self_play(start: Path, data: TaskData, out: Path, seed: int, *, pref_weight: float):
    from anyfeedback.llm.aihf.config import SelfPlayConfig
    from anyfeedback.llm.aihf.selfplay import run_self_play as run

    cfg = SelfPlayConfig(
        model=str(start),
        demos=str(data.demos),
        pairs=str(data.pairs),
        out=str(out),
        seed=seed,
        pref_weight=pref_weight,
        iterations=3,
        epochs=1,
        batch_size=16,
        learning_rate=OFFLINE["learning_rate"],
        max_new_tokens=MAX_NEW,
        max_length=96,
        progress=False,
    )
    run(cfg)
    return out / "model"


def evaluate(policy: Path, start: Path, data: TaskData) -> dict:
    from anyfeedback.llm.aihf.evaluate import evaluate_model_dir
    from anyfeedback.rewards import VaderSentiment

    prompts = [json.loads(x)["prompt"] for x in data.eval_prompts.read_text().splitlines()]
    ev = evaluate_model_dir(
        policy, start, prompts, VaderSentiment(), seed=0, max_new_tokens=MAX_NEW
    )
    return {"gold": ev.gold_reward, "kl": ev.kl_to_start}


def summarise(values: list[float]) -> dict:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": sd, "values": values}


def set_threads(n: int = 1) -> None:
    torch.set_num_threads(n)


def run_method(name: str, start: Path, data: TaskData, work: Path, seed: int, rm=None) -> dict:
    """Train `name` from `start` on `data` (seed), evaluate it; `rm` is the BT reward model run
    (RLHF and AIHF start from it). Returns {"gold", "kl", ...}."""
    out = work / f"{name}-s{seed}"
    extra: dict = {}
    if name == "SFT":
        policy = run_sft(start, data, out, seed)
    elif name in ("DPO", "IPO"):
        policy = run_offline(name.lower(), start, data, out, seed)
    elif name == "AIHF-DPO":
        policy = run_offline("aihf-dpo", start, data, out, seed, demo_mode="nll")
    elif name == "AIHF-DPO-contrastive":
        policy = run_offline(
            "aihf-dpo", start, data, out, seed, demo_mode="contrastive", demo_max_new_tokens=MAX_NEW
        )
    elif name == "SPIN":
        policy = run_self_play(start, data, out, seed, pref_weight=0.0)
    elif name == "Self-Play AIHF":
        policy = run_self_play(start, data, out, seed, pref_weight=1.0)
    elif name in ("RLHF", "AIHF"):
        r = run_rl(start, data, out, seed, rm.model_dir, joint=name == "AIHF")
        policy = r["policy"]
        extra["rm_accuracy"] = r["rm_accuracy"] if name == "AIHF" else rm.accuracy
    else:
        raise ValueError(name)
    return {**evaluate(policy, start, data), **extra}


def aggregate(per_seed: list[dict]) -> dict:
    keys = per_seed[0].keys()
    return {k: summarise([r[k] for r in per_seed]) for k in keys if per_seed[0][k] is not None}


COLORS = {
    "SFT": "tab:gray",
    "RLHF": "tab:blue",
    "AIHF": "tab:red",
    "DPO": "tab:blue",
    "IPO": "tab:cyan",
    "AIHF-DPO": "tab:red",
    "AIHF-DPO-contrastive": "tab:pink",
    "SPIN": "tab:green",
    "Self-Play AIHF": "tab:orange",
    "start": "black",
}


def scatter(ax, results: dict, title: str) -> None:
    """Gold reward against KL to the start model: each seed a dot, mean ± std as error bars."""
    for name, r in results.items():
        c = COLORS.get(name, None)
        ax.scatter(r["kl"]["values"], r["gold"]["values"], color=c, alpha=0.35, s=14)
        ax.errorbar(
            r["kl"]["mean"],
            r["gold"]["mean"],
            xerr=r["kl"]["std"],
            yerr=r["gold"]["std"],
            fmt="o",
            color=c,
            label=name,
            capsize=3,
        )
    ax.set_xlabel("KL(π ‖ π_start) per sequence (nats)")
    ax.set_ylabel("gold reward (VADER) of held-out samples")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_figure(fig, path: Path) -> None:
    from anyfeedback import runs

    fig.tight_layout()
    runs.save_figure(fig, path)


def write_results(out: Path, name: str, payload: dict, command: str) -> None:
    from anyfeedback.runs import atomic_write_json

    atomic_write_json(out / f"{name}.json", {**payload, "command": command})
