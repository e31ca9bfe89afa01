"""Trajectory parity with TRL on a bigger model (the test, tests/test_trl_parity.py, uses a tiny
one): our DPO or KTO step and TRL's DPOTrainer / KTOTrainer, from the same model, on the same
records in the same order, with matched settings (see docs/results/trl-parity.md); prints each
step's loss on both sides and the largest final weight difference.

    HF_HUB_OFFLINE=1 python experiments/trl_parity.py --model DIR --data FILE.jsonl \\
        --method kto --steps 12 --batch-size 8 --lr 5e-5 [--pairing ours|trl]

`--data`: paired JSONL {prompt, chosen, rejected} for dpo, unpaired {prompt, completion, label}
for kto. KTO `--pairing ours` keeps our mismatched pairs (x_i, y_{i+1}) instead of TRL's
(x_i, y_{i−1}) to show what that one difference does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch


def trl_run(args, out: Path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    rows = rows[: args.steps * args.batch_size]
    tok = AutoTokenizer.from_pretrained(args.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    common = dict(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        beta=args.beta,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
    )
    if args.method == "dpo":
        from trl import DPOConfig as Config
        from trl import DPOTrainer as TRLTrainer

        keys = ("prompt", "chosen", "rejected")
    else:
        from trl import KTOConfig as Config
        from trl import KTOTrainer as TRLTrainer

        keys = ("prompt", "completion", "label")
    data = Dataset.from_list([{k: r[k] for k in keys} for r in rows])
    trainer = TRLTrainer(
        model=model, ref_model=ref, args=Config(**common), train_dataset=data, processing_class=tok
    )
    tokens = list(trainer.train_dataset)
    losses, inner = [], trainer.compute_loss

    def compute_loss(*a, **kw):
        result = inner(*a, **kw)
        losses.append((result[0] if isinstance(result, tuple) else result).item())
        return result

    trainer.compute_loss = compute_loss
    trainer.train()
    return tokens, losses, trainer.model.state_dict()


def our_run(args, tokens, out: Path):
    from anyfeedback.llm import TrainConfig
    from anyfeedback.llm.batching import collate_pairs, collate_unpaired
    from anyfeedback.llm.data import Example
    from anyfeedback.llm.packing import pack
    from anyfeedback.llm.trainer import Trainer

    cfg = TrainConfig(
        model=args.model,
        data="<parity>",
        method=args.method,
        beta=args.beta,
        out=str(out),
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        batch_size=args.batch_size,
        max_steps=args.steps,
        save_steps=0,
        progress=False,
        logp_reduction="sum",
    )
    trainer = Trainer(cfg, total_steps=args.steps)
    pad, losses = trainer.tokenizer.pad_token_id, []
    for s in range(0, len(tokens), args.batch_size):
        part = tokens[s : s + args.batch_size]
        if args.method == "dpo":
            ex = [Example(t["prompt_ids"], (t["chosen_ids"], t["rejected_ids"])) for t in part]
            batch = collate_pairs(ex, pad)
        else:
            ex = [Example(t["prompt_ids"], (t["completion_ids"],), t["label"]) for t in part]
            batch = collate_unpaired(ex, pad, mismatched=True)
            if args.pairing == "trl":
                prompts = [t["prompt_ids"] for t in part]
                batch.mismatched = pack(prompts, [t["KL_completion_ids"] for t in part], pad)
        losses.append(trainer.train_step([batch])["loss"])
    return losses, trainer.policy.state_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--method", choices=("dpo", "kto"), default="dpo")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--pairing", choices=("trl", "ours"), default="trl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tokens, theirs, their_weights = trl_run(args, Path(tmp) / "trl")
        ours, our_weights = our_run(args, tokens, Path(tmp) / "ours")
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True), 1):
        print(f"step {step}: ours {a:.6f}  TRL {b:.6f}  diff {abs(a - b):.2e}")
    worst = max((our_weights[k] - v).abs().max().item() for k, v in their_weights.items())
    print(f"largest final weight difference: {worst:.2e}")


if __name__ == "__main__":
    main()
