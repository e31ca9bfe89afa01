"""Prompt sources of the online loop: the LMSYS-Chat-1M adapter on a fixture of its schema,
the paper-scale recipe, and the sequence-classification reward path."""

from pathlib import Path

import pytest
import yaml

from anyfeedback.errors import InputError
from anyfeedback.llm.online.config import OnlineConfig
from anyfeedback.llm.prompts import lmsys_prompts, load_prompt_source

ROOT = Path(__file__).parent.parent
LMSYS = Path(__file__).parent / "data" / "lmsys" / "sample.jsonl"


def test_lmsys_first_user_turn_english_only_deduplicated():
    """Rows: bread (en), German (dropped), haiku (en; first of two user turns), bread again."""
    assert lmsys_prompts(str(LMSYS)) == [
        [{"role": "user", "content": "How do I bake bread?"}],
        [{"role": "user", "content": "Write a haiku about rain."}],
        [{"role": "user", "content": "How do I bake bread?"}],
    ]
    assert len(load_prompt_source(f"lmsys:{LMSYS}")) == 2  # duplicates dropped


def test_lmsys_bad_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation": "not a list", "language": "English"}\n')
    with pytest.raises(InputError, match=r"line 1: field 'conversation'"):
        lmsys_prompts(str(bad))


def test_paper_recipe_is_a_valid_config():
    values = yaml.safe_load((ROOT / "recipes" / "pmpo_gemma2b_lmsys.yaml").read_text())
    cfg = OnlineConfig(**values)
    assert (cfg.prompts_per_step, cfg.k, cfg.k_accept, cfg.k_reject) == (128, 4, 2, 2)
    assert cfg.prompts.startswith("lmsys:")


def test_sequence_classifier_reward(tmp_path, tiny_model):
    """A Hugging Face sequence-classification model saved to disk is a reward."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from anyfeedback.rewards import SequenceClassifierReward, load_reward

    tok = AutoTokenizer.from_pretrained(tiny_model)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    reward = load_reward(str(tmp_path / "rm"))
    assert isinstance(reward, SequenceClassifierReward)
    scores = reward(["the cat saw", "a dog"], [" a red box.", " it was good and kind."])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert scores[0] != scores[1]


def test_prompts_by_length_only_across_several_generate_calls():
    """Prompt lengths 2, 5, 1, 5 (indices 0–3), the step's order 3, 0, 2, 1: with 2 calls the
    longest first, ties in the step's order (3 before 1); with 1 call unchanged."""
    from anyfeedback.llm.prompts import by_length_for_sampling

    ids = [[1] * 2, [1] * 5, [1], [1] * 5]
    assert by_length_for_sampling([3, 0, 2, 1], ids, calls=2) == [3, 1, 0, 2]
    assert by_length_for_sampling([3, 0, 2, 1], ids, calls=1) == [3, 0, 2, 1]


def test_online_step_samples_prompts_by_length(tiny_model, feedback_files, tmp_path, monkeypatch):
    """An online step whose prompts take several generate calls (2 prompts × k 2 per call of 4
    rows) hands them to the sampler longest first."""
    from anyfeedback.llm.online import loop

    seen = []

    def stop(sampler, prompt_ids, *args, **kwargs):
        seen.append([len(p) for p in prompt_ids])
        raise KeyboardInterrupt  # the first step's prompts are all this test needs

    monkeypatch.setattr(loop, "sample_and_score", stop)
    cfg = OnlineConfig(
        model=str(tiny_model),
        prompts=str(feedback_files["paired"]),
        reward="custom_rewards:toy_sentiment",
        out=str(tmp_path / "run"),
        k=2,
        prompts_per_step=6,
        generation_batch_size=4,
        eval_prompts=8,
        eval_every=0,
        progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        loop.run_online(cfg)
    assert len(seen) == 1 and len(set(seen[0])) > 1
    assert seen[0] == sorted(seen[0], reverse=True)
