"""The feedback data model: record kinds, loaders, validation, conversions.

    from anyfeedback.feedback import load_feedback
    ds = load_feedback("prefs.jsonl")          # kind detected: 'paired'
    ds.kind, len(ds), ds.counts()

Imports only the standard library at import time (pyarrow/datasets load when such a file is read).
"""

from anyfeedback.feedback.convert import (
    demos_from,
    label_by_group_mean,
    label_by_rank,
    label_by_threshold,
    label_groups,
    label_scored_samples,
    pairs_to_unpaired,
)
from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.inspect import dataset_stats
from anyfeedback.feedback.loaders import load_feedback
from anyfeedback.feedback.schema import (
    KINDS,
    Demonstration,
    Paired,
    PromptOnly,
    Record,
    Text,
    Unpaired,
)

__all__ = [
    "KINDS",
    "Demonstration",
    "FeedbackDataset",
    "Paired",
    "PromptOnly",
    "Record",
    "Text",
    "Unpaired",
    "dataset_stats",
    "demos_from",
    "label_by_group_mean",
    "label_by_rank",
    "label_by_threshold",
    "label_groups",
    "label_scored_samples",
    "load_feedback",
    "pairs_to_unpaired",
]
