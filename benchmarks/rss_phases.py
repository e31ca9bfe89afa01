"""Where our trainer's peak RSS is set: RSS and peak RSS after each phase of every step
(π_ref forward, loss forward, backward, optimizer step), on the CPU workload of `vs_trl.py`.

    PYTHONPATH=src python benchmarks/rss_phases.py --batch 64 --steps 7          # as vs_trl.py
    PYTHONPATH=src python benchmarks/rss_phases.py --batch 64 --steps 7 --plain-blocks
    MALLOC_MMAP_THRESHOLD_=131072 PYTHONPATH=src python benchmarks/rss_phases.py --batch 64 --steps 7

`--plain-blocks` runs transformers' own MLP and RMSNorm (no `llm/fused_blocks.py`). Setting
glibc's `MALLOC_MMAP_THRESHOLD_` fixes the mmap threshold, which glibc otherwise raises to the size
of every large block freed (up to 32 MiB): tensors below it then come from the heap, whose freed
space stays in the RSS. A diagnosis of how much of the peak is the allocator's; never part of a
comparison (TRL runs with the default allocator). One torch thread, like `vs_trl.py`.
"""

from __future__ import annotations

import argparse
import resource

from bench_assets import PROFILES, build_assets


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--method", default="pmpo", choices=["pmpo", "kto", "dpo"])
    parser.add_argument("--plain-blocks", action="store_true")
    args = parser.parse_args()

    import torch
    from accelerate import Accelerator

    import anyfeedback.llm.model as model_mod
    import anyfeedback.llm.trainer as trainer_mod
    from anyfeedback.llm import TrainConfig, train

    torch.set_num_threads(1)
    p = PROFILES["cpu"]
    paths = build_assets(p, args.steps * args.batch)
    rows: list[str] = []

    def mark(what: str) -> None:
        rows.append(f"{what:<16} rss {_rss_mib():7.0f} MiB   peak {_peak_mib():7.0f} MiB")

    if args.plain_blocks:
        model_mod.fuse_blocks = lambda model: 0
    compute_loss, ref_states = trainer_mod.compute_loss, model_mod.Reference.scored_states
    backward, train_step = Accelerator.backward, trainer_mod.Trainer.train_step

    def loss_fn(*a, **k):
        out = compute_loss(*a, **k)
        mark("loss forward")
        return out

    def ref_fn(self, seqs):
        out = ref_states(self, seqs)
        mark("π_ref forward")
        return out

    def backward_fn(self, loss, **k):
        backward(self, loss, **k)
        mark("backward")

    def step_fn(self, micro_batches):
        out = train_step(self, micro_batches)
        mark(f"step {self.step} done")
        return out

    trainer_mod.compute_loss, model_mod.Reference.scored_states = loss_fn, ref_fn
    Accelerator.backward, trainer_mod.Trainer.train_step = backward_fn, step_fn
    paired = args.method == "dpo"
    cfg = TrainConfig(
        model=str(paths["model"]),
        data=str(paths["paired" if paired else "unpaired"]),
        method=args.method,
        out=str(p.work / f"rss-{args.method}"),
        beta=0.5 if args.method == "pmpo" else 0.1,
        batch_size=args.batch,
        max_length=p.max_length,
        max_steps=args.steps,
        learning_rate=1e-5,
        save_steps=0,
        progress=False,
        seed=0,
    )
    mark("start")
    train(cfg)
    print("\n".join(rows))
    print(f"peak RSS {_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
