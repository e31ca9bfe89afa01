"""Generation backends for the online loop's training samples (`--generation-backend`).

  hf     transformers `generate` on the policy (`steps.hf_sampler`); tested on CPU with one and
         two processes.
  vllm   a `vllm.LLM` built once from the policy saved with `save_pretrained` into a temporary
         directory (the engine runs in this process: VLLM_ENABLE_V1_MULTIPROCESSING=0). Weight
         sync: before sampling, if an optimizer step was taken since the last sync, the
         policy's tensors (`named_parameters()`, Hugging Face names) are loaded into the engine
         in place with the model's `load_weights` — through `LLM.apply_model` where vLLM has it,
         else `llm_engine.model_executor.driver_worker.model_runner.model` — and the prefix
         cache is reset, so every sample comes from the current π_θ with no reload from disk.
         One request per prompt with SamplingParams(n=k, temperature, top_p,
         max_tokens=max_new_tokens, seed) and the prompt's token ids, so the tokens scored are
         exactly the ones sampled; completions are cut after the first EOS (EOS appended when
         vLLM stopped on it without returning it) and decoded with our tokenizer, giving the
         same `Generations` as the HF path. One process, full fine-tuning (no LoRA).
         NOT tested against a real vLLM (the test suite runs without a GPU):
         `tests/test_online_vllm.py` runs this code against a fake `vllm` module that records the
         calls.
  auto   vllm when `import vllm` works, CUDA is available, and the run is one process without
         LoRA; else hf.

Held-out evaluation always samples with HF `generate`, so its numbers compare across backends.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from anyfeedback.errors import InputError
from anyfeedback.llm.generate import Generations, cut_at_eos


def _import_vllm():
    import vllm

    return vllm


def vllm_problem(cfg, world: int) -> str | None:
    """Why vLLM cannot generate for this run (None: it can)."""
    try:
        _import_vllm()
    except ImportError:
        return "vllm is not installed (pip install 'anyfeedback[vllm]'); use hf"
    except Exception as err:  # noqa: BLE001 - a broken install: auto falls back, vllm says why
        return f"vllm failed to import ({type(err).__name__}: {err}); use hf"
    import torch

    if not torch.cuda.is_available():
        return "vllm needs a CUDA GPU and none is available; use hf"
    if world > 1:
        return f"vllm runs in one process here, not {world}; use hf under accelerate launch"
    if cfg.lora_r > 0:
        return "vllm is not supported with --lora-r (weights sync as full tensors); use hf"
    if cfg.sample_from == "reference":
        return "vllm samples from the policy only (--sample-from reference needs hf)"
    return None


def resolve_backend(cfg, world: int = 1) -> str:
    """'hf' or 'vllm' for `cfg.generation_backend` (hf | vllm | auto); a one-line error when
    vllm is asked for and cannot run."""
    if cfg.generation_backend == "hf":
        return "hf"
    problem = vllm_problem(cfg, world)
    if cfg.generation_backend == "auto":
        return "hf" if problem else "vllm"
    if problem:
        raise InputError(problem, source="config", field="generation_backend")
    return "vllm"


def _prompt_seed(seed: int, i: int) -> int:
    return random.Random(seed * 1_000_003 + i).getrandbits(63)


class VLLMSampler:
    """`sample(prompt_ids, seed=)` → `Generations` from a vLLM engine kept in sync with the
    policy (see the module docstring). `step_of()` returns the optimizer steps taken."""

    def __init__(self, policy, tokenizer, cfg, step_of) -> None:
        import tempfile

        import vllm

        from anyfeedback.llm.checkpoint import save_final_model

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-place weight loads
        self._vllm, self.policy, self.tokenizer, self.cfg = vllm, policy, tokenizer, cfg
        self.step_of = step_of
        self._tmp = tempfile.TemporaryDirectory(prefix="anyfeedback-vllm-")
        path = str(
            save_final_model(policy, tokenizer, Path(self._tmp.name) / "policy", merge_lora=False)
        )
        self.llm = vllm.LLM(
            model=path,
            tokenizer=path,
            seed=cfg.seed,
            dtype="bfloat16" if cfg.bf16 else "auto",
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            max_model_len=cfg.max_length + cfg.max_new_tokens,
        )
        self.synced_step = step_of()

    def sync_weights(self) -> None:
        """Load the policy's current tensors into the engine in place; reset its prefix cache."""
        weights = [(name, p.detach()) for name, p in self.policy.named_parameters()]
        llm = self.llm
        if hasattr(llm, "apply_model"):
            llm.apply_model(lambda model: model.load_weights(weights))
        else:  # older vLLM: the driver worker's model, in this process
            _engine_model(llm).load_weights(weights)
        if hasattr(llm, "reset_prefix_cache"):
            llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.synced_step = self.step_of()

    def __call__(self, prompt_ids: list[list[int]], *, seed: int) -> Generations:
        if self.step_of() != self.synced_step:
            self.sync_weights()
        cfg, k, eos = self.cfg, self.cfg.k, self.tokenizer.eos_token_id
        params = [
            self._vllm.SamplingParams(
                n=k,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_new_tokens,
                seed=_prompt_seed(seed, i),
            )
            for i in range(len(prompt_ids))
        ]
        start = time.perf_counter()
        outs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompt_ids], params, use_tqdm=False
        )
        seconds = time.perf_counter() - start
        ids_out: list[list[int]] = []
        for sent, out in zip(prompt_ids, outs, strict=True):
            if list(out.prompt_token_ids) != list(sent) or len(out.outputs) != k:
                raise RuntimeError("vLLM returned other prompt tokens or a wrong sample count")
            for c in out.outputs:
                row = list(c.token_ids)
                on_eos = c.finish_reason == "stop" and getattr(c, "stop_reason", None) is None
                if eos not in row and on_eos:
                    row.append(eos)  # stopped on EOS without returning it
                ids_out.append(cut_at_eos(row, eos))
        texts = self.tokenizer.batch_decode(ids_out, skip_special_tokens=True)
        return Generations(ids_out, texts, k, sum(map(len, ids_out)), seconds, prompt_ids)


def _engine_model(llm):
    """The model inside an in-process vLLM engine (V0: driver_worker.model_runner.model; early
    V1: driver_worker.worker.model_runner.model)."""
    worker = llm.llm_engine.model_executor.driver_worker
    for runner in (
        getattr(worker, "model_runner", None),
        getattr(getattr(worker, "worker", None), "model_runner", None),
    ):
        if runner is not None and hasattr(runner, "model"):
            return runner.model
    raise RuntimeError(
        "cannot reach the vLLM engine's model to load weights in place "
        "(unsupported vLLM version); use --generation-backend hf"
    )


def make_sampler(backend: str, trainer, cfg):
    """The training-sample generator of `backend` ('hf' or 'vllm'): from `trainer.policy`, or
    with `cfg.sample_from == "reference"` from the trainer's current π_ref (hf only)."""
    if backend == "vllm":
        return VLLMSampler(trainer.policy, trainer.tokenizer, cfg, lambda: trainer.step)
    from anyfeedback.llm.online.steps import hf_sampler

    if cfg.sample_from == "policy":
        return hf_sampler(trainer.policy, trainer.tokenizer, cfg, cfg.k)

    def sample_reference(prompt_ids, *, seed):
        with trainer.ref._as_reference() as model:  # LoRA: adapter disabled or swapped
            return hf_sampler(model, trainer.tokenizer, cfg, cfg.k)(prompt_ids, seed=seed)

    return sample_reference
