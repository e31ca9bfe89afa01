"""Process-level CPU settings for the control learner (measured in benchmarks/control_speed.py).

glibc returns large freed blocks (the [E, N·B, h] activations of the critic's batched scoring
are 5 MiB each) to the OS and page-faults them back on the next allocation, which doubled the
time of a PMPO/MPO update on a 2-core CPU. Fixing the mmap/trim thresholds keeps them
in the heap. Applied to every method alike (SAC included), once per process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD, 1 GiB). Returns False where unavailable."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, threshold) and libc.mallopt(M_TRIM_THRESHOLD, threshold)
    except (OSError, AttributeError):
        return False
    _done = bool(ok)
    return _done
