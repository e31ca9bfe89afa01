"""Typer options generated from a flat config dataclass: one flag per field.

`learning_rate` → `--learning-rate`, booleans as `--flag/--no-flag`, the field's docstring (the
string literal under it) as help, and `--config FILE` (YAML/JSON of the same fields) read first;
flags given on the command line override the file. Unknown keys in the file are an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Optional

import typer

from anyfeedback.configfile import field_docs, read_config_file
from anyfeedback.errors import InputError


def _base_type(annotation: Any) -> type:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def build_config(cls: type, file: str | None, flags: dict[str, Any]):
    """Defaults ← `file` ← `flags` (None means "not given")."""
    values = read_config_file(file, cls) if file else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(str(err), source="config") from None


def add_dataclass_command(app: typer.Typer, name: str, cls: type, run: Callable, help: str):
    """Register `name` whose options are `cls`'s fields; calls `run(config_instance)`."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML or JSON file of these fields."),
        )
    ]
    annotations: dict[str, Any] = {"config": Optional[str], "return": None}
    for f in dataclasses.fields(cls):
        base = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        decl = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        shown = "per method" if f.default is None else f.default
        option = typer.Option(
            None, decl, help=f"{docs.get(f.name, '')} [default: {shown}]", show_default=False
        )
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option))
        annotations[f.name] = Optional[base]

    def command(config: str | None = None, **flags: Any) -> None:
        from anyfeedback.errors import check_finite_fields

        cfg = build_config(cls, config, flags)
        check_finite_fields(cfg)
        run(cfg)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    command.__doc__ = help
    app.command(name=name)(command)
