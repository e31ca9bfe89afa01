"""Conversions between feedback kinds, and labelling of scored samples.

Labelling rules, for one group of K scored samples of the same prompt (the online loop's unit):
  rank:       the k_accept best are accepted, then the k_reject worst of the *rest* rejected
              (accepted wins when K < k_accept + k_reject). Sorting is stable, so among equal
              scores the earlier sample ranks higher. A tie across the boundary carries no
              preference: if the lowest accepted score equals the highest rejected score, every
              sample with that score is left unlabelled (so all-equal scores label nothing).
  threshold:  score > t accepted, score < t rejected, score == t unlabelled.
  group-mean: the sign of score − mean(group); exactly the mean is unlabelled.
A label is True (accepted), False (rejected) or None (not used).
"""

from __future__ import annotations

from collections.abc import Sequence

from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.schema import Demonstration, Paired, Text, Unpaired

Label = bool | None


def label_by_rank(scores: Sequence[float], k_accept: int = 2, k_reject: int = 2) -> list[Label]:
    """Top-k accepted, bottom-k rejected within one group (see module docstring for ties)."""
    if k_accept < 0 or k_reject < 0:
        raise ValueError("k_accept and k_reject must be >= 0")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep order
    accepted = order[:k_accept]
    rest = order[k_accept:]
    rejected = rest[len(rest) - min(k_reject, len(rest)) :]
    labels: list[Label] = [None] * len(scores)
    for i in accepted:
        labels[i] = True
    for i in rejected:
        labels[i] = False
    if accepted and rejected:
        low, high = min(scores[i] for i in accepted), max(scores[i] for i in rejected)
        if low == high:  # a tie across the boundary is no preference
            for i in range(len(scores)):
                if scores[i] == low:
                    labels[i] = None
    return labels


def label_by_threshold(scores: Sequence[float], threshold: float) -> list[Label]:
    return [True if s > threshold else False if s < threshold else None for s in scores]


def label_by_group_mean(scores: Sequence[float]) -> list[Label]:
    mean = sum(scores) / len(scores)
    return label_by_threshold(scores, mean)


def label_groups(scores: Sequence[float], k: int, rule: str, **kwargs) -> list[Label]:
    """Apply a rule to consecutive groups of `k` scores (prompt-major layout)."""
    if k < 1 or len(scores) % k:
        raise ValueError(f"{len(scores)} scores do not split into groups of {k}")
    fn = {"rank": label_by_rank, "threshold": label_by_threshold, "group-mean": label_by_group_mean}
    if rule not in fn:
        raise ValueError(f"unknown labelling rule '{rule}' (rank | threshold | group-mean)")
    out: list[Label] = []
    for start in range(0, len(scores), k):
        out.extend(fn[rule](list(scores[start : start + k]), **kwargs))
    return out


def label_scored_samples(
    prompts: Sequence[Text],
    completions: Sequence[Text],
    scores: Sequence[float],
    *,
    rule: str = "rank",
    **kwargs,
) -> FeedbackDataset:
    """Scored samples → unpaired records, grouping by prompt (first-seen order); unlabelled
    samples are dropped. `kwargs` go to the rule (k_accept/k_reject or threshold)."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(str(p), []).append(i)
    records = []
    for idx in groups.values():
        sub = [scores[i] for i in idx]
        labels = label_groups(sub, len(sub), rule, **kwargs)
        records += [
            Unpaired(prompts[i], completions[i], lab, float(scores[i]))
            for i, lab in zip(idx, labels, strict=True)
            if lab is not None
        ]
    return FeedbackDataset("unpaired", records, "<scored samples>")


def pairs_to_unpaired(ds: FeedbackDataset) -> FeedbackDataset:
    """Each pair → (prompt, chosen, accepted) and (prompt, rejected, rejected)."""
    if ds.kind != "paired":
        raise ValueError(f"pairs_to_unpaired needs paired records, got {ds.kind}")
    records = []
    for r in ds.records:
        assert isinstance(r, Paired)
        records.append(Unpaired(r.prompt, r.chosen, True, r.score_chosen, dict(r.extra)))
        records.append(Unpaired(r.prompt, r.rejected, False, r.score_rejected, dict(r.extra)))
    return FeedbackDataset("unpaired", records, ds.source)


def demos_from(ds: FeedbackDataset) -> FeedbackDataset:
    """Demonstrations: as they are, the accepted side of unpaired data, or pairs' chosen side."""
    if ds.kind == "demonstration":
        return ds
    if ds.kind == "unpaired":
        recs = [Demonstration(r.prompt, r.completion, r.score, dict(r.extra)) for r in ds.accepted]
    elif ds.kind == "paired":
        recs = [Demonstration(r.prompt, r.chosen, r.score_chosen, dict(r.extra)) for r in ds]
    else:
        raise ValueError("prompt-only records hold no demonstrations")
    return FeedbackDataset("demonstration", recs, ds.source)
