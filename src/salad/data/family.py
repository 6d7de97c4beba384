"""The miniature task family's word-level items, mined from held-out text by seeded recipes (prepare writes them).

Why: the six real benchmarks are beyond a 5 M-parameter teacher (all at chance), so no accuracy result of the paper
carries signal in the miniature world. These tasks are within the teacher's reach (measured in explorations/), use
text no model trained on, and have the shape of the real ones: a context, a few choices scored as continuations, one
gold. Their records are the plain layout of salad.evaluation.tasks: {id, context, choices, label}.

- Next-word choice (`next_word_items`): a held-out document's first 10-30 words (a uniform draw, moved forward to
  the first usable word) as context; the true next word against 3 distractors from the same frequency band of the
  teacher's pretraining text (bands of the log2 frequency rank), so that choosing the more frequent word does not
  help. A usable word is lower-case letters only, written without punctuation, and has 3 other words in its band.
  One item per document.
- Agreement minimal pairs (`agreement_items`): the words before an "is", "are", "was", "were", "has" or "have" of a
  held-out document (up to 30, from the sentence's document) as context, the form against its counterpart in number.
  The same number of items for every form, so a preference for the frequent form scores exactly chance: accuracy
  measures agreement, not the prior.
Gold positions are drawn uniformly.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np

__all__ = ["frequency_bands", "next_word_items", "agreement_items", "AGREEMENT_PAIRS"]

_LOWER_WORD = re.compile(r"[a-z]+")
AGREEMENT_PAIRS = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has"}
"""Each form and its counterpart in number."""
MIN_COUNT = 3
"""A word needs this many occurrences in the pretraining text to be in a band (rarer words have no stable rank)."""
CONTEXT_WORDS = (10, 30)
"""Fewest and most words of context."""


def frequency_bands(texts: list[str]) -> dict[str, int]:
    """Every lower-case word seen at least MIN_COUNT times in `texts` -> floor(log2(1 + its frequency rank)), rank 0
    the most frequent (ties broken alphabetically)."""
    counts = Counter(w for text in texts for w in re.findall(r"\b[a-z]+\b", text))
    ranked = sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return {w: int(math.log2(1 + rank)) for rank, w in enumerate(ranked)}


def _with_gold(gold: str, distractors: list[str], rng: np.random.Generator) -> tuple[list[str], int]:
    label = int(rng.integers(len(distractors) + 1))
    return distractors[:label] + [gold] + distractors[label:], label


def next_word_items(docs: list[dict], band: dict[str, int], n: int, rng: np.random.Generator, prefix: str
                    ) -> list[dict]:
    """Up to `n` next-word items, one per document of `docs` in a seeded order (ids `<prefix>-<document id>`)."""
    by_band: dict[int, list[str]] = defaultdict(list)
    for w, b in sorted(band.items()):
        by_band[b].append(w)
    out = []
    for i in rng.permutation(len(docs)):
        words = docs[i]["text"].split()
        start = int(rng.integers(CONTEXT_WORDS[0], CONTEXT_WORDS[1] + 1))
        for k in range(start, min(len(words), CONTEXT_WORDS[1] + 1)):
            gold = words[k]
            if _LOWER_WORD.fullmatch(gold) and gold in band and len(by_band[band[gold]]) > MIN_COUNT:
                pool = [w for w in by_band[band[gold]] if w != gold]
                distractors = [pool[j] for j in rng.choice(len(pool), size=3, replace=False)]
                choices, label = _with_gold(gold, distractors, rng)
                out.append({"id": f"{prefix}-{docs[i]['id']}", "context": " ".join(words[:k]), "choices": choices,
                            "label": label})
                break
        if len(out) == n:
            break
    return out


def agreement_items(docs: list[dict], n_per_form: int, rng: np.random.Generator, prefix: str) -> list[dict]:
    """`n_per_form` items for each form of AGREEMENT_PAIRS (at most one per document and form), from documents in a
    seeded order; fewer only when the documents hold fewer."""
    found: dict[str, list[dict]] = {form: [] for form in AGREEMENT_PAIRS}
    for i in rng.permutation(len(docs)):
        words = docs[i]["text"].split()
        for k in range(5, len(words)):
            form = words[k]
            if form in found and len(found[form]) < n_per_form and _LOWER_WORD.fullmatch(words[k - 1].lower()):
                choices, label = _with_gold(form, [AGREEMENT_PAIRS[form]], rng)
                found[form].append({"id": f"{prefix}-{docs[i]['id']}-{form}",
                                    "context": " ".join(words[max(0, k - CONTEXT_WORDS[1]):k]),
                                    "choices": choices, "label": label})
                break  # one item per document: the first usable form
        if all(len(v) == n_per_form for v in found.values()):
            break
    return round_robin([found[form] for form in AGREEMENT_PAIRS])


def round_robin(groups: list[list[dict]]) -> list[dict]:
    """The groups' items interleaved (the first of each group, then the second of each, ...), so that every prefix
    of the task, such as the first 100 items the grid and Stage II models are scored on, is balanced over them."""
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]
