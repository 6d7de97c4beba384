"""Training on the tiny CI profile, in process: a killed run resumes from its checkpoint to the same result."""

import dataclasses
from pathlib import Path

import pytest
import torch

import salad.train as train_module
from salad.config import load_params
from salad.encode import encode
from salad.prepare import prepare
from salad.synthesize import synthesize
from salad.teacher import train_teacher

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """prepare → teacher → synthesize → encode on params/ci.yaml, in a temporary directory."""
    root = tmp_path_factory.mktemp("world")
    params = load_params(REPO / "params" / "ci.yaml")
    prepare(params, REPO / "data" / "raw", root / "prepared")
    train_teacher(params, root / "prepared", root / "teacher", root / "live_teacher", root / "teacher.json")
    synthesize(params, root / "prepared", REPO, root / "speech")
    encode(params.encode, root / "speech", root / "features")
    return root, params


def run(world_root, params, name, stop_after=None):
    train_module._stop_after = stop_after
    try:
        return train_module.train(params, world_root / "teacher", world_root / "prepared", world_root / "speech",
                                  world_root / "features", world_root / name, world_root / f"live_{name}",
                                  world_root / f"{name}.json", world_root / f"ckpt_{name}")
    finally:
        train_module._stop_after = None


def weights(path: Path) -> dict:
    from salad.model import SpeechAdaptedLM
    return SpeechAdaptedLM.load(path).state_dict()


def test_killed_run_resumes_bit_for_bit(world, capsys):
    root, params = world
    every = params.train.checkpoint_every
    full = run(root, params, "full")
    assert full["steps"] > every + 1, "the profile must have steps after the first checkpoint"

    with pytest.raises(KeyboardInterrupt):
        run(root, params, "resumed", stop_after=every + 1)  # dies one step after a checkpoint
    assert (root / "ckpt_resumed" / "last.pt").exists() and not (root / "resumed").exists()
    capsys.readouterr()
    resumed = run(root, params, "resumed")
    assert f"at step {every} of {full['steps']}" in capsys.readouterr().err  # it did resume, not restart

    assert resumed == full
    a, b = weights(root / "full"), weights(root / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (root / "ckpt_resumed" / "last.pt").exists()


def test_checkpoint_of_other_params_is_ignored(world, capsys):
    root, params = world
    with pytest.raises(KeyboardInterrupt):
        run(root, params, "other", stop_after=params.train.checkpoint_every + 1)
    changed = dataclasses.replace(params, alpha=0.5)
    capsys.readouterr()
    result = run(root, changed, "other")
    assert "ignoring" in capsys.readouterr().err
    fresh = run(root, changed, "other_fresh")
    assert result == fresh  # the stale α=1 checkpoint was not resumed
