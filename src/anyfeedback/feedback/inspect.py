"""Statistics of a feedback dataset for `anyfeedback data inspect`."""

from __future__ import annotations

import statistics
from typing import Any

from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.schema import Demonstration, Paired, Text, Unpaired


def _flat(text: Text) -> str:
    return text if isinstance(text, str) else "\n".join(m["content"] for m in text)


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


def completions_of(ds: FeedbackDataset) -> list[Text]:
    out: list[Text] = []
    for r in ds.records:
        if isinstance(r, (Unpaired, Demonstration)):
            out.append(r.completion)
        elif isinstance(r, Paired):
            out += [r.chosen, r.rejected]
    return out


def dataset_stats(ds: FeedbackDataset) -> dict[str, Any]:
    """Kind, counts and length statistics (characters and whitespace words)."""
    prompts = [_flat(p) for p in ds.prompts]
    comps = [_flat(c) for c in completions_of(ds)]
    identical = sum(isinstance(r, Paired) and r.chosen == r.rejected for r in ds.records)
    return {
        "source": ds.source,
        "kind": ds.kind,
        "conversational": ds.conversational,
        "counts": ds.counts(),
        "prompt_chars": _summary([len(p) for p in prompts]),
        "prompt_words": _summary([len(p.split()) for p in prompts]),
        "completion_chars": _summary([len(c) for c in comps]),
        "completion_words": _summary([len(c.split()) for c in comps]),
        "pairs_with_identical_sides": identical,
    }
