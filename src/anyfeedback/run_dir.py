"""Run directories: what a command may write into `--out`, and what a resume may change.

`prepare_output_dir` refuses (one line, exit 2) an `--out` that is a file, empty, or a non-empty
folder unless `--resume` or `--overwrite`; it records what runs create in `MANIFEST`, so
`--overwrite` deletes only those entries and a failed validation leaves `--out` as it was.
`check_resume_config` refuses a resume whose settings differ from the saved run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.runs import atomic_path, atomic_write_json, jsonable

MANIFEST = ".anyfeedback-run.json"


def check_resume_config(saved_path: str | os.PathLike, current: dict[str, Any], *, ignore=()):
    """On --resume: InputError (one line naming every changed field, saved → now) when `current`
    differs from the run's saved config in a field not in `ignore`. No saved config: no check."""
    path = Path(saved_path)
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"is not a run's JSON config ({type(err).__name__})", source=str(path)
        ) from None
    if not isinstance(saved, dict):
        raise InputError("is not a run's JSON config (not an object)", source=str(path))
    now = jsonable(current)
    changed = [
        f"{k} ({saved.get(k)!r} -> {v!r})"
        for k, v in now.items()
        if k not in ignore and k in saved and saved[k] != v
    ]
    if changed:
        raise InputError(
            f"--resume with changed settings: {', '.join(changed)}; resume with the run's "
            "settings or start a new run in another --out",
            field="resume",
        )
    return saved


def _entries(path: Path) -> set[str]:
    return set(os.listdir(path)) - {MANIFEST} if path.is_dir() else set()


def _read_manifest(path: Path) -> list[str] | None:
    """Names recorded as created by runs in `path`, or None when there is no (usable) record."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        names = data["created"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(names, list):
        return None
    # only plain names directly under OUT: a tampered record must not reach outside it
    return [
        n for n in names if isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n
    ]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def prepare_output_dir(
    out: str | os.PathLike | None, *, resume: bool = False, overwrite: bool = False
) -> Iterator[Path]:
    """Open the run directory `out` for one run; a context manager around the whole run.

    Refused (InputError, nothing written): an empty `out`, a file, both flags, and a directory
    that is not empty unless `resume` (continue the run there) or `overwrite` (first delete the
    entries earlier runs recorded as theirs; anything else, e.g. a user's own files, stays and a
    directory without that record is refused). If the run raises InputError (its input checks
    failed), every entry it created is removed again, so a rejected run leaves `out` as it was —
    unless it had saved a checkpoint (an input problem met mid-run, e.g. a reward returning NaN
    at step 3): that work is kept for --resume. On any other exit the entries created are added
    to the record (`MANIFEST`)."""
    if out is None or not str(out).strip():
        raise InputError("must name a directory, got an empty string", field="out")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a directory", field="out")
    if resume and overwrite:
        raise InputError("choose either --resume or --overwrite, not both", field="overwrite")
    present, recorded = _entries(path), _read_manifest(path)
    old_manifest = (path / MANIFEST).read_bytes() if (path / MANIFEST).is_file() else None
    if present and not resume:
        if not overwrite:
            raise InputError(
                f"{path} is not empty; pass --resume to continue the run there, --overwrite to "
                "replace an earlier run's outputs, or choose another directory",
                field="out",
            )
        if recorded is None:
            raise InputError(
                f"{path} holds files no anyfeedback run recorded as its own ({MANIFEST} is "
                "missing); --overwrite replaces only a run's outputs: choose another directory",
                field="out",
            )
    if resume and recorded is None:
        recorded = sorted(present)  # --resume names this directory a run of this command
    recorded = recorded or []
    if overwrite:
        for name in recorded:
            _remove(path / name)
        recorded = []
    top = path.absolute()
    while not top.parent.exists():  # the outermost directory this run creates, if any
        top = top.parent
    created_root = not top.exists()
    path.mkdir(parents=True, exist_ok=True)
    start = _entries(path)
    atomic_write_json(path / MANIFEST, {"created": recorded})
    try:
        yield path
    except InputError:
        made = _entries(path) - start
        if any("checkpoint" in name or name == "pieces" for name in made):
            _record(path, recorded, start)  # the run got going: keep its work
            raise
        for name in made:
            _remove(path / name)
        if created_root:
            shutil.rmtree(top, ignore_errors=True)
        elif old_manifest is None:
            (path / MANIFEST).unlink(missing_ok=True)
        else:
            with atomic_path(path / MANIFEST) as tmp:
                tmp.write_bytes(old_manifest)
        raise
    except BaseException:
        _record(path, recorded, start)
        raise
    else:
        _record(path, recorded, start)


def _record(path: Path, recorded: list[str], start: set[str]) -> None:
    """Add the entries this run created to the run directory's record."""
    if path.is_dir() and (path / MANIFEST).exists():
        made = sorted(set(recorded) | (_entries(path) - start))
        atomic_write_json(path / MANIFEST, {"created": made})
