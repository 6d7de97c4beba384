"""What each web cluster is about: its most distinctive terms by class-based TF-IDF (docs/design.md §6, paper A.5, A.8).

c-TF-IDF (Grootendorst, 2022, as BERTopic defines it) treats all documents of a cluster as one document:

    W(t, c) = tf(t, c) · log(1 + A / f(t))

    tf(t, c)  count of term t in cluster c divided by the number of (counted) words of cluster c
    f(t)      count of term t over all clusters
    A         average number of (counted) words per cluster, over the k clusters

Terms are lowercase word tokens of two or more characters (scikit-learn's CountVectorizer) with English stop words
removed. A is the exact mean; BERTopic's implementation truncates it to an integer, which changes no ranking within
a cluster on real corpora. A cluster's terms are those with W > 0, highest first, ties broken alphabetically.

The paper labels clusters with an LLM (A.5: explain with positives and negatives, then judge on held-out texts). That
is an optional plug-in here: a `ClusterAnnotator` turns a cluster's texts and terms into a description; the offline
default, `TermsAnnotator`, joins the top terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

__all__ = ["class_tfidf", "cluster_terms", "ClusterAnnotator", "TermsAnnotator", "describe_clusters"]


def _check(texts: Sequence[str], labels: np.ndarray, k: int) -> np.ndarray:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(texts):
        raise ValueError(f"labels must be 1-D with one cluster per text: {labels.shape} labels, {len(texts)} texts")
    if len(texts) == 0:
        raise ValueError("no texts to describe")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be integers in [0, {k})")
    return labels.astype(np.int64, copy=False)


def class_tfidf(counts: sparse.spmatrix | np.ndarray) -> sparse.csr_matrix:
    """c-TF-IDF W [k, V] of a cluster × term count matrix (the formula of the module docstring), float64."""
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    words = np.asarray(counts.sum(axis=1)).ravel()  # counted words per cluster
    freq = np.asarray(counts.sum(axis=0)).ravel()  # f(t)
    avg = words.mean()  # A
    with np.errstate(divide="ignore", invalid="ignore"):
        idf = np.log1p(avg / freq)  # a term that never occurs has no entries below, so its inf is never used
    tf = sparse.diags(np.divide(1.0, words, out=np.zeros_like(words), where=words > 0)) @ counts
    return sparse.csr_matrix(tf @ sparse.diags(np.where(freq > 0, idf, 0.0)))


def _term_counts(texts: Sequence[str], labels: np.ndarray, k: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    vectorizer = CountVectorizer(stop_words="english")
    try:
        docs = vectorizer.fit_transform(texts)  # vocabulary sorted alphabetically: term index order = alphabetical
    except ValueError as e:
        raise ValueError(f"no terms to rank: the texts hold only stop words or no words ({e})") from None
    onehot = sparse.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    return sparse.csr_matrix(onehot @ docs), vectorizer.get_feature_names_out()


def cluster_terms(texts: Sequence[str], labels: np.ndarray, k: int, top_n: int = 10) -> list[list[str]]:
    """The `top_n` terms of highest c-TF-IDF for each cluster 0..k-1 (fewer if the cluster has fewer terms)."""
    labels = _check(texts, labels, k)
    if top_n < 1:
        raise ValueError(f"top_n must be positive, got {top_n}")
    counts, names = _term_counts(texts, labels, k)
    weights = class_tfidf(counts)
    out = []
    for c in range(k):
        row = weights.getrow(c)
        keep = row.data > 0
        idx, w = row.indices[keep], row.data[keep]
        order = np.lexsort((idx, -w))[:top_n]  # highest weight first, then term index = alphabetical
        out.append([str(names[j]) for j in idx[order]])
    return out


class ClusterAnnotator(Protocol):
    """Describes one cluster (e.g. an LLM prompted with its texts and terms, paper A.5)."""

    def describe(self, cluster_texts: list[str], terms: list[str]) -> str: ...


@dataclass(frozen=True)
class TermsAnnotator:
    """The offline annotator: the cluster's first `top_n` c-TF-IDF terms, joined."""

    top_n: int = 5
    sep: str = ", "

    def describe(self, cluster_texts: list[str], terms: list[str]) -> str:
        return self.sep.join(terms[:self.top_n])


def describe_clusters(texts: Sequence[str], labels: np.ndarray, k: int, annotator: ClusterAnnotator | None = None,
                      top_n: int = 10) -> list[str]:
    """One description per cluster 0..k-1 from `annotator` (default TermsAnnotator), given its texts and top terms."""
    annotator = annotator or TermsAnnotator()
    labels = _check(texts, labels, k)
    terms = cluster_terms(texts, labels, k, top_n)
    by_cluster: list[list[str]] = [[] for _ in range(k)]
    for text, c in zip(texts, labels):
        by_cluster[c].append(text)
    return [annotator.describe(by_cluster[c], terms[c]) for c in range(k)]
