"""Read feedback from JSONL, JSON, CSV, Parquet, a saved HF dataset directory or a Hub id.

Every reader yields `(Where, row)` so that errors can name the file and the physical line
(JSONL, CSV) or the 1-based record number (JSON, Parquet, HF datasets). `load_feedback` then
validates every row (schema.py), fixes the kind from the first record (or `kind=`), and rejects a
file that mixes kinds. Loading is all-or-nothing: the first problem raises `InputError`.
Heavy readers (pyarrow, datasets) are imported only when such a file is read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.feedback.dataset import FeedbackDataset
from anyfeedback.feedback.schema import (
    KINDS,
    REQUIRED,
    Where,
    build_record,
    check_field_names,
    detect_kind,
)

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
Rows = Iterator[tuple[Where, dict[str, Any]]]


def _row_dict(value: Any, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"a record must be a JSON object, got {type(value).__name__}")
    return value


def read_jsonl(path: Path) -> Rows:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = Where(str(path), line=n)
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise where.error(f"invalid JSON ({err.msg} at column {err.colno})") from None
            yield where, _row_dict(value, where)


def read_json(path: Path) -> Rows:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise Where(str(path), line=err.lineno).error(f"invalid JSON ({err.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise Where(str(path)).error('a JSON file must hold a list of records or {"data": [...]}')
    for i, value in enumerate(data, 1):
        where = Where(str(path), record=i)
        yield where, _row_dict(value, where)


def read_csv(path: Path) -> Rows:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        if len(set(reader.fieldnames)) != len(reader.fieldnames):
            raise Where(str(path), line=1).error("duplicate column names in the header")
        start = 2
        for row in reader:
            where = Where(str(path), line=start)
            start = reader.line_num + 1
            if None in row:
                raise where.error("more values than header columns")
            yield where, {k: v for k, v in row.items() if v is not None}


def _read_table(table, source: str) -> Rows:
    for i, row in enumerate(table.to_pylist(), 1):
        yield Where(source, record=i), row


def read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise Where(str(path)).error(
            f"not a readable Parquet file ({type(err).__name__})"
        ) from None
    yield from _read_table(table, str(path))


def read_hf_dataset(dataset, source: str, split: str) -> Rows:
    if hasattr(dataset, "keys") and not hasattr(dataset, "features"):  # a DatasetDict
        if split not in dataset:
            raise Where(source).error(f"no split '{split}' (has: {', '.join(dataset.keys())})")
        dataset = dataset[split]
    for i, row in enumerate(dataset, 1):
        yield Where(source, record=i), dict(row)


def _is_saved_dataset(path: Path) -> bool:
    names = {"dataset_info.json", "state.json", "dataset_dict.json"}
    return any((path / n).exists() for n in names)


def iter_rows(source: str, *, split: str = "train") -> tuple[Rows, bool]:
    """(rows, from_text): raw rows of any supported source; `from_text` for CSV's strings."""
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {".jsonl": read_jsonl, ".json": read_json, ".parquet": read_parquet}
        if suffix == ".csv":
            return read_csv(path), True
        if suffix not in readers:
            raise InputError(
                f"unsupported file type '{suffix}' (use one of {', '.join(SUFFIXES)})",
                source=source,
            )
        return readers[suffix](path), False
    if path.is_dir():
        if _is_saved_dataset(path):
            import datasets

            return read_hf_dataset(datasets.load_from_disk(str(path)), source, split), False
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise InputError("directory holds no feedback files or saved dataset", source=source)
        text = any(p.suffix.lower() == ".csv" for p in files)
        return (row for f in files for row in iter_rows(str(f), split=split)[0]), text
    if HUB_ID.match(source) and not path.suffix:
        return _hub_rows(source, split), False
    raise InputError("no such file or directory", source=source)


def _hub_rows(source: str, split: str) -> Rows:
    import datasets

    try:
        dataset = datasets.load_dataset(source, split=split)
    except Exception as err:  # offline, unknown id, missing split: one clean line
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"could not load Hub dataset: {msg}", source=source) from None
    yield from read_hf_dataset(dataset, source, split)


def load_feedback(
    source: str,
    *,
    kind: str | None = None,
    split: str = "train",
    problems: list[InputError] | None = None,
    max_problems: int = 20,
) -> FeedbackDataset:
    """Load and validate every record of `source`; the kind is detected from the first record's
    fields unless given. Raises `InputError` (one line, naming file, line/record and field) at
    the first problem — or, when a `problems` list is passed, collects up to `max_problems`
    record-level problems there, skips those records and goes on (for `data inspect`)."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown kind '{kind}' (one of {', '.join(KINDS)})", source=source)
    rows, from_text = iter_rows(source, split=split)
    records, first_where = [], None
    try:
        for where, row in rows:
            try:
                check_field_names(row, where)
                row_kind = detect_kind(row)
                if kind is None:
                    kind, first_where = row_kind, where
                elif not set(REQUIRED[row_kind]) <= set(REQUIRED[kind]):
                    # a row with fewer fields than the kind needs gets 'missing field' below
                    raise _mixed_kinds(where, row, row_kind, kind, first_where)
                records.append(build_record(row, kind, where, from_text=from_text))
            except InputError as err:
                if problems is None:
                    raise
                problems.append(err)
                if len(problems) >= max_problems:
                    break
    except InputError as err:  # a reader-level problem (e.g. invalid JSON) ends the scan
        if problems is None:
            raise
        problems.append(err)
    if not records and not problems:
        raise InputError("empty dataset (no records)", source=source)
    return FeedbackDataset(kind or "unknown", records, source)


def _mixed_kinds(where: Where, row: dict, row_kind: str, kind: str, first: Where | None):
    origin = "given" if first is None else f"set by {_where_text(first)}"
    differing = next(
        (f for f in ("chosen", "rejected", "label", "completion") if f in row), "prompt"
    )
    return where.error(
        f"a {row_kind} record in a {kind} dataset (kind {origin}); one file holds one kind",
        differing,
    )


def _where_text(where: Where) -> str:
    return f"line {where.line}" if where.line is not None else f"record {where.record}"
