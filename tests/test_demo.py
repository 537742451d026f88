"""``pescore demo --seed BASE``: which seeds and workers the demo gives ``prune.sweep`` (sweep replaced by a recorder)."""
import os

import pytest

from pescore_nb import cli, data, prune, zoo


class Stop(Exception):
    """Raised by the recording sweep: the test needs only its arguments."""


@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def sweep(*args, **kwargs):
        calls.append({**kwargs, "ratios": kwargs.get("ratios", args[2] if len(args) > 2 else None)})
        raise Stop

    monkeypatch.setattr(cli.prune, "sweep", sweep)
    monkeypatch.setattr(cli.zoo, "load", lambda *args, **kwargs: zoo.VGG(6))
    shapes = data.shapes  # cli.data is this module: keep the real function before replacing it
    monkeypatch.setattr(cli.data, "builtin", lambda *args, **kwargs: shapes(12, split="train"))
    monkeypatch.setattr(cli.data, "shapes", lambda *args, **kwargs: shapes(12, split="test"))
    return calls


@pytest.mark.parametrize("argv, seeds", [([], [0, 1, 2, 3]), (["--seed", "7"], [7, 8, 9, 10]),
                                         (["--seed", "14", "--quick"], [14, 15, 16])])
def test_seed_gives_the_sweep_base_and_the_following_seeds(recorded, tmp_path, argv, seeds):
    with pytest.raises(Stop):
        cli.main(["demo", "--out", str(tmp_path / "out"), *argv])
    (call,) = recorded
    assert prune.seed_list(call["seed"], call["seeds"]) == seeds
    assert call["workers"] == len(os.sched_getaffinity(0))
    assert call["finetune"] is not None
    ratios = (cli.QUICK_PRUNE if "--quick" in argv else cli.DEMO_PRUNE).ratios
    assert list(call["ratios"]) == list(ratios)
    quick = "--quick" in argv
    assert call["samples_per_class"] == (cli.QUICK_SAMPLES_PER_CLASS if quick else cli.DEMO_SAMPLES_PER_CLASS)


def test_a_seed_is_a_number(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["demo", "--seed", "seven"])
    assert exit.value.code == 2 and "--seed" in capsys.readouterr().err
