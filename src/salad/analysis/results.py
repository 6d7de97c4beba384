"""Reading the pipeline's measured outputs for the report notebooks (docs/design.md §8): the grid's and Stage II's
results tables, per-task accuracies on shared items, active selection's clusters.

Only the report stages depend on this module, so changing how results are read re-renders reports without
retraining anything (a change to a stage module, salad.stages.*, reruns its stage). Accuracies are read with the one
best-format rule of salad.evaluation.benchmarks (`best_format_accuracy`, `average_accuracy`); cells are found by the
names their stages write (salad.config.grid_cell_name, stage2_cell_name).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from salad.analysis.paper_tables import AVERAGE_ROWS
from salad.config import Params, checked_stage2_cell_name, grid_cell_name, stage2_cell_name
from salad.evaluation.benchmarks import (HEADLINE, best_format, best_format_accuracy, group_averages, headline_tasks,
                                         summarize, task_groups)
from salad.storage.atomic import read_jsonl


def binomial_se(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n independent items: sqrt(p(1-p)/n)."""
    return float(np.sqrt(p * (1 - p) / n)) if n > 0 else float("nan")


def best_format_detail(results: dict, mode: str, metric: str = HEADLINE) -> dict[str, dict]:
    """{task: {"accuracy", "n", "chance", "se"}} of the best format in `mode` (the rule of best_format_accuracy) for
    every task of one model's `summarize` output scored in `mode`; se is binomial over the task's items."""
    detail = {}
    for task, formats in results.items():
        if any(mode in f for f in formats.values()):
            fmt = best_format(formats, mode, metric)
            if fmt is None:
                detail[task] = {"accuracy": float("nan"), "n": 0, "chance": float("nan"), "se": float("nan")}
                continue
            s = formats[fmt][mode]
            detail[task] = {"accuracy": s[metric], "n": s["n"], "chance": s["chance"],
                            "se": binomial_se(s[metric], s["n"])}
    return detail


def average_with_se(results: dict, mode: str, metric: str = HEADLINE, group: str | None = None
                    ) -> tuple[float, float, float]:
    """(average over tasks of the best format's accuracy, its standard error, the average chance level), over the
    headline tasks (`group` None: the family's when any family task was scored, else all) or one task group
    ("family", "benchmarks"). The tasks' items are independent, so se = sqrt(sum_t p_t(1-p_t)/n_t) / T; it ignores
    that the best of a task's formats was chosen on the same items (the paper's rule), so it is a lower bound."""
    detail = best_format_detail(results, mode, metric)
    tasks = headline_tasks(detail) if group is None else task_groups(detail)[group]
    detail = {t: detail[t] for t in tasks}
    if not detail:
        return float("nan"), float("nan"), float("nan")
    accuracy = float(np.mean([d["accuracy"] for d in detail.values()]))
    se = float(np.sqrt(sum(d["se"] ** 2 for d in detail.values()))) / len(detail)
    return accuracy, se, float(np.mean([d["chance"] for d in detail.values()]))


def accuracy_columns(results: dict) -> dict[str, float]:
    """A results row's accuracy columns of one model's `summarize` output: `{mode}_accuracy` and `{mode}_accuracy_se`
    for speech and text over the headline tasks (`average_with_se`) and the average chance level, and the same over
    the paper benchmarks alone (`{mode}_accuracy_benchmarks`, `..._se`, `chance_benchmarks`; NaN where none was
    scored, e.g. the grid's models in the miniature world)."""
    columns = {}
    for suffix, group in (("", None), ("_benchmarks", "benchmarks")):
        for mode in ("speech", "text"):
            accuracy, se, chance = average_with_se(results, mode, group=group)
            columns[f"{mode}_accuracy{suffix}"], columns[f"{mode}_accuracy{suffix}_se"] = accuracy, se
            columns[f"chance{suffix}"] = chance
    return columns


def best_accuracy(records: list[dict], mode: str, metric: str = HEADLINE) -> dict[str, float]:
    """Per task, the best prompt format's `metric` in `mode` over `records`; the headline mean over tasks
    ("average", over the family's tasks when any was scored) and, when the family and the paper benchmarks were both
    scored, each group's mean ("family average", "benchmarks average")."""
    tasks = best_format_accuracy(summarize(records), mode, metric)  # summarize orders the tasks
    if not tasks:
        raise ValueError(f"no record was scored in {mode} mode")
    averages = group_averages(tasks)  # "average" and each scored group's
    both = len(averages) == 3
    return {**tasks, **{row: averages[group or "average"] for row, group in AVERAGE_ROWS.items()
                        if group is None or both}}


def on_items(records: list[dict], like: list[dict]) -> list[dict]:
    """The records whose (task, format, id) also appear in `like` (the same items scored by another model)."""
    keys = {(r["task"], r["format"], r["id"]) for r in like}
    return [r for r in records if (r["task"], r["format"], r["id"]) in keys]


def grid_teacher_accuracy(teacher_records: Path, grid_root: Path, params: Params) -> float:
    """The teacher's text accuracy on the grid's benchmark items (the first grid.eval_items of evaluate's): the
    average over tasks of the best-format headline accuracy, from the main evaluate stage's per-item records,
    restricted to the items a grid model was scored on (every grid model sees the same ones)."""
    cell = Path(grid_root) / grid_cell_name(params.grid.data[0], params.grid.alphas[0]) / "eval"
    evaluated = sorted(cell.glob("*.jsonl"))
    if not evaluated:
        raise FileNotFoundError(f"no grid evaluation records under {cell}; run `dvc repro`")
    return best_accuracy(on_items(read_jsonl(teacher_records), read_jsonl(evaluated[0])), "text")["average"]


def stage2_per_task(params: Params, stage1_records: Path, stage2_root: Path, cells: list[tuple[float, float]],
                    mode: str = "speech") -> pd.DataFrame:
    """Best-format headline accuracy (0–1) per task in `mode` and its average over tasks (row `average`): column
    "Stage I" (the main run's records on the cells' items) and one column per (gamma, budget) Stage II cell, named
    by salad.config.stage2_cell_name."""
    columns, every = {}, []
    for gamma, budget in cells:
        cell = checked_stage2_cell_name(params, gamma, budget)
        path = Path(stage2_root) / cell / "eval.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"Stage II cell {cell}: {path} is missing; run `dvc repro`")
        records = read_jsonl(path)
        every += records
        columns[cell] = best_accuracy(records, mode)
    columns = {"Stage I": best_accuracy(on_items(read_jsonl(stage1_records), every), mode), **columns}
    return pd.DataFrame(columns).rename_axis("task").reset_index()


def grid_results(params: Params, metrics_root: Path) -> pd.DataFrame:
    """One row per grid model: data, alpha, budget, the positions it trained on, M (± se over layouts), F, and
    the average over tasks of its best-format headline accuracy in speech and in text mode (as the paper averages
    the best prompt format per task), with their binomial standard errors and the average chance level
    (`average_with_se`). Cells of `params.grid` whose metrics are missing are an error."""
    rows = []
    for data in params.grid.data:
        for alpha in params.grid.alphas:
            cell = Path(metrics_root) / "grid" / grid_cell_name(data, alpha)
            try:
                train_m, measure_m, evaluate_m = (json.loads((cell / f"{name}.json").read_text())
                                                  for name in ("train", "measure", "evaluate"))
            except FileNotFoundError as e:
                raise FileNotFoundError(f"grid cell {cell.name}: {e.filename} is missing; run `dvc repro`") from None
            positions = {str(b): v["positions"] for b, v in train_m.get("budgets", {}).items()}
            positions[str(params.grid.tokens)] = train_m["positions"]
            for budget, m in measure_m["models"].items():
                rows.append({"data": data, "alpha": alpha, "budget": int(budget), "positions": positions[budget],
                             "M": m["M"], "M_se": m["M_se"], "F": m["F"],
                             **accuracy_columns(evaluate_m["models"][budget])})
    return pd.DataFrame(rows).sort_values(["data", "alpha", "budget"], ignore_index=True)


def stage2_results(params: Params, metrics_root: Path, stage1_records: Path, stage2_root: Path) -> pd.DataFrame:
    """One row per Stage II cell (gamma, budget, D_active documents and seconds, M ± se, F, the average over tasks of
    the best-format headline accuracy in speech and text) and a first row for Stage I (stage "I"), scored on the
    same items: the main `evaluate` stage's per-item records `stage1_records` restricted to the items of the cells'
    records (stage2_root/<cell>/eval.jsonl), with the main `measure` stage's M and F."""
    root = Path(metrics_root)

    rows, items = [], set()
    for gamma in params.active.gammas:
        select = json.loads((root / "active" / "select" / f"{gamma}.json").read_text())
        for budget in params.active.budgets:
            cell = stage2_cell_name(gamma, budget)
            try:
                measured, evaluated = (json.loads((root / "stage2" / cell / f"{n}.json").read_text())
                                       for n in ("measure", "evaluate"))
                items |= {(r["task"], r["format"], r["mode"], r["id"])
                          for r in read_jsonl(Path(stage2_root) / cell / "eval.jsonl")}
            except FileNotFoundError as e:
                raise FileNotFoundError(f"Stage II cell {cell}: {e.filename} is missing; run `dvc repro`") from None
            spent = select["budgets"][str(budget)]
            rows.append({"stage": "II", "gamma": gamma, "budget": budget, "active_documents": spent["documents"],
                         "active_seconds": spent["seconds"], "M": measured["M"], "M_se": measured["M_se"],
                         "F": measured["F"], **accuracy_columns(evaluated["results"])})
    stage1_measure = json.loads((root / "measure.json").read_text())
    stage1 = summarize([r for r in read_jsonl(stage1_records) if (r["task"], r["format"], r["mode"], r["id"]) in items])
    rows.insert(0, {"stage": "I", "gamma": float("nan"), "budget": 0.0, "active_documents": 0, "active_seconds": 0.0,
                    "M": stage1_measure["M"], "M_se": stage1_measure["M_se"], "F": stage1_measure["F"],
                    **accuracy_columns(stage1)})
    return pd.DataFrame(rows)


def cluster_table(params: Params, metrics_root: Path) -> pd.DataFrame:
    """One row per cluster: its label (first distinctive terms), the share of D_web, D_speech and D_active (SALAD's
    gamma at SALAD's budget, and gamma = 0) that falls in it, and M(c) ± se (paper Figures 2 and 9)."""
    root = Path(metrics_root) / "active"
    clusters = json.loads((root / "clusters.json").read_text())
    mis = json.loads((root / "misalignment.json").read_text())
    cfg = params.active
    table = pd.DataFrame({"cluster": range(cfg.clusters),
                          "label": [", ".join(t[:3]) for t in clusters["terms"]],
                          "web_share": clusters["spread"]["web"], "speech_share": clusters["spread"]["speech"],
                          "M": mis["M"], "M_se": mis["M_se"]})
    for gamma in dict.fromkeys((0.0, cfg.gamma)):
        spent = json.loads((root / "select" / f"{gamma}.json").read_text())["budgets"][str(cfg.budget)]
        counts = np.asarray(spent["per_cluster"], dtype=float)
        table[f"active_share_gamma{gamma:g}"] = counts / max(counts.sum(), 1)
    return table

def checkpoint_positions(path: Path) -> int:
    """The training positions a saved checkpoint had seen (e.g. Stage I's pre_decay.pt, where Stage II starts)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; `salad train` writes it into the Stage I model directory")
    return int(torch.load(path, weights_only=False, map_location="cpu", mmap=True)["positions"])
