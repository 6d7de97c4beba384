"""The paper's benchmark tables (3, 4, 5, 8) from our metrics, with the paper's published cells beside ours.

Ours are best-format headline accuracies (`salad.evaluation.benchmarks.best_formats`) in percent, and gaps are the teacher's text accuracy
minus the system's, in percentage points (lower is better), as in the paper. The paper's values come from
`data/paper/published.csv` (`salad.analysis.published`): SALAD-3B is the row to compare with, since our student is trained
by the same recipe, and the ASR cascade is the topline of Table 3. Columns named `paper_*` are the paper's.

Rows: one per task (a task of the miniature family has no paper cells), then the averages: "average", the headline
(over the family when any family task was evaluated), and, when both groups were evaluated, "family average" and
"benchmarks average", the latter beside the paper's "Avg." over its six benchmarks.
"""

from __future__ import annotations

import math

import pandas as pd

from salad.analysis.published import published_value
from salad.evaluation.tasks import get_task

# our task → (Tables 3/5 column prefix, Table 4 column, Table 8 column prefix or None)
PAPER_COLUMNS = {
    "storycloze": ("StoryCloze", "SC", None),
    "mmsu": ("MMSU", "MMSU", "MMSU (VoiceBench)"),
    "obqa": ("OBQA", "OBQA", "OBQA (VoiceBench)"),
    "hellaswag": ("HellaSwag", "HellaSwag", None),
    "arc_challenge": ("ARC-C", "ARC-C", None),
    "piqa": ("PIQA", "PIQA", None),
}


def _paper(table: str, row: str, column: str | None) -> float:
    value = published_value(table, row, column) if column else None
    return math.nan if value is None else float(value)


AVERAGE_ROWS = {"average": None, "family average": "family", "benchmarks average": "benchmarks"}
"""The average rows after the tasks (of these tables and of salad.analysis.results.best_accuracy) → their task group
in the metrics' "averages" (None: the headline "average")."""


def beside_paper_mean(row: str, family_evaluated: bool) -> bool:
    """Whether an average row is over the paper's benchmarks, so that the paper's mean over its six sits beside it:
    "benchmarks average", or the headline "average" where no family task was evaluated."""
    return row == "benchmarks average" or (row == "average" and not family_evaluated)


def _tasks(evaluate: dict) -> list[str]:
    tasks = list(evaluate["best"]["teacher"]["text"]["tasks"])
    unknown = [t for t in tasks if t not in PAPER_COLUMNS and not get_task(t).family]
    if unknown:
        raise KeyError(f"tasks {unknown} have no column in the paper's tables "
                       f"(salad.analysis.paper_tables.PAPER_COLUMNS)")
    return tasks


def _groups(evaluate: dict) -> dict:
    return evaluate["best"]["teacher"]["text"].get("averages", {})


def _average_rows(evaluate: dict) -> list[str]:
    """"average", and each group's average when both groups were evaluated."""
    groups = _groups(evaluate)
    return ["average", *(row for row, group in AVERAGE_ROWS.items() if group in groups and len(groups) == 2)]


def _ours(evaluate: dict, model: str, mode: str, gap: str | None, task: str) -> tuple[float, float]:
    """(accuracy %, gap in points) of one system for one task or average row."""
    best = evaluate["best"][model][mode]
    headline = evaluate["headline"]
    if task in AVERAGE_ROWS:
        group = AVERAGE_ROWS[task]
        acc = best["average"] if group is None else best["averages"][group]
        g = math.nan if not gap else (evaluate["gaps"][gap]["average"] if group is None
                                      else evaluate["gaps"][gap]["averages"].get(group, math.nan))
    else:
        entry = best["tasks"].get(task)
        acc = entry[headline] if entry else math.nan
        g = evaluate["gaps"][gap]["tasks"].get(task, math.nan) if gap else math.nan
    return 100.0 * acc, 100.0 * g


def _rows(evaluate: dict, table: str, columns: list[tuple[str, str, str, str | None]],
          paper_rows: list[tuple[str, str]], column_of, gap_header: str = "Gap") -> pd.DataFrame:
    """One row per task and an average row. `columns`: (our column, model, mode, gap name); `paper_rows`:
    (our column, the paper's row); `column_of(task)` gives the paper's column prefix for a task (None: no cell);
    the paper's columns are "<prefix> Acc." and "<prefix> <gap_header>"."""
    rows = []
    for task in [*_tasks(evaluate), *_average_rows(evaluate)]:
        if task in AVERAGE_ROWS:
            prefix = "Avg." if beside_paper_mean(task, "family" in _groups(evaluate)) else None
        else:
            prefix = column_of(task) if task in PAPER_COLUMNS else None
        row = {"task": task, "paper_task": prefix or ""}
        for name, model, mode, gap in columns:
            row[f"{name}_acc"], row[f"{name}_gap"] = _ours(evaluate, model, mode, gap, task)
        for name, paper_row in paper_rows:
            row[f"paper_{name}_acc"] = _paper(table, paper_row, f"{prefix} Acc." if prefix else None)
            row[f"paper_{name}_gap"] = _paper(table, paper_row, f"{prefix} {gap_header}" if prefix else None)
        rows.append(row)
    return pd.DataFrame(rows)


def table3(evaluate: dict, size: str = "3B") -> pd.DataFrame:
    """Table 3: speech accuracy and gap of the student and the cascade, beside SALAD-<size> (Stages I and II) and
    ASR + Qwen2.5-<size>."""
    return _rows(evaluate, "Table 3",
                 [("student_speech", "student", "speech", "speech"), ("cascade", "cascade", "speech", "cascade")],
                 [("SALAD_stage1", f"SALAD-{size} Stage I"), ("SALAD_stage2", f"SALAD-{size} Stage II"),
                  ("ASR_cascade", f"ASR + Qwen2.5-{size}")],
                 lambda task: PAPER_COLUMNS[task][0])


def table5(evaluate: dict, size: str = "3B") -> pd.DataFrame:
    """Table 5: the student's text accuracy and gap beside SALAD-<size>'s."""
    return _rows(evaluate, "Table 5", [("student_text", "student", "text", "text")],
                 [("SALAD", f"SALAD-{size}")], lambda task: PAPER_COLUMNS[task][0])


def table8(evaluate: dict, size: str = "3B") -> pd.DataFrame:
    """Table 8: speech accuracy and gap in a second voice (ours: `evaluate.second_voice`; the paper: VoiceBench's
    human-recorded MMSU and OBQA), with the fixed voice beside it; the paper prints MMSU and OBQA only."""
    return _rows(evaluate, "Table 8",
                 [("student_voice2", "student_voice2", "speech", "speech_voice2"),
                  ("student_fixed_voice", "student", "speech", "speech")],
                 [("SALAD_stage1", f"SALAD-{size} Stg. I"), ("SALAD_stage2", f"SALAD-{size} Stg. II")],
                 lambda task: PAPER_COLUMNS[task][2], gap_header="Gap (%)")  # Table 8's gap header carries a unit


def table4(per_task: pd.DataFrame, uniform: str, active: str) -> pd.DataFrame:
    """Table 4: speech accuracy (%) per task of Stage I, uniform and active Stage II, beside the paper's uniform and
    active rows (the mean of the paper's six beside our benchmarks' average). `per_task`: one row per task (column
    `task`) and the average rows of salad.analysis.results.best_accuracy, with accuracy (0–1) columns
    "Stage I", `uniform` and `active` (salad.analysis.results.stage2_per_task)."""
    rows = []
    family = any(t not in AVERAGE_ROWS and get_task(t).family for t in per_task["task"])
    for _, r in per_task.iterrows():
        column = PAPER_COLUMNS[r["task"]][1] if r["task"] in PAPER_COLUMNS else None
        paper = {name: _paper("Table 4", row, column) for name, row in (("uniform", "Uniform"),
                                                                          ("active", "Active Sel."))}
        paper_mean = beside_paper_mean(r["task"], family)
        if paper_mean:
            paper = {name: float(sum(_paper("Table 4", row, PAPER_COLUMNS[t][1]) for t in PAPER_COLUMNS)
                                 / len(PAPER_COLUMNS)) for name, row in (("uniform", "Uniform"),
                                                                       ("active", "Active Sel."))}
        rows.append({"task": r["task"], "paper_task": column or ("mean of the six" if paper_mean else ""),
                     "stage1": 100.0 * r["Stage I"], "uniform": 100.0 * r[uniform], "active": 100.0 * r[active],
                     "active_minus_uniform": 100.0 * (r[active] - r[uniform]),
                     "paper_uniform": paper["uniform"], "paper_active": paper["active"],
                     "paper_active_minus_uniform": paper["active"] - paper["uniform"]})
    return pd.DataFrame(rows)
