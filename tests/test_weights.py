"""cropmix.models.weights: checkpoints are read with weights_only=True, so a crafted .pt runs nothing."""

from __future__ import annotations

import pathlib
import random

import numpy as np
import pytest
import torch

from cropmix.cli import main
from cropmix.models import build_model
from cropmix.models.weights import load_checkpoint, load_pretrained
from cropmix.train import TrainConfig
from cropmix.train.checkpoint import rng_states, save_atomic, set_rng_states


class Touch:
    """Unpickling this object creates the file `target` (a stand-in for any code a crafted file could run)."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


@pytest.fixture
def crafted(tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    target = tmp_path / "pwned"
    path = tmp_path / "crafted.pt"
    torch.save({"model": {}, "epoch": 1, "step": 1, "payload": Touch(target)}, path)
    assert not target.exists()
    return path, target


def test_load_checkpoint_refuses_objects_and_names_the_file(crafted):
    path, target = crafted
    with pytest.raises(ValueError, match="crafted.pt.*cannot be read safely"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="crafted.pt.*cannot be read safely"):  # `cropmix train --init`
        load_pretrained(build_model("fastnet", 4, widths=(8, 8, 16, 16)), path)
    assert not target.exists()


def test_the_cli_never_runs_a_crafted_checkpoint(tmp_path, crafted, capsys):
    path, target = crafted
    # pretrain --eval-only, eval of a run folder, and train --init all open the file before any work.
    assert main(["pretrain", "--eval-only", str(path)]) == 2
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig.from_dict(dict(dataset="npz", data=str(tmp_path / "none.npz"), out=str(run), epochs=1)).save(
        run / "config.json"
    )
    (run / "checkpoint.pt").write_bytes(path.read_bytes())
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot be read safely") == 2 and "crafted.pt" in err and "checkpoint.pt" in err
    assert not target.exists()


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    save_atomic({"rng": rng_states()}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_states(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
