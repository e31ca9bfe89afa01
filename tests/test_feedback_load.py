"""Loading valid feedback: every good file has the right kind, counts and record contents, in
every format (JSONL, JSON, CSV, Parquet, saved HF dataset, Hub id via a stub, directories)."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from anyfeedback.errors import InputError
from anyfeedback.feedback import (
    Demonstration,
    Paired,
    PromptOnly,
    Unpaired,
    load_feedback,
)

GOOD_DIR = Path(__file__).parent / "data" / "good"
USER = {"role": "user", "content": "Rate the hotel."}

# file -> (kind, conversational, expected counts)
GOOD = {
    "unpaired.jsonl": ("unpaired", False, {"records": 3, "accepted": 2, "rejected": 1}),
    "unpaired.csv": ("unpaired", False, {"records": 2, "accepted": 1, "rejected": 1}),
    "paired.jsonl": ("paired", False, {"pairs": 2, "unique_prompts": 2}),
    "paired.csv": ("paired", False, {"pairs": 2}),
    "demos.json": ("demonstration", False, {"demos": 2, "unique_prompts": 1}),
    "demos.csv": ("demonstration", False, {"demos": 1}),
    "prompts.json": ("prompt-only", False, {"prompt_only": 2}),
    "prompts.csv": ("prompt-only", False, {"prompt_only": 2}),
    "conversational_unpaired.jsonl": ("unpaired", True, {"accepted": 1, "rejected": 1}),
    "conversational_paired.jsonl": ("paired", True, {"pairs": 1}),
    "implicit_prompt_paired.jsonl": ("paired", True, {"pairs": 1}),
    "conversational_demos.json": ("demonstration", True, {"demos": 1}),
    "conversational_prompts.jsonl": ("prompt-only", True, {"records": 3, "unique_prompts": 2}),
    "identical_pair.jsonl": ("paired", False, {"pairs": 2}),
    "scores_and_extras.jsonl": ("unpaired", False, {"accepted": 1, "rejected": 1}),
}


def test_good_table_covers_every_good_file():
    assert sorted(GOOD) == sorted(p.name for p in GOOD_DIR.iterdir())


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_files_load(name):
    kind, conversational, counts = GOOD[name]
    ds = load_feedback(str(GOOD_DIR / name))
    assert (ds.kind, ds.conversational, ds.source) == (kind, conversational, str(GOOD_DIR / name))
    for key, value in counts.items():
        assert ds.counts()[key] == value, key


def test_record_contents():
    first = load_feedback(GOOD_DIR / "unpaired.jsonl").records
    assert first[0] == Unpaired("Rate the soup.", "It was lovely.", True, 0.8, {})
    assert first[2].extra == {"source": "web"} and first[2].score is None
    ds = load_feedback(GOOD_DIR / "unpaired.jsonl")
    assert [r.completion for r in ds.accepted] == ["It was lovely.", "Fresh and warm."]
    assert [r.completion for r in ds.rejected] == ["It was cold."]


def test_conversational_records_keep_messages():
    (implicit,) = load_feedback(GOOD_DIR / "implicit_prompt_paired.jsonl").records
    assert implicit == Paired(
        [{"role": "user", "content": "Hi?"}],
        [{"role": "assistant", "content": "Hello!"}],
        [{"role": "assistant", "content": "No."}],
    )
    un = load_feedback(GOOD_DIR / "conversational_unpaired.jsonl").records
    assert un[0].prompt == [{"role": "system", "content": "Be brief."}, USER]
    assert un[1].completion == [{"role": "assistant", "content": "Noisy."}]
    demo = load_feedback(GOOD_DIR / "conversational_demos.json").records[0]
    assert isinstance(demo, Demonstration) and demo.completion[0]["role"] == "assistant"


def test_csv_values():
    un = load_feedback(GOOD_DIR / "unpaired.csv").records
    assert un[0].completion == "Superb, with a\nsecond line." and un[1].label is False
    pairs = load_feedback(GOOD_DIR / "paired.csv").records
    assert (pairs[0].score_chosen, pairs[0].score_rejected) == (0.9, None)
    assert pairs[1].chosen == "Bye, take care." and pairs[1].extra == {}
    (demo,) = load_feedback(GOOD_DIR / "demos.csv").records
    assert demo.score == 1.5  # `reward` is read as the score
    assert load_feedback(GOOD_DIR / "prompts.csv").prompts[1] == "Say something\nlong."


@pytest.mark.parametrize("text", ["true", " TRUE ", "1", "True"])
def test_csv_labels_true(tmp_path, text):
    path = tmp_path / "l.csv"
    path.write_text(f"prompt,completion,label\np,c,{text}\np,d,false\n")
    assert [r.label for r in load_feedback(path)] == [True, False]


def test_csv_bom_blank_lines_crlf(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,completion,label\r\n\r\np,c,1\r\np,d,0\r\n")
    ds = load_feedback(path)
    assert [(r.prompt, r.completion, r.label) for r in ds] == [("p", "c", True), ("p", "d", False)]


def test_scores_and_extras():
    a, b = load_feedback(GOOD_DIR / "scores_and_extras.jsonl").records
    assert a.score == 1.0 and a.extra == {"score_chosen": 3, "annotator": "a1"}
    assert b.score == -1.0 and b.extra == {"reward": -2.0}  # `score` wins over `reward`


def test_kind_option():
    assert load_feedback(GOOD_DIR / "prompts.json", kind="prompt").kind == "prompt-only"
    prompts = load_feedback(GOOD_DIR / "paired.jsonl", kind="prompt-only")
    assert prompts.records[0] == PromptOnly(
        "Say hi.", {"chosen": "Hello there!", "rejected": "Go away."}
    )
    implicit = load_feedback(GOOD_DIR / "implicit_prompt_paired.jsonl", kind="prompt-only")
    assert implicit.prompts == [[{"role": "user", "content": "Hi?"}]]
    with pytest.raises(InputError, match="unknown kind 'pairs'"):
        load_feedback(GOOD_DIR / "paired.jsonl", kind="pairs")
    with pytest.raises(InputError, match="field 'label': missing"):  # fields don't meet the kind
        load_feedback(GOOD_DIR / "demos.json", kind="unpaired")
    with pytest.raises(InputError, match="in a demonstration dataset .kind given"):
        load_feedback(GOOD_DIR / "unpaired.jsonl", kind="demonstration")


def _union_table(rows):
    import pyarrow as pa

    keys = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({k: [row.get(k) for row in rows] for k in keys})


def _raw_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    data = json.loads(path.read_text())
    return data["data"] if isinstance(data, dict) else data


def _without_nulls(record):
    return dataclasses.replace(
        record, extra={k: v for k, v in record.extra.items() if v is not None}
    )


JSON_GOOD = sorted(n for n in GOOD if not n.endswith(".csv"))


def test_parquet_round_trip_of_every_json_file(tmp_path):
    """Each JSON/JSONL good file written as Parquet (union of columns, nulls where absent)
    loads to the same records: a null column is no field."""
    import pyarrow.parquet as pq

    for name in JSON_GOOD:
        original = load_feedback(GOOD_DIR / name)
        path = tmp_path / f"{name}.parquet"
        pq.write_table(_union_table(_raw_rows(GOOD_DIR / name)), path)
        loaded = load_feedback(path)
        assert loaded.kind == original.kind, name
        assert [_without_nulls(r) for r in loaded] == list(original), name


def test_saved_dataset_directory_and_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _raw_rows(GOOD_DIR / "conversational_unpaired.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    loaded = load_feedback(tmp_path / "one")
    assert (
        loaded.kind == "unpaired"
        and loaded.records == load_feedback(GOOD_DIR / "conversational_unpaired.jsonl").records
    )
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert len(load_feedback(tmp_path / "dict", split="test")) == 2
    with pytest.raises(InputError, match="no split 'train' .has: test."):
        load_feedback(tmp_path / "dict")


def test_hub_id_goes_through_load_dataset(monkeypatch):
    """No network: `datasets.load_dataset` is stubbed with an UltraFeedback-shaped dataset
    (implicit-prompt conversational pairs with score_chosen / score_rejected)."""
    datasets = pytest.importorskip("datasets")
    row = {
        "chosen": [USER, {"role": "assistant", "content": "Quiet."}],
        "rejected": [USER, {"role": "assistant", "content": "Loud."}],
        "score_chosen": 8.0,
        "score_rejected": 3.5,
    }
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list([row])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_feedback("someone/prefs", split="train_prefs")
    assert calls == [("someone/prefs", "train_prefs")]
    assert ds.records == [Paired([USER], [row["chosen"][1]], [row["rejected"][1]], 8.0, 3.5, {})]
    assert ds.records[0].extra == {}


def test_hub_failure_is_one_clean_line(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(name, split):
        raise ConnectionError("Couldn't reach the Hub\n(offline mode)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError) as err:
        load_feedback("someone/missing")
    assert str(err.value) == (
        "someone/missing: no such local file, and not loadable as a Hub dataset: "
        "Couldn't reach the Hub"
    )


@pytest.mark.parametrize("source", ["not/a/hub/id", "prefs", "missing.jsonl", "a/b.jsonl"])
def test_missing_local_paths_are_not_hub_ids(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no such file or directory"):
        load_feedback(source)


def test_directory_of_files(tmp_path):
    (tmp_path / "b.csv").write_text("prompt,completion,label\nq,d,false\n")
    (tmp_path / "a.jsonl").write_text('{"prompt": "p", "completion": "c", "label": true}\n')
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_feedback(tmp_path)
    assert [(r.prompt, r.label) for r in ds] == [("p", True), ("q", False)]
    (tmp_path / "c.json").write_text('[{"prompt": "r", "completion": "e", "label": "false"}]')
    with pytest.raises(InputError, match=r"c.json:record 1: field 'label'"):
        load_feedback(tmp_path)  # CSV's text labels do not leak into JSON files


def test_import_is_light():
    code = (
        "import sys, anyfeedback.feedback\n"
        "print(','.join(m for m in ('torch', 'transformers', 'datasets', 'matplotlib',"
        " 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
