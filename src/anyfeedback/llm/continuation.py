"""KTO's mismatched pairs (x_i, y_{i+1}) as continuations of the matched rows' prompts.

KTO's reference point needs ℓ_θ and ℓ_ref of every mismatched pair (docs/algorithms.md#kto).
The prompt x_i of (x_i, y_{i+1}) is the prompt of the matched row i, which both models run
anyway, so its keys and values are already in the matched forward's KV cache. Here the
mismatched completion y_{i+1} alone is run on top of that cache: the completion's tokens attend
to the cached prompt positions [0, p_i) and causally to themselves (a [R, 1, Tc, T + Tc] mask
that hides the matched completion y_i and the padding of the cached row) at positions
p_i, p_i + 1, …, exactly where they sit in the row (x_i, y_{i+1}). The first completion token is
scored by the hidden state at p_i − 1 (the prompt's last token), which the matched forward has
already computed. The mismatched prompts are thus never run again: π_θ's no-grad pass and π_ref's
pass on the mismatched pairs cost their completion tokens only. Same log-probs as running the
rows (x_i, y_{i+1}) alone, up to float rounding (`tests/test_llm_kto_continuation.py`).

Only for right-padded rows (`packing.pack`) of models that honour a custom 4D mask with a KV
cache (`continuation_supported`, checked once per model on a toy input) and return a cache
(not under gradient checkpointing), and not under `--torch-compile`; otherwise KTO runs the
mismatched rows as before.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import NamedTuple

import torch

from anyfeedback.llm.model import (
    ScoredStates,
    _forward_kwargs,
    _gather_hook,
    _inner,
    lm_head,
)
from anyfeedback.llm.packing import Packed
from anyfeedback.llm.reference import Reference
from anyfeedback.llm.state_tap import notify_policy_states
from anyfeedback.losses.tokens import fused_token_stats


@dataclass
class Continuation:
    """The mismatched views of `Batch.mismatched` split into what the matched forward already
    has and what the continuation forward computes. Shapes: R rows (= views), Tc tail columns,
    T columns of the cached matched rows; N1 first tokens, N2 continuation tokens."""

    input_ids: torch.Tensor  # [R, Tc] each row's mismatched completion, right-padded
    position_ids: torch.Tensor  # [R, Tc] p_r, p_r + 1, … (positions in the row (x_r, y))
    attention_mask: torch.Tensor  # [R, 1, Tc, T + Tc] bool: cached prompt, then causal
    first: torch.Tensor  # [N1] index into `mismatched.scored()` of first completion tokens
    first_at: tuple[torch.Tensor, torch.Tensor]  # (row, position) [N1] in the matched rows
    rest: torch.Tensor  # [N2] index into `mismatched.scored()` of the other tokens
    rest_at: tuple[torch.Tensor, torch.Tensor]  # (row, position) [N2] in the tail rows
    lengths: torch.Tensor  # [R] tokens of each row's tail (its completion)
    prompt_lengths: torch.Tensor  # [R] cached prompt positions each row attends to


def continuation_of(matched: Packed, mismatched: Packed) -> Continuation | None:
    """The tail of each mismatched row after its prompt, to run on the matched rows' cache;
    None where the layout does not allow it (padding-free or block-masked rows)."""
    if matched.flat or mismatched.flat or matched.attention_mask.dim() != 2:
        return None
    if not torch.equal(mismatched.rows.cpu(), torch.arange(mismatched.n_views)):
        return None
    dev = mismatched.input_ids.device
    prompt_len = mismatched.gather_index[:, 0] + 1  # [R]: position p − 1 scores token 0
    comp_len = mismatched.mask[:, 1:].sum(1)  # [R]
    width = max(int(comp_len.max()), 1)
    r = mismatched.n_views
    cols = torch.arange(width, device=dev)
    take = (prompt_len[:, None] + cols).clamp(max=mismatched.input_ids.shape[1] - 1)
    valid = cols < comp_len[:, None]  # [R, Tc]
    ids = torch.where(valid, mismatched.input_ids.gather(1, take), mismatched.pad_id)
    t = matched.input_ids.shape[1]
    cached = torch.arange(t, device=dev) < prompt_len[:, None]  # [R, T]: the prompt only
    causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
    mask = torch.cat([cached[:, None, :].expand(r, width, t), causal.expand(r, -1, -1)], 2)
    rows, pos, _, _ = mismatched.scored()
    is_first = pos < prompt_len[rows]
    first, rest = is_first.nonzero().squeeze(1), (~is_first).nonzero().squeeze(1)
    return Continuation(
        ids,
        prompt_len[:, None] + cols,
        mask[:, None],
        first,
        (rows[first], pos[first]),
        rest,
        (rows[rest], pos[rest] - prompt_len[rows[rest]]),
        comp_len,
        prompt_len,
    )


def hidden_and_cache(model: torch.nn.Module, seqs: Packed, extra: tuple | None = None):
    """Final hidden states of `seqs`' scored positions [N, H] (like `model.completion_hidden`),
    the states at the `extra` (row, position) pairs [N1, H], and the forward's KV cache (None
    where the model returns none, e.g. under gradient checkpointing)."""
    hook = _gather_hook(model)
    rows, positions, _, _ = seqs.scored()
    n = rows.numel()
    if extra is not None:
        rows, positions = torch.cat([rows, extra[0]]), torch.cat([positions, extra[1]])
    hook.scored = (rows, positions)
    try:
        out = model(**{**_forward_kwargs(seqs), "use_cache": True})
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return hook.captured[:n], hook.captured[n:], cache
    finally:
        hook.scored, hook.captured = None, None


def tail_hidden(model: torch.nn.Module, tail: Continuation, cache, groups=None) -> torch.Tensor:
    """Final hidden states [N2, H] of the tail rows run on `cache` (call without grad).

    The tails are padded to the longest one, so rows of very different lengths are run in
    groups of similar length (`tail_groups`), each on its rows of the cache cut to the longest
    prompt of the group: fewer padded positions through every layer. `groups`: row-index
    tensors to use instead (tests)."""
    groups = tail_groups(tail.lengths) if groups is None else groups
    if len(groups) == 1 or not _row_cache(cache):  # all rows: the whole cache, in row order
        groups = [torch.arange(tail.lengths.numel(), device=tail.lengths.device)]
    hook = _gather_hook(model)
    if len(groups) == 1:
        hook.scored = tail.rest_at
        try:
            _run_tail(model, tail.input_ids, tail.attention_mask, tail.position_ids, cache)
            return hook.captured
        finally:
            hook.scored, hook.captured = None, None
    rows, positions = tail.rest_at
    t = tail.attention_mask.shape[-1] - tail.input_ids.shape[1]  # cached columns
    out = None
    try:
        for idx in groups:
            local = torch.full_like(tail.lengths, -1)
            local[idx] = torch.arange(idx.numel(), device=idx.device)
            mine = (local[rows] >= 0).nonzero().squeeze(1)  # this group's tokens in rest order
            if mine.numel() == 0:
                continue
            width = max(int(tail.lengths[idx].max()), 1)
            cached = int(tail.prompt_lengths[idx].max())
            cols = torch.cat([torch.arange(cached), t + torch.arange(width)]).to(idx.device)
            hook.scored = (local[rows[mine]], positions[mine])
            _run_tail(
                model,
                tail.input_ids[idx, :width],
                tail.attention_mask[idx][:, :, :width][..., cols],
                tail.position_ids[idx, :width],
                _cache_rows(cache, idx, cached),
            )
            got = hook.captured
            if out is None:
                out = got.new_empty(rows.numel(), got.shape[1])
            out[mine] = got
        return out
    finally:
        hook.scored, hook.captured = None, None


def _run_tail(model, input_ids, attention_mask, position_ids, cache) -> None:
    model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        **{_cache_argument(model): cache},
    )


def tail_groups(lengths: torch.Tensor, overhead: int = 64) -> list[torch.Tensor]:
    """Row indices in one or two groups of similar length: the split of the rows sorted by
    length that minimises padded positions (rows × longest row, per group), counting `overhead`
    positions for the extra forward call; one group when no split saves more than that."""
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_len = lengths[order].tolist()
    r = len(sorted_len)
    best, split = r * sorted_len[0] if r else 0, 0
    for k in range(1, r):  # rows [0, k) padded to sorted_len[0], rows [k, r) to sorted_len[k]
        cost = k * sorted_len[0] + (r - k) * sorted_len[k] + overhead
        if cost < best:
            best, split = cost, k
    if split == 0:
        return [torch.arange(r, device=lengths.device)]
    return [order[:split], order[split:]]


def _row_cache(cache) -> bool:
    """A cache whose layers hold plain [rows, heads, positions, dim] keys and values (a
    `DynamicCache` without sliding windows), which `_cache_rows` can take rows of."""
    layers = getattr(cache, "layers", None)
    return (
        type(cache).__name__ == "DynamicCache"
        and bool(layers)
        and all(
            type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
            for layer in layers
        )
    )


def _cache_rows(cache, rows: torch.Tensor, positions: int):
    """A new `DynamicCache` with `rows` of `cache` and its first `positions` positions (the
    original is left as it is: the other groups still read it)."""
    return type(cache)(
        [
            (layer.keys[rows, :, :positions], layer.values[rows, :, :positions])
            for layer in cache.layers
        ]
    )


def _cache_argument(model: torch.nn.Module) -> str:
    """`cache` (transformers >= 5.2x) or `past_key_values` (before; deprecated since)."""
    inner = _inner(model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # LoRA
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def mismatched_hidden(first: torch.Tensor, rest: torch.Tensor, tail: Continuation, n: int):
    """The hidden states [n, H] of the mismatched views in `Packed.scored` order."""
    out = first.new_empty(n, first.shape[1])
    out[tail.first] = first
    out[tail.rest] = rest
    return out


def continuation_supported(model: torch.nn.Module, pad_id: int = 0) -> bool:
    """Does `model` give the same log-probs for (x, y') run alone and run as a continuation of
    (x, y)'s cache? Checked once per model on a toy batch and remembered on the module."""
    inner = _inner(model)
    known = inner.__dict__.get("_anyfeedback_continuation")
    if known is not None:
        return known
    inner.__dict__["_anyfeedback_continuation"] = ok = _check(inner, pad_id)
    return ok


def _check(model: torch.nn.Module, pad_id: int) -> bool:
    from anyfeedback.llm.packing import pack

    v = (
        int(model.get_input_embeddings().weight.shape[0])
        if hasattr(model, "get_input_embeddings")
        else 32
    )
    prompts = [[1 % v, 5 % v, 7 % v], [3 % v, 9 % v]]
    comps = [[11 % v, 13 % v], [17 % v, 19 % v, 23 % v, 29 % v]]
    matched, mismatched = pack(prompts, comps, pad_id), pack(prompts, comps[::-1], pad_id)
    device = next(model.parameters()).device
    matched, mismatched = matched.to(device), mismatched.to(device)
    tail = continuation_of(matched, mismatched)
    hook = _gather_hook(model)
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            rows, pos, _, _ = mismatched.scored()
            hook.scored = (rows, pos)
            model(**_forward_kwargs(mismatched))
            alone = hook.captured
            hook.scored = None
            _, first, cache = hidden_and_cache(model, matched, tail.first_at)
            if cache is None:
                return False
            one_by_one = [torch.tensor([i], device=device) for i in range(len(prompts))]
            conts = [  # each row on its own rows of the cache (first: it leaves `cache` as is)
                mismatched_hidden(first, tail_hidden(model, tail, cache, g), tail, rows.numel())
                for g in (one_by_one, None)
            ]
    except Exception:  # noqa: BLE001  (a kernel or cache that rejects the mask: not supported)
        return False
    finally:
        hook.scored, hook.captured = None, None
        model.train(was)
    return all(bool(torch.allclose(alone, c, atol=1e-4, rtol=1e-3)) for c in conts)


class KTOTerms(NamedTuple):
    """Per record [R]: ℓ_θ (with grad), Σ_t KL (zeros without `want_kl`), token counts, ℓ_ref;
    per mismatched pair [R]: ℓ_θ and ℓ_ref (no grad)."""

    logps: torch.Tensor
    kl: torch.Tensor
    counts: torch.Tensor
    ref_logps: torch.Tensor
    mm_logps: torch.Tensor
    mm_ref_logps: torch.Tensor


def kto_terms(policy, ref: Reference, batch, cfg, want_kl: bool) -> KTOTerms | None:
    """KTO's log-probs with the mismatched pairs run as continuations (module docstring): π_ref
    on the matched rows then on the tails, π_θ on the matched rows (grad) then on the tails (no
    grad). None where the layout, the model or gradient checkpointing rules it out."""
    seqs, mm = batch.seqs, batch.mismatched
    if mm is None or _checkpointing(_inner(policy)) or _compiled(policy):
        return None
    tail = continuation_of(seqs, mm)
    if tail is None or not continuation_supported(policy, seqs.pad_id):
        return None
    _, _, targets, view = seqs.scored()
    _, _, mm_targets, mm_view = mm.scored()
    chunk = cfg.kl_chunk_size
    with torch.inference_mode(), ref._as_reference() as model, ref.autocast():
        ref_hidden, ref_first, cache = hidden_and_cache(model, seqs, tail.first_at)
        if cache is None:
            return None
        ref_mm = mismatched_hidden(ref_first, tail_hidden(model, tail, cache), tail, len(mm_view))
        ref_head = lm_head(model)
        mm_ref_tok = fused_token_stats(ref_mm, ref_head, mm_targets, chunk_size=chunk)
        ref_tok = (
            None if want_kl else fused_token_stats(ref_hidden, ref_head, targets, chunk_size=chunk)
        )
    hidden, first, cache = hidden_and_cache(policy, seqs, tail.first_at)
    if cache is None:  # the model kept no cache (e.g. gradient checkpointing turned on)
        return None
    ref_states = ScoredStates(ref_hidden, ref_head) if want_kl else None
    notify_policy_states(seqs, ScoredStates(hidden, lm_head(policy)), ref_states)  # state_tap
    with torch.inference_mode():
        pol_mm = mismatched_hidden(
            first.detach(), tail_hidden(policy, tail, cache), tail, len(mm_view)
        )
        del cache
        mm_tok = fused_token_stats(pol_mm, lm_head(policy), mm_targets, chunk_size=chunk)
    ref_states = (ref_hidden.clone(), ref_head) if want_kl else (None, None)
    tok = fused_token_stats(hidden, lm_head(policy), targets, *ref_states, chunk_size=chunk)
    r = seqs.n_views
    ones = torch.ones_like(tok.logps)
    logps, kl, counts = (_per_view(x, view, r) for x in (tok.logps, tok.kl, ones))
    ref_lp = _per_view(tok.ref_logps if want_kl else ref_tok.logps, view, r)
    mm_lp, mm_ref, mm_counts = (
        _per_view(x, mm_view, r).clone()
        for x in (mm_tok.logps, mm_ref_tok.logps, torch.ones_like(mm_tok.logps))
    )
    if cfg.average_logps:
        logps, ref_lp = logps / counts.clamp(min=1), ref_lp / counts.clamp(min=1)
        mm_lp, mm_ref = mm_lp / mm_counts.clamp(min=1), mm_ref / mm_counts.clamp(min=1)
    return KTOTerms(logps, kl, counts, ref_lp.detach().clone(), mm_lp, mm_ref)


def _compiled(model: torch.nn.Module) -> bool:
    """Under `--torch-compile` (a wrapper with `_orig_mod`, possibly inside DDP): the rows path,
    which is what compiled runs are tested with; the cache and 4D mask would add recompiles."""
    while not hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None)
        if not isinstance(model, torch.nn.Module):
            return False
    return True


def _checkpointing(model: torch.nn.Module) -> bool:
    """Gradient checkpointing on? (transformers 5.x renamed the flag; the model keeps no cache
    under it.)"""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name) or name in model.__dict__:
            return bool(getattr(model, name))
    return False


def _per_view(x: torch.Tensor, view: torch.Tensor, n: int) -> torch.Tensor:
    return x.new_zeros(n).index_add(0, view, x)
