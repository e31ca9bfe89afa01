"""The offline NPZ format: a round trip, and malformed files rejected with one line naming the
file, the record and the array (exit 2 from the CLI, nothing written)."""

import numpy as np
import pytest

from anyfeedback.cli import main
from anyfeedback.control.offline.dataset import load_npz, save_npz
from anyfeedback.control.rollouts import Transitions
from anyfeedback.errors import InputError


def _transitions(t: int = 6) -> Transitions:
    """Two episodes of 3 steps; next_observations[t] = observations[t+1] inside an episode."""
    obs = np.arange(t * 2, dtype=np.float32).reshape(t, 2)
    nxt = obs + 2
    return Transitions(
        obs,
        np.full((t, 1), 0.5, np.float32),
        np.ones(t, np.float32),
        np.ones(t, np.float32),
        nxt,
        np.repeat([0, 1], t // 2),
    )


def test_round_trip_and_metadata(tmp_path):
    path = save_npz(
        tmp_path / "d.npz",
        _transitions(),
        behaviour_ids=[0, 0, 0, 1, 1, 1],
        domain="cartpole",
        task="swingup",
        action_repeat=4,
    )
    tr, meta = load_npz(path)
    assert len(tr) == 6 and tr.episode_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert (meta["domain"], meta["task"], meta["action_repeat"]) == ("cartpole", "swingup", 4)
    assert meta["behaviour_ids"].tolist() == [0, 0, 0, 1, 1, 1]


def test_episode_ids_default_from_continuity(tmp_path):
    """Without episode_ids, a new episode starts where next_observations[t−1] ≠ observations[t]."""
    tr = _transitions()
    arrays = {
        k: getattr(tr, k)
        for k in ("observations", "actions", "rewards", "discounts", "next_observations")
    }
    arrays["next_observations"][2] = -1  # breaks continuity between rows 2 and 3
    np.savez(tmp_path / "d.npz", **arrays)
    assert load_npz(tmp_path / "d.npz")[0].episode_ids.tolist() == [0, 0, 0, 1, 1, 1]


def _arrays():
    tr = _transitions()
    return {
        k: getattr(tr, k).copy()
        for k in (
            "observations",
            "actions",
            "rewards",
            "discounts",
            "next_observations",
            "episode_ids",
        )
    }


def _nan_reward(a):
    a["rewards"][4] = np.nan


def _bad_action(a):
    a["actions"][1] = 1.5


def _object_array(a):
    a["rewards"] = np.array([None] * 6, dtype=object)


CASES = {
    "missing": (lambda a: a.pop("discounts"), "field 'discounts': missing array"),
    "length": (
        lambda a: a.update(rewards=a["rewards"][:5]),
        "field 'rewards': has 5 rows but observations has 6",
    ),
    "nan": (_nan_reward, "record 5: field 'rewards': not finite (nan)"),
    "range": (_bad_action, "record 2: field 'actions': must be in [-1, 1]"),
    "shape": (lambda a: a.update(actions=a["actions"][:, 0]), "field 'actions': must have 2 dims"),
    "order": (
        lambda a: a.update(episode_ids=np.array([0, 1, 1, 0, 1, 1])),
        "record 4: field 'episode_ids': must be non-decreasing",
    ),
    "pickle": (_object_array, "field 'rewards': object arrays are not allowed"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_file_one_line_error(tmp_path, case):
    edit, message = CASES[case]
    arrays = _arrays()
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as err:
        load_npz(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text, text


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(InputError, match="not an NPZ file"):
        load_npz(tmp_path / "x.npz")


def test_cli_exit_2_and_nothing_written(tmp_path, capsys):
    arrays = _arrays()
    _nan_reward(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "run"
    code = main(["offline", "--dataset", str(tmp_path / "bad.npz"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err == f"error: {tmp_path / 'bad.npz'}:record 5: field 'rewards': not finite (nan)"
    assert not out.exists()
