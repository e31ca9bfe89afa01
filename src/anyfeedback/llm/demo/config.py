"""`DemoConfig`: the options of `anyfeedback demo` (fields → flags, docstrings → help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoConfig:
    """The embedded offline demo (see `anyfeedback.llm.demo.run`)."""

    out: str = "runs/demo"
    """Where the report and runs go."""
    quick: bool = False
    """A smaller model and fewer steps (~2 minutes)."""
    overwrite: bool = False
    """Replace the outputs of an earlier run in --out (only files a run writes)."""
