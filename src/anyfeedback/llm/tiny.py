"""Tiny causal LMs built locally, loadable exactly like a real model (no hub, no download).

`build_tiny_model(dir, corpus)` trains a byte-level BPE tokenizer on `corpus` with `tokenizers`
(pad/bos/eos and chat-role special tokens, a simple chat template), builds a small `LlamaConfig`
model with `from_config`, and `save_pretrained`s both into `dir`. Code then loads them with
`AutoTokenizer.from_pretrained(dir)` / `AutoModelForCausalLM.from_pretrained(dir)`.

`toy_corpus` and `toy_feedback` generate a deterministic corpus and feedback records (unpaired,
paired, demonstrations, conversational) for tests, benchmarks and the offline demo.
"""

from __future__ import annotations

import random
from pathlib import Path

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SUBJECTS = ["the cat", "a dog", "my friend", "the robot", "our teacher", "the old man", "a bird"]
VERBS = ["saw", "liked", "found", "built", "painted", "followed", "carried", "opened"]
OBJECTS = ["a red box", "the green door", "a small boat", "the long road", "a warm bread"]
GOOD = ["it was good and kind", "what a great day", "everyone was happy", "it felt nice"]
BAD = ["it was bad and rude", "what an awful day", "everyone was angry", "it felt wrong"]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"


def _prompt(rng: random.Random) -> str:
    return " and ".join(_sentence(rng) for _ in range(rng.randint(1, 3))) + ","


def _completion(rng: random.Random, good: bool) -> str:
    words = GOOD if good else BAD
    return " " + ", ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) + "."


def toy_corpus(n: int = 2000, *, seed: int = 0) -> list[str]:
    """`n` short stories with good and bad endings (deterministic given `seed`)."""
    rng = random.Random(seed)
    return [_prompt(rng) + _completion(rng, rng.random() < 0.5) for _ in range(n)]


def toy_feedback(n: int = 64, *, seed: int = 0, chat: bool = False) -> dict[str, list[dict]]:
    """Feedback records on the toy task (good endings are accepted / chosen).

    Returns {"unpaired": [{prompt, completion, label}], "paired": [{prompt, chosen, rejected}],
    "demos": [{prompt, completion}]}; `chat=True` gives prompts/completions as message lists.
    """
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"unpaired": [], "paired": [], "demos": []}

    def wrap(text: str, role: str):
        return [{"role": role, "content": text.strip()}] if chat else text

    for _ in range(n):
        prompt = _prompt(rng)
        good, bad = _completion(rng, True), _completion(rng, False)
        p = wrap(prompt, "user")
        out["paired"].append(
            {"prompt": p, "chosen": wrap(good, "assistant"), "rejected": wrap(bad, "assistant")}
        )
        label = rng.random() < 0.5
        text = good if label else bad
        out["unpaired"].append({"prompt": p, "completion": wrap(text, "assistant"), "label": label})
        out["demos"].append({"prompt": p, "completion": wrap(_completion(rng, True), "assistant")})
    return out


def train_tokenizer(corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE `PreTrainedTokenizerFast` with <pad>, <s>, </s>, role tokens, a BOS
    post-processor (like Llama) and `CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="right"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    corpus: list[str] | None = None,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
    num_kv_heads: int | None = None,
    model_vocab_size: int | None = None,
    tie_word_embeddings: bool = False,
) -> Path:
    """Train a tokenizer on `corpus` (default `toy_corpus()`), build a Llama with the given
    sizes from its config (random init, seeded), save both to `out_dir` and return it.
    `model_vocab_size` > the tokenizer's pads the embedding (benchmarks: a real model's LM head
    and full-vocabulary KL cost with a locally trained tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = train_tokenizer(corpus if corpus is not None else toy_corpus(), vocab_size)
    config = LlamaConfig(
        vocab_size=max(len(tokenizer), model_vocab_size or 0),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pretrain_tiny_model(model_dir: str | Path, corpus: list[str], *, steps: int = 100, lr=3e-3):
    """A few plain LM steps on `corpus` so the tiny model's log-probs are not uniform (optional;
    the demo and benchmark start from a model that has seen the language). Saves in place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = tok(rng.sample(corpus, 16), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(model_dir)
    return float(loss.detach())
