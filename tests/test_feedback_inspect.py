"""`anyfeedback data inspect` on valid data: counts, lengths, scores, warnings, `--json`."""

import json
from pathlib import Path

from anyfeedback.cli import main
from anyfeedback.feedback import dataset_stats, load_feedback

GOOD_DIR = Path(__file__).parent / "data" / "good"


def _inspect_json(capsys, name: str, *args: str) -> dict:
    assert main(["data", "inspect", "--json", *args, str(GOOD_DIR / name)]) == 0
    return json.loads(capsys.readouterr().out)


def test_text_report(capsys):
    assert main(["data", "inspect", str(GOOD_DIR / "unpaired.jsonl")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("unpaired.jsonl: unpaired")
    assert out[1] == "  counts: records 3, accepted 2, rejected 1, unique prompts 2"
    text = "\n".join(out)
    for key in ("prompt_chars", "completion_words", "preferred_chars", "rejected_chars", "score"):
        assert key in text
    assert "extra fields: source" in text and out[-1] == "  problems: none"


def test_json_stats_hand_checked(capsys):
    """unpaired.jsonl: prompts 'Rate the soup.' ×2 (14 chars), 'Rate the bread.' (15);
    completions 14, 12, 15 chars, 3 words each; scores 0.8 and -0.4."""
    stats = _inspect_json(capsys, "unpaired.jsonl")
    assert stats["kind"] == "unpaired" and stats["conversational"] is False
    assert stats["counts"] == {
        "records": 3,
        "accepted": 2,
        "rejected": 1,
        "pairs": 0,
        "demos": 0,
        "prompt_only": 0,
        "unique_prompts": 2,
    }
    assert stats["prompt_chars"] == {"min": 14, "median": 14, "mean": 14.333, "max": 15}
    assert stats["completion_chars"] == {"min": 12, "median": 14, "mean": 13.667, "max": 15}
    assert stats["completion_words"] == {"min": 3, "median": 3, "mean": 3.0, "max": 3}
    assert stats["by_side"]["rejected"]["chars"]["max"] == 12
    assert stats["scores"]["score"] == {
        "count": 2,
        "min": -0.4,
        "median": 0.2,
        "mean": 0.2,
        "max": 0.8,
    }
    assert stats["extra_fields"] == ["source"] and stats["warnings"] == []


def test_conversational_lengths_count_message_contents(capsys):
    stats = _inspect_json(capsys, "conversational_unpaired.jsonl")
    assert stats["conversational"] is True
    # prompts: "Be brief.\nRate the hotel." (25 chars, 5 words) and "Rate the hotel." (15, 3)
    assert stats["prompt_chars"] == {"min": 15, "median": 20.0, "mean": 20.0, "max": 25}
    assert stats["prompt_words"]["max"] == 5


def test_identical_pairs_warn_but_pass(capsys):
    assert main(["data", "inspect", str(GOOD_DIR / "identical_pair.jsonl")]) == 0
    captured = capsys.readouterr()
    assert "warning: 1 pairs have chosen == rejected" in captured.out and captured.err == ""
    stats = dataset_stats(load_feedback(GOOD_DIR / "identical_pair.jsonl"))
    assert stats["pairs_with_identical_sides"] == 1


def test_kind_option_and_paired_scores(capsys):
    stats = _inspect_json(capsys, "paired.jsonl")
    assert stats["counts"]["pairs"] == 2 and set(stats["scores"]) == {
        "score_chosen",
        "score_rejected",
    }
    stats = _inspect_json(capsys, "paired.jsonl", "--kind", "prompt")
    assert stats["kind"] == "prompt-only" and stats["completion_chars"] == {}


def test_all_problems_on_a_clean_file_prints_stats(capsys):
    path = str(GOOD_DIR / "demos.csv")
    assert main(["data", "inspect", "--all-problems", path]) == 0
    assert "demonstration" in capsys.readouterr().out
