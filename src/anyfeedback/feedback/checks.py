"""Checks for trainers that need strict record kinds: usable preference pairs and
demonstrations (AIHF, reward models). One-line `InputError`s naming the source and record."""

from __future__ import annotations

from anyfeedback.errors import InputError
from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.loaders import load_feedback
from anyfeedback.feedback.schema import Demonstration, Paired


def require_pairs(ds: FeedbackDataset) -> list[Paired]:
    """The records of `ds` as preference pairs (errors name 1-based record numbers); a pair whose chosen equals its rejected carries
    no preference and is an error here (a Bradley–Terry pair needs two different completions)."""
    if ds.kind != "paired":
        raise InputError(
            f"needs preference pairs {{prompt, chosen, rejected}}, got {ds.kind} records",
            source=ds.source,
        )
    if not ds.records:
        raise InputError("no preference pairs", source=ds.source)
    for i, r in enumerate(ds.records):
        if r.chosen == r.rejected:
            raise InputError(
                "chosen and rejected are identical (a preference needs two different completions)",
                source=ds.source,
                record=i + 1,
                field="rejected",
            )
    return list(ds.records)


def require_demos(ds: FeedbackDataset) -> list[Demonstration]:
    """The records of `ds` as demonstrations {prompt, completion}; prompts without completions
    (or other kinds) are an error."""
    if ds.kind == "prompt-only":
        raise InputError(
            "demonstrations need completions: these records have a prompt but no 'completion'",
            source=ds.source,
            record=1,
            field="completion",
        )
    if ds.kind != "demonstration":
        raise InputError(
            f"needs demonstrations {{prompt, completion}}, got {ds.kind} records", source=ds.source
        )
    if not ds.records:
        raise InputError("no demonstrations", source=ds.source)
    for i, r in enumerate(ds.records):
        if not (r.completion.strip() if isinstance(r.completion, str) else r.completion):
            raise InputError("empty completion", source=ds.source, record=i + 1, field="completion")
    return list(ds.records)


def load_pairs(source: str) -> list[Paired]:
    return require_pairs(load_feedback(source))


def load_demos(source: str) -> list[Demonstration]:
    return require_demos(load_feedback(source, kind="demonstration"))
