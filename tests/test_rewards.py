"""Pluggable rewards: the built-in sentiment lexicon, `module:function`, and validation errors
that name the offending prompt index."""

import pytest

from anyfeedback.errors import InputError
from anyfeedback.rewards import RewardError, checked_scores, load_reward

PROMPTS = ["p0", "p1", "p2", "p3"]


def test_sentiment_reward_orders_polarity():
    reward = load_reward("sentiment")
    good, bad, flat = reward(PROMPTS[:3], ["great and lovely", "terrible and rude", "a table"])
    assert good > 0.5 and bad < -0.5 and flat == 0.0


def test_custom_callable():
    reward = load_reward("custom_rewards:length_reward")
    assert checked_scores(reward, PROMPTS[:2], ["a b c", "d"]) == [3.0, 1.0]


def test_nan_is_reported_with_prompt_index():
    reward = load_reward("custom_rewards:nan_on_third")
    with pytest.raises(RewardError, match=r"prompt index 12: 'p2'"):
        checked_scores(reward, PROMPTS, ["a"] * 4, offset=10)


def test_wrong_length_is_reported():
    with pytest.raises(RewardError, match="returned 1 scores for 4 completions"):
        checked_scores(load_reward("custom_rewards:wrong_length"), PROMPTS, ["a"] * 4)


def test_raising_reward_is_located():
    reward = load_reward("custom_rewards:raises_on_boom")
    with pytest.raises(RewardError, match=r"RuntimeError: cannot score this \(prompt index 1"):
        checked_scores(reward, PROMPTS, ["ok", "boom", "ok", "boom"])


@pytest.mark.parametrize(
    "spec",
    [
        "custom_rewards:missing",
        "custom_rewards:NOT_CALLABLE",
        "no_such_module_xyz:f",
        "not a reward",
    ],
)
def test_bad_reward_specs(spec):
    with pytest.raises(InputError):
        load_reward(spec)
