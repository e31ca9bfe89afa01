"""The one config → CLI generator: typer options from a flat config dataclass, for every command.

One flag per field (`learning_rate` → `--learning-rate`, booleans as `--flag/--no-flag`), the
field's docstring (the string literal under it) as help, its default shown in `--help`, and
`--config FILE` (YAML/JSON of the same fields) read first; flags given on the command line
override the file. Unknown keys in the file are an error; every value from the file or a flag is
type-checked with the field named (`anyfeedback.configfile.coerce`).

LLM commands also accept the transformers/TRL spellings (`anyfeedback.commands.trl_names`) as
flags (snake_case or kebab-case, hidden from `--help`) and as file keys.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, Optional

import typer

from anyfeedback.configfile import (
    coerce,
    field_docs,
    field_type,
    init_fields,
    read_config_file,
)
from anyfeedback.errors import InputError


@dataclasses.dataclass(frozen=True)
class Extra:
    """An option that is not a config field (e.g. bandit's `--out`), passed to `run` by name."""

    name: str
    default: Any
    annotation: Any
    help: str


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "required"


def _cli_order(cls: type) -> list[dataclasses.Field]:
    """Fields of the most derived class first (so `--data`, `--model` lead the help)."""
    fields = {f.name: f for f in init_fields(cls)}
    order: list[str] = []
    for klass in cls.__mro__:
        for name in getattr(klass, "__annotations__", {}):
            if name in fields and name not in order:
                order.append(name)
    return [fields[n] for n in order]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_from_cli(
    cls: type,
    file: str | None,
    flags: dict[str, Any],
    aliases: bool | None = None,
    flag_names: dict[str, str] | None = None,
):
    """Defaults ← `file` ← `flags` (None: not given), TRL aliases resolved, values type-checked.
    A file may use a renamed flag's name as its key (bandit's `function` for `functions`)."""
    from anyfeedback.commands import trl_names

    fields = {f.name for f in init_fields(cls)}
    values: dict[str, Any] = {}
    if file:
        renamed = {flag[2:].replace("-", "_"): f for f, flag in (flag_names or {}).items()}
        known = {**(trl_names.all_keys() if aliases else {}), **renamed}
        raw = read_config_file(file, cls, aliases=known)
        raw = {renamed.get(k, k): v for k, v in raw.items()}
        if aliases:
            raw = trl_names.resolve(raw, fields, source=str(file))
        values = coerce(cls, raw, str(file))
    given = {k: v for k, v in flags.items() if v is not None}
    alias_given = {k[len("alias__") :]: v for k, v in given.items() if k.startswith("alias__")}
    given = {k: v for k, v in given.items() if not k.startswith("alias__")}
    if alias_given:
        given.update(trl_names.resolve(alias_given, fields, source="flags", given=given))
    values.update(coerce(cls, given))
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(str(err), source="config") from None


def config_parameters(
    cls: type,
    *,
    flag_names: dict[str, str] | None = None,
    aliases: bool = False,
    extra: Sequence[Extra] = (),
) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The typer parameters of `cls`'s fields (+ `--config`, the extras and hidden TRL aliases)."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    flag_names = flag_names or {}
    config_opt = typer.Option(
        None, "--config", help="YAML or JSON file of these options (flags override it)."
    )
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config_opt)]
    annotations: dict[str, Any] = {"config": Optional[str], "return": None}
    for f in _cli_order(cls):
        base, _ = field_type(hints[f.name])
        if typing.get_origin(base) is tuple:
            base = str  # comma-separated list
        flag = flag_names.get(f.name, _flag(f.name))
        decl = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        help_text = docs.get(f.name, "")
        if aliases:
            from anyfeedback.commands.trl_names import alias_help

            help_text += alias_help(f.name)
        option = typer.Option(None, decl, help=help_text, show_default=_shown(f.default))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option))
        annotations[f.name] = Optional[base]
    for e in extra:
        option = typer.Option(e.default, _flag(e.name), help=e.help, show_default=_shown(e.default))
        params.append(inspect.Parameter(e.name, inspect.Parameter.KEYWORD_ONLY, default=option))
        annotations[e.name] = e.annotation
    if aliases:
        from anyfeedback.commands import trl_names

        taken = {p.name for p in params}
        for name, decls, annotation in trl_names.hidden_flags(cls, hints):
            option = typer.Option(None, *decls, hidden=True)
            pname = "alias__" + name
            if pname not in taken:
                params.append(
                    inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=option)
                )
                annotations[pname] = annotation
    return params, annotations


def config_command(
    cls: type,
    run: Callable,
    help: str,
    *,
    flag_names: dict[str, str] | None = None,
    aliases: bool = False,
    extra: Sequence[Extra] = (),
    with_ctx: bool = False,
    lazy: bool = False,
) -> Callable:
    """A function with the typed signature typer reads; it calls `run(config, **extras)` (and
    `run(build, **extras)` when `lazy`, so that `run` decides when the config is built, and
    `run(ctx, build, given=..., **extras)` when `with_ctx`, for a group's default command)."""
    params, annotations = config_parameters(
        cls, flag_names=flag_names, aliases=aliases, extra=extra
    )
    extra_names = {e.name for e in extra}
    if with_ctx:
        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        params.insert(0, ctx_param)
        annotations["ctx"] = typer.Context

    def command(config: str | None = None, ctx: Any = None, **flags: Any) -> None:
        extras = {k: flags.pop(k) for k in list(flags) if k in extra_names}

        def build():
            return build_from_cli(cls, config, flags, aliases=aliases, flag_names=flag_names)

        if with_ctx:
            given = config is not None or any(v is not None for v in flags.values())
            run(ctx, build, given=given, **extras)
        else:
            run(build if lazy else build(), **extras)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = annotations
    command.__doc__ = help
    return command


def add_dataclass_command(
    app: typer.Typer,
    name: str,
    cls: type,
    run: Callable,
    help: str,
    **kw: Any,
) -> None:
    """Register `name` whose options are `cls`'s fields; calls `run(config_instance)`."""
    app.command(name=name)(config_command(cls, run, help, **kw))
