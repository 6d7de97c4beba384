"""Reading the pipeline's measured outputs for the report notebooks: per-task accuracies on shared items.

Only the report stages depend on this module, so changing how results are read re-renders reports without
retraining anything (a change to `salad.stages.evaluate`, `salad.stages.grid` or `salad.stages.stage2` reruns their stages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from salad.storage.atomic import read_jsonl
from salad.config import Params
from salad.stages.evaluate import HEADLINE, summarize


def best_accuracy(records: list[dict], mode: str, metric: str = HEADLINE) -> dict[str, float]:
    """Per task, the best prompt format's `metric` in `mode` over `records`, and the mean over tasks ("average")."""
    tasks = {task: max(f[mode][metric] for f in formats.values() if mode in f)
             for task, formats in sorted(summarize(records).items())
             if any(mode in f for f in formats.values())}
    if not tasks:
        raise ValueError(f"no record was scored in {mode} mode")
    return {**tasks, "average": float(np.mean(list(tasks.values())))}


def on_items(records: list[dict], like: list[dict]) -> list[dict]:
    """The records whose (task, format, id) also appear in `like` (the same items scored by another model)."""
    keys = {(r["task"], r["format"], r["id"]) for r in like}
    return [r for r in records if (r["task"], r["format"], r["id"]) in keys]


def grid_teacher_accuracy(teacher_records: Path, grid_root: Path, params: Params) -> float:
    """The teacher's text accuracy on the grid's benchmark items (the first grid.eval_items of evaluate's): the
    average over tasks of the best-format headline accuracy, from the main evaluate stage's per-item records,
    restricted to the items a grid model was scored on (every grid model sees the same ones)."""
    cell = Path(grid_root) / f"{params.grid.data[0]}-{float(params.grid.alphas[0])}" / "eval"
    evaluated = sorted(cell.glob("*.jsonl"))
    if not evaluated:
        raise FileNotFoundError(f"no grid evaluation records under {cell}; run `dvc repro`")
    return best_accuracy(on_items(read_jsonl(teacher_records), read_jsonl(evaluated[0])), "text")["average"]


def stage2_per_task(params: Params, stage1_records: Path, stage2_root: Path, cells: list[tuple[float, float]],
                    mode: str = "speech") -> pd.DataFrame:
    """Best-format headline accuracy (0–1) per task in `mode` and its average over tasks (row `average`): column
    "Stage I" (the main run's records on the cells' items) and one column per (gamma, budget) Stage II cell, named
    by salad.stages.stage2.cell_name."""
    from salad.stages.stage2 import _check_cell, cell_name

    columns, every = {}, []
    for gamma, budget in cells:
        _check_cell(params, gamma, budget)
        path = Path(stage2_root) / cell_name(gamma, budget) / "eval.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"Stage II cell {cell_name(gamma, budget)}: {path} is missing; run `dvc repro`")
        records = read_jsonl(path)
        every += records
        columns[cell_name(gamma, budget)] = best_accuracy(records, mode)
    columns = {"Stage I": best_accuracy(on_items(read_jsonl(stage1_records), every), mode), **columns}
    return pd.DataFrame(columns).rename_axis("task").reset_index()


def checkpoint_positions(path: Path) -> int:
    """The training positions a saved checkpoint had seen (e.g. Stage I's pre_decay.pt, where Stage II starts)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; `salad train` writes it into the Stage I model directory")
    return int(torch.load(path, weights_only=False, map_location="cpu", mmap=True)["positions"])
