"""The data stages of active selection end to end, from embeddings to D_active (slow); their library is tested in
tests/selection/."""

import json

import numpy as np
import pytest

from salad.selection.budget import active_ids
from salad.stages.active import cluster_stage, embed_stage, misalignment_stage, probes_stage, select_stage


@pytest.mark.slow
def test_active_selection_stages_from_embeddings_to_d_active(world, stage1):
    root, params = world
    cfg = params.active
    emb, clusters, probes, out = root / "active_emb", root / "active_clusters", root / "active_probes", root / "act"
    stats = embed_stage(params, root / "prepared", emb)
    assert stats["pool"] == cfg.pool_docs
    x = np.load(emb / "pool.npy")
    assert x.shape == (cfg.pool_docs, stats["dim"]) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)

    m = cluster_stage(params, emb, clusters, root / "clusters.json")
    assert max(m["sizes"]) - min(m["sizes"]) <= 1 and sum(m["sizes"]) == cfg.pool_docs
    assert m["probes"]["held_out"] + m["probes"]["from_pool"] == cfg.clusters * cfg.probes_per_cluster
    assert all(abs(sum(v) - 1) < 1e-4 for v in m["spread"].values()) and len(m["terms"]) == cfg.clusters

    probes_stage(params, clusters, root / "phones", probes)
    mis = misalignment_stage(params, root / "teacher", stage1, clusters, probes, root / "mis.json")
    assert len(mis["M"]) == cfg.clusters and all(v > 0 and np.isfinite(v) for v in mis["M"])
    assert all(p > 0 for p in mis["positions"])

    pool_probes = {json.loads(line)["id"] for line in open(clusters / "probes.jsonl")
                   if json.loads(line)["source"] == "pool"}
    orders = {}
    for gamma in cfg.gammas:
        sel = select_stage(params, gamma, emb, clusters, root / "mis.json", probes, root / "speech",
                           root / "phones", out / str(gamma), root / f"select-{gamma}.json")
        selection = json.loads((out / str(gamma) / "selection.json").read_text())
        orders[gamma] = selection["order"]
        assert not pool_probes & set(selection["order"])
        for budget in cfg.budgets:
            spent = sel["budgets"][str(budget)]
            n = spent["documents"]
            seconds = selection["seconds"][:n]
            # the loop of docs/design.md §6 in real audio: it stops at the first document that reaches the budget
            assert sum(seconds) >= spent["budget_seconds"] > sum(seconds[:-1])
            assert active_ids(out / str(gamma), budget) == selection["order"][:n]
            assert sum(spent["per_cluster"]) == n
    assert orders[0.0] != orders[cfg.gamma]  # P_target differs from P_web, so do the draws
