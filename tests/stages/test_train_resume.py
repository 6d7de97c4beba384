"""Training on the tiny CI profile, in process (the `world` fixture of conftest): a killed run resumes from its
checkpoint to the same result."""

import dataclasses
from pathlib import Path

import pytest
import torch

from salad.stages.train import train

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run(world_root, params, name, stop_after=None):
    return train(params, world_root / "teacher", world_root / "prepared", world_root / "speech",
                 world_root / "features", world_root / name, world_root / f"live_{name}", world_root / f"{name}.json",
                 world_root / f"ckpt_{name}", stop_after=stop_after)


def weights(path: Path) -> dict:
    from salad.model.speech_lm import SpeechAdaptedLM
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


def loss_curve(live_dir: Path) -> list[float]:
    rows = (live_dir / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[-1]) for r in rows]


def every_step(params, **train):
    """Log every step; α = 0.5 so that the compared losses are O(1) (a KL of 1e-6 is float32 noise, not a test)."""
    return dataclasses.replace(params, alpha=0.5, train=dataclasses.replace(params.train, log_every=1, **train))


def test_budget_branched_from_the_stable_phase_equals_a_run_with_that_budget(world):
    root, params = world
    (budget,) = params.train.budgets
    branched = run(root, params, "branched")
    alone = run(root, dataclasses.replace(params, train=dataclasses.replace(params.train, tokens=budget, budgets=())),
                 "alone")
    assert branched["budgets"][str(budget)] == {k: alone[k] for k in ("steps", "positions", "final_loss")}
    assert branched["budgets"][str(budget)]["steps"] < branched["steps"]
    a, b = weights(root / "branched" / "budgets" / str(budget)), weights(root / "alone")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the main run's pre-decay state is kept for Stage II, at the main run's decay start
    from salad.training.schedule import decay_start
    state = torch.load(root / "branched" / "pre_decay.pt", weights_only=False)
    assert state["next_step"] == decay_start(branched["steps"], params.train.decay_fraction)


def test_micro_batches_give_the_whole_step_update(world):
    root, params = world
    whole = every_step(params, micro_batch_size=None, budgets=())
    micro = every_step(params, micro_batch_size=1, budgets=())
    run(root, whole, "whole")
    run(root, micro, "micro")
    a, b = loss_curve(root / "live_whole"), loss_curve(root / "live_micro")
    assert len(a) == len(b) > 3
    assert a == pytest.approx(b, rel=1e-5)


def test_two_torchrun_processes_reproduce_the_one_process_loss_curve(world, tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    root, params = world
    one = every_step(params, budgets=(), checkpoint_every=0)
    run(root, one, "one")
    raw = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    raw["alpha"] = 0.5
    raw["train"].update(log_every=1, budgets=[], checkpoint_every=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "salad.cli", "train", "--params", str(tmp_path / "params.yaml"), "--teacher", str(root / "teacher"),
           "--prepared", str(root / "prepared"), "--speech", str(root / "speech"), "--features",
           str(root / "features"), "--out", str(tmp_path / "two"), "--live", str(tmp_path / "live_two"),
           "--metrics", str(tmp_path / "two.json"), "--checkpoints", str(tmp_path / "ckpt_two")]
    # timeout: a hang guard, far above the expected time
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = loss_curve(root / "live_one"), loss_curve(tmp_path / "live_two")
    assert len(a) == len(b) > 3
    assert a == pytest.approx(b, rel=1e-5)
    w1, w2 = weights(root / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-4) for k in w1)
