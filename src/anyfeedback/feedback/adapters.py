"""Adapters for the schemas of the datasets of the AIHF paper's real-scale recipes.

A source `NAME:SOURCE[@SPLIT]` (SOURCE a file, directory or Hub id) reads SOURCE's raw rows and
converts each to our record fields before the usual validation:

  hh             Anthropic HH-RLHF {chosen, rejected}: two full transcripts
                 "\\n\\nHuman: … \\n\\nAssistant: …"; the prompt is the shared text up to and
                 including the last "\\n\\nAssistant:", the completions what follows (strings,
                 as Pythia-style models without a chat template expect)
  ultrafeedback  UltraFeedback-binarized {chosen, rejected: message lists[, score_chosen,
                 score_rejected]}: prompt = the shared messages before the last assistant turn,
                 chosen / rejected = that last turn (as one-message lists)
  ultrachat      UltraChat-200k {messages}: a demonstration, prompt = the messages before the last
                 assistant turn, completion = that turn

Asked for demonstrations (`kind="demonstration"`, e.g. `aihf --demos hh:…`), hh and ultrafeedback
give the chosen side. E.g. `hh:Anthropic/hh-rlhf`, `ultrafeedback:HuggingFaceH4/
ultrafeedback_binarized@train_prefs`, `ultrachat:HuggingFaceH4/ultrachat_200k@train_sft`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyfeedback.feedback.schema import Where

ASSISTANT = "\n\nAssistant:"
Row = dict[str, Any]


def split_hh(text: Any, where: Where, field: str) -> tuple[str, str]:
    """(prompt ending in '\\n\\nAssistant:', the final response) of an HH transcript."""
    if not isinstance(text, str):
        raise where.error("must be an HH transcript string", field)
    i = text.rfind(ASSISTANT)
    if i < 0 or not text.lstrip().startswith("Human:"):
        raise where.error("is not an HH transcript ('\\n\\nHuman: … \\n\\nAssistant: …')", field)
    return text[: i + len(ASSISTANT)], text[i + len(ASSISTANT) :]


def hh(row: Row, where: Where, kind: str | None) -> Row:
    prompt, chosen = split_hh(row.get("chosen"), where, "chosen")
    other, rejected = split_hh(row.get("rejected"), where, "rejected")
    if other != prompt:
        raise where.error("the two transcripts differ before the last Assistant turn", "rejected")
    if kind == "demonstration":
        return {"prompt": prompt, "completion": chosen}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _last_assistant(msgs: Any, where: Where, field: str) -> int:
    ok = isinstance(msgs, list) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in msgs
    )
    if not ok or not msgs:
        raise where.error("must be a non-empty list of {role, content} messages", field)
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
    if last < 1:
        raise where.error("has no assistant turn after a prompt", field)
    return last


def _clean(msgs: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def ultrafeedback(row: Row, where: Where, kind: str | None) -> Row:
    c, r = row.get("chosen"), row.get("rejected")
    ic, ir = _last_assistant(c, where, "chosen"), _last_assistant(r, where, "rejected")
    if _clean(c[:ic]) != _clean(r[:ir]):
        raise where.error(
            "chosen and rejected conversations differ before the last turn", "rejected"
        )
    prompt = _clean(c[:ic])
    if kind == "demonstration":
        return {"prompt": prompt, "completion": _clean([c[ic]])}
    out = {"prompt": prompt, "chosen": _clean([c[ic]]), "rejected": _clean([r[ir]])}
    for name in ("score_chosen", "score_rejected"):
        if row.get(name) is not None:
            out[name] = row[name]
    return out


def ultrachat(row: Row, where: Where, kind: str | None) -> Row:
    msgs = row.get("messages")
    i = _last_assistant(msgs, where, "messages")
    if kind not in (None, "demonstration", "prompt-only"):
        raise where.error(f"UltraChat rows are demonstrations, not {kind} records", "messages")
    return {"prompt": _clean(msgs[:i]), "completion": _clean([msgs[i]])}


ADAPTERS: dict[str, Callable[[Row, Where, str | None], Row]] = {
    "hh": hh,
    "ultrafeedback": ultrafeedback,
    "ultrachat": ultrachat,
}


def parse_source(source: str, split: str) -> tuple[Callable | None, str, str]:
    """(adapter or None, the underlying source, split) of a source spec."""
    name, sep, rest = source.partition(":")
    if not sep or name not in ADAPTERS or not rest:
        return None, source, split
    if "@" in rest:
        rest, _, split = rest.rpartition("@")
    return ADAPTERS[name], rest, split
