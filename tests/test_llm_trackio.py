"""`train --report-to trackio` into trackio's local store (TRACKIO_DIR), read back through
trackio's own API: the run is under project `anyfeedback` and its name, each step holds the
numbers of the matching metrics.jsonl line, and nothing touched the network although the Hub is
online and a token is saved (trackio 0.43 would ask huggingface.co who the token belongs to)."""

from __future__ import annotations

import json
import math
import socket
import sys

import pytest

from anyfeedback.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _refuse_network(monkeypatch) -> list:
    """Every outward connection or name lookup is recorded and fails (a Unix socket is local)."""
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(("connect", address))
        raise OSError("network refused by the test")

    def getaddrinfo(host, *args, **kwargs):
        attempts.append(("getaddrinfo", host))
        raise socket.gaierror("name lookup refused by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def _local_trackio_store(monkeypatch, store) -> None:
    """Point trackio at `store` with no Space, server or bucket configured."""
    for var in (
        "TRACKIO_SPACE_ID",
        "TRACKIO_SERVER_URL",
        "TRACKIO_BUCKET_ID",
        "TRACKIO_DATASET_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    import trackio  # noqa: F401  (a first import reads TRACKIO_DIR from the environment)

    # trackio reads TRACKIO_DIR once, at import, into module constants: repoint every copy
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "trackio" and hasattr(module, "TRACKIO_DIR"):
            monkeypatch.setattr(module, "TRACKIO_DIR", store)
            for sub in ("MEDIA_DIR", "ARTIFACTS_DIR"):
                if hasattr(module, sub):
                    monkeypatch.setattr(module, sub, store / sub.split("_")[0].lower())


def test_trackio_local_store_holds_each_step_of_metrics_jsonl(
    tiny_model, feedback_files, tmp_path, monkeypatch, capsys
):
    store = tmp_path / "trackio"
    _local_trackio_store(monkeypatch, store)
    import huggingface_hub.constants

    # a user with the Hub online and a saved token: nothing should try to use either
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    attempts = _refuse_network(monkeypatch)
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_model), "--data", str(feedback_files["unpaired"])]
    args += ["--out", str(out), "--max-steps", "3", "--batch-size", "4", "--no-progress"]
    args += ["--learning-rate", "1e-3", "--report-to", "trackio", "--run-name", "tiny-pmpo"]
    assert main(args) == 0
    assert attempts == []
    assert capsys.readouterr().out.count("* Run finished.") == 1

    import trackio

    assert trackio.context_vars.current_run.get() is None  # trackio's exit hook has no run left
    from trackio.sqlite_storage import SQLiteStorage

    assert SQLiteStorage.get_project_db_path("anyfeedback").parent == store
    runs = trackio.Api().runs("anyfeedback")
    assert [r.name for r in runs] == ["tiny-pmpo"]
    assert runs[0].config["method"] == "pmpo"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    logs = SQLiteStorage.get_logs("anyfeedback", "tiny-pmpo")
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    for row, entry in zip(rows, logs, strict=True):
        expected = {
            k: v
            for k, v in row.items()
            if k not in ("step", "time")
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
        }
        assert len(expected) > 5
        logged = {k: entry[k] for k in expected if k in entry}
        assert logged == pytest.approx(expected, rel=1e-12, abs=0)
