"""User code named on the command line: `module:function` or `path/to/file.py:function`.

Both forms work from the current directory without PYTHONPATH: a module is searched in the
working directory first (like `python -m`), a `.py` path is loaded from its file. `function` may
be dotted (`module:Class.method`). Problems are one-line `InputError`s naming the flag.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError


def _import_module(module_name: str):
    if module_name.endswith(".py"):  # path/to/file.py
        path = Path(module_name)
        if not path.is_file():
            raise ImportError(f"no file {module_name}")
        location = importlib.util.spec_from_file_location(path.stem, path)
        if location is None or location.loader is None:
            raise ImportError(f"cannot load {module_name}")
        module = importlib.util.module_from_spec(location)
        sys.modules.setdefault(path.stem, module)  # so pickling / relative lookups find it
        location.loader.exec_module(module)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the console script's path lacks it
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def import_callable(spec: str, *, field: str, what: str = "function") -> Callable[..., Any]:
    """The callable `spec` names (`module:function` or `file.py:function`)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise InputError(f"expected 'module:{what}' or 'file.py:{what}', got {spec!r}", field=field)
    try:
        module = _import_module(module_name)
    except Exception as err:  # ImportError, SyntaxError, or whatever the module raises on import
        where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
        raise InputError(
            f"cannot import module {module_name!r}{where}: {type(err).__name__}: {err}",
            field=field,
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(f"module {module_name!r} has no attribute {attr!r}", field=field)
    if not callable(obj):
        raise InputError(f"{spec!r} is not callable", field=field)
    return obj
