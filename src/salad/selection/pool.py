"""The selection pool and its probe documents (docs/design.md §6, paper §4.2, A.8).

The pool is the part of D_web that active selection clusters and draws from: a seeded sample, or all of it. Each
cluster c gets `per_cluster` probe documents, on which the Stage I model's misalignment M(c) is measured. The rule,
fixed here where the paper is silent: first the held-out documents (probe.jsonl) whose nearest centroid is c (a seeded
choice when there are more), then, when fewer are held out, documents of c's own pool drawn with the seed, which then
leave the selection pool (a probe is never selected for training).
"""

from __future__ import annotations

import numpy as np

from salad.random_streams import stream

__all__ = ["pool_sample", "choose_probes"]


def pool_sample(web: list[dict], n: int | None, seed: int) -> list[dict]:
    """The selection pool: `n` documents of D_web drawn without replacement with `seed`, in D_web order (all if None)."""
    if n is None:
        return list(web)
    if n > len(web):
        raise ValueError(f"active.pool_docs is {n} but D_web (web.jsonl) has only {len(web)} documents")
    chosen = np.sort(stream(seed, "selection-pool").choice(len(web), size=n, replace=False))
    return [web[i] for i in chosen]


def choose_probes(held_out_cluster: np.ndarray, pool_labels: np.ndarray, k: int, per_cluster: int,
                  seed: int) -> list[tuple[int, str, int]]:
    """The probes of every cluster as (cluster, "held_out" | "pool", index into probe.jsonl or the pool).

    Held-out documents nearest to c first (a seeded choice of `per_cluster` when there are more), topped up with a
    seeded choice of c's pool documents. A cluster that cannot reach `per_cluster` is an error.
    """
    rng = stream(seed, "probe-choice")
    probes = []
    for c in range(k):
        held = np.flatnonzero(held_out_cluster == c)
        take = np.sort(rng.choice(held, size=per_cluster, replace=False)) if len(held) > per_cluster else held
        probes += [(c, "held_out", int(i)) for i in take]
        missing = per_cluster - len(take)
        if missing:
            members = np.flatnonzero(pool_labels == c)
            if len(members) <= missing:
                raise ValueError(f"cluster {c} has {len(take)} held-out probes and {len(members)} pool documents: "
                                 f"too few for {per_cluster} probes and a pool left to select from; lower "
                                 f"active.probes_per_cluster or active.clusters")
            probes += [(c, "pool", int(i)) for i in np.sort(rng.choice(members, size=missing, replace=False))]
    return probes
