"""Dataset adapters (`hh:`, `ultrafeedback:`, `ultrachat:`) on small fixtures with the same
schemas as Anthropic HH-RLHF, UltraFeedback-binarized and UltraChat-200k; schema violations are
one-line errors naming the record and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anyfeedback.errors import InputError
from anyfeedback.feedback import load_feedback
from conftest_llm import *  # noqa: F403

DATA = Path(__file__).parent / "data" / "adapters"
HH, UF, UC = (
    DATA / "hh_rlhf.jsonl",
    DATA / "ultrafeedback_binarized.jsonl",
    DATA / "ultrachat_200k.jsonl",
)


def test_hh_pairs_and_demos():
    ds = load_feedback(f"hh:{HH}")
    assert ds.kind == "paired" and len(ds) == 3
    first = ds.records[0]
    assert first.prompt == "\n\nHuman: What is a good name for a cat?\n\nAssistant:"
    assert first.chosen == " How about Miso? It is short and friendly."
    assert first.rejected == " I don't know."
    multi = ds.records[1]  # multi-turn: the prompt keeps the earlier turns
    assert multi.prompt.endswith("Human: For how long?\n\nAssistant:")
    assert multi.prompt.count("Assistant:") == 2 and multi.chosen.startswith(" About nine")
    demos = load_feedback(f"hh:{HH}", kind="demonstration")
    assert demos.kind == "demonstration" and demos.records[0].completion == first.chosen


def test_ultrafeedback_pairs_with_scores_and_demos():
    ds = load_feedback(f"ultrafeedback:{UF}@train_prefs")  # split ignored for a local file
    assert ds.kind == "paired" and len(ds) == 3
    r = ds.records[0]
    assert r.prompt == [{"role": "user", "content": "What is 2+2?"}]
    assert r.chosen == [{"role": "assistant", "content": "2+2 equals 4."}]
    assert r.rejected == [{"role": "assistant", "content": "It is 5."}]
    assert (r.score_chosen, r.score_rejected) == (8.5, 3.0)
    demos = load_feedback(f"ultrafeedback:{UF}", kind="demonstration")
    assert demos.records[2].completion[0]["content"] == "'Bonjour' means 'hello'."


def test_ultrachat_demonstrations_last_assistant_turn():
    ds = load_feedback(f"ultrachat:{UC}")
    assert ds.kind == "demonstration" and len(ds) == 2
    r = ds.records[1]
    assert [m["content"] for m in r.prompt] == [
        "Give me a tip for sleep.",
        "Keep a regular bedtime.",
        "Another one?",
    ]
    assert r.completion == [
        {"role": "assistant", "content": "Avoid screens for an hour before bed."}
    ]


def test_adapted_pairs_train_through_the_checks(tmp_path):
    from anyfeedback.feedback.checks import load_demos, load_pairs

    assert len(load_pairs(f"hh:{HH}")) == 3
    assert len(load_demos(f"ultrachat:{UC}")) == 2
    assert len(load_demos(f"hh:{HH}")) == 3


@pytest.mark.parametrize(
    ("adapter", "row", "expect"),
    [
        ("hh", {"chosen": "hello", "rejected": "\n\nHuman: a\n\nAssistant: b"}, "field 'chosen'"),
        (
            "hh",
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: b"},
            "differ before the last Assistant turn",
        ),
        ("ultrafeedback", {"chosen": "x", "rejected": []}, "field 'chosen'"),
        ("ultrachat", {"messages": [{"role": "user", "content": "q"}]}, "no assistant turn"),
    ],
)
def test_schema_violations_are_one_line_errors(tmp_path, adapter, row, expect):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError) as err:
        load_feedback(f"{adapter}:{path}")
    assert expect in str(err.value) and "line 1" in str(err.value) and "\n" not in str(err.value)


def test_recipes_load_into_their_configs():
    """Every AIHF recipe is a valid config file of its command (fields and values)."""
    from anyfeedback.configfile import read_config_file
    from anyfeedback.llm.aihf.config import AIHFConfig, SelfPlayConfig
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.reward.config import RewardConfig

    recipes = Path(__file__).parent.parent / "recipes"
    for name, cls in [
        ("aihf_pythia_hh_sft", TrainConfig),
        ("aihf_pythia_hh_reward", RewardConfig),
        ("aihf_pythia_hh", AIHFConfig),
        ("aihf_dpo_zephyr_ultrafeedback", TrainConfig),
        ("self_play_aihf_zephyr_ultrafeedback", SelfPlayConfig),
    ]:
        cls(**read_config_file(recipes / f"{name}.yaml", cls))


def test_adapted_conversations_tokenise_with_a_chat_template(tiny_model):
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.data import encode_records
    from anyfeedback.llm.model import load_tokenizer

    tok = load_tokenizer(TrainConfig(model=str(tiny_model), data="x"))
    pairs = load_feedback(f"ultrafeedback:{UF}")
    ex = encode_records(tok, pairs.records, "paired", max_length=256).examples
    assert len(ex) == 3 and all(len(e.completion_ids) == 2 for e in ex)
    hh = load_feedback(f"hh:{HH}")
    assert len(encode_records(tok, hh.records, "paired", max_length=256).examples) == 3
