"""Micro-batches per method, and a stateless batch order that resumes exactly.

`collate_*` turn tokenised `Example`s into a `Batch` (token layouts in `packing.py`); with
`flat=True` a micro-batch is one padding-free row (`pack_flat`) instead of right-padded rows.

Order: `BatchPlan` draws each epoch's permutation from (seed, epoch), sorts chunks of
`bucket_batches` global batches by length (length bucketing: little padding), shuffles the
batches, and splits a global batch of G = B·A·W records into micro-batches: micro-batch
k = a·W + r goes to accumulation step a on process r. So 2 processes × 1 accumulation step and
1 process × 2 steps see the same micro-batches, and step s's data is a pure function of s
(resume needs only s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anyfeedback.llm.data import Example
from anyfeedback.llm.packing import Packed, cat_rows, pack, pack_flat, pack_shared

__all__ = [
    "Batch",
    "BatchPlan",
    "Packed",
    "cat_rows",
    "collate_demos",
    "collate_pairs",
    "collate_samples",
    "collate_unpaired",
    "pack",
    "pack_shared",
]


@dataclass
class Batch:
    """One micro-batch for one method. View groups of `seqs`:
    unpaired (pmpo, kto): one view per record, `accepted` [M] bool;
    paired (dpo, ipo, aihf-dpo): views [0, n) chosen, [n, 2n) rejected, then `n_demos` demo
    views and `n_ref_samples` π_ref-sample views (aihf-dpo contrastive, one per demo);
    demonstration (sft): one view per record.
    `mismatched` (kto): views (x_i, y_{i'}), i' = (i + 1) mod m, for the reference point.
    rloo: one view per sample, prompt-major groups of `group_size`, `rewards` [M].
    self-play-aihf: the paired layout; the π_ref-sample views hold samples of the opponent π_t.
    `labelled` (pmpo online) [M] bool: False for unlabelled samples, which enter only the KL
    term (docs/algorithms.md#normalisation); None: every row is labelled."""

    seqs: Packed
    n_records: int
    accepted: torch.Tensor | None = None
    n_pairs: int = 0
    n_demos: int = 0
    n_ref_samples: int = 0
    mismatched: Packed | None = None
    rewards: torch.Tensor | None = None
    group_size: int = 0
    labelled: torch.Tensor | None = None

    def to(self, device) -> Batch:
        return Batch(
            self.seqs.to(device),
            self.n_records,
            None if self.accepted is None else self.accepted.to(device),
            self.n_pairs,
            self.n_demos,
            self.n_ref_samples,
            None if self.mismatched is None else self.mismatched.to(device),
            None if self.rewards is None else self.rewards.to(device),
            self.group_size,
            None if self.labelled is None else self.labelled.to(device),
        )


def _rows(prompts: list[list[int]], completions: list[list[int]], pad_id: int, flat: bool):
    return (pack_flat if flat else pack)(prompts, completions, pad_id)


def collate_unpaired(
    examples: list[Example], pad_id: int, *, mismatched: bool = False, flat: bool = False
) -> Batch:
    """Unpaired rows; with `mismatched`, also prompt i with completion (i + 1) mod m (KTO).
    Records with `accepted=None` are unlabelled (`Batch.labelled`)."""
    prompts = [e.prompt_ids for e in examples]
    comps = [e.completion_ids[0] for e in examples]
    accepted = torch.tensor([bool(e.accepted) for e in examples])
    labelled = None
    if any(e.accepted is None for e in examples):
        labelled = torch.tensor([e.accepted is not None for e in examples])
    extra = None
    if mismatched:
        from anyfeedback.losses import mismatched_indices

        shift = mismatched_indices(len(examples)).tolist()
        extra = _rows(prompts, [comps[j] for j in shift], pad_id, flat)
    return Batch(
        _rows(prompts, comps, pad_id, flat),
        len(examples),
        accepted=accepted,
        mismatched=extra,
        labelled=labelled,
    )


def collate_shared_prompts(examples: list[Example], pad_id: int) -> Batch | None:
    """Unpaired records in runs that share a prompt (the online loop's K samples per prompt),
    every run of the same size g: one row per prompt with its g completions after it
    (`pack_shared`: the prompt computed once, each completion seeing only the prompt and
    itself). Views come completion-major (the first completion of every prompt, then the
    second, …), and `accepted`/`labelled` follow the views. None when the runs differ in size
    (then `collate_unpaired`)."""
    runs: list[list[Example]] = []
    for e in examples:
        if runs and runs[-1][0].prompt_ids == e.prompt_ids:
            runs[-1].append(e)
        else:
            runs.append([e])
    g = len(runs[0]) if runs else 0
    if g < 2 or any(len(run) != g for run in runs):
        return None
    seqs = pack_shared(
        [run[0].prompt_ids for run in runs],
        [tuple(e.completion_ids[0] for e in run) for run in runs],
        pad_id,
    )
    in_views = [run[j] for j in range(g) for run in runs]
    labelled = None
    if any(e.accepted is None for e in in_views):
        labelled = torch.tensor([e.accepted is not None for e in in_views])
    accepted = torch.tensor([bool(e.accepted) for e in in_views])
    return Batch(seqs, len(examples), accepted=accepted, labelled=labelled)


def collate_pairs(
    examples: list[Example],
    pad_id: int,
    *,
    demos: list[Example] | None = None,
    ref_samples: list[list[int]] | None = None,
    share_prompt: bool = False,
    flat: bool = False,
) -> Batch:
    """Views: chosen, then rejected, then demonstrations (and π_ref samples for the same demo
    prompts, aihf-dpo contrastive), all in one forward. `share_prompt` puts each pair in one
    row, prompt once (`pack_shared`); demos then follow as rows of their own."""
    n = len(examples)
    demos = demos or []
    extra_p = [d.prompt_ids for d in demos]
    extra_c = [d.completion_ids[0] for d in demos]
    if ref_samples is not None:
        extra_p += [d.prompt_ids for d in demos]
        extra_c += ref_samples
    n_ref = 0 if ref_samples is None else len(ref_samples)
    if share_prompt:
        pairs = pack_shared(
            [e.prompt_ids for e in examples], [e.completion_ids for e in examples], pad_id
        )
        seqs = pairs if not extra_p else cat_rows(pairs, _rows(extra_p, extra_c, pad_id, flat))
    else:
        prompts = [e.prompt_ids for e in examples] * 2 + extra_p
        comps = [e.completion_ids[0] for e in examples] + [e.completion_ids[1] for e in examples]
        seqs = _rows(prompts, comps + extra_c, pad_id, flat)
    return Batch(seqs, n, n_pairs=n, n_demos=len(demos), n_ref_samples=n_ref)


def collate_samples(
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    rewards: list[float],
    k: int,
    pad_id: int,
    *,
    flat: bool = False,
) -> Batch:
    """RLOO: K samples per prompt (prompt-major; `prompt_ids` has one entry per prompt) and
    their rewards."""
    prompts = [p for p in prompt_ids for _ in range(k)]
    seqs = _rows(prompts, completion_ids, pad_id, flat)
    r = torch.tensor(rewards, dtype=torch.float32)
    return Batch(seqs, len(completion_ids), rewards=r, group_size=k)


def collate_demos(examples: list[Example], pad_id: int, *, flat: bool = False) -> Batch:
    """One row per demonstration (SFT)."""
    prompts = [e.prompt_ids for e in examples]
    comps = [e.completion_ids[0] for e in examples]
    return Batch(_rows(prompts, comps, pad_id, flat), len(examples))


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
