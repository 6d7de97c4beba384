"""The data plan: Stage II's three sources, budgets as prefixes of the plan, and the ranks' micro-batches."""

import numpy as np
import pytest

from conftest import make_doc
from salad.config import params_from_dict
from salad.training.plan import PlannedBatch, SOURCES, micro_batches, plan_batches, plan_stage2, steps_for_budget


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


def test_a_smaller_budget_is_a_prefix_of_the_plan(tokenizer):
    speech = [make_doc(tokenizer, seed=s)[0] for s in range(4)]
    text = [make_doc(tokenizer, seed=20 + s)[0] for s in range(3)]
    cfg = params_from_dict({"train": {"batch_size": 2, "max_len": 128, "tokens": 20_000}}).train
    small = params_from_dict({"train": {"batch_size": 2, "max_len": 128, "tokens": 5_000}}).train
    plan, prefix = plan_batches(cfg, 0, speech, text), plan_batches(small, 0, speech, text)
    n = steps_for_budget(plan, 5_000)
    assert n == len(prefix) < len(plan)
    assert [(p.kind, p.doc_index, [s.target.tolist() for s in p.seqs]) for p in plan[:n]] == \
        [(p.kind, p.doc_index, [s.target.tolist() for s in p.seqs]) for p in prefix]
    with pytest.raises(ValueError, match="exceeds"):
        steps_for_budget(plan, 10 ** 9)


def test_ranks_take_every_world_size_th_sequence_in_micro_batches():
    planned = PlannedBatch("text", [None] * 7, list(range(7)))
    assert micro_batches(planned, 0, 2, 2) == [[0, 2], [4, 6]]
    assert micro_batches(planned, 1, 2, None) == [[1, 3, 5]]
    assert micro_batches(planned, 0, 1, None) == [list(range(7))]
