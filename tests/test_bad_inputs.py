"""Every bad input a new user might try, on every command: exit 2, exactly one `error: ...` line
on stderr, no traceback, and `--out` left byte-for-byte as it was (a missing `--out` stays
missing). In-process `anyfeedback.cli.main` calls on tiny files; each case fails before training.

Placeholders in a case's arguments: {model} tiny Llama, {unpaired} {paired} {demos} feedback
files, {out} a fresh run directory, {file} an existing regular file, {full} a non-empty folder
of the user's, {tmp} the test's directory; the other names are the broken inputs that
`bad_input_files.broken_inputs` builds, and `files` adds the mistyped config files of TYPED."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from anyfeedback.cli import main
from bad_input_files import broken_inputs
from conftest_llm import *  # noqa: F403

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["train", "--model", "{model}", "--data", "{unpaired}", "--max-steps", "1", "--no-progress"]
ONLINE = ["online", "--model", "{model}", "--prompts", "demo", "--steps", "1", "--no-progress"]
REWARD = ["reward", "--model", "{model}", "--data", "{paired}", "--max-steps", "1", "--no-progress"]
AIHF = ["aihf", "--model", "{model}", "--demos", "{demos}", "--pairs", "{paired}", "--no-progress"]
SELF = ["self-play", "--model", "{model}", "--demos", "{demos}", "--pairs", "{paired}"]
BANDIT = ["bandit", "run", "--function", "sphere", "--dim", "2", "--evals", "40", "--seeds", "1"]
SWEEP = ["bandit", "sweep", "--function", "sphere", "--dim", "2", "--evals", "40", "--seeds", "1"]
CONTROL = ["control", "--steps", "10", "--no-progress"]
OFFLINE = ["offline", "--dataset", "{pool_npz}", "--no-progress"]
AIHFC = ["aihf-control", "--data", "{pool_npz}", "--no-progress"]
DEMO = ["demo", "--quick"]
BASES = {
    "train": TRAIN,
    "online": ONLINE,
    "reward": REWARD,
    "aihf": AIHF,
    "self-play": SELF,
    "bandit": BANDIT,
    "sweep": SWEEP,
    "control": CONTROL,
    "offline": OFFLINE,
    "aihf-control": AIHFC,
}

# --out problems apply to every command that writes a run directory
OUT_CASES = [("out-file", ["--out", "{file}"]), ("out-empty", ["--out", ""])]
OUT_CASES += [("out-user-folder", ["--out", "{full}"])]
OUT_CASES += [("out-user-folder-overwrite", ["--out", "{full}", "--overwrite"])]

CASES: list = []
for name, base in {**BASES, "demo": DEMO}.items():
    for case, extra in OUT_CASES:
        CASES.append((f"{name}-{case}", [*base, *extra]))

# numbers that are not numbers (NaN / inf) and values out of range, per command
NUMBERS = {
    "train": ["--learning-rate", "--alpha", "--beta", "--weight-decay", "--max-grad-norm"],
    "online": ["--learning-rate", "--alpha", "--beta", "--temperature", "--threshold"],
    "reward": ["--learning-rate", "--eval-fraction", "--weight-decay"],
    "aihf": ["--learning-rate", "--beta", "--reward-clip", "--demo-weight"],
    "self-play": ["--learning-rate", "--beta", "--demo-weight"],
    "bandit": ["--lr", "--ema", "--sigma0", "--target", "--epsilon"],
    "sweep": ["--lr"],
    "control": ["--lr-critic", "--lr-policy", "--gamma", "--tau"],
    "offline": ["--lr-value", "--lr-policy", "--gamma"],
    "aihf-control": ["--lr", "--reward-lr", "--pref-noise"],
}
for name, flags in NUMBERS.items():
    for flag in flags:
        for value in ("nan", "inf"):
            CASES.append((f"{name}{flag}-{value}", [*BASES[name], flag, value, "--out", "{out}"]))

OWN = [
    # train
    ("train-lr-negative", [*TRAIN, "--learning-rate", "-1"]),
    ("train-alpha-2", [*TRAIN, "--alpha", "2"]),
    ("train-batch-0", [*TRAIN, "--batch-size", "0"]),
    ("train-max-steps-0", [*TRAIN, "--max-steps", "0"]),
    ("train-max-steps-word", [*TRAIN, "--max-steps", "abc"]),
    ("train-unknown-flag", [*TRAIN, "--learning-rat", "1e-3"]),
    ("train-method", [*TRAIN, "--method", "ppo"]),
    ("train-scheduler", [*TRAIN, "--lr-scheduler-type", "step"]),
    ("train-reduction", [*TRAIN, "--logp-reduction", "max"]),
    ("train-warmup-negative", [*TRAIN, "--warmup-steps", "-1"]),
    ("train-ref-ema-1.5", [*TRAIN, "--ref-ema", "1.5"]),
    ("train-ema-and-refresh", [*TRAIN, "--ref-ema", "0.1", "--ref-update-every", "2"]),
    ("train-bf16-fp16", [*TRAIN, "--bf16", "--fp16"]),
    ("train-kto-batch-1", [*TRAIN, "--method", "kto", "--batch-size", "1"]),
    ("train-max-length-0", [*TRAIN, "--max-length", "0"]),
    ("train-data-kind", [*TRAIN, "--data-kind", "ranked"]),
    ("train-data-missing", [*TRAIN, "--data", "{tmp}/nope.jsonl"]),
    ("train-data-empty", [*TRAIN, "--data", "{empty_jsonl}"]),
    ("train-data-not-utf8", [*TRAIN, "--data", "{latin1_jsonl}"]),
    ("train-data-bad-json", [*TRAIN, "--data", "{broken_jsonl}"]),
    ("train-data-demos-for-pmpo", [*TRAIN, "--data", "{demos}", "--data-kind", "unpaired"]),
    ("train-dpo-on-unpaired", [*TRAIN, "--method", "dpo"]),
    ("train-aihf-dpo-no-demos", [*TRAIN, "--method", "aihf-dpo", "--data", "{paired}"]),
    ("train-model-missing", [*TRAIN, "--model", "{tmp}/no-model"]),
    ("train-model-bogus-config", [*TRAIN, "--model", "{bogus_model}"]),
    ("train-config-missing", [*TRAIN, "--config", "{tmp}/nope.yaml"]),
    ("train-config-unknown-key", [*TRAIN, "--config", "{cfg_unknown}"]),
    ("train-config-not-utf8", [*TRAIN, "--config", "{cfg_latin1}"]),
    ("train-config-bad-yaml", [*TRAIN, "--config", "{cfg_broken}"]),
    ("train-resume-and-overwrite", [*TRAIN, "--resume", "--overwrite"]),
    ("train-resume-changed-lr", [*TRAIN, "--out", "{run_lr}", "--resume"]),
    ("train-resume-bogus-config", [*TRAIN, "--out", "{run_bogus_cfg}", "--resume"]),
    ("train-resume-other-model", [*TRAIN, "--out", "{run_other_model}", "--resume"]),
    ("train-resume-metrics-not-utf8", [*TRAIN, "--out", "{run_latin1_metrics}", "--resume"]),
    # online
    ("online-k-0", [*ONLINE, "--k", "0"]),
    ("online-k-1", [*ONLINE, "--k", "1"]),
    ("online-k-accept-reject-over-k", [*ONLINE, "--k", "4", "--k-accept", "3", "--k-reject", "2"]),
    ("online-k-accept-reject-0", [*ONLINE, "--k-accept", "0", "--k-reject", "0"]),
    ("online-dpo-k-1", [*ONLINE, "--method", "dpo", "--k", "1"]),
    ("online-method", [*ONLINE, "--method", "ppo"]),
    ("online-labelling", [*ONLINE, "--labelling", "best"]),
    ("online-temperature-0", [*ONLINE, "--temperature", "0"]),
    ("online-top-p-2", [*ONLINE, "--top-p", "2"]),
    ("online-steps-0", [*ONLINE, "--steps", "0"]),
    ("online-backend", [*ONLINE, "--generation-backend", "tgi"]),
    ("online-reward-unknown", [*ONLINE, "--reward", "nope"]),
    ("online-reward-no-module", [*ONLINE, "--reward", "no_such_module:f"]),
    ("online-reward-no-function", [*ONLINE, "--reward", "custom_rewards:missing"]),
    ("online-reward-syntax-error", [*ONLINE, "--reward", "{syntax_py}:f"]),
    ("online-reward-bogus-dir", [*ONLINE, "--reward", "{bogus_model}"]),
    ("online-prompts-missing", [*ONLINE, "--prompts", "{tmp}/nope.jsonl"]),
    ("online-prompts-not-utf8", [*ONLINE, "--prompts", "{latin1_jsonl}"]),
    ("online-resume-changed-k", [*ONLINE, "--out", "{online_run}", "--resume", "--k", "2"]),
    (
        "online-resume-changed-reward",
        [*ONLINE, "--out", "{online_run}", "--resume", "--reward", "custom_rewards:length_reward"],
    ),
    ("online-eval-every-negative", [*ONLINE, "--eval-every", "-1"]),
    # reward
    ("reward-batch-0", [*REWARD, "--batch-size", "0"]),
    ("reward-eval-fraction-1.5", [*REWARD, "--eval-fraction", "1.5"]),
    ("reward-data-unpaired", [*REWARD, "--data", "{unpaired}"]),
    ("reward-data-missing", [*REWARD, "--data", "{tmp}/nope.jsonl"]),
    ("reward-data-not-utf8", [*REWARD, "--data", "{latin1_jsonl}"]),
    ("reward-data-bad-json", [*REWARD, "--data", "{broken_jsonl}"]),
    ("reward-model-bogus-config", [*REWARD, "--model", "{bogus_model}"]),
    ("reward-model-missing", [*REWARD, "--model", "{tmp}/no-model"]),
    ("reward-resume-and-overwrite", [*REWARD, "--resume", "--overwrite"]),
    ("reward-resume-changed-lr", [*REWARD, "--out", "{reward_run}", "--resume"]),
    ("reward-max-steps-0", [*REWARD, "--max-steps", "0"]),
    # aihf and self-play
    ("aihf-beta-negative", [*AIHF, "--beta", "-1"]),
    ("aihf-iterations-0", [*AIHF, "--iterations", "0"]),
    ("aihf-k-0", [*AIHF, "--k", "0"]),
    ("aihf-demo-mode", [*AIHF, "--demo-mode", "guess"]),
    ("aihf-demos-missing", [*AIHF, "--demos", "{tmp}/nope.jsonl"]),
    ("aihf-demos-not-utf8", [*AIHF, "--demos", "{latin1_jsonl}"]),
    ("aihf-pairs-unpaired", [*AIHF, "--pairs", "{unpaired}"]),
    ("aihf-gold-syntax-error", [*AIHF, "--gold-reward", "{syntax_py}:f"]),
    ("self-play-gold-missing-function", [*SELF, "--gold-reward", "{bandit_py}:missing"]),
    ("self-play-gold-no-module", [*SELF, "--gold-reward", "no_such_module:f"]),
    ("aihf-temperature-0", [*AIHF, "--temperature", "0"]),
    ("self-play-beta-negative", [*SELF, "--beta", "-1"]),
    ("self-play-iterations-0", [*SELF, "--iterations", "0"]),
    ("self-play-batch-0", [*SELF, "--batch-size", "0"]),
    ("self-play-epochs-0", [*SELF, "--epochs", "0"]),
    ("self-play-demos-missing", [*SELF, "--demos", "{tmp}/nope.jsonl"]),
    ("self-play-demos-not-utf8", [*SELF, "--demos", "{latin1_jsonl}"]),
    ("self-play-weights-0", [*SELF, "--demo-weight", "0", "--pref-weight", "0"]),
    # bandit
    ("bandit-function-syntax-error", [*BANDIT, "--function", "{syntax_py}:f"]),
    ("bandit-function-raises", [*BANDIT, "--function", "{bandit_py}:raises"]),
    ("bandit-function-strings", [*BANDIT, "--function", "{bandit_py}:strings"]),
    ("bandit-function-wrong-shape", [*BANDIT, "--function", "{bandit_py}:wrong_shape"]),
    ("bandit-function-nan", [*BANDIT, "--function", "{bandit_py}:nan"]),
    ("bandit-function-missing", [*BANDIT, "--function", "{bandit_py}:missing"]),
    ("bandit-function-no-module", [*BANDIT, "--function", "no_such_module:f"]),
    ("bandit-function-unknown", [*BANDIT, "--function", "banana"]),
    ("bandit-methods-alpha-word", [*BANDIT, "--methods", "pmpo:alpha=abc"]),
    ("bandit-methods-unknown", [*BANDIT, "--methods", "ppo"]),
    ("bandit-methods-bad-key", [*BANDIT, "--methods", "pmpo:gamma=1"]),
    ("bandit-dim-0", [*BANDIT, "--dim", "0"]),
    ("bandit-seeds-0", [*BANDIT, "--seeds", "0"]),
    ("bandit-evals-0", [*BANDIT, "--evals", "0"]),
    ("bandit-samples-1", [*BANDIT, "--samples", "1"]),
    ("bandit-ema-2", [*BANDIT, "--ema", "2"]),
    ("bandit-sigma0-negative", [*BANDIT, "--sigma0", "-1"]),
    ("bandit-solver", [*BANDIT, "--solver", "magic"]),
    ("bandit-covariance", [*BANDIT, "--covariance", "banded"]),
    ("bandit-normalization", [*BANDIT, "--normalization", "none"]),
    ("bandit-param", [*BANDIT, "--param", "polar"]),
    ("bandit-first-seed-0", [*BANDIT, "--first-seed", "0", "--methods", "cma-es"]),
    ("sweep-alphas-words", [*SWEEP, "--alphas", "a,b"]),
    ("sweep-betas-word", [*SWEEP, "--betas", "x"]),
    ("sweep-alphas-2", [*SWEEP, "--alphas", "2"]),
    ("sweep-betas-nan", [*SWEEP, "--betas", "nan"]),
    ("sweep-function-unknown", [*SWEEP, "--function", "banana"]),
    ("sweep-dim-0", [*SWEEP, "--dim", "0"]),
    # control, offline, aihf-control
    ("control-steps-0", [*CONTROL, "--steps", "0"]),
    ("control-method", [*CONTROL, "--method", "ppo"]),
    ("control-gamma-1.5", [*CONTROL, "--gamma", "1.5"]),
    ("control-batch-0", [*CONTROL, "--batch-size", "0"]),
    ("control-resume-and-overwrite", [*CONTROL, "--resume", "--overwrite"]),
    ("offline-dataset-missing", [*OFFLINE, "--dataset", "{tmp}/nope.npz"]),
    ("offline-dataset-text", [*OFFLINE, "--dataset", "{file}"]),
    ("offline-dataset-truncated", [*OFFLINE, "--dataset", "{truncated_npz}"]),
    ("offline-methods", [*OFFLINE, "--methods", "ppo"]),
    ("offline-num-seeds-0", [*OFFLINE, "--num-seeds", "0"]),
    ("aihf-control-data-missing", [*AIHFC, "--data", "{tmp}/nope.npz"]),
    ("aihf-control-data-text", [*AIHFC, "--data", "{file}"]),
    ("aihf-control-data-truncated", [*AIHFC, "--data", "{truncated_npz}"]),
    ("aihf-control-nan-rewards", [*AIHFC, "--data", "{pool_nan_reward}"]),
    ("aihf-control-inf-observations", [*AIHFC, "--data", "{pool_inf_obs}"]),
    ("aihf-control-methods", [*AIHFC, "--methods", "ppo"]),
    ("aihf-control-num-demos-0", [*AIHFC, "--num-demos", "0"]),
    ("aihf-control-pref-noise-2", [*AIHFC, "--pref-noise", "2"]),
    # data and plot
    ("data-inspect-missing", ["data", "inspect", "{tmp}/nope.jsonl"]),
    ("data-inspect-not-utf8", ["data", "inspect", "{latin1_jsonl}"]),
    ("data-inspect-bad-json", ["data", "inspect", "{broken_jsonl}"]),
    ("plot-missing", ["plot", "{tmp}/no-run"]),
    ("plot-metrics-not-utf8", ["plot", "{run_latin1_metrics}"]),
]
CASES += [
    (n, a if "--out" in a or a[0] in ("data", "plot") else [*a, "--out", "{out}"]) for n, a in OWN
]

# config files whose values have the wrong type: fixed by the config parser (cli branch)
TYPED = [
    ("train-config-max-steps-2.5", TRAIN, {"max_steps": 2.5}),
    ("train-config-add-eos-no", TRAIN, {"add_eos": "no"}),
    ("train-config-lr-word", TRAIN, {"learning_rate": "fast"}),
    ("train-config-batch-list", TRAIN, {"batch_size": [8]}),
    ("online-config-k-string", ONLINE, {"k": "4.5"}),
    ("online-config-resume-yes", ONLINE, {"resume": "yes"}),
    ("reward-config-max-steps-2.5", REWARD, {"max_steps": 2.5}),
    ("aihf-config-iterations-2.5", AIHF, {"iterations": 2.5}),
]
# (placeholder names without dots: str.format reads "a.5" as an attribute)
CASES += [
    (n, [*b, "--config", "{cfg_" + n.replace(".", "_") + "}", "--out", "{out}"])
    for n, b, _ in TYPED
]


def _tree(root) -> str:
    digest = hashlib.sha256()
    if not os.path.exists(root):
        return "absent"
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


@pytest.fixture
def files(tmp_path, tiny_model, feedback_files):
    """Name → path of every input a case refers to, built in `tmp_path`."""
    f = broken_inputs(tmp_path, tiny_model, feedback_files)
    for name, _, values in TYPED:
        (tmp_path / f"{name}.json").write_text(json.dumps(values))
        f["cfg_" + name.replace(".", "_")] = str(tmp_path / f"{name}.json")
    return f


def _params():
    out = []
    for name, args in CASES:
        out.append(pytest.param(args, id=name))
    return out


@pytest.mark.parametrize("args", _params())
def test_bad_input_exits_2_with_one_line_and_touches_nothing(args, files, capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(__file__))  # custom_rewards for --reward
    argv = [a.format(**files) for a in args]
    watched = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"]
    before = {p: _tree(p) for p in watched}
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert {p: _tree(p) for p in watched} == before
    if any("{out}" in a for a in args):
        assert not os.path.exists(files["out"])


def test_the_suite_has_at_least_150_cases():
    assert len(CASES) >= 150, len(CASES)
