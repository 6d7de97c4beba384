"""Balanced k-means (docs/design.md §6): exact sizes, determinism, quality, input validation; nearest-centroid
placement."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from salad.selection import clustering
from salad.selection.clustering import balanced_kmeans, kmeans_objective, nearest_centroid


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blobs(sizes, d=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d)) * 3
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[truth] + rng.normal(size=(len(truth), d)) * spread).astype(np.float32), truth


def assert_balanced(labels, n, k):
    q, r = divmod(n, k)
    sizes = np.bincount(labels, minlength=k)
    assert labels.shape == (n,) and labels.min() >= 0 and labels.max() < k
    assert set(sizes.tolist()) <= {q, q + 1}
    assert np.sum(sizes == q + 1) == r


@pytest.mark.parametrize("n, k", [(10, 3), (101, 7), (1000, 16), (997, 128), (37, 37), (5, 1), (129, 128), (64, 2)])
def test_sizes_are_floor_or_ceil_exactly(n, k):
    labels, centroids = balanced_kmeans(unit_rows(n, 12, seed=n + k), k, seed=0)
    assert_balanced(labels, n, k)
    assert centroids.shape == (k, 12) and centroids.dtype == np.float32


def test_sizes_are_exact_when_the_data_is_very_unbalanced():
    x, _ = blobs([900, 60, 30, 10], seed=1)  # 90% of the points in one tight blob
    for k in (4, 6, 9):
        assert_balanced(balanced_kmeans(x, k, seed=0)[0], 1000, k)


def test_identical_points_still_split_evenly():
    x = np.ones((50, 4), dtype=np.float32)
    assert_balanced(balanced_kmeans(x, 7, seed=0)[0], 50, 7)


def test_centroids_are_the_means_of_the_returned_clusters():
    x = unit_rows(300, 8, seed=3)
    labels, centroids = balanced_kmeans(x, 5, seed=1)
    for c in range(5):
        np.testing.assert_allclose(centroids[c], x[labels == c].mean(axis=0), atol=1e-6)


def test_deterministic_for_a_seed_and_seed_dependent():
    x = unit_rows(2000, 16, seed=4)
    a_labels, a_centroids = balanced_kmeans(x, 10, seed=5)
    b_labels, b_centroids = balanced_kmeans(x.copy(), 10, seed=5)
    assert a_labels.tobytes() == b_labels.tobytes() and a_centroids.tobytes() == b_centroids.tobytes()
    c_labels, _ = balanced_kmeans(x, 10, seed=6)
    assert not np.array_equal(a_labels, c_labels)


def test_recovers_well_separated_equal_blobs():
    x, truth = blobs([40] * 8, seed=2)
    labels, _ = balanced_kmeans(x, 8, seed=0)
    # each cluster is exactly one blob (a bijection between clusters and blobs)
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
    assert len(pairs) == 8 and len({a for a, _ in pairs}) == 8 and len({b for _, b in pairs}) == 8


def test_blocks_do_not_change_the_result():
    # Blocks only bound memory: the same rows get the same dot products, so the result is the same (catches offsets).
    x, _ = blobs([100] * 5, d=8, spread=0.5, seed=7)
    a, _ = balanced_kmeans(x, 6, seed=0, block=37)
    b, _ = balanced_kmeans(x, 6, seed=0, block=10_000)
    assert np.array_equal(a, b)


def test_objective_far_below_random_balanced_partitions():
    x = np.concatenate([blobs([100] * 6, seed=8)[0], unit_rows(150, 16, seed=9)])
    n, k = len(x), 12
    labels, centroids = balanced_kmeans(x, k, seed=0)
    ours = kmeans_objective(x, labels, centroids)
    rng = np.random.default_rng(0)
    for _ in range(20):
        random_labels = rng.permutation(np.arange(n) % k)
        means = np.stack([x[random_labels == c].mean(axis=0) for c in range(k)])
        assert ours < 0.5 * kmeans_objective(x, random_labels, means)


def test_objective_close_to_unconstrained_kmeans_on_balanced_data():
    # On data whose natural clusters are equal in size, the size constraint costs (almost) nothing.
    from sklearn.cluster import KMeans

    x, _ = blobs([60] * 10, d=8, spread=1.0, seed=10)
    labels, centroids = balanced_kmeans(x, 10, seed=0)
    free = KMeans(10, n_init=5, random_state=0).fit(x).inertia_
    assert kmeans_objective(x, labels, centroids) <= 1.02 * free


def test_assignment_step_is_near_the_exact_balanced_optimum():
    # For fixed means, the price + fill assignment loses at most 10% more score to the size constraint than the
    # exact min-cost balanced assignment (Hungarian on the replicated matrix); without prices it loses far more.
    rng = np.random.default_rng(0)
    worse_without_prices = 0
    for trial in range(3):
        k = 6
        x, _ = blobs(rng.multinomial(600, rng.dirichlet(np.ones(k) * 0.5)), d=8, spread=1.0, seed=trial)
        mu = x[rng.choice(len(x), k, replace=False)]
        half_sq = (0.5 * (mu.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
        s = clustering._scores(x, mu, half_sq)
        prices = clustering._prices(s, np.zeros(k, dtype=np.float32), 50)
        labels, total, _ = clustering._assign(x, mu, prices, None, 128)
        cap = np.bincount(labels, minlength=k)
        cols = np.repeat(np.arange(k), cap)
        rows, picked = linear_sum_assignment(-s[:, cols].astype(np.float64))
        optimum = float(s[rows, cols[picked]].astype(np.float64).sum())
        free = float(s.max(axis=1).astype(np.float64).sum())
        assert total <= optimum + 1e-3
        assert free - total <= 1.1 * (free - optimum) + 1e-3
        _, greedy_total, _ = clustering._assign(x, mu, np.zeros(k, dtype=np.float32), None, 128)
        worse_without_prices += free - greedy_total > 1.1 * (free - optimum)
    assert worse_without_prices >= 2


def test_accepts_float64_and_float16():
    x = unit_rows(200, 8, seed=11)
    a, _ = balanced_kmeans(x.astype(np.float64), 4, seed=0)
    b, _ = balanced_kmeans(x.astype(np.float16), 4, seed=0)
    assert_balanced(a, 200, 4)
    assert_balanced(b, 200, 4)


@pytest.mark.parametrize("x, k, match", [
    (np.zeros((5, 3)), 0, "positive integer"),
    (np.zeros((5, 3)), 6, "k <= n"),
    (np.zeros((5, 3)), 2.0, "positive integer"),
    (np.zeros(5), 2, "2-D"),
    (np.zeros((0, 3)), 1, "non-empty"),
    (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), 2, r"NaN or infinite values \(first: \[1\]\)"),
    (np.array([[0.0, 1.0], [1.0, 0.0], [np.inf, 1.0]]), 2, r"first: \[2\]"),
    (np.array([["a", "b"]]), 1, "real numbers"),
])
def test_rejects_bad_inputs(x, k, match):
    with pytest.raises(ValueError, match=match):
        balanced_kmeans(x, k, seed=0)


def test_rejects_bad_iters():
    with pytest.raises(ValueError, match="iters"):
        balanced_kmeans(np.zeros((5, 3)), 2, seed=0, iters=0)


def test_objective_never_increases_over_iterations():
    # The first t iterations are the same for every iters >= t (same seed), so this traces the objective.
    x = np.concatenate([blobs(np.full(12, 150), d=16, spread=1.5, seed=12)[0], unit_rows(600, 16, seed=13)])
    trace = []
    for t in range(1, 16):
        labels, centroids = balanced_kmeans(x, 24, seed=0, iters=t, tol=0.0)
        trace.append(kmeans_objective(x, labels, centroids))
    assert all(b <= a * (1 + 1e-7) for a, b in zip(trace, trace[1:])), trace
    assert trace[-1] < trace[0]


def test_fill_accepts_the_largest_regrets_of_an_overfull_cluster():
    # Five points propose to cluster 0 (capacity 2) and one to cluster 1 (capacity 4): cluster 0 keeps the two
    # points that lose most by going elsewhere (ties by index), cluster 1 takes its one proposal.
    best = np.array([0, 0, 0, 1, 0, 0])
    regret = np.array([0.1, 0.5, 0.3, 0.0, 0.5, 0.2], dtype=np.float32)
    accept = clustering._accept(best, regret, np.array([2, 4]))
    assert accept.tolist() == [False, True, False, True, True, False]


def test_nearest_centroid_is_the_euclidean_argmin():
    rng = np.random.default_rng(0)
    x, mu = rng.normal(size=(40, 5)), rng.normal(size=(6, 5)) * 2
    brute = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest_centroid(x, mu), brute)
