"""Feedback records: the four kinds, their fields, and field-level validation.

Kinds (compatible with the formats TRL users already have):
  unpaired       {prompt, completion, label: bool}      accepted (True) / rejected (False)
  paired         {prompt, chosen, rejected}             chosen ≻ rejected
  demonstration  {prompt, completion}
  prompt-only    {prompt}                               (`kind="prompt"` is accepted too)
Text is a non-empty string, or a non-empty list of chat messages {"role": str, "content": str};
conversational text is kept as that list (only role and content), never flattened here.
TRL's implicit-prompt pairs (chosen/rejected whole conversations, no prompt field) are split:
their shared leading messages become the prompt. String pairs have no implicit prompt.

Scores: unpaired and demonstration records keep `score` (or, if absent, `reward`); paired
records keep `score_chosen` / `score_rejected`. A kept score must be a finite number.
Every other field goes to `extra`, unvalidated. A field name close to a known one ("promt",
"Label", "completions") is an error with a suggestion, never an extra; when a required field is
missing, a look-alike column ("chosen_text", "response", "instruction") is named in the error.

A pair with chosen == rejected is valid (no preference signal, zero DPO gradient); `data
inspect` warns about such pairs instead of failing, since real datasets contain a few.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from anyfeedback.errors import InputError

Text = str | list[dict[str, str]]


def flat_text(text: Text) -> str:
    """A string as it is; messages as their contents joined by newlines."""
    return text if isinstance(text, str) else "\n".join(m["content"] for m in text)


KINDS = ("unpaired", "paired", "demonstration", "prompt-only")
KIND_ALIASES = {"prompt": "prompt-only", "prompts": "prompt-only", "demos": "demonstration"}
REQUIRED = {
    "unpaired": ("prompt", "completion", "label"),
    "paired": ("prompt", "chosen", "rejected"),
    "demonstration": ("prompt", "completion"),
    "prompt-only": ("prompt",),
}
SCORE_FIELDS = ("reward", "score", "score_chosen", "score_rejected")
KNOWN = ("prompt", "completion", "label", "chosen", "rejected", *SCORE_FIELDS)
# Common column names of other formats, named in 'missing field' errors (never renamed silently).
SYNONYMS = {
    "instruction": "prompt",
    "question": "prompt",
    "query": "prompt",
    "input": "prompt",
    "response": "completion",
    "output": "completion",
    "answer": "completion",
}


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


@dataclass(frozen=True)
class Where:
    """Where a raw row came from: file plus physical line (JSONL, CSV) or 1-based record number
    (JSON, Parquet, datasets). `from_text`: values are strings by nature (CSV)."""

    source: str
    line: int | None = None
    record: int | None = None
    from_text: bool = False

    def error(self, problem: str, field_name: str | None = None) -> InputError:
        return InputError(
            problem, source=self.source, line=self.line, record=self.record, field=field_name
        )


def normalise_kind(kind: str, source: str | None = None) -> str:
    """A kind name or alias → one of KINDS, else InputError."""
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise InputError(f"unknown kind '{kind}' (one of {', '.join(KINDS)})", source=source)
    return kind


def a_kind(kind: str) -> str:
    """'an unpaired', 'a paired': the kind with its article, for messages."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


@functools.lru_cache(maxsize=1024)
def _close_known(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower(), KNOWN, n=1, cutoff=0.75)
    return close[0] if close else None


def check_field_names(row: dict[str, Any], where: Where) -> None:
    """Reject names that look like misspelt known fields ('promt', 'Chosen', 'completions')."""
    for name in row:
        if name in KNOWN:
            continue
        close = _close_known(str(name))
        if close and close not in row:
            raise where.error(f"unknown field (did you mean '{close}'?)", str(name))


def look_alike(row: dict[str, Any], target: str) -> str | None:
    """A column of `row` that probably means `target`: 'chosen_text', 'response' for completion."""
    for name in row:
        if name in KNOWN or not isinstance(name, str):
            continue
        tokens = re.split(r"[_\-\s.]+", name.lower())
        if target in tokens or SYNONYMS.get(name.lower()) == target:
            return name
    return None


def detect_kind(row: dict[str, Any], *, fuzzy: bool = False) -> str:
    """The kind a row's fields describe (before checking that its fields are complete).
    `fuzzy` (used on the first row when the kind is auto-detected) also counts look-alike
    columns, so {prompt, chosen_text, rejected_text} is a broken pair, not a prompt-only row."""
    if "chosen" in row or "rejected" in row:
        return "paired"
    if "label" in row:
        return "unpaired"
    if fuzzy and (look_alike(row, "chosen") or look_alike(row, "rejected")):
        return "paired"
    if fuzzy and look_alike(row, "label"):
        return "unpaired"
    if "completion" in row or (fuzzy and look_alike(row, "completion")):
        return "demonstration"
    return "prompt-only"


def check_text(value: Any, name: str, where: Where) -> Text:
    """A non-empty string or a non-empty list of {"role": str, "content": str} messages."""
    if isinstance(value, str):
        if not value.strip():
            raise where.error("must not be empty or whitespace", name)
        return value
    if isinstance(value, list):
        if not value:
            raise where.error("message list must not be empty", name)
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise where.error(f"message {i} must be an object with 'role' and 'content'", name)
            if not isinstance(msg["role"], str) or not msg["role"].strip():
                raise where.error(f"message {i}: 'role' must be a non-empty string", name)
            if not isinstance(msg["content"], str):
                raise where.error(f"message {i}: 'content' must be a string", name)
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if value is None:
        raise where.error("is missing (null)", name)
    raise where.error(f"must be a string or a list of messages, got {type(value).__name__}", name)


def check_label(value: Any, where: Where) -> bool:
    """A boolean. CSV has no booleans, so there (`where.from_text`) the strings
    'true'/'false'/'1'/'0' (any case, surrounding spaces ignored) are read as booleans."""
    if isinstance(value, bool):
        return value
    if where.from_text and isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "false", "0"):
            return text in ("true", "1")
    raise where.error(f"must be a boolean (true/false), got {value!r}", "label")


def check_score(value: Any, name: str, where: Where) -> float | None:
    """An optional finite number (an empty CSV cell is no score)."""
    if value is None or (where.from_text and isinstance(value, str) and not value.strip()):
        return None
    if where.from_text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise where.error(f"must be a number, got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(f"must be a number, got {value!r}", name)
    if not math.isfinite(value):
        raise where.error(f"must be finite, got {value}", name)
    return float(value)


def _missing(row: dict[str, Any], name: str, kind: str, where: Where) -> InputError:
    problem = f"missing ({a_kind(kind)} record needs {', '.join(REQUIRED[kind])})"
    alike = look_alike(row, name)
    if alike is not None:
        problem += f"; found '{alike}': rename it to '{name}', or give the kind explicitly"
    elif name == "prompt" and kind == "paired":
        problem += "; only conversational pairs have an implicit prompt"
    return where.error(problem, name)


def build_record(
    row: dict[str, Any], kind: str, where: Where, *, from_text: bool | None = None
) -> Record:
    """Validate one raw row as a record of `kind` (fields present, types, values).
    `from_text` overrides `where.from_text` (kept for callers of the first version)."""
    if from_text is not None and from_text != where.from_text:
        where = Where(where.source, where.line, where.record, from_text)
    if kind in ("paired", "prompt-only") and "prompt" not in row:
        row = split_implicit_prompt(row, where)
    for name in REQUIRED[kind]:
        if name not in row:
            raise _missing(row, name, kind, where)
    prompt = check_text(row["prompt"], "prompt", where)
    if kind == "prompt-only":
        return PromptOnly(prompt, _extra(row, REQUIRED[kind]))
    if kind == "paired":
        chosen = check_text(row["chosen"], "chosen", where)
        rejected = check_text(row["rejected"], "rejected", where)
        sc = check_score(row.get("score_chosen"), "score_chosen", where)
        sr = check_score(row.get("score_rejected"), "score_rejected", where)
        used = (*REQUIRED[kind], "score_chosen", "score_rejected")
        return Paired(prompt, chosen, rejected, sc, sr, _extra(row, used))
    completion = check_text(row["completion"], "completion", where)
    score_name = "score" if row.get("score") is not None else "reward"
    score = check_score(row.get(score_name), score_name, where)
    extra = _extra(row, (*REQUIRED[kind], score_name))
    if kind == "unpaired":
        return Unpaired(prompt, completion, check_label(row["label"], where), score, extra)
    return Demonstration(prompt, completion, score, extra)


def _extra(row: dict[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    """Unused fields; a null score field (an empty column of a table) is dropped, not kept."""
    return {k: v for k, v in row.items() if k not in used and not (k in SCORE_FIELDS and v is None)}


def split_implicit_prompt(row: dict[str, Any], where: Where) -> dict[str, Any]:
    """TRL's implicit-prompt pairs: chosen and rejected are whole conversations sharing their
    leading messages; those shared messages become the prompt (each side keeps ≥ 1 message)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        return row  # not conversational: the missing prompt is reported by the caller
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise where.error("missing, and chosen/rejected share no leading messages", "prompt")
    return {**row, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}
