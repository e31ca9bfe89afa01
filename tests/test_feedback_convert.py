"""Conversions and labelling rules, with the expected labels worked out by hand, plus
properties of the rank rule over random groups."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyfeedback.feedback import (
    Demonstration,
    FeedbackDataset,
    Paired,
    PromptOnly,
    Unpaired,
    demos_from,
    label_by_group_mean,
    label_by_rank,
    label_by_threshold,
    label_groups,
    label_scored_samples,
    pairs_to_unpaired,
)

T, F, N = True, False, None


def test_rank_top2_bottom2_of_4():
    """scores [0.1, 0.9, -0.3, 0.5] → order 1, 3, 0, 2 → accepted {1, 3}, rejected {0, 2}."""
    assert label_by_rank([0.1, 0.9, -0.3, 0.5]) == [F, T, F, T]


def test_rank_odd_k_leaves_the_middle_unlabelled():
    """K = 5, top-2/bottom-2: order 4, 0, 2, 1, 3 → index 2 (the median) is unused."""
    assert label_by_rank([3.0, 1.0, 2.0, 0.0, 4.0]) == [T, F, N, F, T]


def test_rank_k_smaller_than_both_sets_gives_accepted_precedence():
    """K = 3 with top-2/bottom-2: 2 accepted, only 1 left to reject; K = 1: accepted only."""
    assert label_by_rank([0.0, 2.0, 1.0]) == [F, T, T]
    assert label_by_rank([5.0]) == [T]
    assert label_by_rank([]) == []


def test_rank_ties_inside_a_set_keep_order_and_ties_across_are_dropped():
    """[1, 1, 0, 0]: both 1s accepted, both 0s rejected (no tie across the boundary).
    [1, 0.5, 0.5, 0]: stable order 0, 1, 2, 3 → accepted {0, 1}, rejected {2, 3}; the lowest
    accepted (0.5) equals the highest rejected (0.5): both 0.5s are unlabelled.
    [2, 1, 1, 0, -1] top-1/bottom-1: a tie away from the boundary changes nothing.
    [3, 2, 2, 2, 1] top-2/bottom-2: the earlier 2 (index 1) is accepted by order, then the tie
    with the rejected index 3 drops every 2."""
    assert label_by_rank([1, 1, 0, 0]) == [T, T, F, F]
    assert label_by_rank([1, 0.5, 0.5, 0]) == [T, N, N, F]
    assert label_by_rank([2, 1, 1, 0, -1], 1, 1) == [T, N, N, N, F]
    assert label_by_rank([3, 2, 2, 2, 1]) == [T, N, N, N, F]


def test_rank_tie_broken_by_order_when_no_rejected_side():
    """With k_reject = 0 there is no boundary to tie across: the earlier sample wins."""
    assert label_by_rank([0.2] * 4, k_accept=1, k_reject=0) == [T, N, N, N]
    assert label_by_rank([0.2] * 4, k_accept=0, k_reject=1) == [N, N, N, F]


def test_rank_all_equal_labels_nothing():
    assert label_by_rank([0.2] * 4) == [N] * 4
    assert label_by_rank([0.2] * 5, 1, 1) == [N] * 5


def test_rank_rejects_bad_input():
    with pytest.raises(ValueError, match="k_accept"):
        label_by_rank([1.0, 2.0], k_accept=-1)
    with pytest.raises(ValueError, match="finite"):
        label_by_rank([1.0, float("nan")])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-3, 3), max_size=9),
    st.integers(0, 4),
    st.integers(0, 4),
)
def test_rank_properties(scores, k_accept, k_reject):
    """Never more than k labelled per side; every accepted score beats every rejected one
    strictly; a sample is never both; the rule only looks at the order of the scores."""
    labels = label_by_rank(scores, k_accept, k_reject)
    acc = [s for s, lab in zip(scores, labels, strict=True) if lab is True]
    rej = [s for s, lab in zip(scores, labels, strict=True) if lab is False]
    assert len(acc) <= k_accept and len(rej) <= k_reject
    assert not acc or not rej or min(acc) > max(rej)
    assert label_by_rank([10 * s + 1 for s in scores], k_accept, k_reject) == labels


def test_threshold():
    assert label_by_threshold([0.5, -0.1, 0.0], 0.0) == [T, F, N]
    with pytest.raises(ValueError):
        label_by_threshold([0.5], float("nan"))


def test_group_mean_exact():
    """mean of [1, 2, 3, 6] = 3 → [F, F, N, T]; equal scores give nothing, even where a float
    mean would round ([0.1] * 3 sums to 0.30000000000000004)."""
    assert label_by_group_mean([1, 2, 3, 6]) == [F, F, N, T]
    assert label_by_group_mean([4, 4]) == [N, N]
    assert label_by_group_mean([0.1] * 3) == [N, N, N]
    assert label_by_group_mean([0.1, 0.1, 0.1, 0.7]) == [F, F, F, T]
    assert label_by_group_mean([7.0]) == [N]


def test_label_groups_and_errors():
    scores = [0, 1, 2, 3, 3, 2, 1, 0]
    assert label_groups(scores, 4, "rank") == [F, F, T, T, T, T, F, F]
    assert label_groups(scores, 4, "rank", k_accept=1, k_reject=1) == [F, N, N, T, T, N, N, F]
    assert label_groups(scores, 4, "group-mean") == [F, F, T, T, T, T, F, F]
    assert label_groups(scores, 2, "threshold", threshold=1.5) == [F, F, T, T, T, T, F, F]
    with pytest.raises(ValueError):
        label_groups(scores, 3, "rank")
    with pytest.raises(ValueError):
        label_groups(scores, 4, "bogus")


def test_label_scored_samples_groups_by_prompt():
    ds = label_scored_samples(
        ["a", "b", "a", "b", "a"],
        ["x1", "y1", "x2", "y2", "x3"],
        [1.0, 5.0, 2.0, 5.0, 3.0],
        rule="rank",
        k_accept=1,
        k_reject=1,
    )
    # prompt a: x3 accepted, x1 rejected, x2 unused; prompt b: equal scores → nothing
    assert [(r.completion, r.label, r.score) for r in ds] == [("x1", F, 1.0), ("x3", T, 3.0)]
    assert ds.kind == "unpaired"
    msgs = [{"role": "user", "content": "hi"}]
    conv = label_scored_samples([msgs, msgs], ["u", "v"], [0.0, 1.0], rule="group-mean")
    assert [(r.prompt, r.label) for r in conv] == [(msgs, F), (msgs, T)]
    with pytest.raises(ValueError, match="2 prompts, 1 completions"):
        label_scored_samples(["a", "b"], ["x"], [1.0, 2.0])


def test_pairs_to_unpaired_and_demos_from():
    pairs = FeedbackDataset("paired", [Paired("p", "good", "bad", 1.0, -1.0, {"id": 7})])
    un = pairs_to_unpaired(pairs)
    assert list(un) == [
        Unpaired("p", "good", T, 1.0, {"id": 7}),
        Unpaired("p", "bad", F, -1.0, {"id": 7}),
    ]
    assert list(demos_from(pairs)) == [Demonstration("p", "good", 1.0, {"id": 7})]
    assert [d.completion for d in demos_from(un)] == ["good"]
    demos = FeedbackDataset("demonstration", [Demonstration("p", "c")])
    assert demos_from(demos) is demos
    with pytest.raises(ValueError):
        pairs_to_unpaired(un)
    with pytest.raises(ValueError):
        demos_from(FeedbackDataset("prompt-only", [PromptOnly("p")]))
    assert demos_from(FeedbackDataset("unpaired", [Unpaired("p", "c", False)])).records == []
