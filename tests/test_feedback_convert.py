"""Conversions and labelling rules, with the expected labels worked out by hand."""

import pytest

from anyfeedback.feedback import (
    FeedbackDataset,
    Paired,
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
    """K = 3 with top-2/bottom-2: 2 accepted, only 1 left to reject."""
    assert label_by_rank([0.0, 2.0, 1.0]) == [F, T, T]


def test_rank_ties_inside_a_set_keep_order_and_ties_across_are_dropped():
    """[1, 1, 0, 0]: both 1s accepted, both 0s rejected (no tie across the boundary).
    [1, 0.5, 0.5, 0]: stable order 0, 1, 2, 3 → accepted {0, 1}, rejected {2, 3}; the lowest
    accepted (0.5) equals the highest rejected (0.5): both 0.5s are unlabelled."""
    assert label_by_rank([1, 1, 0, 0]) == [T, T, F, F]
    assert label_by_rank([1, 0.5, 0.5, 0]) == [T, N, N, F]


def test_rank_all_equal_labels_nothing():
    assert label_by_rank([0.2] * 4) == [N] * 4
    assert label_by_rank([0.2] * 4, k_accept=1, k_reject=0) == [T, N, N, N]  # nothing to tie with


def test_threshold_and_group_mean():
    assert label_by_threshold([0.5, -0.1, 0.0], 0.0) == [T, F, N]
    # mean of [1, 2, 3, 6] = 3 → [F, F, N, T]
    assert label_by_group_mean([1, 2, 3, 6]) == [F, F, N, T]
    assert label_by_group_mean([4, 4]) == [N, N]


def test_label_groups_and_errors():
    scores = [0, 1, 2, 3, 3, 2, 1, 0]
    assert label_groups(scores, 4, "rank") == [F, F, T, T, T, T, F, F]
    assert label_groups(scores, 4, "rank", k_accept=1, k_reject=1) == [F, N, N, T, T, N, N, F]
    with pytest.raises(ValueError):
        label_groups(scores, 3, "rank")
    with pytest.raises(ValueError):
        label_groups(scores, 4, "bogus")


def test_label_scored_samples_groups_by_prompt():
    ds = label_scored_samples(
        ["a", "b", "a", "b"],
        ["x1", "y1", "x2", "y2"],
        [1.0, 5.0, 2.0, 5.0],
        rule="rank",
        k_accept=1,
        k_reject=1,
    )
    # prompt a: x2 accepted, x1 rejected; prompt b: equal scores → nothing
    assert [(r.completion, r.label) for r in ds] == [("x1", False), ("x2", True)]
    assert ds.kind == "unpaired" and ds.records[0].score == 1.0


def test_pairs_to_unpaired_and_demos_from():
    pairs = FeedbackDataset("paired", [Paired("p", "good", "bad", 1.0, -1.0)])
    un = pairs_to_unpaired(pairs)
    assert [(r.completion, r.label, r.score) for r in un] == [("good", T, 1.0), ("bad", F, -1.0)]
    assert [d.completion for d in demos_from(pairs)] == ["good"]
    assert [d.completion for d in demos_from(un)] == ["good"]
    with pytest.raises(ValueError):
        pairs_to_unpaired(un)
    assert demos_from(FeedbackDataset("unpaired", [Unpaired("p", "c", False)])).records == []
