"""Package-level promises: a light import, a working CLI entry point, safe run-output files."""

import json
import subprocess
import sys

import pytest

from anyfeedback import __version__
from anyfeedback.cli import main
from anyfeedback.errors import InputError
from anyfeedback.runs import MetricsLog, atomic_write_json, plot_metrics, read_metrics


def test_import_is_light():
    """`import anyfeedback` (and the loss core) must not pull in transformers, dm_control,
    matplotlib or datasets: they load only inside the modules that need them."""
    code = (
        "import sys, anyfeedback, anyfeedback.losses, anyfeedback.feedback\n"
        "heavy = [m for m in ('transformers', 'dm_control', 'matplotlib', 'datasets', 'trl')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"anyfeedback {__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("data", "demo"):
        assert command in out


def test_cli_unknown_option_exits_2(capsys):
    assert main(["--no-such-flag"]) == 2


def test_input_error_is_one_line():
    err = InputError("must be a boolean\nnot 'yes'", source="f.jsonl", line=3, field="label")
    assert str(err) == "f.jsonl:line 3: field 'label': must be a boolean not 'yes'"
    assert str(InputError("empty dataset", source="x.csv")) == "x.csv: empty dataset"
    assert str(InputError("bad", record=4, field="prompt")) == "record 4: field 'prompt': bad"


def test_metrics_log_truncates_on_resume_and_skips_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in range(1, 6):
            log.log(step, loss=1.0 / step, bad=float("nan"))
    with open(path, "a") as fh:
        fh.write('{"step": 6, "lo')  # a write torn by SIGKILL
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]
    assert read_metrics(path)[0]["bad"] is None  # NaN is stored as null, the file stays JSON
    log = MetricsLog(path)
    log.truncate_after(3)
    log.log(4, loss=0.0)
    log.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]


def test_atomic_json_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out" / "results.json"
    atomic_write_json(target, {"a": 1.5})
    assert json.loads(target.read_text()) == {"a": 1.5}
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})  # not serialisable: old file kept intact
    assert json.loads(target.read_text()) == {"a": 1.5}
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_plot_metrics(tmp_path):
    rows = [{"step": i, "loss": 1 / (i + 1), "note": "x"} for i in range(5)]
    path = plot_metrics(rows, ["loss", "note", "missing"], tmp_path / "m.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert plot_metrics(rows, ["missing"], tmp_path / "n.png") is None


def test_save_figure_writes_png_atomically_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anyfeedback.runs import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f.png", dpi=50)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number)  # closed: long sweeps do not pile up figures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temporary left behind
