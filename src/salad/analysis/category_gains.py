"""Figure 7: which MMSU categories Stage II improves, tested item by item against Stage I.

A Stage II cell is scored on only the first `active.eval_items` items of each task, too few to test per category,
so `mmsu_stage` scores the active Stage II model (γ = active.gamma at active.budget) on every MMSU item the main
`evaluate` stage scored Stage I on, in speech mode and every format. `mmsu_category_gains` then pairs the two
models' records in one prompt format and tests each category with an exact McNemar test, adjusting over categories
(salad.analysis.statistics.per_category_significance).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

from salad.storage.atomic import read_jsonl, write_json, write_jsonl
from salad.config import Params
from salad.data.documents import FeatureReader
from salad.stages.evaluate import HEADLINE, eval_items, score_items, summarize
from salad.model.speech_lm import SpeechAdaptedLM
from salad.stages.stage2 import cell_name
from salad.analysis.statistics import per_category_significance


@torch.no_grad()
def mmsu_stage(params: Params, teacher_dir: Path, model_dir: Path, root: Path, features: Path, out: Path,
               metrics_path: Path) -> dict:
    """The active Stage II model on every MMSU item of `evaluate`, in speech mode and every format."""
    expected = cell_name(params.active.gamma, params.active.budget)
    if Path(model_dir).parent.name != expected:
        raise ValueError(f"{model_dir} is not the Stage II model of γ = active.gamma, budget = active.budget "
                         f"(expected data/stage2/{expected}/model)")
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    items = [it for it in eval_items(params, root) if it[1].task == "mmsu"]
    if not items:
        raise ValueError("the evaluate stage scores no MMSU items (evaluate.tasks has no mmsu)")
    model = SpeechAdaptedLM.load(model_dir).eval()
    records = score_items(items, tokenizer, [("student", "speech", model)], FeatureReader(Path(features) / "eval"),
                          desc=f"MMSU, Stage II γ={params.active.gamma} {params.active.budget}")["student"]
    write_jsonl(out, records)
    metrics = {"gamma": params.active.gamma, "budget": params.active.budget, "headline": HEADLINE,
               "results": summarize(records)}
    write_json(metrics_path, metrics)
    return metrics


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
