"""Sharding the online loop over processes (`accelerate launch` / torchrun DDP, gloo on CPU).

Generation. A step's P prompts are cut into chunks of `generation_batch_size // k` prompts (at
least one; smaller when there would be fewer chunks than processes, so that every process
generates). Chunk c is sampled with seed `base + c·2³²` (chunk 0 keeps `base`), so seeds are
distinct across processes and a pure function of (seed, step, chunk). Process r samples, scores
and labels a contiguous run of chunks: prompt groups are never split across processes. Then
`all_gather_object` gives every process the whole step in prompt order, so every decision that
depends on the samples (skip a tied step, how to cut micro-batches) is the same on every process
without further collectives, and the logged metrics are those of the whole step.

World-size invariance. When no chunk had to shrink (`generation_batch_size // k ≤ P / processes`,
and likewise for the held-out prompts with k = 1), the chunks and their seeds do not depend on
the number of processes: 1 and N processes sample the same completions, train on the same
micro-batches (`split_micro_batches`), and match within float tolerance. This is what
`tests/test_online_ddp.py` checks.

Shapes: P prompts, K samples per prompt, flat prompt-major lists of P·K samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from anyfeedback.errors import InputError
from anyfeedback.rewards import checked_scores


@dataclass(frozen=True)
class Dist:
    """This process's rank and the number of processes, and the two collectives the loop uses."""

    rank: int = 0
    world: int = 1

    @classmethod
    def of(cls, accelerator) -> Dist:
        return cls(accelerator.process_index, accelerator.num_processes)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, obj) -> list:
        """Every process's `obj` (picklable), in rank order, on every process."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, tensor):
        """`tensor` summed over processes (returned; in place for several processes)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def chunk_plan(n_prompts: int, k: int, rows: int, world: int) -> list[range]:
    """Prompt ranges of the generation chunks (see the module docstring)."""
    per = max(1, rows // k)
    if -(-n_prompts // per) < world:  # too few chunks: shrink them so every process samples
        per = max(1, -(-n_prompts // world))
    return [range(a, min(a + per, n_prompts)) for a in range(0, n_prompts, per)]


def my_share(n: int, dist: Dist) -> range:
    """The contiguous run of `n` items (chunks, micro-batches) that process `dist.rank` takes."""
    return range(dist.rank * n // dist.world, (dist.rank + 1) * n // dist.world)


def chunk_seed(base: int, chunk: int) -> int:
    return base + (chunk << 32)


def split_micro_batches(n_items: int, size: int, world: int, min_items: int = 1) -> list[range]:
    """Near-equal contiguous slices of `n_items`: ceil(n/size) of them (size 0: one per process)
    rounded up to a multiple of `world`, so each process gets as many (DDP needs the same number
    of backward passes everywhere), none under `min_items`; [] when that cannot be done."""
    if n_items < world * min_items:
        return []
    n = -(-n_items // size) if size else world
    n = -(-n // world) * world
    n = min(n, n_items // min_items // world * world)
    bounds = [n_items * i // n for i in range(n + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class StepSamples:
    """The whole step's samples (every process), prompt-major."""

    completion_ids: list[list[int]]  # [P·K]
    texts: list[str]  # [P·K]
    scores: list[float]  # [P·K]
    labels: list  # [P·K] True / False / None, or [] without a labelling rule
    new_tokens: int  # generated tokens, all processes
    seconds: float  # generation time of the slowest process

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.seconds, 1e-9)


def sample_and_score(
    sample: Callable,
    prompt_ids: list[list[int]],
    prompt_texts: list[str],
    reward,
    *,
    k: int,
    seed: int,
    rows: int,
    dist: Dist,
    label: Callable | None = None,
) -> StepSamples:
    """Sample K completions for this process's chunks of the prompts with `sample(ids, seed=)`
    (→ `Generations`), score them, label them per prompt group with `label(scores)`, and gather
    the step from every process. An error on any process is raised on every process (after the
    gather, so none waits forever); reward errors name the sample's index in the step."""
    chunks = chunk_plan(len(prompt_ids), k, rows, dist.world)
    share = my_share(len(chunks), dist)
    try:
        comp, texts, tokens, seconds = [], [], 0, 0.0
        for c in share:
            gen = sample([prompt_ids[i] for i in chunks[c]], seed=chunk_seed(seed, c))
            comp += gen.completion_ids
            texts += gen.texts
            tokens, seconds = tokens + gen.new_tokens, seconds + gen.seconds
        first = chunks[share.start].start if len(share) else 0
        mine = [prompt_texts[i] for c in share for i in chunks[c] for _ in range(k)]
        scores = checked_scores(reward, mine, texts, offset=first * k) if mine else []
        labels = label(scores) if label is not None and scores else []
        payload: dict = dict(
            comp=comp, texts=texts, scores=scores, labels=labels, tokens=tokens, seconds=seconds
        )
        local_error = None
    except Exception as err:  # noqa: BLE001 - re-raised below, on every process
        local_error = err
        shown = err if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        payload = {"error": shown}
    parts = dist.gather(payload)
    _raise_first_error(parts, local_error, dist)
    return StepSamples(
        [c for p in parts for c in p["comp"]],
        [t for p in parts for t in p["texts"]],
        [s for p in parts for s in p["scores"]],
        [lab for p in parts for lab in p["labels"]],
        sum(p["tokens"] for p in parts),
        max(p["seconds"] for p in parts),
    )


def _raise_first_error(parts: list[dict], local_error: Exception | None, dist: Dist) -> None:
    failed = [(r, p["error"]) for r, p in enumerate(parts) if "error" in p]
    if not failed:
        return
    rank, err = failed[0]
    if rank == dist.rank and local_error is not None:
        raise local_error
    if isinstance(err, InputError):
        raise err
    raise RuntimeError(f"process {rank} failed while sampling or scoring: {err}")
