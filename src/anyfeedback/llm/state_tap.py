"""A tap on the policy forwards of a training step: `tap_policy_states(fn)` makes every policy
forward that builds a graph inside the block (the rows the step trains on) pass its scored
positions' hidden states, detached, to `fn(seqs, states, ref_states)` before any parameter
changes (`ref_states`: π_ref's states on the same rows where the loss computed them, else None).
A caller can measure something more from the same forwards (the online loop's KL to the start
model, `online.steps.StartKL`) instead of running the policy a second time. Forwards without grad (KTO's
mismatched pairs, evaluation) are not passed.

The loss code calls `notify_policy_states` wherever it runs the policy with grad
(`sequence_stats.sequence_stats`, `continuation.kto_terms`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch

from anyfeedback.llm.model import ScoredStates
from anyfeedback.llm.packing import Packed

Tap = Callable[[Packed, ScoredStates, ScoredStates | None], None]
_TAP: ContextVar[Tap | None] = ContextVar("policy_states_tap", default=None)


@contextlib.contextmanager
def tap_policy_states(fn: Tap) -> Iterator[None]:
    """Within the block, call `fn(seqs, states, ref_states)` after each policy forward with
    grad."""
    token = _TAP.set(fn)
    try:
        yield
    finally:
        _TAP.reset(token)


def notify_policy_states(
    seqs: Packed, states: ScoredStates, ref_states: ScoredStates | None = None
) -> None:
    """Pass a policy forward's scored hidden states (and π_ref's on the same rows, if the caller
    has them) to the active tap, if any (with grad only)."""
    tap = _TAP.get()
    if tap is not None and torch.is_grad_enabled():
        tap(seqs, ScoredStates(states.hidden.detach(), states.head), ref_states)
