"""A generated corpus of short reviews with mixed sentiment: the demo's pretraining text and prompts.

Nothing is downloaded: a small grammar writes restaurant, film, product and hotel reviews whose
clauses are positive, negative or neutral, so a small LM trained on it writes fluent-looking
fragments of either polarity and a sentiment reward has something to pull on. Deterministic given
the seed. `demo_prompts` returns review openings (the prompts of the online loop).
"""

from __future__ import annotations

import random

TOPICS = {
    "restaurant": {
        "things": [
            "the pasta",
            "the soup",
            "the pizza",
            "the service",
            "the staff",
            "the dessert",
            "the coffee",
            "the menu",
            "the waiter",
            "the curry",
            "the bread",
            "the wine",
        ],
        "openers": [
            "We had dinner here on a Friday",
            "I came here for lunch",
            "We booked a table for four",
            "My friend took me here",
        ],
    },
    "film": {
        "things": [
            "the plot",
            "the acting",
            "the ending",
            "the soundtrack",
            "the dialogue",
            "the lead actor",
            "the camera work",
            "the script",
            "the villain",
            "the pacing",
        ],
        "openers": [
            "I watched this film last night",
            "We saw this movie at the cinema",
            "I finally saw this film",
            "This movie was recommended to me",
        ],
    },
    "product": {
        "things": [
            "the battery",
            "the screen",
            "the price",
            "the design",
            "the charger",
            "the sound",
            "the case",
            "the manual",
            "the delivery",
            "the packaging",
        ],
        "openers": [
            "I bought this phone last month",
            "I ordered this blender online",
            "I have used this laptop for a week",
            "I got these headphones as a gift",
        ],
    },
    "hotel": {
        "things": [
            "the room",
            "the bed",
            "the breakfast",
            "the view",
            "the pool",
            "the reception",
            "the location",
            "the shower",
            "the wifi",
            "the cleaning",
        ],
        "openers": [
            "We stayed here for three nights",
            "I spent a weekend at this hotel",
            "We checked in late on Sunday",
            "I stayed here for work",
        ],
    },
}

POSITIVE = [
    "great",
    "excellent",
    "wonderful",
    "lovely",
    "amazing",
    "delicious",
    "friendly",
    "perfect",
    "fantastic",
    "pleasant",
    "brilliant",
    "good",
    "beautiful",
    "superb",
]
NEGATIVE = [
    "terrible",
    "awful",
    "bad",
    "boring",
    "rude",
    "cold",
    "dirty",
    "slow",
    "broken",
    "disappointing",
    "horrible",
    "poor",
    "noisy",
    "bland",
]
NEUTRAL = ["okay", "average", "fine", "ordinary", "simple", "small", "quiet", "standard"]
INTENSIFIERS = ["", "", "", "really ", "very ", "quite ", "so ", "truly "]
POS_ENDINGS = [
    "I would come back again.",
    "Highly recommended.",
    "We loved it.",
    "I am very happy with it.",
    "Worth every penny.",
    "A great experience overall.",
]
NEG_ENDINGS = [
    "I will not come back.",
    "Avoid it.",
    "What a waste of money.",
    "I am very disappointed.",
    "Never again.",
    "A bad experience overall.",
]
NEU_ENDINGS = ["It was fine overall.", "Nothing special.", "It did the job.", "Maybe next time."]


def _clause(rng: random.Random, thing: str, mood: str) -> str:
    words = {"pos": POSITIVE, "neg": NEGATIVE, "neu": NEUTRAL}[mood]
    verb = rng.choice(["was", "was", "felt", "seemed"])
    return f"{thing} {verb} {rng.choice(INTENSIFIERS)}{rng.choice(words)}"


def review(rng: random.Random) -> str:
    """One review: an opener, two or three clauses of mixed mood, an ending of the main mood."""
    topic = TOPICS[rng.choice(sorted(TOPICS))]
    main = rng.choice(["pos", "neg", "pos", "neg", "neu"])
    things = rng.sample(topic["things"], 3)
    moods = [main if rng.random() < 0.7 else rng.choice(["pos", "neg", "neu"]) for _ in things]
    clauses = [_clause(rng, t, m) for t, m in zip(things, moods, strict=True)]
    n = rng.choice([2, 3])
    joiner = " but " if moods[0] != moods[1] else rng.choice([" and ", ", and "])
    body = clauses[0] + joiner + clauses[1] + "."
    if n == 3:
        body += " " + clauses[2][0].upper() + clauses[2][1:] + "."
    ending = rng.choice({"pos": POS_ENDINGS, "neg": NEG_ENDINGS, "neu": NEU_ENDINGS}[main])
    return f"{rng.choice(topic['openers'])}. {body[0].upper()}{body[1:]} {ending}"


def review_corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """`n` reviews, deterministic for a seed."""
    rng = random.Random(seed)
    return [review(rng) for _ in range(n)]


def demo_prompts(n: int, seed: int = 1) -> list[str]:
    """Review openings ending where the model must continue with its opinion, e.g.
    'I came here for lunch. The curry was'. Deterministic for a seed; varied across topics."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic = TOPICS[rng.choice(sorted(TOPICS))]
        thing = rng.choice(topic["things"])
        out.append(f"{rng.choice(topic['openers'])}. {thing[0].upper()}{thing[1:]} was")
    return out
