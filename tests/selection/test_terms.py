"""c-TF-IDF cluster terms (BERTopic's formula) and the annotator plug-in."""

import math

import numpy as np
import pytest

from salad.selection.terms import ClusterAnnotator, TermsAnnotator, class_tfidf, cluster_terms, describe_clusters

TEXTS = [
    "Proteins fold; the protein binds DNA.",  # cluster 0
    "DNA replication and protein synthesis.",  # cluster 0
    "The striker scored a goal in the match.",  # cluster 1
    "The match ended with a late goal.",  # cluster 1
    "Protein bars after the match.",  # cluster 2
]
LABELS = np.array([0, 0, 1, 1, 2])


def test_class_tfidf_equals_the_formula_by_hand():
    # Terms after stop-word removal, per cluster:
    #   0: proteins fold protein binds dna dna replication protein synthesis   (9 words)
    #   1: striker scored goal match match ended late goal                     (8 words)
    #   2: protein bars match                                                  (3 words)
    # A = (9 + 8 + 3) / 3; f(protein) = 2 + 0 + 1 = 3, f(match) = 0 + 2 + 1 = 3, f(dna) = 2, f(goal) = 2, f(bars) = 1
    a = 20 / 3
    expected = {
        (0, "protein"): 2 / 9 * math.log(1 + a / 3),
        (0, "dna"): 2 / 9 * math.log(1 + a / 2),
        (0, "fold"): 1 / 9 * math.log(1 + a / 1),
        (1, "goal"): 2 / 8 * math.log(1 + a / 2),
        (1, "match"): 2 / 8 * math.log(1 + a / 3),
        (2, "protein"): 1 / 3 * math.log(1 + a / 3),
        (2, "bars"): 1 / 3 * math.log(1 + a / 1),
        (2, "dna"): 0.0,
    }
    from salad.selection.terms import _term_counts

    counts, names = _term_counts(TEXTS, LABELS, 3)
    assert counts.sum(axis=1).ravel().tolist() == [[9, 8, 3]]
    weights = class_tfidf(counts).toarray()
    column = {str(t): j for j, t in enumerate(names)}
    for (c, term), value in expected.items():
        assert weights[c, column[term]] == pytest.approx(value, rel=1e-12), (c, term)


def test_class_tfidf_on_a_count_matrix():
    counts = np.array([[4, 0, 1], [0, 2, 2]])
    a = (5 + 4) / 2
    f = np.array([4, 2, 3])
    expected = counts / counts.sum(axis=1, keepdims=True) * np.log1p(a / f)
    np.testing.assert_allclose(class_tfidf(counts).toarray(), expected, rtol=1e-12)


def test_distinctive_words_rank_first_and_stop_words_are_gone():
    terms = cluster_terms(TEXTS, LABELS, 3, top_n=3)
    assert terms[0] == ["dna", "protein", "binds"]  # dna: 2/9·log(1+A/2) > protein: 2/9·log(1+A/3); then 1/9 ties
    assert terms[1] == ["goal", "match", "ended"]
    assert terms[2] == ["bars", "match", "protein"]  # match and protein tie; alphabetical order breaks it
    assert not {"the", "and", "a", "with", "in", "after"} & {t for ts in cluster_terms(TEXTS, LABELS, 3, 50)
                                                             for t in ts}


def test_ties_break_alphabetically_and_empty_clusters_get_no_terms():
    terms = cluster_terms(["zebra apple mango", "kiwi"], np.array([0, 2]), 4, top_n=5)
    assert terms == [["apple", "mango", "zebra"], [], ["kiwi"], []]


def test_bad_inputs():
    with pytest.raises(ValueError, match="one cluster per text"):
        cluster_terms(TEXTS, LABELS[:3], 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cluster_terms(TEXTS, LABELS, 2)
    with pytest.raises(ValueError, match="stop words"):
        cluster_terms(["the and of", "a an"], np.array([0, 1]), 2)


def test_annotators_plug_in():
    assert describe_clusters(TEXTS, LABELS, 3, TermsAnnotator(top_n=2)) == ["dna, protein", "goal, match",
                                                                             "bars, match"]

    class Counting:  # any object with describe() is an annotator, e.g. an LLM client (paper A.5)
        def describe(self, cluster_texts, terms):
            return f"{len(cluster_texts)} texts; {terms[0]}"

    annotator: ClusterAnnotator = Counting()
    assert describe_clusters(TEXTS, LABELS, 3, annotator) == ["2 texts; dna", "2 texts; goal", "1 texts; bars"]
