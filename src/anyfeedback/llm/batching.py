"""Batches with little padding, and a stateless batch order that resumes exactly.

Layout: rows are right-padded `[prompt | completion | pad …]` to the longest sequence T of the
micro-batch (with length bucketing, little padding). Only the K = C + 1 positions that score a
completion token (C = longest completion; the position before the completion predicts its first
token) go through the LM head: `gather_index` [R, K] names them, and `completion_logits` gathers
those hidden states before the head, so no LM-head matmul, logit memory or softmax is spent on
prompt or padding positions. Rows with shorter completions repeat their last real position; the
extra logits are masked out.

Shapes: R rows (sequences) in a micro-batch, T columns, K kept positions.

Order: `BatchPlan` draws each epoch's permutation from (seed, epoch), sorts chunks of
`bucket_batches` global batches by length (length bucketing), shuffles the batches, and splits a
global batch of G = B·A·W records into micro-batches: micro-batch k = a·W + r goes to
accumulation step a on process r. So 2 processes × 1 accumulation step and 1 process × 2 steps
see the same micro-batches, and step s's data is a pure function of s (resume needs only s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from anyfeedback.llm.data import Example


@dataclass
class Packed:
    """Right-padded token rows plus the positions whose logits score completion tokens."""

    input_ids: torch.Tensor  # [R, T]
    attention_mask: torch.Tensor  # [R, T]
    gather_index: torch.Tensor  # [R, K] positions p−1 … p+c−1 of each row (then repeated)
    labels: torch.Tensor  # [R, K] token at each gathered position (logits at j score labels[j+1])
    mask: torch.Tensor  # [R, K] bool: labels[j] is a completion token
    pad_id: int = 0

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.attention_mask.sum())

    def to(self, device) -> Packed:
        t = [x.to(device) for x in (self.input_ids, self.attention_mask, self.gather_index)]
        return Packed(*t, self.labels.to(device), self.mask.to(device), self.pad_id)

    def kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and completion mask aligned with the gathered logits, each [R, K]."""
        return self.labels, self.mask

    def rows(self, sl: slice) -> Packed:
        return Packed(
            self.input_ids[sl],
            self.attention_mask[sl],
            self.gather_index[sl],
            self.labels[sl],
            self.mask[sl],
            self.pad_id,
        )


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> Packed:
    """Right-padded rows `[prompt | completion | pad]` and their completion-scoring positions."""
    r = len(prompts)
    t = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    k = max(len(c) for c in completions) + 1
    ids = torch.full((r, t), pad_id, dtype=torch.long)
    attn = torch.zeros((r, t), dtype=torch.long)
    index = torch.zeros((r, k), dtype=torch.long)
    mask = torch.zeros((r, k), dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attn[i, :n] = 1
        index[i] = (torch.arange(k) + len(p) - 1).clamp(max=n - 1)  # [K]
        mask[i, 1 : len(c) + 1] = True
    labels = ids.gather(1, index)  # [R, K]
    return Packed(ids, attn, index, labels, mask, pad_id)


def cat_rows(a: Packed, b: Packed) -> Packed:
    """Stack two packs (right-padding the narrower one), e.g. KTO's matched + mismatched rows
    for one π_ref forward."""

    def widen(x: torch.Tensor, width: int, value) -> torch.Tensor:
        return F.pad(x, (0, width - x.shape[1]), value=value)

    t = max(a.input_ids.shape[1], b.input_ids.shape[1])
    k = max(a.labels.shape[1], b.labels.shape[1])
    parts = []
    for p in (a, b):
        last = p.gather_index[:, -1:]  # repeat each row's last position when widening K
        index = torch.cat([p.gather_index, last.expand(-1, k - p.labels.shape[1])], dim=1)
        parts.append(
            (
                widen(p.input_ids, t, a.pad_id),
                widen(p.attention_mask, t, 0),
                index,
                widen(p.labels, k, a.pad_id),
                widen(p.mask, k, False),
            )
        )
    return Packed(*(torch.cat(x) for x in zip(*parts, strict=True)), a.pad_id)


@dataclass
class Batch:
    """One micro-batch for one method. Row groups of `seqs`:
    unpaired (pmpo, kto): one row per record, `accepted` [R] bool;
    paired (dpo, ipo, aihf-dpo): rows [0, n) chosen, [n, 2n) rejected, then `n_demos` demo rows
    and `n_ref_samples` π_ref-sample rows (aihf-dpo contrastive, one per demo);
    demonstration (sft): one row per record.
    `mismatched` (kto): rows (x_i, y_{i'}), i' = (i + 1) mod m, for the reference point."""

    seqs: Packed
    n_records: int
    accepted: torch.Tensor | None = None
    n_pairs: int = 0
    n_demos: int = 0
    n_ref_samples: int = 0
    mismatched: Packed | None = None

    def to(self, device) -> Batch:
        return Batch(
            self.seqs.to(device),
            self.n_records,
            None if self.accepted is None else self.accepted.to(device),
            self.n_pairs,
            self.n_demos,
            self.n_ref_samples,
            None if self.mismatched is None else self.mismatched.to(device),
        )


def collate_unpaired(examples: list[Example], pad_id: int, *, mismatched: bool = False) -> Batch:
    """Unpaired rows; with `mismatched`, also prompt i with completion (i + 1) mod m (KTO)."""
    prompts = [e.prompt_ids for e in examples]
    comps = [e.completion_ids[0] for e in examples]
    accepted = torch.tensor([bool(e.accepted) for e in examples])
    extra = None
    if mismatched:
        from anyfeedback.losses import mismatched_indices

        shift = mismatched_indices(len(examples)).tolist()
        extra = pack(prompts, [comps[j] for j in shift], pad_id)
    return Batch(pack(prompts, comps, pad_id), len(examples), accepted=accepted, mismatched=extra)


def collate_pairs(
    examples: list[Example],
    pad_id: int,
    *,
    demos: list[Example] | None = None,
    ref_samples: list[list[int]] | None = None,
) -> Batch:
    """Chosen rows, then rejected rows, then demonstrations (and π_ref samples for the same
    demo prompts), all in one forward."""
    prompts = [e.prompt_ids for e in examples] * 2
    comps = [e.completion_ids[0] for e in examples] + [e.completion_ids[1] for e in examples]
    demos = demos or []
    prompts += [d.prompt_ids for d in demos]
    comps += [d.completion_ids[0] for d in demos]
    if ref_samples is not None:
        prompts += [d.prompt_ids for d in demos]
        comps += ref_samples
    n_ref = 0 if ref_samples is None else len(ref_samples)
    seqs = pack(prompts, comps, pad_id)
    return Batch(
        seqs, len(examples), n_pairs=len(examples), n_demos=len(demos), n_ref_samples=n_ref
    )


def collate_demos(examples: list[Example], pad_id: int) -> Batch:
    """One row per demonstration (SFT)."""
    prompts = [e.prompt_ids for e in examples]
    comps = [e.completion_ids[0] for e in examples]
    return Batch(pack(prompts, comps, pad_id), len(examples))


class BatchPlan:
    """Which records each micro-batch of each optimizer step holds (stateless; see module doc)."""

    def __init__(
        self,
        lengths: list[int],
        *,
        batch_size: int,
        accumulation: int,
        world_size: int,
        seed: int,
        group_by_length: bool = True,
        bucket_batches: int = 64,
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.world_size = world_size
        self.global_size = batch_size * accumulation * world_size
        self.steps_per_epoch = len(lengths) // self.global_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.bucket_batches = bucket_batches
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.lengths), generator=gen).tolist()
        perm = perm[: self.steps_per_epoch * self.global_size]  # drop the last partial batch
        if self.group_by_length:
            chunk = self.global_size * self.bucket_batches
            perm = [
                i
                for s in range(0, len(perm), chunk)
                for i in sorted(perm[s : s + chunk], key=lambda j: -self.lengths[j])
            ]
        g = self.global_size
        batches = [perm[s : s + g] for s in range(0, len(perm), g)]
        order = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[i] for i in order]
        self._epoch_cache = (epoch, batches)
        return batches

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """Record indices of the `accumulation` micro-batches of optimizer step `step` (0-based)
        on process `rank`."""
        epoch, index = divmod(step, self.steps_per_epoch)
        batch = self._epoch(epoch)[index]
        b, w = self.batch_size, self.world_size
        out = []
        for a in range(self.accumulation):
            k = a * w + rank
            out.append(batch[k * b : (k + 1) * b])
        return out
