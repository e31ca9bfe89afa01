"""Conversions between feedback kinds, and labelling of scored samples.

Labelling rules, for one group of K scored samples of the same prompt (the online loop's unit):
  rank:       the k_accept best are accepted, then the k_reject worst of the *rest* rejected
              (accepted wins when K < k_accept + k_reject). Sorting is stable, so among equal
              scores the earlier sample ranks higher. A tie across the boundary carries no
              preference: if the lowest accepted score equals the highest rejected score, every
              sample with that score is left unlabelled (so all-equal scores label nothing).
  threshold:  score > t accepted, score < t rejected, score == t unlabelled.
  group-mean: the sign of score − mean(group), compared exactly (rational arithmetic, so
              [0.1, 0.1, 0.1] is all unlabelled, not all rejected by a rounded mean); exactly
              the mean is unlabelled.
A label is True (accepted), False (rejected) or None (not used). Scores must be finite
(ValueError otherwise). `label_scored_samples` groups flat samples by prompt and applies a rule;
`label_groups` does the same for the online loop's prompt-major layout (K samples per prompt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.schema import Demonstration, Paired, Text, Unpaired

Label = bool | None


def _check_finite(scores: Sequence[float]) -> None:
    bad = next((s for s in scores if not math.isfinite(s)), None)
    if bad is not None:
        raise ValueError(f"scores must be finite to be labelled, got {bad}")


def label_by_rank(scores: Sequence[float], k_accept: int = 2, k_reject: int = 2) -> list[Label]:
    """Top-k accepted, bottom-k rejected within one group (see module docstring for ties)."""
    _check_finite(scores)
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
    """Accepted above `threshold`, rejected below, unlabelled at it."""
    _check_finite([*scores, threshold])
    return [True if s > threshold else False if s < threshold else None for s in scores]


def label_by_group_mean(scores: Sequence[float]) -> list[Label]:
    """The sign of score − group mean, exactly: n·score is compared with the exact sum."""
    _check_finite(scores)
    exact = [Fraction(float(s)) for s in scores]
    total, n = sum(exact), len(exact)
    return [True if n * s > total else False if n * s < total else None for s in exact]


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
    """Scored samples → unpaired records (score kept), grouped by prompt: groups in first-seen
    order, samples in their original order within a group; unlabelled samples are dropped.
    `rule` is 'rank' | 'threshold' | 'group-mean'; `kwargs` go to it (k_accept/k_reject or
    threshold)."""
    if not len(prompts) == len(completions) == len(scores):
        raise ValueError(
            f"{len(prompts)} prompts, {len(completions)} completions, {len(scores)} scores"
        )
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
