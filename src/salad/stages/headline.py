"""Stage `headline`: the main run's few numbers, the one metrics file that `dvc metrics show` and `dvc exp show` read.

Every other JSON under `metrics/` is an output that the reports read (per task, per format, per grid cell, per
Stage II cell: thousands of numbers). An experiment table is for comparing runs at a glance, so dvc.yaml declares
only this file as `metrics:`: M with its standard error, F, the headline average accuracies of the evaluate stage's
best formats (its headline metric, each task's scoring convention, averaged over the miniature family's tasks where
they are evaluated, salad.evaluation.benchmarks.headline_tasks) and the two gaps of Tables 3 and 5, in points. Few enough columns for
`dvc metrics show` in 120 columns.
"""

from __future__ import annotations

import json
from pathlib import Path

from salad.storage.atomic import write_json


def headline(measure_path: Path, evaluate_path: Path, out_path: Path) -> dict:
    """metrics/headline.json from the measure and evaluate stages' metrics of the main run."""
    measure = json.loads(Path(measure_path).read_text())
    evaluate = json.loads(Path(evaluate_path).read_text())
    best, gaps = evaluate["best"], evaluate["gaps"]
    values = {
        "M": measure["M"],
        "M_se": measure["M_se"],
        "F": measure["F"],
        # accuracies: the average over tasks of each task's best format (the evaluate stage's rule), as fractions:
        # the teacher in text, the student in text and in speech
        "acc_teacher": best["teacher"]["text"]["average"],
        "acc_text": best["student"]["text"]["average"],
        "acc_speech": best["student"]["speech"]["average"],
        # gaps in points: Table 3's (teacher text - student speech) and Table 5's (teacher text - student text)
        "gap_speech": 100 * gaps["speech"]["average"],
        "gap_text": 100 * gaps["text"]["average"],
    }
    rounded = {k: float(f"{v:.6g}") for k, v in values.items()}  # six significant digits: a table, not a store
    write_json(out_path, rounded)
    return rounded
