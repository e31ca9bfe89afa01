"""Config dataclasses from files: the per-field docstrings and YAML/JSON config files.

Shared by every flat config (`TrainConfig`, `OnlineConfig`, `ControlConfig`) and the CLI that
is generated from them. Standard library only (PyYAML is imported for .yaml files).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError


def field_docs(cls: type) -> dict[str, str]:
    """Field name → the docstring literal written under it in the class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = nxt.value.value.strip()
    return docs


def read_config_file(path: str | Path, cls: type) -> dict[str, Any]:
    """Fields of `cls` from a YAML or JSON file; unknown keys are an InputError (typos must not
    pass)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("config file not found", source=str(p))
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as err:  # yaml.YAMLError / json.JSONDecodeError
        raise InputError(f"cannot parse: {str(err).splitlines()[0]}", source=str(p)) from None
    if not isinstance(values, dict):
        raise InputError("must hold a mapping of field names to values", source=str(p))
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls) if f.init})
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)}", source=str(p))
    return values
