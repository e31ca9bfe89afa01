"""Config dataclasses from files and flags: field docstrings, YAML/JSON files, typed values, checks.

Shared by every flat config (`TrainConfig`, `OnlineConfig`, `ControlConfig`, `BanditConfig`, ...)
and the CLI generated from them (`anyfeedback.commands.options`). Standard library only (PyYAML is
imported for .yaml files).

- `field_docs(cls)`: field name → the docstring literal under it, inherited fields included.
- `read_config_file(path, cls)`: a YAML/JSON mapping; unknown keys are an error.
- `coerce(cls, values)`: each value converted to its field's type or a one-line `InputError`
  naming the field (YAML reads `1e-5` as a string; TRL converts it, so do we).
- `build_config(cls, file, flags)`: defaults ← file ← flags, typed, then `cls(**values)`.
- `check_choice`, `check_range`, `positive`, `nonneg`: the value checks every `__post_init__` uses.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError


def field_docs(cls: type) -> dict[str, str]:
    """Field name → the docstring literal written under it, for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
                if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                    docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def init_fields(cls: type) -> list[dataclasses.Field]:
    """The user-settable fields of `cls`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.init]


def read_config_file(
    path: str | Path, cls: type, aliases: dict[str, str] | None = None
) -> dict[str, Any]:
    """Fields of `cls` from a YAML or JSON file (kebab-case keys allowed); unknown keys are an
    InputError (typos must not pass). Keys in `aliases` are returned as they are (the caller maps
    them)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("config file not found", source=str(p))
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start + 1})", source=str(p)) from None
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
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in init_fields(cls)} | set(aliases or {})
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)}", source=str(p))
    return values


def _bad_type(name: str, problem: str, source: str | None) -> InputError:
    return InputError(problem, source=source, field=name)


def _to_float(name: str, value: Any, source: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad_type(name, f"must be a number, got {value!r}", source)
    try:
        number = float(value)
    except ValueError:
        raise _bad_type(name, f"must be a number, got {value!r}", source) from None
    if not math.isfinite(number):
        raise _bad_type(name, f"must be a finite number, got {value!r}", source)
    return number


def _to_int(name: str, value: Any, source: str | None) -> int:
    if isinstance(value, bool):
        raise _bad_type(name, f"must be an integer, got {value!r}", source)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = _to_float(name, value, source) if isinstance(value, (float, str)) else None
    if number is None or not number.is_integer():
        raise _bad_type(name, f"must be an integer, got {value!r}", source)
    return int(number)


def _to_bool(name: str, value: Any, source: str | None) -> bool:
    if isinstance(value, bool):
        return value
    raise _bad_type(name, f"must be true or false, got {value!r}", source)


def _to_str(name: str, value: Any, source: str | None) -> str:
    if isinstance(value, str):
        return value
    raise _bad_type(name, f"must be a string, got {value!r}", source)


def field_type(annotation: Any) -> tuple[Any, bool]:
    """(the base type, optional?) of a field annotation: `float | None` → (float, True)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def coerce_value(name: str, annotation: Any, value: Any, source: str | None = None) -> Any:
    """`value` as the field's type, or an InputError naming the field."""
    base, optional = field_type(annotation)
    if value is None:
        if optional:
            return None
        raise _bad_type(name, "must not be empty", source)
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(value, (list, tuple)):
            raise _bad_type(name, f"must be a list or comma-separated text, got {value!r}", source)
        return tuple(coerce_value(name, item, v, source) for v in value)
    convert = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}.get(base)
    return value if convert is None else convert(name, value, source)


def coerce(cls: type, values: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """Every value converted to its field's type (see `coerce_value`)."""
    hints = typing.get_type_hints(cls)
    return {k: coerce_value(k, hints[k], v, source) for k, v in values.items()}


def build_config(cls: type, file: str | Path | None, flags: dict[str, Any]):
    """Defaults ← `file` ← `flags` (None means "not given"), each value type-checked."""
    values = coerce(cls, read_config_file(file, cls), str(file)) if file else {}
    values.update(coerce(cls, {k: v for k, v in flags.items() if v is not None}))
    try:
        return cls(**values)
    except TypeError as err:
        raise InputError(str(err), source="config") from None


# --- value checks shared by every config's __post_init__ ------------------------------------


def _label(name: str, kebab: bool) -> str:
    return name.replace("_", "-") if kebab else name


def check_choice(
    cfg: Any, name: str, allowed, *, source: str | None = "config", kebab: bool = False
) -> None:
    """`cfg.<name>` must be one of `allowed`."""
    value = getattr(cfg, name)
    if value not in allowed:
        raise InputError(
            f"must be one of {', '.join(allowed)}, got {value!r}",
            source=source,
            field=_label(name, kebab),
        )


def check_range(
    cfg: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    source: str | None = "config",
    kebab: bool = False,
) -> None:
    """`low <= cfg.<name> <= high` (`<` where open); None values pass (they mean "default")."""
    value = getattr(cfg, name)
    if value is None:
        return
    ok = (low is None or (value > low if low_open else value >= low)) and (
        high is None or (value < high if high_open else value <= high)
    )
    if ok:
        return
    if high is None:
        problem = f"must be {'>' if low_open else '>='} {low:g}, got {value}"
    else:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        problem = f"must be in {left}{low:g}, {high:g}{right}, got {value}"
    raise InputError(problem, source=source, field=_label(name, kebab))


def positive(cfg: Any, *names: str, source: str | None = "config", kebab: bool = False) -> None:
    """Each field is >= 1 (counts and sizes)."""
    for name in names:
        check_range(cfg, name, 1, source=source, kebab=kebab)


def nonneg(cfg: Any, *names: str, source: str | None = "config", kebab: bool = False) -> None:
    """Each field is >= 0."""
    for name in names:
        check_range(cfg, name, 0, source=source, kebab=kebab)
