"""Adapter from the feedback data model (`anyfeedback.feedback`) to the trainer's three record
shapes. Text is a string or a list of {"role", "content"} messages.

  Unpaired(prompt, completion, label)   label True = accepted, False = rejected
  Pair(prompt, chosen, rejected)
  Demo(prompt, completion)

`load_records(source, kind)` uses `anyfeedback.feedback.load_feedback` when that package provides
it and converts its records by field name; otherwise it reads JSON / JSONL files itself, inferring
the kind from the keys of the first record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from anyfeedback.errors import InputError

KINDS = ("unpaired", "paired", "demonstration", "prompt-only")


class Unpaired(NamedTuple):
    prompt: Any
    completion: Any
    label: bool


class Pair(NamedTuple):
    prompt: Any
    chosen: Any
    rejected: Any


class Demo(NamedTuple):
    prompt: Any
    completion: Any


class PromptOnly(NamedTuple):
    prompt: Any


def _get(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, dict) else getattr(record, name)


def _has(record: Any, name: str) -> bool:
    if isinstance(record, dict):
        return name in record
    return hasattr(record, name)


def infer_kind(record: Any) -> str:
    """The kind of one record from its fields."""
    if _has(record, "chosen") and _has(record, "rejected"):
        return "paired"
    if _has(record, "completion") and _has(record, "label"):
        return "unpaired"
    if _has(record, "completion"):
        return "demonstration"
    if _has(record, "prompt"):
        return "prompt-only"
    raise InputError("cannot tell the record kind from its fields", record=0)


def _label(value: Any, index: int, source: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("accepted", "rejected", "true", "false"):
        return value.lower() in ("accepted", "true")
    raise InputError(f"label must be a boolean, got {value!r}", source=source, record=index)


def convert(records: list[Any], kind: str, source: str) -> list[NamedTuple]:
    """Records (dicts or objects with the fields) → the NamedTuples above."""
    out: list[NamedTuple] = []
    for i, r in enumerate(records):
        try:
            if kind == "paired":
                out.append(Pair(_get(r, "prompt"), _get(r, "chosen"), _get(r, "rejected")))
            elif kind == "unpaired":
                label = _label(_get(r, "label"), i, source)
                out.append(Unpaired(_get(r, "prompt"), _get(r, "completion"), label))
            elif kind == "demonstration":
                out.append(Demo(_get(r, "prompt"), _get(r, "completion")))
            else:
                out.append(PromptOnly(_get(r, "prompt")))
        except (KeyError, AttributeError) as err:
            raise InputError(
                f"missing field {err} for {kind} records", source=source, record=i
            ) from None
    return out


def _read_json_records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(
                f"invalid JSON: {err.msg}", source=str(path), line=err.lineno
            ) from None
        return data if isinstance(data, list) else data.get("records", [])
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InputError(f"invalid JSON: {err.msg}", source=str(path), line=n) from None
    return rows


def _fallback_load(source: str, kind: str | None) -> tuple[str, list[Any]]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
        rows = [r for p in files for r in _read_json_records(p)]
    elif path.is_file():
        rows = _read_json_records(path)
    else:
        raise InputError("no such file or directory", source=source)
    if not rows:
        raise InputError("the dataset is empty (no records)", source=source)
    return kind or infer_kind(rows[0]), rows


def _feedback_loader():
    try:
        from anyfeedback import feedback
    except ImportError:
        return None
    return getattr(feedback, "load_feedback", None)


def load_records(source: str, kind: str | None = None) -> tuple[str, list[NamedTuple]]:
    """(kind, records) of a feedback file, directory or dataset id; empty data is an error."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown record kind {kind!r}; one of {', '.join(KINDS)}", source=source)
    loader = _feedback_loader()
    if loader is None:
        kind, rows = _fallback_load(source, kind)
    else:
        dataset = loader(source, kind=kind)
        rows = list(getattr(dataset, "records", dataset))
        kind = str(getattr(dataset, "kind", None) or (infer_kind(rows[0]) if rows else kind))
        kind = kind.replace("_", "-")
    if not rows:
        raise InputError("the dataset is empty (no records)", source=source)
    return kind, convert(rows, kind, source)
