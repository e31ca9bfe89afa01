"""Thread defaults set at CLI start (`runs.thread_defaults`): passive waiting and as many
intra-op threads as cores this process may use; whatever the user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys

from anyfeedback.runs import MAX_THREADS, thread_defaults


def test_defaults_fill_only_what_the_user_left_unset():
    cores = min(len(os.sched_getaffinity(0)), MAX_THREADS)
    got = thread_defaults({})
    assert got["OMP_WAIT_POLICY"] == "PASSIVE" and got["KMP_BLOCKTIME"] == "0"
    assert got["OMP_NUM_THREADS"] == str(cores) == got["MKL_NUM_THREADS"]
    kept = thread_defaults({"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_NUM_THREADS" not in kept and "OMP_WAIT_POLICY" not in kept


def test_cli_sets_them_before_torch_starts_its_pools():
    """`anyfeedback --version` in a fresh interpreter pinned to 1 core: the environment holds the
    defaults (1 thread, passive) and torch, imported afterwards, uses 1 intra-op thread."""
    code = (
        "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from anyfeedback.cli import main; main(['--version']); import torch; "
        "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], "
        "torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "KMP_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-3:] == ["PASSIVE", "1", "1"]
