"""Read feedback from JSONL, JSON, CSV, Parquet, a saved HF dataset directory or a Hub id.

Every reader yields `(Where, row)` so that errors can name the file and the physical line
(JSONL, CSV: 1-based, the line a multi-line CSV record starts on) or the 1-based record number
(JSON, Parquet, HF datasets). `load_feedback` then validates every row (schema.py), fixes the
kind from the first record (or `kind=`), and rejects a file that mixes kinds. Loading is
all-or-nothing: the first problem raises `InputError` (one line), unless a `problems` list is
passed (then bad records are collected, skipped, and the scan goes on; `data inspect` uses it).

Formats: JSON is a list of records or {"data": [...]}; CSV has a header row, holds plain-text
records only, and its label column may read true/false/1/0 (CSV has no booleans); text files
are UTF-8 (a BOM is ignored). A directory is a saved HF dataset (`dataset_info.json`,
`state.json` or `dataset_dict.json` inside) or else every supported file in it, sorted by name.
A missing path of the form `owner/name` is loaded with `datasets.load_dataset(id, name, split=...)`.
Splits, as `datasets.load_dataset` names them: a saved DatasetDict's keys (e.g. UltraFeedback's
`train_prefs` / `test_prefs`), a Hub dataset's splits, or, in a plain directory, files named by
split (`train.jsonl`, `test_prefs.parquet`, `data/train-00000-of-00001.parquet`). A directory
without split-named files is one split (`train`). A split that does not exist is one line naming
the ones that do. In-memory sources (the Python API) work too: a `datasets.Dataset`, a
`DatasetDict` (with `split`), or a list of dicts.
pyarrow and datasets are imported only when such a source is read.
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
    REQUIRED,
    Where,
    a_kind,
    build_record,
    check_field_names,
    detect_kind,
    normalise_kind,
)

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
Rows = Iterator[tuple[Where, dict[str, Any]]]


def _row_dict(value: Any, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"a record must be a JSON object, got {type(value).__name__}")
    return value


class _Lines:
    """A file's lines, decoded as UTF-8 one at a time (a BOM on line 1 is dropped) and counted,
    so a decoding error, or a CSV record spanning lines, is placed on its physical line."""

    def __init__(self, path: Path, fh):
        self.path, self.fh, self.n = path, fh, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = next(self.fh)
        self.n += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _not_utf8(self.path, err, self.n) from None
        return text.removeprefix("\ufeff") if self.n == 1 else text


def _not_utf8(path: Path, err: UnicodeDecodeError, line: int | None = None) -> InputError:
    return Where(str(path), line=line).error(
        f"not UTF-8 text (byte 0x{err.object[err.start]:02x}); re-save the file as UTF-8"
    )


def read_jsonl(path: Path) -> Rows:
    with open(path, "rb") as fh:
        lines = _Lines(path, fh)
        for line in lines:
            if not line.strip():
                continue
            where = Where(str(path), line=lines.n)
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise where.error(f"invalid JSON ({err.msg} at column {err.colno})") from None
            yield where, _row_dict(value, where)


def read_json(path: Path) -> Rows:
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err, raw.count(b"\n", 0, err.start) + 1) from None
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
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long completions are fine
    with open(path, "rb") as fh:
        lines = _Lines(path, fh)
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            if header is None:
                return
            dup = next((name for name in header if header.count(name) > 1), None)
            if dup is not None:
                raise Where(str(path), line=1).error("duplicate column in the header", dup)
            while True:
                start = lines.n + 1
                values = next(reader, None)
                if values is None:
                    return
                if not values:  # a blank line
                    continue
                where = Where(str(path), line=start, from_text=True)
                if len(values) > len(header):
                    raise where.error(f"{len(values)} values for {len(header)} header columns")
                yield where, dict(zip(header, values, strict=False))  # short rows: fields missing
        except csv.Error as err:
            raise Where(str(path), line=lines.n).error(f"malformed CSV ({err})") from None


def read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise Where(str(path)).error(
            f"not a readable Parquet file ({type(err).__name__})"
        ) from None
    i = 0
    for batch in batches:
        for row in batch.to_pylist():
            i += 1
            yield Where(str(path), record=i), row


def read_hf_dataset(dataset, source: str, split: str) -> Rows:
    if hasattr(dataset, "keys") and not hasattr(dataset, "features"):  # a DatasetDict
        if split not in dataset:
            raise Where(source).error(f"no split '{split}' (has: {', '.join(dataset.keys())})")
        dataset = dataset[split]
    for i, row in enumerate(dataset, 1):
        yield Where(source, record=i), dict(row)


def _is_saved_dataset(path: Path) -> bool:
    names = ("dataset_info.json", "state.json", "dataset_dict.json")
    return any((path / n).exists() for n in names)


def _load_saved(path: Path, split: str) -> Rows:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as err:  # a damaged or foreign directory: one clean line
        raise InputError(
            f"not a loadable saved dataset ({_first_line(err)})", source=str(path)
        ) from None
    yield from read_hf_dataset(dataset, str(path), split)


def _feedback_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files and (path / "data").is_dir():  # the Hub's layout: data/<split>-*.parquet
        return _feedback_files(path / "data")
    return files


def _split_of(file: Path) -> str:
    """The split a file name gives, as `datasets.load_dataset` reads a directory: `test.jsonl`,
    `train_prefs-00000-of-00001.parquet` → `test`, `train_prefs`."""
    return file.name.split(".")[0].split("-")[0]


def _read_dir(path: Path, split: str) -> Rows:
    files = _feedback_files(path)
    if not files:
        raise InputError("directory holds no feedback files or saved dataset", source=str(path))
    chosen = [f for f in files if _split_of(f) == split]
    if not chosen:
        if split != "train":  # a directory without split names is one split, `train`
            names = sorted({_split_of(f) for f in files})
            raise InputError(f"no split '{split}' (has: {', '.join(names)})", source=str(path))
        chosen = files
    for f in chosen:
        yield from iter_rows(str(f), split=split)[0]


def source_name(source: Any) -> str:
    """A short printable name of a source: the path or id, or e.g. `<Dataset: 64 rows>`."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, list):
        return f"<list: {len(source)} records>"
    if hasattr(source, "features"):
        return f"<Dataset: {len(source)} rows>"
    if hasattr(source, "keys"):
        return f"<DatasetDict: {', '.join(source.keys())}>"
    return f"<{type(source).__name__}>"


def _memory_rows(source: Any, split: str) -> Rows:
    """Rows of an in-memory source: a list of dicts, a `datasets.Dataset` or `DatasetDict`."""
    name = source_name(source)
    if isinstance(source, list):
        for i, value in enumerate(source, 1):
            where = Where(name, record=i)
            yield where, _row_dict(value, where)
        return
    if not hasattr(source, "keys") and not hasattr(source, "features"):
        raise InputError(
            "expected a path, a Hub id, a datasets.Dataset, a DatasetDict or a list of dicts",
            source=name,
        )
    yield from read_hf_dataset(source, name, split)


def iter_rows(source: Any, *, split: str = "train", name: str | None = None) -> tuple[Rows, bool]:
    """(rows, from_text): raw rows of any supported source. `from_text` is True for a CSV file
    (each row's `Where.from_text` says the same per row, which is what a directory needs).
    `name` is a Hub dataset's configuration."""
    if not isinstance(source, (str, Path)):
        return _memory_rows(source, split), False
    source = str(source)
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {".jsonl": read_jsonl, ".json": read_json, ".parquet": read_parquet}
        if suffix == ".csv":
            return read_csv(path), True
        if suffix not in readers:
            raise InputError(
                f"unsupported file type '{suffix or path.name}' (use one of {', '.join(SUFFIXES)},"
                " a saved dataset directory or a Hub id)",
                source=source,
            )
        return readers[suffix](path), False
    if path.is_dir():
        if _is_saved_dataset(path):
            return _load_saved(path, split), False
        return _read_dir(path, split), False
    if HUB_ID.match(source) and not path.suffix:
        return _hub_rows(source, split, name), False
    raise InputError("no such file or directory (a Hub dataset id is owner/name)", source=source)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _hub_rows(source: str, split: str, name: str | None = None) -> Rows:
    import datasets

    try:
        if name:
            dataset = datasets.load_dataset(source, name, split=split)
        else:
            dataset = datasets.load_dataset(source, split=split)
    except Exception as err:  # offline, unknown id, missing split: one clean line
        splits = None
        if "split" in str(err).lower():
            try:
                splits = datasets.get_dataset_split_names(source, name)
            except Exception:  # the id itself is unreachable: keep the original message
                splits = None
        if splits and split not in splits:
            raise InputError(
                f"no split '{split}' (has: {', '.join(splits)})", source=source
            ) from None
        raise InputError(
            f"no such local file, and not loadable as a Hub dataset: {_first_line(err)}",
            source=source,
        ) from None
    yield from read_hf_dataset(dataset, source, split)


def load_feedback(
    source: Any,
    *,
    kind: str | None = None,
    split: str = "train",
    name: str | None = None,
    problems: list[InputError] | None = None,
    max_problems: int = 20,
) -> FeedbackDataset:
    """Load and validate every record of `source` (file, directory or Hub id, optionally behind a
    dataset adapter `hh:` / `ultrafeedback:` / `ultrachat:`, see adapters.py). The kind is
    detected from the first record's fields unless given ('unpaired', 'paired',
    'demonstration', 'prompt-only'; 'prompt' also works; 'prompt-only' reads the prompts of
    records of any kind, the other fields going to `extra`). Raises `InputError` (one line, naming
    file, line/record and field) at the first problem — or, when a `problems` list is passed,
    collects up to `max_problems` problems there, skips those records and goes on.
    `source` may also be in memory (a `datasets.Dataset`, `DatasetDict` or list of dicts);
    `name` is a Hub dataset's configuration (`datasets.load_dataset(id, name)`)."""
    from anyfeedback.feedback.adapters import parse_source

    adapter, raw_source = None, source
    if isinstance(source, (str, Path)):
        adapter, raw_source, split = parse_source(str(source), split)
    source = source_name(source)
    kind = normalise_kind(kind, source) if kind is not None else None
    rows, _ = iter_rows(raw_source, split=split, name=name)
    if adapter is not None:  # dataset-specific schema → our fields (feedback/adapters.py)
        rows = ((where, adapter(row, where, kind)) for where, row in rows)
    records, first_where = [], None
    try:
        for where, row in rows:
            try:
                check_field_names(row, where)
                if kind is None:
                    kind, first_where = detect_kind(row, fuzzy=True), where
                else:
                    row_kind = detect_kind(row)
                    # a row with fewer fields than the kind needs gets 'missing field' below
                    # and kind='prompt-only' takes the prompts of records of any kind
                    if not set(REQUIRED[row_kind]) <= set(REQUIRED[kind]) and kind != "prompt-only":
                        raise _mixed_kinds(where, row, row_kind, kind, first_where)
                records.append(build_record(row, kind, where))
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
        f"{a_kind(row_kind)} record in {a_kind(kind)} dataset (kind {origin}); "
        "one file holds one kind",
        differing,
    )


def _where_text(where: Where) -> str:
    line = f"line {where.line}" if where.line is not None else f"record {where.record}"
    return line if where.source == "" else f"{Path(where.source).name} {line}"
