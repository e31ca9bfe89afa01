"""Pluggable rewards for the online loop: `score(prompts, completions) -> list[float]`.

A reward is any callable taking two equal-length lists of strings and returning one finite float
per completion. `load_reward(spec)` builds one from a string:
  - "sentiment" / "vader": VADER lexicon sentiment (compound score in [−1, 1]) of the completion;
  - "module:function":     a user callable: a module importable from the working directory
                           (no PYTHONPATH needed), or "path/to/file.py:function" — the only
                           code this package runs from a user's inputs;
  - a directory or Hub id: a Hugging Face sequence-classification reward model, scored on
                           prompt + completion (one logit, or the last label's logit).
`checked_scores` validates what a reward returns and names the offending prompt index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from anyfeedback.errors import InputError

RewardFn = Callable[[list[str], list[str]], Sequence[float]]


class RewardError(InputError):
    """A reward returned something unusable (NaN, wrong length, non-number) or raised."""


class VaderSentiment:
    """VADER compound sentiment of the completion, in [−1, 1] (package `vaderSentiment`)."""

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise InputError("the sentiment reward needs `pip install vaderSentiment`") from err
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [self._analyzer.polarity_scores(c)["compound"] for c in completions]


class SequenceClassifierReward:
    """A Hugging Face sequence-classification model as a reward: r(x, y) = logit on x + y.

    One output label: that logit. Several: the logit of the last label (e.g. "positive")."""

    def __init__(
        self,
        name_or_path: str,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code
        )
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                name_or_path, trust_remote_code=trust_remote_code
            )
            .to(device)
            .eval()
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.batch_size = device, batch_size

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            texts = [
                p + c
                for p, c in zip(
                    prompts[i : i + self.batch_size],
                    completions[i : i + self.batch_size],
                    strict=True,
                )
            ]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
            with self._torch.inference_mode():
                logits = self.model(**enc.to(self.device)).logits  # [b, num_labels]
            out.extend(logits[:, -1].float().tolist())
        return out


def _import_callable(spec: str) -> RewardFn:
    from anyfeedback.usercode import import_callable

    return import_callable(spec, field="reward")


def load_reward(spec: str, **kwargs) -> RewardFn:
    """Build a reward from a spec string (see module docstring)."""
    if spec in ("sentiment", "vader"):
        return VaderSentiment()
    if ":" in spec and not Path(spec).exists():
        return _import_callable(spec)
    looks_like_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/"))
    if Path(spec).is_dir() or looks_like_hub_id:
        try:
            return SequenceClassifierReward(spec, **kwargs)
        except Exception as err:  # OSError, a bogus config.json (ValueError), missing weights
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise InputError(
                f"reward model '{spec}' could not be loaded: {type(err).__name__}: {first}",
                field="reward",
            ) from None
    raise InputError(
        f"unknown reward '{spec}': use 'sentiment', 'module:function', "
        "or a sequence-classification model directory / Hub id"
    )


def checked_scores(
    reward: RewardFn, prompts: list[str], completions: list[str], *, offset: int = 0
) -> list[float]:
    """Call `reward` and validate: one finite float per completion. Errors name the index of
    the offending prompt in the batch (plus `offset`) and its text; if the reward raises, it
    is called again one sample at a time to find the first sample that fails."""
    try:
        scores = list(reward(prompts, completions))
    except Exception as err:  # a user reward can raise anything; locate and report it
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            try:
                reward([p], [c])
            except Exception as inner:
                raise RewardError(
                    f"reward raised {type(inner).__name__}: {inner} "
                    f"(prompt index {offset + i}: {p[:60]!r})"
                ) from inner
        raise RewardError(f"reward raised {type(err).__name__}: {err} on the batch") from err
    if len(scores) != len(prompts):
        raise RewardError(
            f"reward returned {len(scores)} scores for {len(prompts)} completions "
            f"(prompt indices {offset}..{offset + len(prompts) - 1})"
        )
    out = []
    for i, s in enumerate(scores):
        try:
            value = float(s)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise RewardError(
                f"reward returned {s!r} (not a finite number) for prompt index "
                f"{offset + i}: {prompts[i][:60]!r}"
            )
        out.append(value)
    return out
