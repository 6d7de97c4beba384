"""The selection pool and its probes (docs/design.md §6): a seeded sample of D_web; held-out probes first."""

import numpy as np
import pytest

from salad.selection.pool import choose_probes, pool_sample


def test_pool_sample_is_seeded_without_replacement_and_keeps_web_order():
    web = [{"id": str(i)} for i in range(50)]
    a = pool_sample(web, 20, seed=0)
    assert a == pool_sample(web, 20, seed=0) and a != pool_sample(web, 20, seed=1)
    ids = [int(r["id"]) for r in a]
    assert ids == sorted(set(ids)) and len(ids) == 20
    assert pool_sample(web, None, 0) == web
    with pytest.raises(ValueError, match="pool_docs"):
        pool_sample(web, 51, 0)


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
