"""The feedback data model: record kinds, loaders, validation, conversions.

    from anyfeedback.feedback import load_feedback
    ds = load_feedback("prefs.jsonl")          # kind detected: 'paired'
    ds.kind, len(ds), ds.counts(), ds.accepted, ds.rejected

Kinds: 'unpaired' (`Unpaired`), 'paired' (`Paired`), 'demonstration' (`Demonstration`),
'prompt-only' (`PromptOnly`); frozen dataclasses whose text is a str or a list of
{"role", "content"} messages. Sources: .jsonl, .json, .csv, .parquet, a directory of those, a
saved HF dataset directory, or a Hub id. Every problem is one-line `InputError`
(file:line N / record N: field 'x': problem). See schema.py (fields, decisions), loaders.py
(formats), convert.py (labelling rules and their tie-breaking).

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
    flat_text,
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
    "flat_text",
    "demos_from",
    "label_by_group_mean",
    "label_by_rank",
    "label_by_threshold",
    "label_groups",
    "label_scored_samples",
    "load_feedback",
    "pairs_to_unpaired",
]
