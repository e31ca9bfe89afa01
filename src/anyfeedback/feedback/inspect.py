"""Statistics of a feedback dataset, for `anyfeedback data inspect` (text or `--json`).

Lengths are counted in characters and whitespace-separated words (no tokenizer needed); for
conversational text, over the messages' contents joined by newlines. Completions are all
completion-side texts (both sides of a pair); `by_side` splits them into the preferred side
(accepted / chosen) and the other (rejected), a quick check for length bias in preference data.
"""

from __future__ import annotations

import statistics
from typing import Any

from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.schema import Demonstration, Paired, PromptOnly, Text, Unpaired, flat_text


def summary(values: list[float]) -> dict[str, float]:
    """min / median / mean / max of `values` ({} when empty)."""
    if not values:
        return {}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 3),
        "max": max(values),
    }


def _sides(ds: FeedbackDataset) -> tuple[list[Text], list[Text]]:
    """(preferred, other) completion texts: accepted/chosen/demos vs rejected."""
    good: list[Text] = []
    bad: list[Text] = []
    for r in ds.records:
        if isinstance(r, Unpaired):
            (good if r.label else bad).append(r.completion)
        elif isinstance(r, Paired):
            good.append(r.chosen)
            bad.append(r.rejected)
        elif isinstance(r, Demonstration):
            good.append(r.completion)
    return good, bad


def _lengths(texts: list[Text]) -> dict[str, dict[str, float]]:
    flat = [flat_text(t) for t in texts]
    return {
        "chars": summary([len(t) for t in flat]),
        "words": summary([len(t.split()) for t in flat]),
    }


def _scores(ds: FeedbackDataset) -> dict[str, dict[str, float]]:
    named: dict[str, list[float]] = {}
    for r in ds.records:
        if isinstance(r, Paired):
            pairs = (("score_chosen", r.score_chosen), ("score_rejected", r.score_rejected))
        elif isinstance(r, PromptOnly):
            pairs = ()
        else:
            pairs = (("score", r.score),)
        for name, value in pairs:
            if value is not None:
                named.setdefault(name, []).append(value)
    return {name: {"count": len(v), **summary(v)} for name, v in named.items()}


def _warnings(ds: FeedbackDataset) -> list[str]:
    out = []
    identical = sum(isinstance(r, Paired) and r.chosen == r.rejected for r in ds.records)
    if identical:
        out.append(f"{identical} pairs have chosen == rejected (no preference signal)")
    counts = ds.counts()
    if ds.kind == "unpaired" and counts["records"] and not counts["rejected"]:
        out.append("no rejected completions (PMPO with alpha < 1 or KTO need some)")
    if ds.kind == "unpaired" and counts["records"] and not counts["accepted"]:
        out.append("no accepted completions")
    return out


def dataset_stats(ds: FeedbackDataset) -> dict[str, Any]:
    """Kind, counts, length and score statistics, extra fields and warnings (JSON-ready)."""
    good, bad = _sides(ds)
    prompts = _lengths(ds.prompts)
    completions = _lengths(good + bad)
    extra = sorted({k for r in ds.records for k in r.extra})
    return {
        "source": ds.source,
        "kind": ds.kind,
        "conversational": ds.conversational,
        "counts": ds.counts(),
        "prompt_chars": prompts["chars"],
        "prompt_words": prompts["words"],
        "completion_chars": completions["chars"],
        "completion_words": completions["words"],
        "by_side": {"preferred": _lengths(good), "rejected": _lengths(bad)} if bad else {},
        "scores": _scores(ds),
        "extra_fields": extra,
        "pairs_with_identical_sides": sum(
            isinstance(r, Paired) and r.chosen == r.rejected for r in ds.records
        ),
        "warnings": _warnings(ds),
    }


COUNTS_SHOWN = {
    "unpaired": ("accepted", "rejected"),
    "paired": ("pairs",),
    "demonstration": ("demos",),
    "prompt-only": (),
}


def _line(name: str, s: dict[str, float]) -> str:
    return f"  {name:<24} min {s['min']}  median {s['median']}  mean {s['mean']}  max {s['max']}"


def format_stats(stats: dict[str, Any]) -> list[str]:
    """`dataset_stats` as the human-readable lines `data inspect` prints."""
    counts = stats["counts"]
    shown = ("records", *COUNTS_SHOWN.get(stats["kind"], ()), "unique_prompts")
    conv = " (conversational)" if stats["conversational"] else ""
    lines = [
        f"{stats['source']}: {stats['kind']}{conv}",
        "  counts: " + ", ".join(f"{k.replace('_', ' ')} {counts[k]}" for k in shown),
    ]
    for key in ("prompt_chars", "prompt_words", "completion_chars", "completion_words"):
        if stats[key]:
            lines.append(_line(key, stats[key]))
    for side, lengths in stats["by_side"].items():
        if lengths["chars"]:
            lines.append(_line(f"{side}_chars", lengths["chars"]))
    for name, s in stats["scores"].items():
        lines.append(_line(f"{name} (n={s['count']})", s))
    if stats["extra_fields"]:
        lines.append(f"  extra fields: {', '.join(stats['extra_fields'])}")
    lines += [f"  warning: {w}" for w in stats["warnings"]]
    lines.append("  problems: none")
    return lines
