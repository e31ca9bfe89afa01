"""Feedback records → token ids, per training method.

A record's prompt and completion are either strings (plain concatenation: the prompt with the
tokenizer's special tokens, e.g. BOS, then the completion and EOS) or lists of {"role", "content"}
messages (the tokenizer's chat template: the prompt rendered with the generation prompt, the
completion = the rest of the rendered conversation). Prompt and completion are tokenised
separately, so the boundary is exact and only completion tokens are scored.

Which record kinds each method takes: `anyfeedback.llm.records.for_method`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.feedback import FeedbackDataset
from anyfeedback.llm.records import Unpaired, for_method, load_dataset

Text = str | list[dict[str, Any]]


@dataclass
class Example:
    """One prompt with its completion(s), tokenised. Pairs have two completions (chosen,
    rejected); `accepted` is the unpaired label (None for pairs and demonstrations)."""

    prompt_ids: list[int]
    completion_ids: tuple[list[int], ...]
    accepted: bool | None = None

    @property
    def length(self) -> int:
        """Row tokens of one sequence per row: prompt + longest completion."""
        return len(self.prompt_ids) + max(len(c) for c in self.completion_ids)


@dataclass
class Encoded:
    """Tokenised training data and what tokenisation did to it."""

    examples: list[Example]
    kind: str  # "unpaired" | "paired" | "demonstration" (after the method's conversion)
    n_truncated: int
    n_sequences: int


def _as_messages(text: Text, role: str) -> list[dict[str, Any]]:
    return text if isinstance(text, list) else [{"role": role, "content": text}]


def _render_chat(tokenizer, prompt: Text, completion: Text) -> tuple[str, str]:
    """(prompt text with the generation prompt, completion text = rest of the conversation)."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            "conversational records need a tokenizer with a chat template; this one has none",
            source="model",
        )
    msgs = _as_messages(prompt, "user")
    head = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        msgs + _as_messages(completion, "assistant"), tokenize=False
    )
    if not full.startswith(head):
        raise InputError(
            "the chat template does not render the prompt as a prefix of the conversation, so "
            "prompt and completion tokens cannot be separated",
            source="model",
        )
    return head, full[len(head) :]


def _tokenize(tokenizer, texts: list[str], special: bool) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


def _strip_eos(prompt: list[int], eos: int | None) -> list[int]:
    """Drop an EOS that some tokenizers append to every text (the prompt must not end)."""
    return prompt[:-1] if eos is not None and len(prompt) > 1 and prompt[-1] == eos else prompt


def _add_eos(comp: list[int], eos: int | None, chat: bool) -> list[int]:
    """Append EOS unless the completion already ends (plain) or the template ended the turn."""
    if eos is None or (eos in comp if chat else comp[-1:] == [eos]):
        return comp
    return comp + [eos]


def encode_texts(
    tokenizer, prompts: list[Text], completions: list[tuple[Text, ...]], *, add_eos: bool = True
) -> list[tuple[list[int], tuple[list[int], ...]]]:
    """Token ids of each prompt and its completions (no truncation here)."""
    chat = [
        isinstance(p, list) or any(isinstance(c, list) for c in cs)
        for p, cs in zip(prompts, completions, strict=True)
    ]
    plain_prompts, chat_prompts, comp_texts = [], [], []
    for p, cs, is_chat in zip(prompts, completions, chat, strict=True):
        if is_chat:
            rendered = [_render_chat(tokenizer, p, c) for c in cs]
            chat_prompts.append(rendered[0][0])
            comp_texts.append([tail for _, tail in rendered])
        else:
            plain_prompts.append(p)
            comp_texts.append(list(cs))
    plain_ids = iter(_tokenize(tokenizer, plain_prompts, True))
    chat_ids = iter(_tokenize(tokenizer, chat_prompts, False))
    flat = iter(_tokenize(tokenizer, [t for ts in comp_texts for t in ts], False))
    eos = tokenizer.eos_token_id
    out = []
    for is_chat, ts in zip(chat, comp_texts, strict=True):
        prompt = _strip_eos(next(chat_ids) if is_chat else next(plain_ids), eos)
        comps = [next(flat) for _ in ts]
        if add_eos:
            comps = [_add_eos(c, eos, is_chat) for c in comps]
        out.append((prompt, tuple(comps)))
    return out


def truncate(ids, max_length: int, index: int, source: str, max_prompt_length: int | None = None):
    """Cut completions to fit `max_length`; a prompt that leaves no room is an InputError.
    `max_prompt_length` first keeps only the prompt's last tokens (TRL's keep_end)."""
    prompt, comps = ids
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        prompt = prompt[len(prompt) - max_prompt_length :]
    room = max_length - len(prompt)
    if room < 1:
        raise InputError(
            f"prompt has {len(prompt)} tokens but --max-length is {max_length}; nothing of the "
            "completion would fit (raise --max-length or shorten the prompt)",
            source=source,
            record=index,
        )
    cut = tuple(c[:room] for c in comps)
    return prompt, cut, sum(len(c) > room for c in comps)


def encode_records(
    tokenizer,
    records: list,
    kind: str,
    *,
    max_length: int,
    add_eos: bool = True,
    source: str = "data",
    max_prompt_length: int | None = None,
) -> Encoded:
    """Tokenise records of one kind into `Example`s (completions truncated and counted)."""
    if kind == "paired":
        prompts, comps = [r.prompt for r in records], [(r.chosen, r.rejected) for r in records]
    else:
        prompts, comps = [r.prompt for r in records], [(r.completion,) for r in records]
    examples, n_trunc = [], 0
    for i, ids in enumerate(encode_texts(tokenizer, prompts, comps, add_eos=add_eos)):
        prompt, cut, n = truncate(ids, max_length, i + 1, source, max_prompt_length)  # 1-based
        n_trunc += n
        label = records[i].label if kind == "unpaired" else None
        examples.append(Example(prompt, cut, None if label is None else bool(label)))
    n_seq = sum(len(e.completion_ids) for e in examples)
    return Encoded(examples, kind, n_trunc, n_seq)


def _held_out(ds: FeedbackDataset, fraction: float, seed: int):
    """(train, eval): a seeded random `fraction` of the records held out (at least one)."""
    import random

    n = len(ds.records)
    k = max(1, round(fraction * n))
    if k >= n:
        raise InputError(
            f"--eval-fraction {fraction} of {n} records leaves none to train on", source=ds.source
        )
    held = set(random.Random(seed).sample(range(n), k))
    train = [r for i, r in enumerate(ds.records) if i not in held]
    test = [r for i, r in enumerate(ds.records) if i in held]
    return (
        FeedbackDataset(ds.kind, train, ds.source),
        FeedbackDataset(ds.kind, test, f"{ds.source} (held out)"),
    )


def _check_split(source, split: str, flag: str) -> None:
    """A single file is one split: asking it for another would silently read the whole file."""
    from pathlib import Path

    if split != "train" and isinstance(source, (str, Path)) and Path(source).is_file():
        raise InputError(
            f"{flag} {split}: a single file has no splits (use a dataset directory, a Hub id, "
            "--eval-data or --eval-fraction)",
            source=str(source),
        )


def _eval_dataset(cfg, train: FeedbackDataset):
    """(train, eval or None) after --eval-data / --eval-split / --eval-fraction."""
    if cfg.eval_fraction > 0:
        return _held_out(train, cfg.eval_fraction, cfg.seed)
    if not (cfg.eval_data or cfg.eval_split):
        return train, None
    source = cfg.eval_data if cfg.eval_data is not None else cfg.data
    split = cfg.eval_split or "train"
    _check_split(source, split, "--eval-split")
    return train, load_dataset(source, cfg.data_kind, split=split, name=cfg.dataset_config)


def load_train_eval_data(tokenizer, cfg) -> tuple[Encoded, Encoded | None, Encoded | None]:
    """(train, demos, eval): --data's --split (and --demo-data for aihf-dpo, the eval set of
    --eval-data / --eval-split / --eval-fraction), loaded, checked and tokenised."""
    data, demos, raw_eval = _load_train(tokenizer, cfg)
    evals = None
    if raw_eval is not None:
        if cfg.method == "kto" and len(raw_eval) < 2:
            raise InputError("kto's eval set needs at least 2 records", source=raw_eval.source)
        evals = encode_records(
            tokenizer,
            raw_eval.records,
            raw_eval.kind,
            max_length=cfg.max_length,
            add_eos=cfg.add_eos,
            source=raw_eval.source,
        )
    return data, demos, evals


def load_training_data(tokenizer, cfg) -> tuple[Encoded, Encoded | None]:
    """Load, check and tokenise --data (and --demo-data for aihf-dpo) for `cfg.method`."""
    data, demos, _ = _load_train(tokenizer, cfg)
    return data, demos


def _load_train(tokenizer, cfg):
    _check_split(cfg.data, cfg.split, "--split")
    raw = load_dataset(cfg.data, cfg.data_kind, split=cfg.split, name=cfg.dataset_config)
    raw, raw_eval = _eval_dataset(cfg, raw)  # held out before pairs are split into samples
    ds = for_method(cfg.method, raw)
    raw_eval = for_method(cfg.method, raw_eval) if raw_eval is not None else None
    if cfg.method == "kto" and len(ds) < 2:
        raise InputError(
            "kto needs at least 2 records (its reference point pairs them)", source=ds.source
        )
    data = encode_records(
        tokenizer,
        ds.records,
        ds.kind,
        max_length=cfg.max_length,
        add_eos=cfg.add_eos,
        source=ds.source,
        max_prompt_length=cfg.max_prompt_length,
    )
    demos = None
    if cfg.method == "aihf-dpo" and cfg.demo_weight > 0:
        if not cfg.demo_data:
            raise InputError(
                "aihf-dpo needs --demo-data (or --demo-weight 0, which is DPO)", source="config"
            )
        demo_ds = load_dataset(cfg.demo_data)
        if demo_ds.kind != "demonstration":
            raise InputError(
                f"--demo-data must hold demonstrations, got {demo_ds.kind}", source=cfg.demo_data
            )
        demos = encode_records(
            tokenizer,
            demo_ds.records,
            "demonstration",
            max_length=cfg.max_length,
            add_eos=cfg.add_eos,
            source=cfg.demo_data,
            max_prompt_length=cfg.max_prompt_length,
        )
    return data, demos, raw_eval


def unpaired_examples(
    tokenizer,
    prompts: list[Text],
    completions: list[Text],
    accepted: list[bool],
    *,
    max_length: int,
    add_eos: bool = True,
) -> list[Example]:
    """Examples from in-memory unpaired feedback (the online loop's labelled samples)."""
    recs = [Unpaired(p, c, bool(a)) for p, c, a in zip(prompts, completions, accepted, strict=True)]
    return encode_records(
        tokenizer, recs, "unpaired", max_length=max_length, add_eos=add_eos, source="samples"
    ).examples


__all__ = [
    "Encoded",
    "Example",
    "encode_records",
    "load_train_eval_data",
    "load_training_data",
    "unpaired_examples",
]
