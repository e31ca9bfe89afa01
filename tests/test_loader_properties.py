"""Property tests of the loaders users feed files to: whatever the bytes, a loader returns data or
raises one `InputError` whose one-line message names the file (and, for JSONL, a 1-based line
that exists) — never another exception."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyfeedback.errors import InputError

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# JSON values, records that are nearly valid feedback, and raw text lines
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
fields = st.sampled_from(
    ["prompt", "completion", "label", "chosen", "rejected", "score", "messages", "extra"]
)
records = st.dictionaries(fields, scalars, max_size=5)
good = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=8), "completion": st.text(min_size=1, max_size=8)}
).map(lambda r: {**r, "label": True})
lines = st.one_of(
    records.map(json.dumps),
    good.map(json.dumps),
    st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s),
    st.binary(max_size=12).map(lambda b: b.decode("latin-1")),
)


def _one_line(err: InputError) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text
    return text


@SETTINGS
@given(st.lists(lines, min_size=1, max_size=6), st.booleans())
def test_jsonl_lines_give_records_or_one_input_error_with_a_real_line(rows, latin1):
    from anyfeedback.feedback.loaders import load_feedback

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        text = "\n".join(rows) + "\n"
        path.write_bytes(text.encode("latin-1" if latin1 else "utf-8", errors="replace"))
        try:
            ds = load_feedback(str(path))
        except InputError as err:
            msg = _one_line(err)
            assert str(path) in msg
            number = re.search(r":line (\d+)", msg)
            if number:
                assert 1 <= int(number.group(1)) <= len(text.splitlines())
            assert ":record 0" not in msg
        else:
            assert len(ds) >= 1


def _pool_arrays(draw_shape, nan: bool, kind: str) -> dict:
    m, t = draw_shape
    rng = np.random.default_rng(m * 31 + t)
    arrays = dict(
        obs=rng.normal(size=(m, t, 3)).astype(np.float32),
        act=rng.uniform(-1, 1, size=(m, t, 2)).astype(np.float32),
        reward=rng.normal(size=(m, t)).astype(np.float32),
        quality=np.array(["expert"] * m),
        domain="cartpole",
        task="swingup",
        action_repeat=1,
    )
    if nan and m and t:
        arrays["reward"][0, 0] = np.nan
    if kind == "drop":
        arrays.pop("act")
    elif kind == "strings":
        arrays["obs"] = np.full((m, t, 3), "x")
    elif kind == "flat":
        arrays["obs"] = arrays["obs"].reshape(-1)
    return arrays


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _mangle(blob: bytes, cut: float, flip: int) -> bytes:
    data = bytearray(blob[: max(1, int(len(blob) * cut))])
    if flip and len(data) > 10:
        data[flip % len(data)] ^= 0xFF
    return bytes(data)


npz_cases = st.tuples(
    st.tuples(st.integers(0, 3), st.integers(0, 4)),
    st.booleans(),
    st.sampled_from(["ok", "drop", "strings", "flat"]),
    st.sampled_from([1.0, 1.0, 0.5, 0.1]),
    st.integers(0, 5000),
)


@SETTINGS
@given(npz_cases)
def test_aihf_control_pool_loads_or_one_input_error(case):
    from anyfeedback.control.aihf.data import load_pool

    shape, nan, kind, cut, flip = case
    blob = _mangle(_npz_bytes(_pool_arrays(shape, nan, kind)), cut, flip)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.npz"
        path.write_bytes(blob)
        try:
            pool = load_pool(path)
        except InputError as err:
            assert str(path) in _one_line(err)
        else:
            assert np.isfinite(pool.reward).all() and np.isfinite(pool.obs).all()
            assert pool.reward.shape[0] >= 1


def _transition_arrays(n: int, nan: bool, kind: str) -> dict:
    rng = np.random.default_rng(n)
    arrays = dict(
        observations=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, 3)).astype(np.float32),
        discounts=np.ones(n, np.float32),
    )
    if nan and n:
        arrays["rewards"][n - 1] = np.nan
    if kind == "drop":
        arrays.pop("discounts")
    elif kind == "strings":
        arrays["actions"] = np.full((n, 2), "x")
    elif kind == "flat":
        arrays["observations"] = arrays["observations"].reshape(-1)
    return arrays


@SETTINGS
@given(
    st.integers(0, 5),
    st.booleans(),
    st.sampled_from(["ok", "drop", "strings", "flat"]),
    st.sampled_from([1.0, 1.0, 0.5, 0.1]),
    st.integers(0, 5000),
)
def test_offline_dataset_loads_or_one_input_error(n, nan, kind, cut, flip):
    from anyfeedback.control.offline.dataset import load_npz

    blob = _mangle(_npz_bytes(_transition_arrays(n, nan, kind)), cut, flip)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        path.write_bytes(blob)
        try:
            tr, _ = load_npz(path)
        except InputError as err:
            msg = _one_line(err)
            assert str(path) in msg and ":record 0" not in msg
        else:
            assert len(tr) >= 1 and np.isfinite(tr.rewards).all()


@pytest.mark.parametrize("text", ["just text\n", "PK\x03\x04 truncated"])
def test_a_text_file_is_not_called_pickled_data(tmp_path, text):
    from anyfeedback.control.aihf.data import load_pool

    path = tmp_path / "pool.npz"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_pool(path)
    assert "pickle" not in str(err.value)
    assert zipfile.is_zipfile(path) is False
