"""Stage II sampling (docs/design.md §6): P_web, P_target and the budgeted draw without replacement."""

import numpy as np
import pytest
from scipy import stats

from salad.selection.target import estimated_duration, p_target, p_web, select_documents


def test_p_web_is_cluster_share():
    labels = np.array([0, 2, 2, 1, 2, 0, 2, 2])
    assert p_web(labels, 4).tolist() == [2 / 8, 1 / 8, 5 / 8, 0.0]


def test_gamma_zero_is_p_web_exactly():
    pw = p_web(np.random.default_rng(0).integers(0, 7, size=1000), 7)
    m = np.array([0.3, 1.7, 0.0, 2.5, 0.9, 1.0, 4.0])
    assert np.array_equal(p_target(pw, m, 0), pw)


def test_p_target_matches_formula():
    pw = np.array([0.1, 0.2, 0.3, 0.4])
    m = np.array([2.0, 1.0, 0.5, 3.0])
    w = pw * m ** 5
    np.testing.assert_allclose(p_target(pw, m, 5), w / w.sum(), rtol=1e-12)


def test_larger_gamma_concentrates_on_the_most_misaligned_cluster():
    pw = np.array([0.4, 0.3, 0.2, 0.1])
    m = np.array([1.0, 1.5, 0.8, 2.0])  # cluster 3 is the most misaligned and the rarest
    top = [p_target(pw, m, g)[3] for g in [0, 1, 2, 5, 10, 30]]
    assert all(a < b for a, b in zip(top, top[1:]))
    assert top[0] == pytest.approx(0.1) and top[-1] > 0.999
    # the least misaligned cluster loses mass monotonically
    low = [p_target(pw, m, g)[2] for g in [0, 1, 2, 5, 10, 30]]
    assert all(a > b for a, b in zip(low, low[1:]))


def test_large_gamma_neither_overflows_nor_underflows():
    pw = np.full(4, 0.25)
    for m in (np.array([1e-20, 2e-20, 3e-20, 4e-20]), np.array([1e20, 2e20, 3e20, 4e20])):
        p = p_target(pw, m, 30)
        assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)
        w = np.arange(1.0, 5.0) ** 30  # only the ratios of M matter
        np.testing.assert_allclose(p, w / w.sum(), rtol=1e-9)


def test_zero_misalignment_gets_no_mass_unless_gamma_is_zero():
    pw = np.full(3, 1 / 3)
    assert p_target(pw, np.array([0.0, 1.0, 1.0]), 2).tolist() == [0.0, 0.5, 0.5]


@pytest.mark.parametrize("m, gamma, match", [
    (np.array([1.0, np.nan, 1.0]), 5, "finite"),
    (np.array([1.0, -0.1, 1.0]), 5, ">= 0"),
    (np.zeros(3), 5, "zero for every cluster"),
    (np.ones(3), -1, "gamma"),
    (np.ones(2), 5, "one value per cluster"),
])
def test_p_target_rejects_bad_inputs(m, gamma, match):
    with pytest.raises(ValueError, match=match):
        p_target(np.full(3, 1 / 3), m, gamma)


def test_budget_stops_once_reached_and_overshoots_by_less_than_the_last_document():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=500)
    durations = rng.uniform(1.0, 30.0, size=500)
    for budget in [0.5, 100.0, 1234.5, 3000.0]:
        sel = select_documents(labels, np.full(5, 0.2), durations, budget, seed=3)
        total = durations[sel].sum()
        assert total >= budget
        assert total - durations[sel[-1]] < budget
    assert select_documents(labels, np.full(5, 0.2), durations, 0.0, seed=3) == []


def test_no_document_twice_and_deterministic():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 8, size=2000)
    durations = rng.uniform(5.0, 20.0, size=2000)
    probs = p_target(p_web(labels, 8), rng.uniform(0.5, 2.0, 8), 5)
    a = select_documents(labels, probs, durations, 10_000.0, seed=7)
    assert len(a) == len(set(a)) and all(isinstance(i, int) for i in a)
    assert a == select_documents(labels, probs, durations, 10_000.0, seed=7)
    assert a != select_documents(labels, probs, durations, 10_000.0, seed=8)


def test_draws_within_a_cluster_are_uniform_without_replacement():
    # One cluster of 10 documents, 3 draws per run. Uniform without replacement means: never a repeat, each document
    # in 3/10 of the runs, and the ordered pair (first, second) uniform over the 90 pairs of distinct documents.
    labels = np.zeros(10, dtype=int)
    counts = np.zeros(10)
    pairs = np.zeros((10, 10))
    runs = 2000
    for seed in range(runs):
        sel = select_documents(labels, np.array([1.0]), np.ones(10), 3.0, seed=seed)
        assert len(sel) == 3 == len(set(sel))
        counts[sel] += 1
        pairs[sel[0], sel[1]] += 1
    assert stats.chisquare(counts, np.full(10, 3 * runs / 10)).pvalue > 1e-3
    assert np.trace(pairs) == 0
    off_diagonal = pairs[~np.eye(10, dtype=bool)]
    assert stats.chisquare(off_diagonal).pvalue > 1e-3


def test_cluster_frequencies_follow_p_target():
    k, per = 6, 5000
    labels = np.repeat(np.arange(k), per)
    probs = p_target(p_web(labels, k), np.array([1.0, 1.2, 0.8, 1.5, 1.1, 0.9]), 3)
    sel = select_documents(labels, probs, np.ones(k * per), 6000.0, seed=0)  # far from exhausting any cluster
    observed = np.bincount(labels[sel], minlength=k)
    assert observed.sum() == 6000
    assert stats.chisquare(observed, probs * 6000).pvalue > 1e-3
    # and a wrong distribution is rejected by the same test (the check has power)
    assert stats.chisquare(observed, np.full(k, 1000)).pvalue < 1e-6


def test_exhausted_cluster_is_renormalised_away():
    # Cluster 0 has 3 documents and 90% of the mass: after it runs out, draws follow 1:2 over clusters 1 and 2.
    labels = np.array([0] * 3 + [1] * 3000 + [2] * 3000)
    probs = np.array([0.9, 0.1 / 3, 0.2 / 3])
    sel = select_documents(labels, probs, np.ones(len(labels)), 3003.0, seed=4)
    assert len(sel) == 3003
    assert set(sel) >= {0, 1, 2}  # every document of cluster 0 was drawn
    rest = labels[sel][labels[sel] != 0]
    ones, twos = np.sum(rest == 1), np.sum(rest == 2)
    assert stats.binomtest(int(ones), int(ones + twos), 1 / 3).pvalue > 1e-3


def test_zero_probability_clusters_are_never_drawn():
    labels = np.array([0] * 50 + [1] * 50 + [2] * 50)
    sel = select_documents(labels, np.array([0.5, 0.0, 0.5]), np.ones(150), 80.0, seed=0)
    assert 1 not in set(labels[sel].tolist())


def test_running_out_of_the_pool_raises():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="pool ran out"):
        select_documents(labels, np.array([0.5, 0.5]), np.ones(4), 4.5, seed=0)
    with pytest.raises(ValueError, match="pool ran out"):  # cluster 1 has no probability: only 2 s are available
        select_documents(labels, np.array([1.0, 0.0]), np.ones(4), 3.0, seed=0)
    # exactly the whole pool is fine
    assert sorted(select_documents(labels, np.array([0.5, 0.5]), np.ones(4), 4.0, seed=0)) == [0, 1, 2, 3]


@pytest.mark.parametrize("kwargs, match", [
    (dict(probs=np.array([0.5, 0.6])), "sum to 1"),
    (dict(probs=np.array([1.5, -0.5])), "non-negative"),
    (dict(labels=np.array([0, 2, 1])), r"\[0, 2\)"),
    (dict(durations=np.array([1.0, 0.0, 1.0])), "durations must be finite and > 0"),
    (dict(durations=np.ones(2)), "one value per document"),
    (dict(budget_seconds=float("nan")), "budget_seconds"),
])
def test_select_documents_rejects_bad_inputs(kwargs, match):
    args = dict(labels=np.array([0, 1, 1]), probs=np.array([0.5, 0.5]), durations=np.ones(3), budget_seconds=2.0,
                seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        select_documents(**args)


def test_estimated_duration_is_words_over_rate():
    assert estimated_duration("one two  three\nfour", 120) == pytest.approx(2.0)
    assert estimated_duration("", 150) == 0.0
    with pytest.raises(ValueError, match="words_per_minute"):
        estimated_duration("a b", 0)
