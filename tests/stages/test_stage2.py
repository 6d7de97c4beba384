"""Stage II: the plan over three sources, the linear decay, and training resumed from Stage I's pre-decay state."""

import numpy as np
import pytest
import torch

import salad.stages.stage2 as stage2_module
from conftest import make_doc
from salad.config import params_from_dict
from salad.model.speech_lm import SpeechAdaptedLM
from salad.stages.stage2 import SOURCES, linear_decay, plan_stage2


def test_linear_decay_goes_from_the_peak_to_zero_without_warmup():
    steps = 7
    # Stage I's decay formula over the whole run: the rate would reach zero one step after the last
    assert [linear_decay(s, steps) for s in range(steps)] == pytest.approx([(steps - s) / (steps + 1)
                                                                             for s in range(steps)])
    with pytest.raises(ValueError):
        linear_decay(steps, steps)


def test_plan_draws_the_three_sources_equally_and_indexes_speech_then_active(tokenizer):
    speech = [make_doc(tokenizer, seed=s)[0] for s in range(5)]
    active = [make_doc(tokenizer, seed=10 + s)[0] for s in range(3)]
    text = [make_doc(tokenizer, seed=20 + s)[0] for s in range(4)]
    cfg = params_from_dict({"train": {"batch_size": 2, "max_len": 128}}).train
    plan, sources = plan_stage2(cfg, 0, 60_000, speech, active, text)
    assert sum(p.positions for p in plan) >= 60_000 > sum(p.positions for p in plan[:-1])
    counts = np.array([sources.count(s) for s in SOURCES])
    assert len(plan) > 150 and np.all(np.abs(counts / len(plan) - 1 / 3) < 0.1), counts
    for planned, source in zip(plan, sources):
        assert planned.kind == ("text" if source == "text" else "speech")
        if source == "speech":
            assert all(0 <= i < len(speech) for i in planned.doc_index)
        elif source == "active":
            assert all(len(speech) <= i < len(speech) + len(active) for i in planned.doc_index)
    again, again_sources = plan_stage2(cfg, 0, 60_000, speech, active, text)
    assert again_sources == sources and [p.doc_index for p in again] == [p.doc_index for p in plan]
    with pytest.raises(ValueError, match="D_active"):
        plan_stage2(cfg, 0, 1000, speech, [], text)


def test_stage2_needs_the_pre_decay_checkpoint(tmp_path):
    params = params_from_dict({})
    with pytest.raises(FileNotFoundError, match="pre_decay.pt"):
        stage2_module.train_stage2(params, 100, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path,
                                   tmp_path, tmp_path / "out", tmp_path / "live", tmp_path / "m.json", tmp_path / "ck")


def run_stage2(root, params, stage1, name, tokens, stop_after=None):
    stage2_module._stop_after = stop_after
    try:
        return stage2_module.train_stage2(params, tokens, root / "teacher", stage1, root / "prepared",
                                          root / "speech", root / "features", root / "speech" / "broad",
                                          root / "features" / "broad", root / name, root / f"live_{name}",
                                          root / f"{name}.json", root / f"ckpt_{name}")
    finally:
        stage2_module._stop_after = None


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
