"""Feedback records: the four kinds, their fields, and field-level validation.

Kinds (compatible with the formats TRL users already have):
  unpaired       {prompt, completion, label: bool}      accepted (True) / rejected (False)
  paired         {prompt, chosen, rejected}             chosen ≻ rejected
  demonstration  {prompt, completion}
  prompt-only    {prompt}
Text is a non-empty string, or a non-empty list of chat messages {"role": str, "content": str}.
Optional numeric `reward` / `score` (and `score_chosen` / `score_rejected` for pairs) are kept;
any other field is kept in `extra`. A field name that is close to a known one ("promt") is an
error with a suggestion, not an extra.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from anyfeedback.errors import InputError

Text = str | list[dict[str, str]]

KINDS = ("unpaired", "paired", "demonstration", "prompt-only")
REQUIRED = {
    "unpaired": ("prompt", "completion", "label"),
    "paired": ("prompt", "chosen", "rejected"),
    "demonstration": ("prompt", "completion"),
    "prompt-only": ("prompt",),
}
SCORE_FIELDS = ("reward", "score", "score_chosen", "score_rejected")
KNOWN = ("prompt", "completion", "label", "chosen", "rejected", *SCORE_FIELDS)


@dataclass(frozen=True)
class Unpaired:
    prompt: Text
    completion: Text
    label: bool
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Paired:
    prompt: Text
    chosen: Text
    rejected: Text
    score_chosen: float | None = None
    score_rejected: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Demonstration:
    prompt: Text
    completion: Text
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptOnly:
    prompt: Text
    extra: dict[str, Any] = field(default_factory=dict)


Record = Unpaired | Paired | Demonstration | PromptOnly


class Where:
    """Where a raw row came from, for error messages: file plus line or record number."""

    def __init__(self, source: str, *, line: int | None = None, record: int | None = None):
        self.source, self.line, self.record = source, line, record

    def error(self, problem: str, field_name: str | None = None) -> InputError:
        return InputError(
            problem, source=self.source, line=self.line, record=self.record, field=field_name
        )


def check_field_names(row: dict[str, Any], where: Where) -> None:
    """Reject names that look like misspelt known fields ('promt', 'Chosen', 'completions')."""
    for name in row:
        if name in KNOWN:
            continue
        close = difflib.get_close_matches(str(name).lower(), KNOWN, n=1, cutoff=0.75)
        if close and close[0] not in row:
            raise where.error(f"unknown field (did you mean '{close[0]}'?)", str(name))


def detect_kind(row: dict[str, Any]) -> str:
    """The kind a row's fields describe (before checking that its fields are complete)."""
    if "chosen" in row or "rejected" in row:
        return "paired"
    if "label" in row:
        return "unpaired"
    if "completion" in row:
        return "demonstration"
    return "prompt-only"


def check_text(value: Any, name: str, where: Where) -> Text:
    """A non-empty string or a non-empty list of {"role": str, "content": str} messages."""
    if isinstance(value, str):
        if not value.strip():
            raise where.error("must not be empty", name)
        return value
    if isinstance(value, list):
        if not value:
            raise where.error("message list must not be empty", name)
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise where.error(f"message {i} must be an object with 'role' and 'content'", name)
            if not isinstance(msg["role"], str) or not isinstance(msg["content"], str):
                raise where.error(f"message {i}: 'role' and 'content' must be strings", name)
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if value is None:
        raise where.error("is missing (null)", name)
    raise where.error(f"must be a string or a list of messages, got {type(value).__name__}", name)


def check_label(value: Any, where: Where, *, from_text: bool) -> bool:
    """A boolean. CSV has no booleans, so there (`from_text`) 'true'/'false'/'1'/'0' are read."""
    if isinstance(value, bool):
        return value
    if (
        from_text
        and isinstance(value, str)
        and value.strip().lower() in ("true", "1", "false", "0")
    ):
        return value.strip().lower() in ("true", "1")
    raise where.error(f"must be a boolean (true/false), got {value!r}", "label")


def check_score(value: Any, name: str, where: Where, *, from_text: bool) -> float | None:
    """An optional finite number."""
    if value is None or (from_text and isinstance(value, str) and not value.strip()):
        return None
    if from_text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise where.error(f"must be a number, got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"must be a number, got {value!r}", name)
    if not math.isfinite(value):
        raise where.error(f"must be finite, got {value}", name)
    return float(value)


def build_record(row: dict[str, Any], kind: str, where: Where, *, from_text: bool) -> Record:
    """Validate one raw row as a record of `kind` (fields present, types, values)."""
    if kind == "paired" and "prompt" not in row:
        row = split_implicit_prompt(row, where)
    for name in REQUIRED[kind]:
        if name not in row:
            raise where.error(f"missing (a {kind} record needs {', '.join(REQUIRED[kind])})", name)
    extra = {k: v for k, v in row.items() if k not in KNOWN}
    prompt = check_text(row["prompt"], "prompt", where)

    def score(name: str) -> float | None:
        return check_score(row.get(name), name, where, from_text=from_text)

    if kind == "unpaired":
        completion = check_text(row["completion"], "completion", where)
        label = check_label(row["label"], where, from_text=from_text)
        value = score("score") if "score" in row else score("reward")
        return Unpaired(prompt, completion, label, value, extra)
    if kind == "paired":
        chosen = check_text(row["chosen"], "chosen", where)
        rejected = check_text(row["rejected"], "rejected", where)
        return Paired(
            prompt, chosen, rejected, score("score_chosen"), score("score_rejected"), extra
        )
    if kind == "demonstration":
        completion = check_text(row["completion"], "completion", where)
        value = score("score") if "score" in row else score("reward")
        return Demonstration(prompt, completion, value, extra)
    return PromptOnly(prompt, extra)


def split_implicit_prompt(row: dict[str, Any], where: Where) -> dict[str, Any]:
    """TRL's implicit-prompt pairs: chosen and rejected are whole conversations sharing their
    leading messages; those shared messages become the prompt."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        return row  # not conversational: the missing prompt is reported by the caller
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise where.error("missing, and chosen/rejected share no leading messages", "prompt")
    return {**row, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}
