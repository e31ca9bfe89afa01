"""Shared fixtures for the LLM trainer tests: one tiny Llama + tokenizer per session (built with
`anyfeedback.llm.tiny`, loaded back through `from_pretrained` like a real model) and the toy
feedback files. Import the fixtures into a test module with `from conftest_llm import *`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ANYFEEDBACK_PROGRESS", "0")

__all__ = ["feedback_files", "one_thread", "tiny_model", "train_cfg", "write_jsonl"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _shared_dir(tmp_path_factory) -> Path:
    # getbasetemp() is shared by the session, so modules importing these fixtures reuse one build
    return tmp_path_factory.getbasetemp() / "llm-shared"


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread (restored after): with few cores shared by other
    work, two OpenMP threads stall whenever another core is busy, and the tiny models gain
    nothing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama (hidden 64, 2 layers, ~400-token BPE vocab) saved with save_pretrained."""
    import torch

    from anyfeedback.llm.tiny import build_tiny_model, pretrain_tiny_model, toy_corpus

    path = _shared_dir(tmp_path_factory) / "tiny-llama"
    if not (path / "config.json").is_file():
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # see one_thread (session fixtures are set up before it)
        corpus = toy_corpus(1500, seed=0)
        build_tiny_model(path, corpus, vocab_size=400, hidden_size=64, num_layers=2)
        pretrain_tiny_model(path, corpus, steps=60)  # log-probs of the toy language, not uniform
        torch.set_num_threads(before)
    return path


@pytest.fixture(scope="session")
def feedback_files(tmp_path_factory) -> dict[str, Path]:
    """Toy feedback as JSONL: unpaired, paired, demos, chat (paired, messages), empty."""
    from anyfeedback.llm.tiny import toy_feedback

    root = _shared_dir(tmp_path_factory) / "feedback"
    root.mkdir(parents=True, exist_ok=True)
    fb = toy_feedback(64, seed=1)
    chat = toy_feedback(32, seed=2, chat=True)
    files = {name: write_jsonl(root / f"{name}.jsonl", rows) for name, rows in fb.items()}
    files["chat_paired"] = write_jsonl(root / "chat_paired.jsonl", chat["paired"])
    files["chat_unpaired"] = write_jsonl(root / "chat_unpaired.jsonl", chat["unpaired"])
    (root / "empty.jsonl").write_text("", encoding="utf-8")
    files["empty"] = root / "empty.jsonl"
    accepted = [r for r in fb["unpaired"] if r["label"]]
    rejected = [r for r in fb["unpaired"] if not r["label"]]
    files["accepted_only"] = write_jsonl(root / "accepted_only.jsonl", accepted)
    files["rejected_only"] = write_jsonl(root / "rejected_only.jsonl", rejected)
    return files


@pytest.fixture
def train_cfg(tiny_model, feedback_files, tmp_path):
    """`train_cfg(method, data="unpaired", **fields)` → a small fast `TrainConfig`."""
    from anyfeedback.llm import TrainConfig

    def make(method: str, data: str = "unpaired", **fields):
        values = dict(
            model=str(tiny_model),
            data=str(feedback_files[data]),
            method=method,
            out=str(tmp_path / f"run-{method}"),
            learning_rate=1e-3,
            lr_scheduler_type="constant",
            batch_size=8,
            max_steps=15,
            save_steps=0,
            progress=False,
            seed=0,
        )
        values.update(fields)
        return TrainConfig(**values)

    return make
