"""`--generation-backend`: hf | vllm | auto resolution, its one-line errors, and the vLLM sampler
run against a fake `vllm` module (the suite runs without a GPU: the real engine is NOT exercised).
The fake records LLM(...), SamplingParams(...), generate(...), apply_model / load_weights and
reset_prefix_cache, and returns canned outputs, so the conversion to `Generations` and the
weight sync after every optimizer step are checked on CPU."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from anyfeedback.cli import main
from anyfeedback.errors import InputError
from anyfeedback.llm.online import backends
from anyfeedback.llm.online.backends import VLLMSampler, resolve_backend
from anyfeedback.llm.online.config import OnlineConfig
from conftest_llm import *  # noqa: F403


@dataclass
class Out:  # vllm.CompletionOutput
    token_ids: list[int]
    finish_reason: str = "length"
    stop_reason: object = None


@dataclass
class Request:  # vllm.RequestOutput
    prompt_token_ids: list[int]
    outputs: list[Out]


@dataclass
class Calls:
    init: dict = field(default_factory=dict)
    params: list = field(default_factory=list)
    prompts: list = field(default_factory=list)
    loaded: list = field(default_factory=list)  # one list of (name, tensor) per sync
    resets: int = 0


def fake_vllm(canned=None, *, apply_model: bool = True):
    """A `vllm` module whose LLM answers `canned(prompt_ids, params)` → list[Out] (default: n
    completions of 4 tokens derived from the seed) and records everything in `module.calls`."""
    calls = Calls()

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)
            calls.params.append(kw)

    class Model:
        def load_weights(self, weights):
            calls.loaded.append([(n, t.clone()) for n, t in weights])

    def default(ids, p):
        return [Out([10 + (p.seed + j) % 50 for j in range(4)]) for _ in range(p.n)]

    class LLM:
        def __init__(self, **kw):
            calls.init = dict(kw, files=sorted(x.name for x in Path(kw["model"]).iterdir()))
            model = Model()
            worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=model))
            self.llm_engine = types.SimpleNamespace(
                model_executor=types.SimpleNamespace(driver_worker=worker)
            )
            if apply_model:
                self.apply_model = lambda fn: [fn(model)]

        def generate(self, prompts, params, use_tqdm=True):
            calls.prompts.append([p["prompt_token_ids"] for p in prompts])
            answer = canned or default
            return [
                Request(list(p["prompt_token_ids"]), answer(p["prompt_token_ids"], sp))
                for p, sp in zip(prompts, params, strict=True)
            ]

        def reset_prefix_cache(self):
            calls.resets += 1

    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams, mod.calls = LLM, SamplingParams, calls
    return mod


def _cfg(**kw):
    return OnlineConfig(**{"model": "m", "prompts": "p", **kw})


def test_resolve_backend(monkeypatch):
    """hf always hf; without vllm (or with one that fails to import): vllm is a one-line error
    naming the field, auto is hf; with vllm but no GPU, several processes or LoRA: the same;
    with vllm and a GPU: vllm."""
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    assert resolve_backend(_cfg()) == resolve_backend(_cfg(generation_backend="auto")) == "hf"
    with pytest.raises(InputError, match="field 'generation_backend': vllm is not installed"):
        resolve_backend(_cfg(generation_backend="vllm"))
    with monkeypatch.context() as m:  # an install that breaks on import
        m.setattr(backends, "_import_vllm", lambda: 1 / 0)
        assert resolve_backend(_cfg(generation_backend="auto")) == "hf"
        with pytest.raises(InputError, match="failed to import .ZeroDivisionError"):
            resolve_backend(_cfg(generation_backend="vllm"))
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA GPU"):
        resolve_backend(_cfg(generation_backend="vllm"))
    assert resolve_backend(_cfg(generation_backend="auto")) == "hf"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend(_cfg(generation_backend="vllm")) == "vllm"
    assert resolve_backend(_cfg(generation_backend="auto")) == "vllm"
    assert resolve_backend(_cfg(generation_backend="auto"), world=2) == "hf"
    with pytest.raises(InputError, match="one process"):
        resolve_backend(_cfg(generation_backend="vllm"), world=2)
    with pytest.raises(InputError, match="lora"):
        resolve_backend(_cfg(generation_backend="vllm", lora_r=4))
    with pytest.raises(InputError, match="generation_backend"):
        _cfg(generation_backend="tgi")
    with pytest.raises(InputError, match="vllm_gpu_memory_utilization"):
        _cfg(vllm_gpu_memory_utilization=0)
    with pytest.raises(InputError, match="generation_batch_size"):
        _cfg(generation_batch_size=0)


def test_cli_vllm_without_vllm_is_one_line_exit_2(monkeypatch, capsys, tiny_model):
    monkeypatch.setitem(sys.modules, "vllm", None)
    args = ["online", "--model", str(tiny_model), "--prompts", "demo", "--reward", "x:y"]
    assert main([*args, "--generation-backend", "vllm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "generation_backend" in err[0]
    assert main([*args, "--generation-backend", "fast"]) == 2
    assert "generation_backend" in capsys.readouterr().err


@pytest.fixture
def policy_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    return model, AutoTokenizer.from_pretrained(tiny_model)


def test_vllm_sampler_generations_and_weight_sync(monkeypatch, policy_and_tokenizer):
    """LLM is built from the saved policy; one request per prompt with n=k and a seed each;
    completions are cut after EOS, EOS is appended when vLLM stopped on it without returning it;
    weights are pushed (with the prefix cache reset) only after an optimizer step."""
    policy, tok = policy_and_tokenizer
    eos = tok.eos_token_id
    answers = [Out([20, eos, 21, 22], "stop"), Out([23, 24], "stop"), Out([25, 26, 27], "length")]
    vllm = fake_vllm(lambda ids, p: answers[: p.n] if len(ids) == 3 else answers[1:][: p.n])
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    cfg = _cfg(
        model="tiny",
        k=2,
        temperature=0.7,
        top_p=0.9,
        max_new_tokens=5,
        seed=4,
        vllm_gpu_memory_utilization=0.25,
        max_length=64,
    )
    step = {"n": 0}
    sampler = VLLMSampler(policy, tok, cfg, lambda: step["n"])
    init = vllm.calls.init
    assert {"config.json", "model.safetensors"} <= set(init["files"])  # save_pretrained
    assert (init["seed"], init["gpu_memory_utilization"]) == (4, 0.25)
    assert init["max_model_len"] == 64 + 5  # max_length + max_new_tokens
    gen = sampler([[5, 6, 7], [8, 9]], seed=11)
    assert vllm.calls.prompts == [[[5, 6, 7], [8, 9]]] and gen.prompt_ids == [[5, 6, 7], [8, 9]]
    assert gen.completion_ids == [[20, eos], [23, 24, eos], [23, 24, eos], [25, 26, 27]]
    assert gen.texts == tok.batch_decode(gen.completion_ids, skip_special_tokens=True)
    assert gen.k == 2 and gen.new_tokens == 11
    p0, p1 = vllm.calls.params
    assert (p0["n"], p0["temperature"], p0["top_p"], p0["max_tokens"]) == (2, 0.7, 0.9, 5)
    assert p0["seed"] != p1["seed"]
    assert vllm.calls.loaded == [] and vllm.calls.resets == 0  # no step yet: nothing to sync
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    step["n"] = 1
    sampler([[5, 6, 7]], seed=12)
    sampler([[5, 6, 7]], seed=13)  # same step: no second sync
    assert len(vllm.calls.loaded) == 1 and vllm.calls.resets == 1
    loaded = dict(vllm.calls.loaded[0])
    for name, p in policy.named_parameters():
        assert torch.equal(loaded[name], p.detach())


def test_vllm_sampler_fallback_and_prompt_check(monkeypatch, policy_and_tokenizer):
    """Without `LLM.apply_model` the driver worker's model loads the weights (V0 or early-V1
    layout; neither is a clear error); an engine that
    returns other prompt tokens than were sent is an error, not silently trained on."""
    policy, tok = policy_and_tokenizer
    vllm = fake_vllm(apply_model=False)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    step = {"n": 0}
    sampler = VLLMSampler(policy, tok, _cfg(k=1, labelling="threshold"), lambda: step["n"])
    step["n"] = 1
    sampler([[5, 6]], seed=0)
    assert len(vllm.calls.loaded) == 1
    ns = types.SimpleNamespace
    early_v1 = ns(worker=ns(model_runner=ns(model="m1")))  # driver_worker.worker.model_runner
    llm = ns(llm_engine=ns(model_executor=ns(driver_worker=early_v1)))
    assert backends._engine_model(llm) == "m1"
    llm.llm_engine.model_executor.driver_worker = ns()
    with pytest.raises(RuntimeError, match="generation-backend hf"):
        backends._engine_model(llm)
    vllm.LLM.generate = lambda self, prompts, params, use_tqdm=True: [Request([1], [Out([3])])]
    with pytest.raises(RuntimeError, match="prompt tokens"):
        sampler([[5, 6]], seed=0)


def test_online_loop_with_the_vllm_backend(monkeypatch, tmp_path, tiny_model, feedback_files):
    """2 steps of the loop with `generation_backend="vllm"` (the GPU check bypassed): training
    samples come from the fake engine, its weights are synced after step 1 (step 2 samples
    from the updated policy), held-out evaluation still samples with HF."""
    from anyfeedback.llm.online.loop import run_online

    vllm = fake_vllm()
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(backends, "vllm_problem", lambda cfg, world: None)
    result = run_online(
        OnlineConfig(
            model=str(tiny_model),
            prompts=str(feedback_files["paired"]),
            out=str(tmp_path),
            reward="custom_rewards:toy_sentiment_tiebroken",
            k=4,
            prompts_per_step=2,
            steps=2,
            max_new_tokens=6,
            learning_rate=1e-3,
            eval_every=0,
            eval_prompts=4,
            save_steps=0,
            generation_backend="vllm",
            progress=False,
        )
    )
    assert result.steps == 2 and len(vllm.calls.prompts) == 2  # one generate call per step
    assert len(vllm.calls.loaded) == 1 and vllm.calls.resets == 1
    assert len(result.final.texts) == 4  # evaluation: HF generate on the trained policy
