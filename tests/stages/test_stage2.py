"""Stage II: training resumed from Stage I's pre-decay state (its plan: tests/training/test_plan.py; its linear
decay: tests/training/test_schedule.py)."""

import pytest
import torch

from salad.config import params_from_dict
from salad.model.speech_lm import SpeechAdaptedLM
from salad.stages.stage2 import train_stage2


def test_stage2_needs_the_pre_decay_checkpoint(tmp_path):
    params = params_from_dict({})
    with pytest.raises(FileNotFoundError, match="pre_decay.pt"):
        train_stage2(params, 100, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path,
                     tmp_path / "out", tmp_path / "live", tmp_path / "m.json", tmp_path / "ck")


def run_stage2(root, params, stage1, name, tokens, stop_after=None):
    return train_stage2(params, tokens, root / "teacher", stage1, root / "prepared", root / "speech",
                        root / "features", root / "speech" / "broad", root / "features" / "broad", root / name,
                        root / f"live_{name}", root / f"{name}.json", root / f"ckpt_{name}", stop_after=stop_after)


@pytest.mark.slow
def test_stage2_resumes_stage1_before_its_decay_and_a_killed_run_resumes_bit_for_bit(world, stage1, capsys):
    root, params = world
    pre_decay = torch.load(stage1 / "pre_decay.pt", weights_only=False)
    every = params.train.checkpoint_every
    tokens = 6000

    full = run_stage2(root, params, stage1, "s2_full", tokens)
    assert full["steps"] > every + 1 and sum(full["batches"].values()) == full["steps"]
    assert full["active_documents"] == params.synthesize.broad_docs

    with pytest.raises(KeyboardInterrupt):
        run_stage2(root, params, stage1, "s2_resumed", tokens, stop_after=every + 1)
    state = torch.load(root / "ckpt_s2_resumed" / "last.pt", weights_only=False)
    # the optimizer went on from Stage I's pre-decay moments: the LM's step counts add up
    lm_param = next(i for i, g in enumerate(state["optimizer"]["param_groups"]) if g["peak_lr"] == params.train.lr_lm)
    pid = state["optimizer"]["param_groups"][lm_param]["params"][0]
    assert int(state["optimizer"]["state"][pid]["step"]) == int(pre_decay["optimizer"]["state"][pid]["step"]) + every
    capsys.readouterr()
    resumed = run_stage2(root, params, stage1, "s2_resumed", tokens)
    assert f"at step {every} of {full['steps']}" in capsys.readouterr().err
    assert resumed == full
    a = SpeechAdaptedLM.load(root / "s2_full").state_dict()
    b = SpeechAdaptedLM.load(root / "s2_resumed").state_dict()
    s1 = SpeechAdaptedLM.load(stage1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], s1[k]) for k in a)
