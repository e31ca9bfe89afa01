"""Reward callables used by the tests through the `module:function` path."""


def length_reward(prompts, completions):
    return [float(len(c.split())) for c in completions]


def nan_on_third(prompts, completions):
    return [float("nan") if i == 2 else 1.0 for i in range(len(completions))]


def wrong_length(prompts, completions):
    return [0.0]


def raises_on_boom(prompts, completions):
    for c in completions:
        if "boom" in c:
            raise RuntimeError("cannot score this")
    return [0.0] * len(completions)


NOT_CALLABLE = 3
