"""Thread defaults set at CLI start (`runs.thread_defaults`): a short OpenMP spin and as many
intra-op threads as cores this process may use; whatever the user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys

from anyfeedback.runs import MAX_THREADS, thread_defaults


def test_defaults_fill_only_what_the_user_left_unset():
    cores = min(len(os.sched_getaffinity(0)), MAX_THREADS)
    got = thread_defaults({})
    assert got["GOMP_SPINCOUNT"] == "1000" and got["KMP_BLOCKTIME"] == "0"
    assert "OMP_WAIT_POLICY" not in got
    assert got["OMP_NUM_THREADS"] == str(cores) == got["MKL_NUM_THREADS"]
    kept = thread_defaults({"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"})
    assert "OMP_NUM_THREADS" not in kept and "GOMP_SPINCOUNT" not in kept
    assert "GOMP_SPINCOUNT" not in thread_defaults({"GOMP_SPINCOUNT": "0"})


def test_cli_sets_them_before_torch_starts_its_pools():
    """`anyfeedback --version` in a fresh interpreter pinned to 1 core: the environment holds the
    defaults (1 thread, short spin) and torch, imported afterwards, uses 1 intra-op thread."""
    code = (
        "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from anyfeedback.cli import main; main(['--version']); import torch; "
        "print(os.environ['GOMP_SPINCOUNT'], os.environ['OMP_NUM_THREADS'], "
        "torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "KMP_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-3:] == ["1000", "1", "1"]
