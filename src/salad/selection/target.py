"""Active selection of Stage II (docs/design.md §6, paper §4.1 eq. 7–8): which web documents to synthesise.

The web corpus D_web is partitioned into K clusters (balanced k-means over sentence embeddings). With M(c) the
misalignment of the Stage I model on the probe documents of cluster c:

    P_web(c)    = |D_web^(c)| / |D_web|
    P_target(c) = P_web(c)·M(c)^γ / Σ_c' P_web(c')·M(c')^γ          γ ≥ 0; γ = 0 gives P_web

Sampling, until the synthesis budget (seconds of audio) is spent: draw a cluster c ~ P_target, draw a document uniformly
from D_web^(c) without replacement, add it to D_active. The rules the paper leaves open are fixed here:

- Budget: the draw stops as soon as the running total of durations reaches the budget (total ≥ budget). The last
  document is always kept, so the total overshoots by less than that document's duration:
  total − durations[last] < budget ≤ total. A rule that never exceeds the budget would have to skip documents that do
  not fit, and so would favour short documents over the cluster-uniform draw that the paper specifies.
- Cluster exhaustion: a cluster whose documents have all been drawn gets probability zero and the others are
  renormalised, i.e. a draw that lands on an empty cluster is redrawn. The same holds for clusters that are empty from
  the start.
- Pool exhaustion: when every cluster with positive probability is exhausted before the budget is reached, the
  selection raises ValueError (stating the budget and what the pool holds): returning less than the budget would
  silently change the experiment, and the fix (a smaller budget or a larger D_web) belongs to the configuration.

Durations are those of the synthesised audio when known, otherwise `estimated_duration` (word count / speaking rate),
an estimate for planning before synthesis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["p_web", "p_target", "select_documents", "estimated_duration"]

_DRAW_CHUNK = 4096  # cluster draws are made in vectorised chunks; a chunk is cut at the first cluster exhaustion


def _labels(labels: np.ndarray, k: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of cluster ids, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64, copy=False)


def _distribution(probs: np.ndarray, what: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1 or probs.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError(f"{what} must be finite and non-negative, got {probs}")
    if abs(probs.sum() - 1.0) > 1e-6:
        raise ValueError(f"{what} must sum to 1, got {probs.sum()!r}")
    return probs


def _per_item(values, shape: tuple, what: str, other: str, item: str, positive: bool, hint: str) -> np.ndarray:
    """`values` as float64 of `shape` (one per `item`), finite and > 0 (`positive`) or >= 0, else a ValueError."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"{what} has shape {values.shape}, {other} has {shape}: one value per {item} is needed")
    bad = np.flatnonzero(~np.isfinite(values) | ((values <= 0) if positive else (values < 0)))
    if bad.size:
        raise ValueError(f"{what} must be finite and {'> 0' if positive else '>= 0'}; {item}s {bad[:10].tolist()} "
                         f"have {values[bad[:10]].tolist()} ({hint})")
    return values


def p_web(labels: np.ndarray, k: int) -> np.ndarray:
    """P_web(c) = |D_web^(c)| / |D_web| for c = 0..k-1 (eq. 7), float64 [k]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    labels = _labels(labels, k)
    return np.bincount(labels, minlength=k) / labels.size


def p_target(p_web: np.ndarray, misalignment: np.ndarray, gamma: float) -> np.ndarray:
    """P_target(c) ∝ P_web(c)·M(c)^γ (eq. 8), float64 [k]; γ = 0 returns P_web itself (as float64).

    Computed in log space (log P_web + γ·log M, shifted by its maximum before exp), so a large γ such as 30 neither
    overflows nor underflows to all zeros. M(c) = 0 with γ > 0 gives P_target(c) = 0.
    """
    pw = _distribution(p_web, "p_web")
    m = _per_item(misalignment, pw.shape, "misalignment", "p_web", "cluster", positive=False,
                  hint="a cluster without probe documents has no M(c): probe it")
    gamma = float(gamma)
    if not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be finite and >= 0, got {gamma}")
    if gamma == 0:  # M^0 = 1 for every M, including M = 0
        return pw.copy()
    with np.errstate(divide="ignore"):
        logw = np.log(pw) + gamma * np.log(m)
    if not np.any(np.isfinite(logw)):
        raise ValueError("P_web(c)·M(c)^γ is zero for every cluster: no cluster has both documents and M(c) > 0")
    w = np.exp(logw - logw[np.isfinite(logw)].max())
    return w / w.sum()


def estimated_duration(text: str, words_per_minute: float) -> float:
    """Estimated audio duration of `text` in seconds: whitespace-separated words / rate.

    An estimate for planning the budget before synthesis; the synthesised audio's real duration differs (speaking
    rate, pauses, numbers read out), so prefer real durations where the audio exists.
    """
    if not np.isfinite(words_per_minute) or words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive, got {words_per_minute}")
    return 60.0 * len(text.split()) / words_per_minute


def select_documents(labels: np.ndarray, probs: np.ndarray, durations: np.ndarray, budget_seconds: float,
                     seed: int) -> list[int]:
    """Indices of the documents drawn for D_active, in draw order (rules in the module docstring).

    labels[i]: cluster of document i, in [0, len(probs)); probs: the cluster distribution (P_target), summing to 1;
    durations[i] > 0: audio duration of document i in seconds; budget_seconds >= 0 (0 selects nothing).
    Deterministic for a seed.
    """
    probs = _distribution(probs, "probs")
    k = len(probs)
    labels = _labels(labels, k)
    durations = _per_item(durations, labels.shape, "durations", "labels", "document", positive=True,
                          hint="a document without speech cannot spend the budget: drop it before selection")
    budget = float(budget_seconds)
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget_seconds must be finite and >= 0, got {budget_seconds}")

    rng = np.random.default_rng(seed)
    # Members of each cluster in a uniformly random order: taking them front to back is drawing uniformly
    # without replacement.
    shuffled = rng.permutation(labels.size)
    members = shuffled[np.argsort(labels[shuffled], kind="stable")]
    start = np.searchsorted(labels[members], np.arange(k + 1))
    taken = np.zeros(k, dtype=np.int64)
    size = np.diff(start)
    live = probs * (size > 0)

    selected: list[int] = []
    total = 0.0
    while total < budget:
        if live.sum() <= 0:
            available = float(durations[np.isin(labels, np.flatnonzero(probs > 0))].sum())
            raise ValueError(
                f"the pool ran out before the budget: {len(selected)} documents, {total:.1f} s drawn of "
                f"budget_seconds={budget:.1f}; clusters with positive probability hold {available:.1f} s in all. "
                f"Lower the budget or enlarge D_web.")
        cdf = np.cumsum(live)
        draws = np.searchsorted(cdf, rng.random(_DRAW_CHUNK) * cdf[-1], side="right")
        # u·cdf[-1] may round up to cdf[-1]: that point belongs to the last cluster that can still be drawn
        for c in np.minimum(draws, np.flatnonzero(live)[-1]):
            i = int(members[start[c] + taken[c]])
            taken[c] += 1
            selected.append(i)
            total += durations[i]
            if total >= budget:
                break
            if taken[c] == size[c]:  # exhausted: renormalise over the rest and redraw the remainder of the chunk
                live[c] = 0.0
                break
    return selected
