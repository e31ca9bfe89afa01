"""The demo's method runner (`llm/demo/run.py`): methods run side by side in spawned worker
processes give exactly what the same runs give in this process, and a failing method is raised
in the caller."""

import pytest
import torch

from anyfeedback.errors import InputError
from anyfeedback.llm.demo.run import run_methods, worker_pool
from anyfeedback.llm.online.config import OnlineConfig
from anyfeedback.llm.online.loop import run_online
from anyfeedback.llm.online.report import summary_row
from anyfeedback.runs import read_metrics


def _settings(feedback_files, **kw):
    base = dict(
        prompts=str(feedback_files["paired"]),
        reward="custom_rewards:toy_sentiment",
        k=4,
        prompts_per_step=3,
        steps=2,
        max_new_tokens=8,
        learning_rate=1e-3,
        eval_every=1,
        eval_prompts=4,
        save_steps=0,
    )
    return {**base, **kw}


def test_workers_match_in_process_runs_and_raise_failures(
    tmp_path, tiny_model, feedback_files, one_thread
):
    """PMPO-AR and DPO in 2 workers (one torch thread each) == the same configs run here with
    one thread: the same summary rows and per-step metrics; a method whose model does not exist
    raises its InputError from `run_methods`."""
    methods = {
        "AR": _settings(feedback_files, method="pmpo", alpha=0.5, beta=0.5),
        "DPO": _settings(feedback_files, method="dpo", beta=0.1),
    }
    logged = []
    with worker_pool(2) as pool:
        got = run_methods(pool, tiny_model, tmp_path / "workers", methods, log=logged.append)
        bad = {"X": {**methods["AR"], "model": str(tmp_path / "missing")}}
        with pytest.raises(InputError, match="missing"):
            run_methods(pool, tiny_model, tmp_path / "bad", {"X": bad["X"]}, log=logged.append)
    assert torch.get_num_threads() == 1
    assert sorted(got) == ["AR", "DPO"] and any("AR: held-out reward" in s for s in logged)
    for name, settings in methods.items():
        here = tmp_path / "here" / name.lower()
        cfg = OnlineConfig(model=str(tiny_model), out=str(here), progress=False, **settings)
        result = run_online(cfg)
        rows_here = read_metrics(here / "metrics.jsonl")
        rows_there = read_metrics(tmp_path / "workers" / name.lower() / "metrics.jsonl")
        keep = lambda r: {k: v for k, v in r.items() if not _timing(k)}  # noqa: E731
        assert [keep(r) for r in rows_there] == [keep(r) for r in rows_here]
        assert got[name][0] == summary_row(result, rows_here)
        assert len(rows_here) == 3  # step 0 and 2 steps


def _timing(key: str) -> bool:
    return key == "time" or any(s in key for s in ("per_s", "_time", "seconds", "peak_mem"))
