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


GOOD_WORDS = ("good", "great", "happy", "nice", "kind")


def toy_sentiment(prompts, completions):
    """+1 per good word, −1 per bad word of the toy language (anyfeedback.llm.tiny)."""
    out = []
    for c in completions:
        words = c.replace(",", " ").replace(".", " ").split()
        out.append(
            sum(w in GOOD_WORDS for w in words)
            - sum(w in ("bad", "awful", "angry", "wrong", "rude") for w in words)
        )
    return [float(x) for x in out]


CALLS = {"n": 0}


def nan_from_fourth_call(prompts, completions):
    CALLS["n"] += 1
    if CALLS["n"] >= 4:
        return [1.0] + [float("nan")] * (len(completions) - 1)
    return toy_sentiment(prompts, completions)


def toy_sentiment_tiebroken(prompts, completions):
    """`toy_sentiment` plus a deterministic tie-breaker in [0, 1e-3) from the text's CRC32, so
    distinct completions never tie (tests that need every prompt group fully labelled)."""
    import zlib

    base = toy_sentiment(prompts, completions)
    return [
        b + 1e-3 * zlib.crc32(c.encode()) / 2**32 for b, c in zip(base, completions, strict=True)
    ]
