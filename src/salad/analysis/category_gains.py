"""Figure 7: which MMSU categories Stage II improves, tested item by item against Stage I.

A Stage II cell is scored on only the first `active.eval_items` items of each task, too few to test per category,
so the `stage2-mmsu` stage (salad.stages.stage2.mmsu_stage) scores the active Stage II model (γ = active.gamma at
active.budget) on every MMSU item the main `evaluate` stage scored Stage I on, in speech mode and every format. `mmsu_category_gains` then pairs the two
models' records in one prompt format and tests each category with an exact McNemar test, adjusting over categories
(salad.analysis.statistics.per_category_significance).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from salad.analysis.statistics import per_category_significance
from salad.evaluation.benchmarks import HEADLINE
from salad.storage.atomic import read_jsonl


def mmsu_category_gains(stage1_records: Path, stage2_records: Path, mmsu: Path, fmt: str,
                        metric: str = HEADLINE, method: str = "holm") -> pd.DataFrame:
    """Per MMSU category: Stage I and Stage II speech accuracy (%) in prompt format `fmt` on the same items, the gain,
    the items gained and lost, the exact McNemar p and its `method`-adjusted value."""
    category = {f"mmsu/{r['id']}": r["category"] for r in read_jsonl(mmsu)}

    def correct(path: Path) -> dict[str, float]:
        return {r["id"]: r[metric] for r in read_jsonl(path)
                if r["task"] == "mmsu" and r["mode"] == "speech" and r["format"] == fmt and "skipped" not in r}

    before, after = correct(stage1_records), correct(stage2_records)
    ids = sorted(set(before) & set(after))
    if not ids:
        raise ValueError(f"no MMSU item in format {fmt!r} was scored in speech by both {stage1_records} and "
                         f"{stage2_records}")
    unknown = [i for i in ids if i not in category]
    if unknown:
        raise KeyError(f"MMSU items {unknown[:5]} are not in {mmsu}")
    return per_category_significance([category[i] for i in ids], [before[i] for i in ids],
                                     [after[i] for i in ids], method=method)
