"""Tokenisation, record-kind rules, the aligned batch layout and the batch plan of the LLM trainer."""

from __future__ import annotations

import pytest
import torch

from anyfeedback.errors import InputError
from anyfeedback.feedback import Demonstration, FeedbackDataset, Paired, Unpaired
from anyfeedback.llm.batching import (
    BatchPlan,
    cat_rows,
    collate_pairs,
    collate_unpaired,
    pack,
    pack_shared,
)
from anyfeedback.llm.data import Example, encode_records, encode_texts
from anyfeedback.llm.records import for_method, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_plain_text_is_prompt_with_bos_then_completion_with_eos(tok):
    [(prompt, (comp,))] = encode_texts(tok, ["the cat saw"], [(" it was good.",)])
    assert (
        prompt[0] == tok.bos_token_id
        and prompt[1:] == tok("the cat saw", add_special_tokens=False).input_ids
    )
    assert comp[-1] == tok.eos_token_id
    assert comp[:-1] == tok(" it was good.", add_special_tokens=False).input_ids
    [(_, (no_eos,))] = encode_texts(tok, ["the cat saw"], [(" it was good.",)], add_eos=False)
    assert no_eos == comp[:-1]


def test_chat_records_use_the_template_and_split_at_the_generation_prompt(tok):
    prompt = [{"role": "user", "content": "the cat saw a red box"}]
    completion = [{"role": "assistant", "content": "it was good"}]
    [(p, (c,))] = encode_texts(tok, [prompt], [(completion,)])
    full = tok.apply_chat_template(prompt + completion, tokenize=False)
    assert tok.decode(p + c) == full  # nothing lost or added at the boundary
    assert tok.decode(p).endswith("<|assistant|>")
    assert c[-1] == tok.eos_token_id and c.count(tok.eos_token_id) == 1  # template's EOS, once
    # a string prompt with a message completion is conversational too
    [(p2, (c2,))] = encode_texts(tok, ["the cat saw a red box"], [(completion,)])
    assert (p2, c2) == (p, c)


def test_truncation_is_counted_and_a_too_long_prompt_is_an_input_error(tok):
    recs = [
        Demonstration("the cat saw a red box", " it was good and kind" * 5),
        Demonstration("a dog", " ok."),
    ]
    enc = encode_records(tok, recs, "demonstration", max_length=12)
    assert enc.n_truncated == 1
    assert all(e.length <= 12 for e in enc.examples)
    with pytest.raises(InputError, match="max-length"):
        encode_records(tok, recs, "demonstration", max_length=3)


def test_record_kinds_per_method():
    def ds(kind, *records):
        return FeedbackDataset(kind, list(records), "f")

    def fields(d):
        return [(r.prompt, getattr(r, "completion", None), getattr(r, "label", None)) for r in d]

    pairs = ds("paired", Paired("p", "good", "bad"))
    pmpo = for_method("pmpo", pairs)
    assert pmpo.kind == "unpaired" and fields(pmpo) == [("p", "good", True), ("p", "bad", False)]
    assert fields(for_method("kto", pairs)) == fields(pmpo)
    assert fields(for_method("sft", pairs)) == [("p", "good", None)]
    unpaired = ds("unpaired", Unpaired("p", "a", True), Unpaired("p", "b", False))
    assert fields(for_method("sft", unpaired)) == [("p", "a", None)]
    assert for_method("pmpo", ds("demonstration", Demonstration("p", "a"))).records[0].label
    for method in ("dpo", "ipo", "aihf-dpo"):
        with pytest.raises(InputError, match="paired"):
            for_method(method, unpaired)
    with pytest.raises(InputError, match="labels"):
        for_method("kto", ds("demonstration", Demonstration("p", "a")))
    with pytest.raises(InputError, match="prompt-only"):
        for_method("pmpo", ds("prompt-only"))
    with pytest.raises(InputError, match="accepted"):
        for_method("sft", ds("unpaired", Unpaired("p", "b", False)))


def test_load_dataset_detects_kinds(feedback_files):
    assert load_dataset(str(feedback_files["paired"])).kind == "paired"
    assert load_dataset(str(feedback_files["unpaired"])).kind == "unpaired"
    assert load_dataset(str(feedback_files["demos"])).kind == "demonstration"
    with pytest.raises(InputError, match="empty|no records"):
        load_dataset(str(feedback_files["empty"]))


def test_pack_right_pads_and_gathers_only_completion_scoring_positions():
    seqs = pack([[1, 5, 6], [1]], [[7, 2], [8, 9, 2]], pad_id=0)
    assert seqs.input_ids.tolist() == [[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]]
    assert seqs.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # K = 3 + 1: position p−1 predicts the first completion token; short views repeat the last
    assert seqs.rows.tolist() == [0, 1]
    assert seqs.gather_index.tolist() == [[2, 3, 4, 4], [0, 1, 2, 3]]
    labels, mask = seqs.kept()
    assert labels.tolist() == [[6, 7, 2, 2], [1, 8, 9, 2]]
    assert mask.long().tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]
    assert seqs.n_tokens == 9
    both = cat_rows(seqs, pack([[1, 2, 3, 4, 5]], [[6]], pad_id=0))
    assert both.input_ids.shape == (3, 6) and both.labels.shape == (3, 4)
    assert both.mask.long().tolist()[2] == [0, 1, 0, 0] and both.rows.tolist() == [0, 1, 2]


def test_pack_shared_puts_a_pair_in_one_row_with_a_block_causal_mask():
    seqs = pack_shared([[1, 5]], [([7, 2], [8, 9, 2])], pad_id=0)
    assert seqs.input_ids.tolist() == [[1, 5, 7, 2, 8, 9, 2]]
    assert seqs.position_ids.tolist() == [[0, 1, 2, 3, 2, 3, 4]]  # rejected restarts at p
    allowed = seqs.attention_mask[0, 0].long().tolist()
    assert allowed[4] == [1, 1, 0, 0, 1, 0, 0]  # rejected sees the prompt, not chosen
    assert allowed[3] == [1, 1, 1, 1, 0, 0, 0]  # chosen is plainly causal
    assert seqs.rows.tolist() == [0, 0]
    assert seqs.gather_index.tolist() == [[1, 2, 3, 3], [1, 4, 5, 6]]
    labels, mask = seqs.kept()
    assert labels.tolist() == [[5, 7, 2, 2], [5, 8, 9, 2]]
    assert mask.long().tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]
    assert seqs.n_tokens == 7


def test_completion_logits_give_each_sequence_alone(tiny_model):
    """ℓ_θ from padded rows, from shared-prompt rows, and with the LM head on gathered positions
    equals the unpadded full-logit forward of each sequence alone; plain forwards are untouched."""
    from transformers import AutoModelForCausalLM

    from anyfeedback.llm.model import completion_logits, shared_prompt_supported
    from anyfeedback.losses import sequence_logps

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts, chosen, rejected = (
        [[1, 20, 30, 40, 50], [1, 60]],
        [[70, 80, 2], [90, 2]],
        [[5, 2], [6, 7, 8, 2]],
    )
    alone = []
    with torch.no_grad():
        for p, c in zip(prompts * 2, chosen + rejected, strict=True):
            ids = torch.tensor([p + c])
            mask = torch.tensor([[False] * len(p) + [True] * len(c)])
            alone.append(sequence_logps(model(input_ids=ids).logits, ids, mask)[0])
        alone = torch.stack(alone)
        for seqs in (
            pack(prompts * 2, chosen + rejected, pad_id=0),
            pack_shared(prompts, list(zip(chosen, rejected, strict=True)), pad_id=0),
        ):
            logits = completion_logits(model, seqs)
            assert logits.shape == (4, 5, model.config.vocab_size)
            torch.testing.assert_close(
                sequence_logps(logits, *seqs.kept()), alone, atol=1e-5, rtol=1e-5
            )
        assert model(input_ids=seqs.input_ids).logits.shape[1] == seqs.input_ids.shape[1]
    assert shared_prompt_supported(model, pad_id=0)


def test_collate_pairs_and_kto_mismatched_rows():
    ex = [Example([1, 2], ([3, 4], [5])), Example([1], ([6], [7, 8]))]
    batch = collate_pairs(ex, 0)
    assert batch.n_pairs == 2 and batch.seqs.input_ids.shape[0] == 4
    un = [Example([1, 2], ([3],), True), Example([1], ([6, 7],), False), Example([9], ([4],), True)]
    kto = collate_unpaired(un, 0, mismatched=True)
    labels, mask = kto.mismatched.kept()
    first = labels[0][mask[0]].tolist()
    assert first == [6, 7]  # prompt 0 with completion 1 (i' = i + 1 mod m)
    assert kto.accepted.tolist() == [True, False, True]


def test_batch_plan_two_processes_see_the_micro_batches_of_two_accumulation_steps():
    lengths = [(7 * i) % 23 + 1 for i in range(64)]
    one = BatchPlan(lengths, batch_size=4, accumulation=2, world_size=1, seed=3)
    two = BatchPlan(lengths, batch_size=4, accumulation=1, world_size=2, seed=3)
    for step in range(20):  # crosses epochs (8 steps each)
        a = one.micro_batches(step, 0)
        assert a == [two.micro_batches(step, 0)[0], two.micro_batches(step, 1)[0]]
    covered = sorted(i for s in range(8) for mb in one.micro_batches(s, 0) for i in mb)
    assert covered == list(range(64))  # an epoch visits every record once
    assert one.micro_batches(8, 0) != one.micro_batches(0, 0)  # next epoch reshuffles


def test_length_bucketing_cuts_padding():
    lengths = [
        int(x) for x in torch.randint(5, 200, (512,), generator=torch.Generator().manual_seed(0))
    ]

    def padding(plan):
        pad = 0
        for s in range(plan.steps_per_epoch):
            for mb in plan.micro_batches(s, 0):
                pad += sum(max(lengths[i] for i in mb) - lengths[i] for i in mb)
        return pad

    kw = dict(batch_size=8, accumulation=1, world_size=1, seed=0)
    bucketed = padding(BatchPlan(lengths, group_by_length=True, **kw))
    plain = padding(BatchPlan(lengths, group_by_length=False, **kw))
    assert bucketed < 0.1 * plain
