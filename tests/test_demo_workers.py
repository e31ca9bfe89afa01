"""The demo's method runner (`llm/demo/run.py`): methods run side by side in worker (spawned or
forked) processes give exactly what the same runs give in this process, and a failing method is raised
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


def test_forked_workers_match_in_process_runs(tmp_path, tiny_model, feedback_files, one_thread):
    """`anyfeedback demo` on Linux forks its workers from a process that has imported torch but
    run no op yet (they share its imports): the same metrics as the run in this process, and no
    hang (a fresh interpreter, as the CLI; a timeout would fail the test)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    settings = _settings(feedback_files, method="pmpo", alpha=0.5, beta=0.5)
    script = (
        "import json, sys\n"
        "from anyfeedback.llm.demo.run import _worker_imports, run_methods, worker_pool\n"
        "_worker_imports()\n"
        "with worker_pool(1, 'fork') as pool:\n"
        "    run_methods(pool, sys.argv[1], __import__('pathlib').Path(sys.argv[2]),\n"
        "                {'AR': json.loads(sys.argv[3])}, log=print)\n"
    )
    out = tmp_path / "forked"
    args = [sys.executable, "-c", script, str(tiny_model), str(out), json.dumps(settings)]
    path = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]  # the custom reward
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    proc = subprocess.run(args, timeout=300, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    here = tmp_path / "here"
    run_online(OnlineConfig(model=str(tiny_model), out=str(here), progress=False, **settings))
    keep = lambda r: {k: v for k, v in r.items() if not _timing(k)}  # noqa: E731
    rows_there = read_metrics(out / "ar" / "metrics.jsonl")
    assert [keep(r) for r in rows_there] == [keep(r) for r in read_metrics(here / "metrics.jsonl")]
