"""Balanced k-means: K clusters whose sizes are all floor(n/K) or ceil(n/K), exactly (docs/design.md §6, paper §4.2).

Objective: the usual k-means sum of squared Euclidean distances Σ_i ||x_i − μ_c(i)||², minimised over partitions with
the prescribed sizes. On L2-normalised embeddings ||x − μ||² = 1 − 2·x·μ + ||μ||², so this is k-means of sentence
embeddings by inner product with the (unnormalised) cluster means; the input need not be normalised.

Algorithm: Lloyd iterations whose assignment step respects the sizes.

1. Init: k-means++ (D² sampling) on a seeded random sample of m = min(n, 256·K) points.
2. Assignment, given the means μ: maximise Σ_i s_{i,c(i)} with s_ic = x_i·μ_c − ||μ_c||²/2 (= −||x_i − μ_c||²/2 up to a
   per-point constant) subject to |c| = cap_c. This is a transportation problem; exact solvers (min-cost flow, or the
   Hungarian method on the n×n matrix with each cluster replicated cap_c times) are far too slow for millions of points,
   so it is solved approximately:
   a. Prices (the LP dual). A price p_c per cluster is fitted on the sample so that, with adjusted scores s_ic − p_c,
      each cluster is the first choice of its share of the sample: Jacobi steps on the dual, each p_c set to the value
      at which exactly cap_c sample points strictly prefer c given the other prices (halved when a step would raise the
      dual), warm-started from the previous iteration. When argmax_c(s_ic − p_c) is balanced, it is an optimal balanced
      assignment (complementary slackness); prices fitted on a sample make the full data's argmax nearly balanced.
   b. Exact fill (regret greedy). Every point proposes to its best open cluster by adjusted score. A cluster that gets
      more proposals than its remaining capacity accepts those with the largest regret (best minus second-best
      adjusted score over open clusters: the points that lose most by going elsewhere; ties by point index) and is
      then full and closed; the rejected points propose again among the open clusters.
   c. Exchange. The previous iteration's labels, improved by pairwise exchanges at unchanged sizes (a point of a whose
      best other cluster is b trades places with a point of b whose best other cluster is a when their summed gain is
      positive), compete with the fresh assignment of a + b; the better of the two is kept.
   The prices carry the quality of the fresh assignment: for fixed means, the score it gives up to the size
   constraint stays close to what the exact optimum gives up, while the fill alone gives up several times more
   (tests/selection/test_clustering.py and benchmarks/active_selection_speed.py measure both against the exact solution).
   The fill alone guarantees the sizes; the exchange makes the objective monotone near convergence, where a fresh
   heuristic assignment is often slightly worse than the previous one.
3. Update: μ_c = mean of the points of c (never empty: every cap is ≥ floor(n/K) ≥ 1).

Each assignment scores at least as well as the previous labels under the same means (2c), and the mean update can
only lower the cost of fixed labels, so the objective never increases. Iterations stop at `iters`, when the labels
repeat, or when the relative decrease of the objective falls below `tol`.

Why the sizes are exact: with q, r = divmod(n, K), the r clusters most demanded under the adjusted scores (ties: lower
index) get capacity q + 1 and the others q, so Σ cap = n. The fill keeps the invariant "remaining capacity = number of
unassigned points": a cluster never accepts more than its remaining capacity, and a round either accepts every proposal
(the end) or fills at least one cluster, which closes. So there are at most K rounds, an unassigned point always has an
open cluster, and at the end every point is assigned and every cluster holds exactly its capacity. Exchanges move
points in pairs between the same two clusters, so they keep every size (and the previous labels were exact).

Cost per iteration, n points of dimension d: O(n·K·d) for the scores (a BLAS matmul per block of `block` rows; later
fill rounds recompute only the still-unassigned rows) + O(n log n) for ordering contested proposals and exchange
candidates + O(n·d) for the means + O(P·m·K) for at most P = 10 price sweeps on the sample. Memory: the input plus
O(block·K + m·K + n + K²); the n×K score matrix is never held whole. Deterministic for a seed: the random draws come
from the seeded generator and every ordering breaks ties explicitly.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["balanced_kmeans", "kmeans_objective", "nearest_centroid"]

SAMPLE_PER_CLUSTER = 256  # sample for k-means++ and the prices: enough to pin K prices, cheap next to one full pass
PRICE_ITERS = 10  # sweeps per Lloyd iteration; warm starts carry the prices across iterations
BLOCK = 32768


def _as_points(x: np.ndarray, k: int, block: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must be a non-empty 2-D array [n, d], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > x.shape[0]:
        raise ValueError(f"k={k} clusters cannot be formed from n={x.shape[0]} points (need k <= n)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    for lo in range(0, len(x), block):  # in blocks: a full boolean copy of millions of rows is wasted memory
        bad = ~np.isfinite(x[lo:lo + block]).all(axis=1)
        if bad.any():
            rows = (lo + np.flatnonzero(bad)[:5]).tolist()
            raise ValueError(f"x has rows with NaN or infinite values (first: {rows}); remove or re-embed them")
    return x


def _capacities(n: int, demand: np.ndarray) -> np.ndarray:
    """floor(n/K) for every cluster, +1 for the n % K clusters with the largest demand (ties: lower index)."""
    k = len(demand)
    q, r = divmod(n, k)
    cap = np.full(k, q, dtype=np.int64)
    cap[np.lexsort((np.arange(k), -demand))[:r]] += 1
    return cap


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    sq = (x.astype(np.float64) ** 2).sum(axis=1)

    def dist2(i: int) -> np.ndarray:  # ||x − x_i||² through one matrix-vector product (BLAS), clipped at 0
        return np.maximum(sq + sq[i] - 2.0 * (x @ x[i]).astype(np.float64), 0.0)

    chosen = [int(rng.integers(n))]
    d2 = dist2(chosen[0])
    d2[chosen[0]] = 0.0
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            pick = min(int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right")), n - 1)
        else:  # every point coincides with a centre already: any unused point is as good
            unused = np.setdiff1d(np.arange(n), chosen)
            pick = int(unused[rng.integers(len(unused))])
        chosen.append(pick)
        d2 = np.minimum(d2, dist2(pick))
        d2[chosen] = 0.0  # rounding must not let a chosen point be drawn again
    return x[chosen].copy()


def _scores(x: np.ndarray, mu: np.ndarray, half_sq: np.ndarray) -> np.ndarray:
    return x @ mu.T - half_sq


def _top2(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: argmax (first on ties), its value, and the gap to the second largest (inf with one finite column)."""
    rows = np.arange(len(a))
    best = a.argmax(axis=1)
    top = a[rows, best].copy()
    a[rows, best] = -np.inf
    second = a.max(axis=1) if a.shape[1] > 1 else np.full(len(a), -np.inf, dtype=a.dtype)
    a[rows, best] = top
    return best, top, top - second


def _prices(s: np.ndarray, prices: np.ndarray, iters: int) -> np.ndarray:
    """Dual prices that balance argmax_c(s_ic − p_c) over the rows of `s` (see the module docstring, step 2a).

    Minimises the dual D(p) = Σ_i max_c(s_ic − p_c) + Σ_c cap_c·p_c by Jacobi steps: every p_c moves at once to the
    value at which exactly cap_c rows strictly prefer c given the other prices. A step that raises D is retried at
    half length from the last point, so D never increases.
    """
    m, k = s.shape
    rows, cols = np.arange(m), np.arange(k)
    s_t = np.ascontiguousarray(s.T)  # selections run along contiguous rows of [k, m]
    p = prices.astype(np.float64)
    cap, last, step = None, None, 1.0
    for _ in range(iters):
        best, top, gap = _top2(s - p.astype(np.float32))
        demand = np.bincount(best, minlength=k)
        if cap is None:
            cap = _capacities(m, demand)
            tail = int(cap.max()) + 1
            # beyond ~2% the sample's own sampling error (~1/sqrt(share)) dominates what the full data would see
            slack = max(1, int(0.02 * m / k))
        dual = float(top.sum(dtype=np.float64) + (cap * p).sum())
        if last is not None and dual > last[1]:
            step *= 0.5
            p = last[0] + step * (last[2] - last[0])
            continue
        if np.abs(demand - cap).max() <= slack:
            break
        # g[c, i]: the price below which row i strictly prefers c to its best alternative (given the other prices)
        g = s_t - top
        g[best, rows] = s[rows, best] - (top - gap)
        largest = np.sort(np.partition(g, m - tail, axis=1)[:, m - tail:], axis=1)  # ascending, `tail` largest
        target = 0.5 * (largest[cols, tail - cap] + largest[cols, tail - cap - 1]).astype(np.float64)
        target -= target.mean()  # D is unchanged by a common shift; this keeps prices bounded
        last = (p, dual, target)
        p = p + step * (target - p)
    return p.astype(np.float32)


def _accept(best: np.ndarray, regret: np.ndarray, remaining: np.ndarray) -> np.ndarray:
    """Proposals accepted: all of a cluster's if they fit, else its `remaining` largest-regret ones (ties: first)."""
    counts = np.bincount(best, minlength=len(remaining))
    accept = counts[best] <= remaining[best]
    contested = np.flatnonzero(~accept)
    if contested.size:
        order = contested[np.lexsort((contested, -regret[contested], best[contested]))]
        b = best[order]
        rank = np.arange(len(order)) - np.searchsorted(b, b, side="left")
        accept[order[rank < remaining[b]]] = True
    return accept


def _propose(x, rows, mu, half_sq, prices, closed, block):
    """Best open cluster, regret and raw score of each row in `rows` under the adjusted scores."""
    best = np.empty(len(rows), dtype=np.int64)
    regret = np.empty(len(rows), dtype=np.float32)
    raw = np.empty(len(rows), dtype=np.float32)
    for lo in range(0, len(rows), block):
        s = _scores(x[rows[lo:lo + block]], mu, half_sq)
        a = s - prices
        a[:, closed] = -np.inf
        b, _, gap = _top2(a)
        best[lo:lo + block], regret[lo:lo + block] = b, gap
        raw[lo:lo + block] = s[np.arange(len(b)), b]
    return best, regret, raw


def _exchange(previous: np.ndarray, alt: np.ndarray, gain: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """`previous` improved by pairwise exchanges at unchanged sizes, and the score gained (module docstring, 2c).

    Point i of cluster a whose best other cluster is b = alt[i] would gain gain[i] by moving. The points of (a → b)
    and of (b → a), each sorted by decreasing gain, are paired rank by rank; a pair trades places when its summed
    gain is positive. The sums decrease with the rank, so the traded pairs are a prefix and every trade gains.
    """
    n = len(previous)
    key = previous * k + alt
    order = np.lexsort((np.arange(n), -gain, key))
    sorted_key = key[order]
    start = np.searchsorted(sorted_key, np.arange(k * k))
    size = np.bincount(key, minlength=k * k)
    rank = np.arange(n) - start[sorted_key]
    partner_key = alt[order] * k + previous[order]
    paired = np.flatnonzero(rank < size[partner_key])
    partner = order[start[partner_key[paired]] + rank[paired]]
    trade = paired[gain[order[paired]] + gain[partner] > 0]
    moved = order[trade]
    labels = previous.copy()
    labels[moved] = alt[moved]
    return labels, float(gain[moved].sum(dtype=np.float64))


def _assign(x, mu, prices, previous, block):
    """Balanced labels for means `mu` and their total score, and the total score of `previous` under the same means.

    The labels are the better of a fresh assignment (prices + fill) and `previous` improved by exchanges, so their
    score is never below that of `previous`.
    """
    n, k = len(x), len(mu)
    half_sq = 0.5 * (mu.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    best = np.empty(n, dtype=np.int64)
    regret = np.empty(n, dtype=np.float32)
    raw = np.empty(n, dtype=np.float32)
    if previous is not None:
        alt = np.empty(n, dtype=np.int64)
        gain = np.empty(n, dtype=np.float32)
        previous_total = 0.0
    for lo in range(0, n, block):
        s = _scores(x[lo:lo + block], mu, half_sq)
        rows = np.arange(len(s))
        b, _, gap = _top2(s - prices)
        best[lo:lo + block], regret[lo:lo + block], raw[lo:lo + block] = b, gap, s[rows, b]
        if previous is not None:
            own = s[rows, previous[lo:lo + block]]
            previous_total += float(own.sum(dtype=np.float64))
            s[rows, previous[lo:lo + block]] = -np.inf
            a = s.argmax(axis=1)
            alt[lo:lo + block], gain[lo:lo + block] = a, s[rows, a] - own
    cap = _capacities(n, np.bincount(best, minlength=k))
    labels = np.full(n, -1, dtype=np.int64)
    remaining = cap.copy()
    pending = np.arange(n)
    total = 0.0
    while True:
        accept = _accept(best, regret, remaining)
        labels[pending[accept]] = best[accept]
        total += float(raw[accept].sum(dtype=np.float64))
        remaining -= np.bincount(best[accept], minlength=k)
        pending = pending[~accept]
        if not pending.size:
            break
        best, regret, raw = _propose(x, pending, mu, half_sq, prices, remaining == 0, block)
    if not np.array_equal(np.bincount(labels, minlength=k), cap):  # the invariant of the docstring, checked
        raise RuntimeError("balanced assignment broke its capacity invariant")
    if previous is None:
        return labels, total, -np.inf
    kept, gained = _exchange(previous, alt, gain, k) if k > 1 else (previous, 0.0)
    if previous_total + gained >= total:
        return kept, previous_total + gained, previous_total
    return labels, total, previous_total


def _means(x: np.ndarray, labels: np.ndarray, k: int, block: int) -> np.ndarray:
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)  # float64 across blocks: millions of float32 adds drift
    for lo in range(0, len(x), block):
        lab = labels[lo:lo + block]
        onehot = sparse.csr_matrix((np.ones(len(lab), dtype=np.float32), (lab, np.arange(len(lab)))),
                                   shape=(k, len(lab)))
        sums += onehot @ x[lo:lo + block]
    return (sums / np.bincount(labels, minlength=k)[:, None]).astype(np.float32)


def kmeans_objective(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, block: int = BLOCK) -> float:
    """Σ_i ||x_i − centroids[labels_i]||² (float64 accumulation), the quantity balanced_kmeans minimises."""
    x = np.asarray(x, dtype=np.float32)
    total = 0.0
    for lo in range(0, len(x), block):
        diff = x[lo:lo + block] - centroids[labels[lo:lo + block]]
        total += float((diff.astype(np.float64) ** 2).sum())
    return total


def balanced_kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20, tol: float = 1e-6,
                    block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Partition the rows of `x` [n, d] into `k` clusters of sizes floor(n/k) or ceil(n/k), exactly.

    `iters` bounds the Lloyd iterations, `tol` is the relative decrease of the objective below which they stop, and
    `block` the rows scored at once (memory only). Returns (labels int64 [n], centroids float32 [k, d]): the centroids
    are the means of the returned clusters. Raises ValueError for k < 1, k > n, or rows with NaN or infinity.
    """
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    x = _as_points(x, k, block)
    n = len(x)
    rng = np.random.default_rng(seed)
    m = min(n, SAMPLE_PER_CLUSTER * k)
    sample = np.arange(n) if m == n else np.sort(rng.choice(n, size=m, replace=False))
    xs = x[sample]
    mu = _kmeans_pp(xs, k, rng)
    prices = np.zeros(k, dtype=np.float32)
    sum_sq = sum(float((x[lo:lo + block].astype(np.float64) ** 2).sum()) for lo in range(0, n, block))
    labels = None
    for _ in range(iters):
        if k > 1:
            half_sq = 0.5 * (mu.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
            prices = _prices(_scores(xs, mu, half_sq), prices, PRICE_ITERS)
        new, total, previous_total = _assign(x, mu, prices, labels, block)
        if labels is None:
            gain = np.inf
        elif np.array_equal(new, labels):
            break
        else:  # the k-means cost of labels under the current means is Σ||x||² − 2·(their score total)
            gain = 2.0 * (total - previous_total) / max(sum_sq - 2.0 * previous_total, 1e-30)
        labels = new
        mu = _means(x, labels, k, block)
        if gain < tol:
            break
    return labels, mu


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row of x: argmax of x·mu − |mu|²/2.

    Places documents outside the clustered pool (held-out probes, D_speech) in the fitted clusters; unlike the fit's
    assignment, it has no size constraint.
    """
    mu = centroids.astype(np.float64)
    return np.argmax(x.astype(np.float64) @ mu.T - 0.5 * (mu ** 2).sum(axis=1), axis=1)
