"""Paths as the committed results record them: relative to the repository root (climbing out of it
with `..` for a file kept elsewhere), never absolute, so a result file names no directory of the
machine that made it and the commands it records run from the repository root."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repo_relative(path: str | os.PathLike) -> str:
    """`path` (absolute, or relative to the working directory) relative to the repository root,
    with `/` separators."""
    return Path(os.path.relpath(os.path.abspath(path), ROOT)).as_posix()


def relative_paths(values: dict) -> dict:
    """`values` (e.g. `vars(args)`) with every `Path` value replaced by `repo_relative(value)`."""
    return {k: repo_relative(v) if isinstance(v, Path) else v for k, v in values.items()}
