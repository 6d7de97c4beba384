"""Budgets in audio (docs/design.md §6, paper §4.1): durations of speech stores and the prefix of the draw order
that spends a budget.

A budget is a fraction of D_speech's audio duration. The paper's loop (draw a cluster, draw a document, synthesize
it, add it, until the budget is spent) needs real durations, known only after synthesis. So the draw order
(salad.selection.target, one seeded sampler) is planned on estimated durations (the probe audio's seconds per word)
for (1 + plan_margin) x the largest budget, synthesized, and each budget's D_active is the shortest prefix of that
order whose real audio reaches the budget: exactly the loop's result, at the price of synthesizing at most the margin
in excess. Too small a margin is an error, never a shorter D_active. Because the order is one sampler's, a smaller
budget's D_active is a prefix of a larger one's, as if the loop had stopped earlier; gammas share the seed (common
random numbers), so uniform and active differ only in P_target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from salad.data.documents import load_speech_index

__all__ = ["audio_seconds", "seconds_per_word", "budget_prefix", "active_ids"]


def audio_seconds(store_dir: Path) -> dict[str, float]:
    """Duration in seconds of every document of a speech store, by id."""
    return {r["id"]: r["num_samples"] / r["sample_rate"] for r in load_speech_index(store_dir)}


def seconds_per_word(store_dir: Path) -> float:
    """Seconds of audio per whitespace-separated word of the store's texts (the voice's rate, pauses included)."""
    records = load_speech_index(store_dir)
    words = sum(len(r["text"].split()) for r in records)
    if not words:
        raise ValueError(f"{store_dir}: no words to measure a speaking rate on")
    return sum(r["num_samples"] / r["sample_rate"] for r in records) / words


def budget_prefix(seconds: list[float], budget_seconds: float) -> int:
    """Length of the shortest prefix of `seconds` whose sum reaches `budget_seconds` (the loop of docs/design.md §6)."""
    if budget_seconds <= 0:
        return 0
    total = np.cumsum(seconds)
    n = int(np.searchsorted(total, budget_seconds, side="left")) + 1
    if n > len(seconds):
        raise ValueError(f"the synthesized draw order holds {total[-1] if len(total) else 0:.1f} s, short of the budget "
                         f"of {budget_seconds:.1f} s: raise active.plan_margin (the estimate of durations was low)")
    return n


def active_ids(select_dir: Path, budget: float) -> list[str]:
    """The ids of D_active for `budget` (one of active.budgets) from an active-select output (its selection.json:
    the draw order and each budget's prefix length)."""
    selection = json.loads((Path(select_dir) / "selection.json").read_text())
    if str(float(budget)) not in selection["prefix"]:
        raise ValueError(f"{select_dir}: no D_active for budget {budget}; it has {sorted(selection['prefix'])}")
    return selection["order"][:selection["prefix"][str(float(budget))]]
