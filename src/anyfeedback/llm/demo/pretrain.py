"""The demo's small language model: tokenizer and Llama trained from scratch on the generated
review corpus with our own SFT trainer, saved with `save_pretrained` and cached.

The cache key holds every setting that changes the model, so a second `make demo` skips this
step; the model is always loaded back through `from_pretrained`, exactly like a real model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from anyfeedback.llm.corpus import review_corpus


@dataclass(frozen=True)
class DemoModelSpec:
    """Size and SFT budget of the demo model (full: fluent; quick: smaller and shorter)."""

    reviews: int = 20000
    vocab_size: int = 1000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    sft_steps: int = 200
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        # v2: the fused chunked LM head changed the trainer's float rounding, so a start model
        # cached by an earlier version would not reproduce the published demo numbers;
        # v3: so did RMSNormFn's backward (llm/fused_blocks.py)
        return "demo-lm-v3-" + hashlib.sha256(blob).hexdigest()[:12]


QUICK = DemoModelSpec(reviews=8000, vocab_size=700, hidden_size=96, num_layers=3, sft_steps=80)


def cache_root() -> Path:
    return Path(os.environ.get("ANYFEEDBACK_CACHE", Path.home() / ".cache" / "anyfeedback"))


def _sft_records(corpus: list[str]) -> list[dict[str, str]]:
    """Opening sentence → the rest of the review (the online prompts end inside the rest)."""
    out = []
    for text in corpus:
        head, _, tail = text.partition(". ")
        out.append({"prompt": head + ".", "completion": " " + tail})
    return out


def demo_model(spec: DemoModelSpec, *, log=print) -> Path:
    """The cached SFT model for `spec`, trained now if missing. Returns its directory."""
    from anyfeedback.llm.config import TrainConfig
    from anyfeedback.llm.fit import train
    from anyfeedback.llm.tiny import build_tiny_model

    final = cache_root() / spec.key()
    if (final / "config.json").exists():
        log(f"demo model: cached at {final}")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        corpus = review_corpus(spec.reviews, seed=spec.seed)
        log(
            f"demo model: training a tokenizer and a {spec.num_layers}-layer Llama "
            f"(hidden {spec.hidden_size}) on {len(corpus)} generated reviews"
        )
        base = build_tiny_model(
            work / "base",
            corpus,
            vocab_size=spec.vocab_size,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            num_heads=spec.num_heads,
            seed=spec.seed,
        )
        data = work / "sft.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _sft_records(corpus)))
        cfg = TrainConfig(
            model=str(base),
            data=str(data),
            method="sft",
            out=str(work / "sft"),
            learning_rate=spec.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=20,
            max_steps=spec.sft_steps,
            batch_size=spec.batch_size,
            max_length=96,
            seed=spec.seed,
            save_steps=0,
            log_kl_every=0,
            weight_decay=0.01,
        )
        result = train(cfg)
        os.replace(result.model_dir, final)  # atomic: a half-trained model is never cached
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"demo model: saved to {final}")
    return final
