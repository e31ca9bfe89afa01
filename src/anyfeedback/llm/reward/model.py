"""Loading and scoring a reward model r_φ(x, y): [B] scalars from prompt + completion text.

The model scores the text `prompt + completion` (messages flattened to their contents, one per
line), tokenised with the tokenizer's special tokens, truncated from the left to `max_length`
so the scored last token is kept, right-padded. This is exactly how
`anyfeedback.rewards.SequenceClassifierReward` scores, so a model trained here gives the same
numbers when the online loop loads it as `--reward DIR`.
"""

from __future__ import annotations

import torch

from anyfeedback.errors import InputError
from anyfeedback.feedback.schema import Text, flat_text


def load_reward_model(name_or_path: str, *, seed: int = 0, trust_remote_code: bool = False):
    """(model, tokenizer): a one-output sequence classifier on the backbone `name_or_path`.

    A causal-LM checkpoint gets a fresh, bias-free linear head (seeded, weights ~ N(0, 0.02²)
    as HF initialises it); a saved reward model loads with its trained head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load the tokenizer: {first}", source=name_or_path) from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.truncation_side, tok.padding_side = "left", "right"
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized score weights" is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=1, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"cannot load a reward model: {first}", source=name_or_path) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tok.pad_token_id
    model.config.use_cache = False
    from anyfeedback.llm.model import zero_dropout

    zero_dropout(model)
    return model, tok


def score(
    model,
    tokenizer,
    prompts: list[Text],
    completions: list[Text],
    *,
    max_length: int = 512,
    clip: float = 0.0,
) -> torch.Tensor:
    """r_φ(x_b, y_b) for each b, [B] (with grad if enabled). `clip` > 0 clamps to ±clip (the
    bound the linear ML-IRL demo term needs, docs/algorithms.md#aihf-demo)."""
    texts = [flat_text(p) + flat_text(c) for p, c in zip(prompts, completions, strict=True)]
    enc = tokenizer(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
    )
    device = next(model.parameters()).device
    out = model(
        input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)
    ).logits[:, 0]
    return out.clamp(-clip, clip) if clip > 0 else out


@torch.no_grad()
def pair_accuracy(model, tokenizer, pairs, *, max_length: int = 512, batch_size: int = 32):
    """(accuracy, mean BT loss) on pairs: the fraction with r(chosen) > r(rejected), ties ½."""
    from anyfeedback.losses import bradley_terry_loss

    was = model.training
    model.eval()
    wins, losses = [], []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        prompts = [p.prompt for p in chunk] * 2
        r = score(
            model,
            tokenizer,
            prompts,
            [p.chosen for p in chunk] + [p.rejected for p in chunk],
            max_length=max_length,
        )
        rc, rr = r[: len(chunk)], r[len(chunk) :]
        wins.append((rc > rr).float() + 0.5 * (rc == rr).float())
        losses.append(bradley_terry_loss(rc, rr)[0] * len(chunk))
    model.train(was)
    n = len(pairs)
    return float(torch.cat(wins).mean()), float(sum(losses) / n)
