"""Reading the NPZ files the control applications take as input (offline datasets, AIHF pools):
`allow_pickle=False` always, so no array in a user's file can run code when loaded, and every
failure is one `InputError` line naming the file (and the array)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from anyfeedback.errors import InputError


def read_npz(path: Path, what: str = "dataset") -> dict[str, np.ndarray]:
    """Every array of the `.npz` at `path`; `what` names the file's role in the messages."""
    if not path.is_file():
        raise InputError(f"{what} file not found", source=str(path))
    if not zipfile.is_zipfile(path):  # a text file, a pickle, a truncated archive
        raise InputError("not an NPZ file (numpy.savez archive)", source=str(path))
    arrays = {}
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # a zip that is not an npz
        raise InputError(f"unreadable: {_first_line(err)}", source=str(path)) from None
    with npz:
        for name in npz.files:
            try:
                arrays[name] = npz[name]
            except ValueError:  # object arrays need pickle, which we refuse
                raise InputError(
                    "object arrays are not allowed (saved with pickle)",
                    source=str(path),
                    field=name,
                ) from None
            except Exception as err:  # a corrupt member of the archive
                raise InputError(
                    f"unreadable: {_first_line(err)}", source=str(path), field=name
                ) from None
    return arrays


def _first_line(err: Exception) -> str:
    """The first line of an exception's message, or its type when the message is empty (numpy
    raises a bare EOFError for some truncated members)."""
    return (str(err).splitlines() or [type(err).__name__])[0]
