"""Feedback data for the trainer: loading through `anyfeedback.feedback` and the record kinds each
method takes (anything else is a one-line InputError before training).

  pmpo      unpaired (native: accepted-only, rejected-only or both), paired (unpaired: chosen
            accepted, rejected rejected), demonstrations (accepted)
  kto       unpaired, paired (unpaired)
  dpo, ipo  paired
  aihf-dpo  paired (+ demonstrations from --demo-data)
  sft       demonstrations, the accepted side of unpaired, the chosen side of paired

Records are the feedback package's dataclasses (`Unpaired`, `Paired`, `Demonstration`); text is a
string or a list of {"role", "content"} messages.
"""

from __future__ import annotations

from anyfeedback.errors import InputError
from anyfeedback.feedback import (
    Demonstration,
    FeedbackDataset,
    Paired,
    Unpaired,
    demos_from,
    load_feedback,
    pairs_to_unpaired,
)

__all__ = ["Demonstration", "Paired", "Unpaired", "for_method", "load_dataset", "load_records"]


def load_dataset(
    source, kind: str | None = None, *, split: str = "train", name: str | None = None
) -> FeedbackDataset:
    """Validated records of a feedback file, directory, dataset id or in-memory dataset (its
    `split`, and a Hub dataset's configuration `name`); empty data is an error."""
    ds = load_feedback(source, kind=kind, split=split, name=name)
    if len(ds) == 0:
        raise InputError("the dataset is empty (no records)", source=ds.source)
    return ds


def for_method(method: str, ds: FeedbackDataset) -> FeedbackDataset:
    """`ds` converted to what `method` trains on: unpaired, paired or demonstration records."""
    if method in ("self-play-aihf", "rloo"):
        command = "self-play" if method == "self-play-aihf" else "aihf"
        raise InputError(
            f"{method} samples from the policy while it trains: use `anyfeedback {command}`",
            source="config",
        )
    source = ds.source
    if ds.kind == "prompt-only":
        raise InputError(
            f"prompt-only data has no completions to learn from; '{method}' needs labelled "
            "completions (use the online loop to sample and label them)",
            source=source,
        )
    if method in ("dpo", "ipo", "aihf-dpo"):
        if ds.kind != "paired":
            raise InputError(
                f"{method} needs paired preferences {{prompt, chosen, rejected}}, got {ds.kind} "
                "records (use --method pmpo or kto for unpaired labels, sft for demonstrations)",
                source=source,
            )
        return ds
    if method == "sft":
        demos = demos_from(ds)
        if len(demos) == 0:
            raise InputError(
                "sft needs accepted completions; none are labelled accepted", source=source
            )
        return demos
    if ds.kind == "paired":
        return pairs_to_unpaired(ds)
    if ds.kind == "demonstration":
        if method == "kto":
            raise InputError(
                "kto needs desirable and undesirable labels; demonstrations carry none "
                "(use --method sft or pmpo)",
                source=source,
            )
        accepted = [Unpaired(r.prompt, r.completion, True) for r in ds.records]
        return FeedbackDataset("unpaired", accepted, source)
    return ds


def load_records(source: str, kind: str | None = None) -> tuple[str, list]:
    """(kind, records) of a feedback source (`load_dataset` as a tuple)."""
    ds = load_dataset(source, kind)
    return ds.kind, ds.records
