"""The data stages of active selection: pool, probes, budget prefix (fast), and the stages end to end (slow)."""

import json

import numpy as np
import pytest

from salad.stages.active import (active_ids, budget_prefix, choose_probes, cluster_stage, embed_stage,
                               misalignment_stage, nearest_centroid, pool_sample, probes_stage, select_stage)


def test_pool_sample_is_seeded_without_replacement_and_keeps_web_order():
    web = [{"id": str(i)} for i in range(50)]
    a = pool_sample(web, 20, seed=0)
    assert a == pool_sample(web, 20, seed=0) and a != pool_sample(web, 20, seed=1)
    ids = [int(r["id"]) for r in a]
    assert ids == sorted(set(ids)) and len(ids) == 20
    assert pool_sample(web, None, 0) == web
    with pytest.raises(ValueError, match="pool_docs"):
        pool_sample(web, 51, 0)


def test_nearest_centroid_is_the_euclidean_argmin():
    rng = np.random.default_rng(0)
    x, mu = rng.normal(size=(40, 5)), rng.normal(size=(6, 5)) * 2
    brute = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest_centroid(x, mu), brute)


def test_probes_take_held_out_documents_first_and_top_up_from_the_cluster_pool():
    held_cluster = np.array([0, 0, 0, 0, 1, 2, 2])      # cluster 0: 4 held out, 1: 1, 2: 2, 3: none
    pool_labels = np.repeat(np.arange(4), 5)
    probes = choose_probes(held_cluster, pool_labels, k=4, per_cluster=3, seed=0)
    assert probes == choose_probes(held_cluster, pool_labels, k=4, per_cluster=3, seed=0)
    for c in range(4):
        mine = [p for p in probes if p[0] == c]
        assert len(mine) == 3
        held = [i for _, s, i in mine if s == "held_out"]
        pool = [i for _, s, i in mine if s == "pool"]
        assert len(held) == min(3, int((held_cluster == c).sum()))
        assert all(held_cluster[i] == c for i in held) and all(pool_labels[i] == c for i in pool)
        assert len(set(pool)) == len(pool)
    with pytest.raises(ValueError, match="cluster 3"):
        choose_probes(held_cluster, pool_labels, k=4, per_cluster=5, seed=0)


def test_budget_prefix_is_the_shortest_prefix_that_reaches_the_budget():
    seconds = [3.0, 4.0, 2.0, 5.0]
    assert budget_prefix(seconds, 0.0) == 0
    assert budget_prefix(seconds, 3.0) == 1        # reached exactly
    assert budget_prefix(seconds, 3.5) == 2
    assert budget_prefix(seconds, 9.0) == 3
    assert budget_prefix(seconds, 14.0) == 4
    with pytest.raises(ValueError, match="plan_margin"):
        budget_prefix(seconds, 14.5)


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

    probes_stage(params, clusters, probes)
    mis = misalignment_stage(params, root / "teacher", stage1, clusters, probes, root / "mis.json")
    assert len(mis["M"]) == cfg.clusters and all(v > 0 and np.isfinite(v) for v in mis["M"])
    assert all(p > 0 for p in mis["positions"])

    pool_probes = {json.loads(line)["id"] for line in open(clusters / "probes.jsonl")
                   if json.loads(line)["source"] == "pool"}
    orders = {}
    for gamma in cfg.gammas:
        sel = select_stage(params, gamma, emb, clusters, root / "mis.json", probes, root / "speech",
                           out / str(gamma), root / f"select-{gamma}.json")
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
