"""Divergence checks for the control trainers (`control`, `offline`, `aihf-control`): a state is
healthy when every parameter tensor has a finite norm below `PARAM_NORM_MAX` and the watched
per-update metrics (critic loss, Q, losses) are finite. The trainers check before they log or
checkpoint, so a checkpoint always holds a healthy state; on failure they raise `DivergenceError`
(the CLI prints one line and exits 1) and leave the last checkpoint as it was.

One fused `torch._foreach_norm` over the parameters per check: the cost is one read of the
weights, done once per episode (control, aihf-control) or per logging interval (offline).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from anyfeedback.errors import DivergenceError

# Per-tensor L2 norm above which a parameter counts as exploded. A hidden layer of width 256 with
# PyTorch's default init has norm ≈ 9 per member, trained ones stay in the tens to hundreds; one
# Adam step at lr 1e6 moves every weight by ≈ 1e6 (norm ≈ 2.6e8 for that layer).
PARAM_NORM_MAX = 1e6


def check_parameters(named: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """Raise `DivergenceError` naming the first parameter whose norm is not finite or too large."""
    names, tensors = zip(*[(n, p.detach()) for n, p in named], strict=True)
    norms = torch.stack(torch._foreach_norm(list(tensors))).double()
    bad = ~(norms.isfinite() & (norms <= PARAM_NORM_MAX))
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise DivergenceError(
            f"diverged at {where}: parameter '{names[i]}' has norm {float(norms[i]):.3g} "
            f"(finite and <= {PARAM_NORM_MAX:g} expected)"
        )


def check_metrics(metrics: dict[str, torch.Tensor], keys: Iterable[str], where: str) -> None:
    """Raise `DivergenceError` if any of `keys` present in `metrics` holds a non-finite value."""
    for key in keys:
        if key in metrics and not bool(torch.isfinite(metrics[key]).all()):
            raise DivergenceError(f"diverged at {where}: non-finite {key}")


def named_parameters(**modules: torch.nn.Module | dict[str, torch.Tensor] | torch.Tensor):
    """(name, tensor) pairs of modules, dicts of tensors and single tensors, prefixed by name."""
    for prefix, m in modules.items():
        if isinstance(m, torch.nn.Module):
            yield from ((f"{prefix}.{n}", p) for n, p in m.named_parameters())
        elif isinstance(m, dict):
            yield from ((f"{prefix}.{n}", p) for n, p in m.items())
        else:
            yield prefix, m
