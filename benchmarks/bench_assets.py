"""The workloads of `vs_trl.py`: profiles (model sizes, batch, data lengths), the deterministic
model + data assets built once per profile, and the task's token and FLOP totals (for tokens/s
and MFU). See `vs_trl.py` for what is measured."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"


@dataclass(frozen=True)
class Profile:
    name: str
    model: dict  # build_tiny_model keyword arguments
    model_desc: str
    batch: int
    max_length: int
    prompt_words: tuple[int, int]
    completion_words: tuple[int, int]
    bf16: bool
    # One intra-op thread per CPU run: with few cores shared by other work, 2 OpenMP threads
    # stall whenever another core is busy (measured 2-7x slower and erratic); 1 thread is steady.
    threads: int | None
    extra: dict = field(default_factory=dict)

    @property
    def work(self) -> Path:  # the assets depend on the profile, not on the batch size
        base = self.name.partition("-b")[0]
        return OUT / (".work" if base == "cpu" else f".work-{base}")


PROFILES = {
    "cpu": Profile(
        "cpu",
        dict(
            vocab_size=4096,
            hidden_size=256,
            num_layers=6,
            num_heads=4,
            intermediate_size=768,
            max_position_embeddings=512,
            seed=0,
        ),
        "Llama, hidden 256, 6 layers, 4 heads, MLP 768, BPE vocab 1850 (~6.1M params)",
        batch=8,
        max_length=192,
        prompt_words=(6, 48),
        completion_words=(6, 56),
        bf16=False,
        threads=1,
    ),
    "gpu": Profile(
        "gpu",
        dict(
            vocab_size=4096,
            hidden_size=896,
            num_layers=24,
            num_heads=14,
            num_kv_heads=2,
            intermediate_size=4864,
            max_position_embeddings=2048,
            model_vocab_size=151936,
            tie_word_embeddings=True,
            seed=0,
        ),
        "Llama with Qwen2.5-0.5B shapes: hidden 896, 24 layers, 14/2 heads, MLP 4864, "
        "vocab 151936, tied (0.49B params, random init)",
        batch=16,
        max_length=1024,
        prompt_words=(40, 300),
        completion_words=(40, 300),
        bf16=True,
        threads=None,
    ),
}


def _words(rng: random.Random, n: int, vocab: list[str]) -> str:
    return " ".join(vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1)] for _ in range(n))


def build_assets(p: Profile, n_records: int) -> dict[str, Path]:
    """Tokenizer + Llama + unpaired/paired JSONL, deterministic, cached in `p.work`."""
    from anyfeedback.llm.tiny import build_tiny_model

    p.work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    syll = [c + v for c in "bcdfgklmnprstvz" for v in "aeiou"]
    vocab = sorted(
        {"".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(6000)}
    )
    rng.shuffle(vocab)
    model_dir = p.work / "model"
    if not (model_dir / "config.json").is_file():
        crng = random.Random(1)
        corpus = [_words(crng, crng.randint(5, 40), vocab) for _ in range(20000)]
        build_tiny_model(model_dir, corpus, **p.model)
    paths = {"model": model_dir}
    drng = random.Random(2)
    for kind in ("unpaired", "paired"):
        path = p.work / f"{kind}-{n_records}.jsonl"
        paths[kind] = path
        if path.is_file():
            continue
        rows = []
        for _ in range(n_records):
            prompt = _words(drng, drng.randint(*p.prompt_words), vocab)
            a, b = (" " + _words(drng, drng.randint(*p.completion_words), vocab) for _ in range(2))
            if kind == "paired":
                rows.append({"prompt": prompt, "chosen": a, "rejected": b})
            else:
                rows.append({"prompt": prompt, "completion": a, "label": drng.random() < 0.5})
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def encoded_examples(p: Profile, model_dir: Path, data: Path):
    from anyfeedback.llm.data import encode_records
    from anyfeedback.llm.model import load_tokenizer
    from anyfeedback.llm.records import load_records

    class _C:
        model, trust_remote_code = str(model_dir), False

    tok = load_tokenizer(_C)
    kind, records = load_records(str(data))
    return tok, encode_records(tok, records, kind, max_length=p.max_length).examples


def record_stats(p: Profile, model_dir: Path, data: Path) -> dict[str, float]:
    """Totals over all records (a pair counts both sequences): non-padding tokens, and the task's
    model FLOPs of one training pass (see the module docstring)."""
    cfg = json.loads((model_dir / "config.json").read_text())
    d, L, V, inter = (
        cfg[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size")
    )
    kv = cfg["num_key_value_heads"] * d // cfg["num_attention_heads"]
    n_params = L * (2 * d * d + 2 * d * kv + 3 * d * inter)  # non-embedding
    tokens = flops = 0.0
    lengths = []
    for e in encoded_examples(p, model_dir, data)[1]:
        for comp in e.completion_ids:
            n, c = len(e.prompt_ids) + len(comp), len(comp)
            tokens += n
            lengths.append(n)
            flops += 4 * (2 * n_params * n + 2 * L * d * n * n + 2 * d * V * c)
    # how long the sequences are (max_length only truncates what is longer)
    return {
        "tokens": tokens,
        "flops": flops,
        "mean_len": tokens / len(lengths),
        "max_len": max(lengths),
    }


def last_error(stderr: str, returncode: int) -> str:
    """The last line of a failed child's stderr that names an error (an out-of-memory error, our
    one-line input errors), not the launcher's ChildFailedError report around it; at most 300
    characters."""
    lines = [x for x in stderr.splitlines() if "Error" in x or "error:" in x]
    lines = [x for x in lines if "ChildFailedError" not in x]
    return (lines or [f"exit {returncode}"])[-1][-300:]
