"""Batches with little padding, and a stateless batch order that resumes exactly.

Layout: every row is `[pad … | prompt | completion | … pad]`, prompts left-padded to the batch's
longest prompt P and completions right-padded to its longest completion C, so all completions
start at column P. The model then computes logits for the last C + 1 positions only
(`logits_to_keep`): no LM-head matmul and no softmax is spent on prompt or padding positions.
Position ids count real tokens only, so left padding does not shift positions.

Shapes: R rows (sequences) in a micro-batch, T = P + C columns.

Order: `BatchPlan` draws each epoch's permutation from (seed, epoch), sorts chunks of
`bucket_batches` global batches by length (length bucketing), shuffles the batches, and splits a
global batch of G = B·A·W records into micro-batches: micro-batch k = a·W + r goes to
accumulation step a on process r. So 2 processes × 1 accumulation step and 1 process × 2 steps
see the same micro-batches, and step s's data is a pure function of s (resume needs only s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anyfeedback.llm.data import Example


@dataclass
class Packed:
    """Token rows in the aligned layout."""

    input_ids: torch.Tensor  # [R, T]
    attention_mask: torch.Tensor  # [R, T]
    position_ids: torch.Tensor  # [R, T]
    completion_mask: torch.Tensor  # [R, T] bool: completion tokens (scored)
    keep: int  # C + 1: logits kept for positions T-keep … T-1

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.attention_mask.sum())

    def to(self, device) -> Packed:
        return Packed(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.completion_mask.to(device),
            self.keep,
        )

    def kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and completion mask for the kept logits, each [R, keep]."""
        return self.input_ids[:, -self.keep :], self.completion_mask[:, -self.keep :]


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> Packed:
    """Rows `[pad | prompt | completion | pad]` with every completion starting at column P."""
    p_max = max(len(p) for p in prompts)
    c_max = max(len(c) for c in completions)
    r, t = len(prompts), p_max + c_max
    ids = torch.full((r, t), pad_id, dtype=torch.long)
    attn = torch.zeros((r, t), dtype=torch.long)
    comp = torch.zeros((r, t), dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        start, end = p_max - len(p), p_max + len(c)
        ids[i, start:p_max] = torch.tensor(p, dtype=torch.long)
        ids[i, p_max:end] = torch.tensor(c, dtype=torch.long)
        attn[i, start:end] = 1
        comp[i, p_max:end] = True
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [R, T] positions of real tokens start at 0
    return Packed(ids, attn, pos, comp, c_max + 1)


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
