"""The feedback data model: every good file loads with the right kind and counts; every bad file
fails with one line naming the file, the line or record, and the field, and exit code 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from anyfeedback.cli import main
from anyfeedback.errors import InputError
from anyfeedback.feedback import Paired, Unpaired, load_feedback

DATA = Path(__file__).parent / "data"

GOOD = {
    "unpaired.jsonl": ("unpaired", {"records": 3, "accepted": 2, "rejected": 1}),
    "paired.jsonl": ("paired", {"pairs": 2}),
    "demos.json": ("demonstration", {"demos": 2}),
    "prompts.json": ("prompt-only", {"prompt_only": 2}),
    "unpaired.csv": ("unpaired", {"accepted": 1, "rejected": 1}),
    "conversational_paired.jsonl": ("paired", {"pairs": 1}),
    "implicit_prompt_paired.jsonl": ("paired", {"pairs": 1}),
}

# file -> (where: "line N" / "record N" / None, field or None, words in the message)
BAD = {
    "bad_message.jsonl": ("line 1", "prompt", "role"),
    "empty.jsonl": (None, None, "empty dataset"),
    "empty_completion.jsonl": ("line 1", "completion", "empty"),
    "inf_score.json": ("record 2", "score", "finite"),
    "invalid_json_line.jsonl": ("line 3", None, "invalid JSON"),
    "label_int.json": ("record 1", "label", "boolean"),
    "label_yes.csv": ("line 3", "label", "boolean"),
    "label_yes.jsonl": ("line 2", "label", "'yes'"),
    "missing_completion.csv": ("line 2", "rejected", "empty"),
    "missing_prompt.jsonl": ("line 1", "prompt", "missing"),
    "missing_rejected.jsonl": ("line 1", "rejected", "missing"),
    "misspelt_label.jsonl": ("line 2", "lable", "did you mean 'label'"),
    "misspelt_prompt.jsonl": ("line 1", "promt", "did you mean 'prompt'"),
    "mixed_kinds.jsonl": ("line 2", "label", "one file holds one kind"),
    "nan_score.jsonl": ("line 1", "score", "finite"),
    "not_an_object.json": ("record 2", None, "JSON object"),
    "null_chosen.jsonl": ("line 1", "chosen", "null"),
    "prompt_is_int.jsonl": ("line 1", "prompt", "int"),
    "role_not_string.jsonl": ("line 1", "prompt", "strings"),
    "score_text.csv": ("line 2", "score", "number"),
    "unsupported.txt": (None, None, "unsupported file type"),
}


@pytest.fixture(scope="module")
def bad_parquet(tmp_path_factory):
    """Parquet files made here (binary files are not committed): a missing field and a NaN."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("parquet")
    pq.write_table(
        pa.table({"prompt": ["p", "q"], "label": [True, False]}), root / "no_completion.parquet"
    )
    pq.write_table(
        pa.table(
            {
                "prompt": ["p", "q"],
                "completion": ["a", "b"],
                "label": [True, False],
                "score": [0.5, float("nan")],
            }
        ),
        root / "nan_score.parquet",
    )
    good = root / "good.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]}), good)
    return {
        "no_completion.parquet": ("record 1", "completion", "missing"),
        "nan_score.parquet": ("record 2", "score", "finite"),
    }, root


def test_bad_corpus_is_large_enough():
    assert len(BAD) >= 15 and sorted(BAD) == sorted(p.name for p in (DATA / "bad").iterdir())


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_files_load(name):
    kind, counts = GOOD[name]
    ds = load_feedback(str(DATA / "good" / name))
    assert ds.kind == kind
    for key, value in counts.items():
        assert ds.counts()[key] == value


def test_record_contents():
    ds = load_feedback(str(DATA / "good" / "unpaired.jsonl"))
    first = ds.records[0]
    assert first == Unpaired("Rate the soup.", "It was lovely.", True, 0.8, {})
    assert ds.records[2].extra == {"source": "web"}
    implicit = load_feedback(str(DATA / "good" / "implicit_prompt_paired.jsonl")).records[0]
    assert isinstance(implicit, Paired)
    assert implicit.prompt == [{"role": "user", "content": "Hi?"}]
    assert implicit.chosen == [{"role": "assistant", "content": "Hello!"}]
    csv_ds = load_feedback(str(DATA / "good" / "unpaired.csv"))
    assert csv_ds.records[0].completion == "Superb, with a\nsecond line."


def _check_one_line(err: str, path: Path, where, field, words):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and str(path) in line
    if where:
        assert f":{where}:" in line, line
    if field:
        assert f"field '{field}'" in line, line
    assert words in line, line


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_one_line_exit_2(name, capsys):
    path = DATA / "bad" / name
    assert main(["data", "inspect", str(path)]) == 2
    captured = capsys.readouterr()
    _check_one_line(captured.err, path, *BAD[name])
    assert captured.out == ""


def test_bad_parquet(bad_parquet, capsys):
    cases, root = bad_parquet
    for name, expected in cases.items():
        assert main(["data", "inspect", str(root / name)]) == 2
        _check_one_line(capsys.readouterr().err, root / name, *expected)
    assert load_feedback(str(root / "good.parquet")).kind == "paired"


def test_process_exit_code_and_no_traceback():
    path = DATA / "bad" / "label_yes.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "anyfeedback.cli", "data", "inspect", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    _check_one_line(proc.stderr, path, *BAD["label_yes.jsonl"])


def test_all_problems_lists_several(capsys):
    path = DATA / "bad" / "label_yes.jsonl"
    assert main(["data", "inspect", "--all-problems", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["data", "inspect", "--all-problems", str(DATA / "bad" / "mixed_kinds.jsonl")]) == 2


def test_inspect_prints_stats(capsys):
    assert main(["data", "inspect", str(DATA / "good" / "unpaired.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "unpaired" in out and "accepted 2" in out and "rejected 1" in out
    assert main(["data", "inspect", "--json", str(DATA / "good" / "paired.jsonl")]) == 0
    assert '"pairs": 2' in capsys.readouterr().out


def test_unknown_sources():
    with pytest.raises(InputError, match="no such file"):
        load_feedback("definitely/not/here.jsonl")
    with pytest.raises(InputError, match="unknown kind"):
        load_feedback(str(DATA / "good" / "paired.jsonl"), kind="pairs")
    with pytest.raises(InputError, match="missing"):  # forcing a kind the fields don't meet
        load_feedback(str(DATA / "good" / "demos.json"), kind="unpaired")


def test_saved_hf_dataset_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"prompt": "p", "completion": "c", "label": True}])
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = load_feedback(str(tmp_path / "saved"))
    assert loaded.kind == "unpaired" and len(loaded) == 1
