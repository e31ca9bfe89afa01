"""Malformed feedback: every bad file fails `anyfeedback data inspect` with exit code 2 and one
stderr line `error: FILE:line N: field 'x': problem` naming the file, the line (JSONL, CSV,
invalid JSON) or record (JSON, Parquet), and the field, with no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anyfeedback.cli import main
from anyfeedback.errors import InputError
from anyfeedback.feedback import load_feedback

BAD_DIR = Path(__file__).parent / "data" / "bad"


# file -> (where: "line N" / "record N" / None, field or None, words in the message)
BAD = {
    "alpaca_columns.json": ("record 1", "prompt", "found 'instruction'"),
    "bad_message.jsonl": ("line 1", "prompt", "'role' and 'content'"),
    "blank_lines.csv": ("line 5", "label", "'maybe'"),  # physical line after 2 blank lines
    "chosen_text.jsonl": ("line 1", "chosen", "found 'chosen_text'"),
    "content_null.jsonl": ("line 2", "chosen", "'content' must be a string"),
    "duplicate_header.csv": ("line 1", "prompt", "duplicate column"),
    "empty.jsonl": (None, None, "empty dataset"),
    "empty_completion.jsonl": ("line 1", "completion", "empty or whitespace"),
    "empty_message_list.jsonl": ("line 1", "prompt", "message list must not be empty"),
    "header_only.csv": (None, None, "empty dataset"),
    "implicit_no_shared.jsonl": ("line 1", "prompt", "share no leading messages"),
    "inf_score.json": ("record 2", "score", "finite"),
    "invalid.json": ("line 2", None, "invalid JSON"),
    "invalid_json_line.jsonl": ("line 3", None, "invalid JSON"),
    "json_not_list.json": (None, None, "list of records"),
    "label_int.json": ("record 1", "label", "boolean"),
    "label_yes.csv": ("line 3", "label", "boolean"),  # the quoted record spans lines 3-4
    "label_yes.jsonl": ("line 2", "label", "'yes'"),
    "missing_completion.csv": ("line 2", "rejected", "empty"),
    "missing_prompt.jsonl": ("line 1", "prompt", "missing"),
    "missing_rejected.jsonl": ("line 1", "rejected", "missing"),
    "misspelt_label.jsonl": ("line 2", "lable", "did you mean 'label'"),
    "misspelt_prompt.jsonl": ("line 1", "promt", "did you mean 'prompt'"),
    "mixed_kinds.jsonl": ("line 2", "label", "one file holds one kind"),
    "nan_score.jsonl": ("line 1", "score", "finite"),
    "nan_score_chosen.json": ("record 1", "score_chosen", "finite"),
    "not_an_object.json": ("record 2", None, "JSON object"),
    "not_utf8.csv": ("line 3", None, "not UTF-8"),
    "null_chosen.jsonl": ("line 1", "chosen", "null"),
    "prompt_is_int.jsonl": ("line 1", "prompt", "got int"),
    "role_not_string.jsonl": ("line 1", "prompt", "'role' must be a non-empty string"),
    "score_bool.jsonl": ("line 1", "score", "must be a number"),
    "score_text.csv": ("line 2", "score", "'high'"),
    "string_pair_no_prompt.jsonl": ("line 1", "prompt", "implicit prompt"),
    "too_many_values.csv": ("line 3", None, "4 values for 3 header columns"),
    "unsupported.txt": (None, None, "unsupported file type '.txt'"),
    "whitespace_prompt.json": ("record 2", "prompt", "empty or whitespace"),
}


def check_one_line(err: str, path: Path, where, field, words):
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"error: {path}"), line
    assert f":{where}:" in line if where else f"{path}: " in line, line
    if field:
        assert f"field '{field}'" in line, line
    assert words in line, line
    assert "Traceback" not in line


def test_bad_corpus_matches_the_table():
    assert len(BAD) >= 18
    assert sorted(BAD) == sorted(p.name for p in BAD_DIR.iterdir())


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_one_line_exit_2(name, capsys):
    path = BAD_DIR / name
    assert main(["data", "inspect", str(path)]) == 2
    captured = capsys.readouterr()
    check_one_line(captured.err, path, *BAD[name])
    assert captured.out == ""


@pytest.mark.parametrize("name", ["chosen_text.jsonl", "mixed_kinds.jsonl", "not_utf8.csv"])
def test_library_raises_the_same_input_error(name):
    where, field, words = BAD[name]
    with pytest.raises(InputError) as err:
        load_feedback(BAD_DIR / name)
    assert err.value.field == field and words in err.value.problem
    assert f"{err.value.line and 'line' or 'record'} {err.value.line or err.value.record}" == where


@pytest.fixture(scope="module")
def bad_parquet(tmp_path_factory):
    """Parquet files written here (binary files are not committed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("parquet")
    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    tables = {
        "no_completion.parquet": pa.table({"prompt": ["p", "q"], "label": [True, False]}),
        "nan_score.parquet": pa.table(
            {
                "prompt": ["p", "q"],
                "completion": ["a", "b"],
                "label": [True, False],
                "score": [0.5, float("nan")],
            }
        ),
        "label_text.parquet": pa.table(
            {"prompt": ["p"] * 3, "completion": ["a", "b", "c"], "label": ["true", "no", "1"]}
        ),
        "null_content.parquet": pa.table(
            {
                "prompt": pa.array([[{"role": "user", "content": None}]], type=msgs),
                "chosen": ["a"],
                "rejected": ["b"],
            }
        ),
    }
    for name, table in tables.items():
        pq.write_table(table, root / name)
    (root / "corrupt.parquet").write_bytes(b"PAR1 not really")
    return root


BAD_PARQUET = {
    "no_completion.parquet": ("record 1", "completion", "missing"),
    "nan_score.parquet": ("record 2", "score", "finite"),
    "label_text.parquet": ("record 1", "label", "boolean"),  # strings are labels in CSV only
    "null_content.parquet": ("record 1", "prompt", "'content' must be a string"),
    "corrupt.parquet": (None, None, "not a readable Parquet file"),
}


@pytest.mark.parametrize("name", sorted(BAD_PARQUET))
def test_bad_parquet(bad_parquet, name, capsys):
    assert main(["data", "inspect", str(bad_parquet / name)]) == 2
    check_one_line(capsys.readouterr().err, bad_parquet / name, *BAD_PARQUET[name])


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "anyfeedback"
    return [str(script)] if script.exists() else [sys.executable, "-m", "anyfeedback.cli"]


def test_process_exit_code_and_no_traceback():
    path = BAD_DIR / "label_yes.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [*_cli(), "data", "inspect", str(path)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and proc.stdout == ""
    check_one_line(proc.stderr, path, *BAD["label_yes.jsonl"])


def test_missing_file_and_bad_kind_exit_2(capsys, tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert main(["data", "inspect", str(missing)]) == 2
    check_one_line(capsys.readouterr().err, missing, None, None, "no such file")
    good = Path(__file__).parent / "data" / "good" / "paired.jsonl"
    assert main(["data", "inspect", "--kind", "pairs", str(good)]) == 2
    assert "unknown kind 'pairs'" in capsys.readouterr().err


def test_all_problems_lists_every_bad_record(tmp_path, capsys):
    path = tmp_path / "several.jsonl"
    path.write_text(
        '{"prompt": "p", "completion": "c", "label": true}\n'
        '{"prompt": "p", "completion": "c", "label": "yes"}\n'
        '{"prompt": "", "completion": "c", "label": false}\n'
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
        '{"prompt": "p", "completion": "c", "label": false}\n'
    )
    assert main(["data", "inspect", str(path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert main(["data", "inspect", "--all-problems", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":line ")[1][:1] for e in err] == ["2", "3", "4"]
    assert all(e.startswith("error: ") for e in err)
    assert main(["data", "inspect", "--all-problems", "--max-problems", "2", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and err[-1] == "error: stopped after 2 problems"
