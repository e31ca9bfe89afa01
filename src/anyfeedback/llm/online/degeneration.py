"""Degeneration of held-out completions against the start model: a reward can rise while the
text collapses into repeats ("A great experience A great experience …"), which the reward and
even the KL do not show. Words are lower-cased whitespace tokens.

  distinct-2    unique word bigrams / all word bigrams, over every completion (diversity across
                and within completions; 1 = no bigram ever repeats)
  repeat-2      per completion, the fraction of its word bigrams that already occurred earlier
                in the same completion, averaged over completions (looping within a completion)

`degenerate` flags a model whose completions crossed either threshold relative to the start
model's (see `DISTINCT2_RATIO` and `REPEAT3_RISE`).
"""

from __future__ import annotations

# Flag when distinct-2 falls below half of the start model's: halving means that the held-out
# completions reuse the same few phrases across prompts.
DISTINCT2_RATIO = 0.5
# Flag when repeat-2 rises by more than 0.05 over the start model's (one more bigram in 20 that
# repeats one earlier in the same completion). Chosen on the demo (docs/results/demo.md): its
# start model writes 0.010; the methods whose text stays readable move it by < 0.005, the two
# whose completions loop ("truly truly truly great …") by 0.07 and 0.16.
REPEAT2_RISE = 0.05


def _words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Unique n-grams / all n-grams over `texts` (NaN when no text has n words)."""
    grams = [tuple(w[i : i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_rate(texts: list[str], n: int = 3) -> float:
    """Mean over texts with at least one n-gram of (n-grams seen earlier in the text) / n-grams."""
    rates = []
    for words in map(_words, texts):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if grams:
            rates.append(1.0 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else float("nan")


def degeneration(texts: list[str]) -> dict[str, float]:
    """{"distinct2", "repeat2"} of held-out completions."""
    return {"distinct2": distinct_n(texts, 2), "repeat2": repeated_ngram_rate(texts, 2)}


def degenerate(current: dict[str, float], start: dict[str, float]) -> bool:
    """True when `current` crossed a threshold relative to `start` (module docstring)."""
    fewer = current["distinct2"] < DISTINCT2_RATIO * start["distinct2"]
    loops = current["repeat2"] - start["repeat2"] > REPEAT2_RISE
    return bool(fewer or loops)
