"""Figure 7: which categories Stage II improves, tested item by item against Stage I.

A Stage II cell is scored on only the first items of each task, too few to test per category, so the
`stage2-categories` stage (salad.stages.stage2.category_stage) scores the active Stage II model (γ = active.gamma at
active.budget) on every item the main `evaluate` stage scored Stage I on, for the tasks of `active.category_tasks`,
in speech mode and every format. `category_gains` pairs the two models' records in each task's prompt format and
tests each category with an exact McNemar test, adjusting over categories
(salad.analysis.statistics.per_category_significance). A category is the task itself, except for MMSU (the paper's
figure, at paper scale), whose items fall into their subject categories.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from salad.analysis.statistics import per_category_significance
from salad.evaluation.benchmarks import HEADLINE
from salad.storage.atomic import read_jsonl


def item_categories(tasks: list[str], mmsu: Path) -> dict[tuple[str, str], str]:
    """{(task, item id): category} for the items of `tasks`' files that have a category of their own (MMSU's
    subjects, read from the prepared `mmsu` file); the other items' category is their task."""
    if "mmsu" not in tasks:
        return {}
    return {("mmsu", f"mmsu/{r['id']}"): f"MMSU {r['category']}" for r in read_jsonl(mmsu)}


def category_gains(stage1_records: Path, stage2_records: Path, formats: dict[str, str],
                   categories: dict[tuple[str, str], str], metric: str = HEADLINE,
                   method: str = "holm") -> pd.DataFrame:
    """Per category: Stage I and Stage II speech accuracy (%) on the same items (each task in its prompt format of
    `formats`), the gain, the items gained and lost, the exact McNemar p and its `method`-adjusted value.
    `categories` maps (task, item id) to a category; an item not in it is in its task's category."""

    def correct(path: Path) -> dict[tuple[str, str], float]:
        return {(r["task"], r["id"]): r[metric] for r in read_jsonl(path)
                if r["task"] in formats and r["mode"] == "speech" and r["format"] == formats[r["task"]]
                and "skipped" not in r}

    before, after = correct(stage1_records), correct(stage2_records)
    keys = sorted(set(before) & set(after))
    if not keys:
        raise ValueError(f"no item of {sorted(formats)} was scored in speech by both {stage1_records} and "
                         f"{stage2_records}")
    missing = [k for k in keys if k[0] == "mmsu" and k not in categories]
    if missing:
        raise KeyError(f"MMSU items {[k[1] for k in missing[:5]]} have no category (is the prepared mmsu.jsonl the "
                       f"one the items were built from?)")
    return per_category_significance([categories.get(k, k[0]) for k in keys], [before[k] for k in keys],
                                     [after[k] for k in keys], method=method)
