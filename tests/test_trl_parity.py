"""Trajectory parity with TRL (docs/results/trl-parity.md): our DPO and KTO steps and TRL's
DPOTrainer / KTOTrainer, from the same tiny model, on the same records in the same order, with
matched settings (sequential order, the same lr and linear schedule, AdamW betas/eps, no weight
decay, clipping at 1, float32, an explicit reference model). Our side gets exactly the token ids
TRL's own preprocessing produced (its EOS appended, its prompt/completion split), so the test
compares the optimisation, not two tokenisers."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

STEPS, BATCH, LR, BETA = 3, 4, 1e-3, 0.1  # batch 4: the two KTO pairings differ


def _trl_args(cls, out, **extra):
    return cls(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        max_steps=STEPS,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim="adamw_torch",
        beta=BETA,
        bf16=False,
        use_cpu=True,
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        seed=0,
        **extra,
    )


def _recorded_losses(trainer) -> list[float]:
    """Wrap `compute_loss` to keep each step's loss at full precision (the logs round it)."""
    losses, inner = [], trainer.compute_loss

    def compute_loss(*args, **kwargs):
        out = inner(*args, **kwargs)
        losses.append((out[0] if isinstance(out, tuple) else out).item())
        return out

    trainer.compute_loss = compute_loss
    return losses


def _ours(tiny_model, tmp_path, method: str, batches_of):
    """Our Trainer on the step batches `batches_of(tokenizer)`; (losses, final weights)."""
    from anyfeedback.llm import TrainConfig
    from anyfeedback.llm.trainer import Trainer

    cfg = TrainConfig(
        model=str(tiny_model),
        data="<test>",
        method=method,
        beta=BETA,
        out=str(tmp_path / "ours"),
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        batch_size=BATCH,
        max_steps=STEPS,
        save_steps=0,
        progress=False,
        logp_reduction="sum",
    )
    trainer = Trainer(cfg, total_steps=STEPS)
    losses = [trainer.train_step([b])["loss"] for b in batches_of(trainer.tokenizer)]
    return losses, {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}


def _records(feedback_files, kind: str, n: int) -> list[dict]:
    rows = [json.loads(x) for x in feedback_files[kind].read_text().splitlines()][:n]
    return rows


def _assert_same(ours, theirs, trl_model, start_weights):
    (our_losses, our_weights), their_losses = ours, theirs
    assert len(our_losses) == len(their_losses) == STEPS
    for step, (a, b) in enumerate(zip(our_losses, their_losses, strict=True)):
        assert abs(a - b) <= 1e-4, f"step {step + 1}: ours {a:.6f}, TRL {b:.6f}"
    theirs = trl_model.state_dict()
    worst = max((our_weights[k] - v).abs().max().item() for k, v in theirs.items())
    assert worst <= 1e-4, f"final weights differ by {worst:.2e}"
    moved = max((our_weights[k] - v).abs().max().item() for k, v in start_weights.items())
    assert moved > 1e-3  # both moved far more than the tolerance


def test_dpo_matches_trl_dpo_trainer(tiny_model, feedback_files, tmp_path, one_thread):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from anyfeedback.llm.batching import collate_pairs
    from anyfeedback.llm.data import Example

    rows = _records(feedback_files, "paired", STEPS * BATCH)
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    tok = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = _trl_args(DPOConfig, tmp_path / "trl", loss_type=["sigmoid"])
    trl = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok
    )
    tokens = list(trl.train_dataset)  # TRL's prompt_ids / chosen_ids / rejected_ids, in order
    their_losses = _recorded_losses(trl)
    trl.train()

    def batches(tokenizer):
        ex = [Example(t["prompt_ids"], (t["chosen_ids"], t["rejected_ids"])) for t in tokens]
        pad = tokenizer.pad_token_id
        return [collate_pairs(ex[i : i + BATCH], pad) for i in range(0, len(ex), BATCH)]

    _assert_same(
        _ours(tiny_model, tmp_path, "dpo", batches), their_losses, trl.model, ref.state_dict()
    )


def test_kto_matches_trl_kto_trainer(tiny_model, feedback_files, tmp_path, one_thread):
    """KTO, with one documented difference bridged: TRL pairs prompt i with completion i − 1 of
    the batch for the reference point, we with completion i + 1 (both are the paper's
    mismatched pairs); our batches here use TRL's pairing, so everything else is compared."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    from anyfeedback.llm.batching import collate_unpaired
    from anyfeedback.llm.data import Example
    from anyfeedback.llm.packing import pack

    rows = _records(feedback_files, "unpaired", STEPS * BATCH)
    data = Dataset.from_list(
        [{"prompt": r["prompt"], "completion": r["completion"], "label": r["label"]} for r in rows]
    )
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = _trl_args(KTOConfig, tmp_path / "trl")
    trl = KTOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok
    )
    tokens = list(trl.train_dataset)
    their_losses = _recorded_losses(trl)
    trl.train()

    def batches(tokenizer):
        pad, out = tokenizer.pad_token_id, []
        for i in range(0, len(tokens), BATCH):
            part = tokens[i : i + BATCH]
            ex = [Example(t["prompt_ids"], (t["completion_ids"],), t["label"]) for t in part]
            batch = collate_unpaired(ex, pad, mismatched=True)
            batch.mismatched = pack(
                [t["prompt_ids"] for t in part], [t["KL_completion_ids"] for t in part], pad
            )
            out.append(batch)
        return out

    _assert_same(
        _ours(tiny_model, tmp_path, "kto", batches), their_losses, trl.model, ref.state_dict()
    )
