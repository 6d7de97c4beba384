"""salad.analysis.paper_tables (Tables 3, 4, 5, 8 beside the paper), salad.analysis.results (per-task accuracies,
the grid's and Stage II's results tables) and salad.analysis.category_gains on small inputs."""

import json
import math
from pathlib import Path

import pandas as pd
import numpy as np
import pytest

from salad.analysis import paper_tables
from salad.analysis.category_gains import category_gains, item_categories
from salad.analysis.results import (accuracy_columns, best_accuracy, grid_results, on_items, stage2_per_task,
                                   stage2_results)
from salad.analysis.statistics import mcnemar_exact
from salad.config import Params, grid_cell_name, params_from_dict, stage2_cell_name

TASKS = ["arc_challenge", "hellaswag", "mmsu", "obqa", "piqa", "storycloze"]


@pytest.fixture
def evaluate():
    """An evaluate.json-shaped dict: teacher text 0.5 everywhere, the student 0.1 lower in speech."""
    def best(acc):
        tasks = {t: {"format": "continuation", "accuracy": acc(t), "n": 10} for t in TASKS}
        return {"tasks": tasks, "average": sum(v["accuracy"] for v in tasks.values()) / len(TASKS)}

    teacher = best(lambda t: 0.5)
    systems = {"speech": ("student", "speech", lambda t: 0.4), "text": ("student", "text", lambda t: 0.45),
               "cascade": ("cascade", "speech", lambda t: 0.5), "speech_voice2": ("student_voice2", "speech",
                                                                                 lambda t: 0.3 + 0.01 * TASKS.index(t))}
    out = {"headline": "accuracy", "best": {"teacher": {"text": teacher}}, "gaps": {}}
    for name, (model, mode, acc) in systems.items():
        b = best(acc)
        out["best"].setdefault(model, {})[mode] = b
        gaps = {t: 0.5 - b["tasks"][t]["accuracy"] for t in TASKS}
        out["gaps"][name] = {"tasks": gaps, "average": sum(gaps.values()) / len(TASKS)}
    return out


def test_table3_puts_ours_in_percent_beside_the_published_cells(evaluate):
    t = paper_tables.table3(evaluate).set_index("task")
    assert t.loc["storycloze", "student_speech_acc"] == pytest.approx(40.0)
    assert t.loc["storycloze", "student_speech_gap"] == pytest.approx(10.0)
    assert t.loc["storycloze", "paper_SALAD_stage1_acc"] == 75.5  # Table 3, SALAD-3B Stage I
    assert t.loc["mmsu", "paper_SALAD_stage2_gap"] == 9.4
    assert t.loc["average", "paper_ASR_cascade_acc"] == 73.8
    assert t.loc["average", "cascade_gap"] == pytest.approx(0.0)
    assert list(t.index) == [*TASKS, "average"]


def test_with_the_family_the_average_is_the_familys_and_the_benchmarks_sit_beside_the_papers(evaluate):
    from salad.evaluation.benchmarks import benchmark_gaps, best_formats

    results = {}
    for model, mode, acc in (("teacher", "text", {"obqa": 0.3, "piqa": 0.5, "world_qa": 0.9}),
                             ("student", "speech", {"obqa": 0.25, "piqa": 0.5, "world_qa": 0.5}),
                             ("cascade", "speech", {"obqa": 0.3, "piqa": 0.5, "world_qa": 0.9})):
        for task, a in acc.items():
            results.setdefault(model, {}).setdefault(task, {})["continuation"] = {
                mode: {"accuracy": a, "n": 10, "chance": 0.25}}
    best = best_formats(results)
    ev = {"headline": "accuracy", "best": best, "gaps": benchmark_gaps(best)}
    assert best["teacher"]["text"]["average"] == 0.9
    assert best["teacher"]["text"]["averages"] == {"family": 0.9, "benchmarks": 0.4}
    assert ev["gaps"]["speech"]["average"] == pytest.approx(0.4)
    assert ev["gaps"]["speech"]["averages"]["benchmarks"] == pytest.approx(0.025)
    t = paper_tables.table3(ev).set_index("task")
    assert list(t.index) == ["obqa", "piqa", "world_qa", "average", "family average", "benchmarks average"]
    assert t.loc["average", "student_speech_acc"] == pytest.approx(50.0)
    assert math.isnan(t.loc["average", "paper_SALAD_stage1_acc"]) and math.isnan(t.loc["world_qa", "paper_SALAD_stage1_acc"])
    assert t.loc["benchmarks average", "paper_ASR_cascade_acc"] == 73.8  # the paper's Avg. beside our benchmarks
    assert t.loc["benchmarks average", "student_speech_gap"] == pytest.approx(2.5)


def test_table5_and_table8(evaluate):
    t5 = paper_tables.table5(evaluate).set_index("task")
    assert t5.loc["piqa", "student_text_acc"] == pytest.approx(45.0)
    assert t5.loc["storycloze", "paper_SALAD_acc"] == 82.7
    t8 = paper_tables.table8(evaluate).set_index("task")
    assert t8.loc["mmsu", "paper_SALAD_stage1_acc"] == 47.3 and t8.loc["mmsu", "paper_SALAD_stage1_gap"] == 14.6
    assert t8.loc["obqa", "paper_SALAD_stage2_gap"] == 7.5
    assert math.isnan(t8.loc["piqa", "paper_SALAD_stage1_acc"])  # the paper's Table 8 has MMSU and OBQA only
    assert t8.loc["obqa", "student_voice2_acc"] == pytest.approx(33.0)


def test_table4_differences_and_the_papers_rows():
    per_task = pd.DataFrame({"task": [*TASKS, "average"], "Stage I": [0.3] * 7, "u": [0.4] * 7, "a": [0.45] * 7})
    t = paper_tables.table4(per_task, "u", "a").set_index("task")
    assert t.loc["obqa", "active_minus_uniform"] == pytest.approx(5.0)
    assert t.loc["obqa", "paper_active"] == 76.7 and t.loc["obqa", "paper_uniform"] == 71.9
    assert t.loc["average", "paper_active"] == pytest.approx((75.8 + 52.5 + 76.7 + 68.7 + 79.9 + 78.1) / 6)


def record(task, fmt, mode, id, acc):
    return {"task": task, "format": fmt, "mode": mode, "id": id, "accuracy": acc, "acc_norm": acc, "acc": acc, "acc_bytes": acc,
            "n_choices": 4}


def test_best_accuracy_takes_the_best_format_per_task_and_on_items_pairs_by_item():
    records = [record("obqa", "a", "speech", "1", 1.0), record("obqa", "a", "speech", "2", 0.0),
               record("obqa", "b", "speech", "1", 1.0), record("obqa", "b", "speech", "2", 1.0),
               record("piqa", "a", "speech", "1", 0.0), record("piqa", "a", "text", "1", 1.0)]
    assert best_accuracy(records, "speech") == {"obqa": 1.0, "piqa": 0.0, "average": 0.5}
    assert best_accuracy(records, "text") == {"piqa": 1.0, "average": 1.0}
    with pytest.raises(ValueError, match="no record was scored in voice mode"):
        best_accuracy(records, "voice")
    assert on_items(records, [record("obqa", "b", "text", "2", 0.0)]) == [records[3]]


def test_category_gains_pair_items_and_test_each_category(tmp_path):
    cats = {str(i): ("law" if i < 10 else "health") for i in range(20)}
    (tmp_path / "mmsu.jsonl").write_text("".join(json.dumps({"id": f"mmsu/{i}", "category": c}) + "\n"
                                                 for i, c in cats.items()))
    before = [record("mmsu", "f", "speech", f"mmsu/mmsu/{i}", 0.0) for i in range(20)]
    after = [record("mmsu", "f", "speech", f"mmsu/mmsu/{i}", 1.0 if i < 10 else 0.0) for i in range(20)]
    # a family task is one category, in its own format; records in other formats or modes are not paired
    before += [record("world_qa", "continuation", "speech", f"world_qa/w{i}", 0.0) for i in range(6)]
    after += [record("world_qa", "continuation", "speech", f"world_qa/w{i}", 1.0) for i in range(6)]
    other = [record("mmsu", "g", "speech", "mmsu/mmsu/0", 1.0), record("mmsu", "f", "text", "mmsu/mmsu/0", 1.0)]
    for name, rows in (("s1", before + other), ("s2", after)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    formats = {"mmsu": "f", "world_qa": "continuation"}
    categories = item_categories(list(formats), tmp_path / "mmsu.jsonl")
    t = category_gains(tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", formats, categories).set_index("category")
    assert t.loc["MMSU law", "gain"] == 100.0 and t.loc["MMSU law", "gained"] == 10 and t.loc["MMSU law", "n"] == 10
    assert t.loc["MMSU law", "p"] == pytest.approx(mcnemar_exact([0] * 10, [1] * 10).pvalue)  # 2·0.5¹⁰
    assert t.loc["MMSU health", "p"] == 1.0 and not t.loc["MMSU health", "significant"]
    assert t.loc["MMSU law", "improved"]
    assert t.loc["world_qa", "n"] == 6 and t.loc["world_qa", "gained"] == 6
    assert item_categories(["world_qa"], tmp_path / "nowhere.jsonl") == {}  # MMSU's file only read for MMSU
    with pytest.raises(ValueError, match="no item of \\['mmsu'\\]"):
        category_gains(tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", {"mmsu": "zz"}, categories)
    with pytest.raises(KeyError, match="have no category"):
        category_gains(tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", {"mmsu": "f"}, {})


def test_stage2_results_put_stage1_first_on_the_cells_items(tmp_path):
    params = params_from_dict({"active": {"gammas": [0.0, 5.0], "budgets": [0.01], "gamma": 5.0, "budget": 0.01}})
    (tmp_path / "active" / "select").mkdir(parents=True)
    (tmp_path / "measure.json").write_text(json.dumps({"M": 1.5, "M_se": 0.1, "F": 0.2}))
    stage1 = [record("obqa", "a", m, str(i), float(i % 2)) for m in ("speech", "text") for i in range(4)]
    (tmp_path / "stage1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stage1))
    for gamma, acc in ((0.0, 0.0), (5.0, 1.0)):
        (tmp_path / "active" / "select" / f"{gamma}.json").write_text(
            json.dumps({"budgets": {"0.01": {"documents": 3, "seconds": 20.0}}}))
        cell = tmp_path / "stage2" / stage2_cell_name(gamma, 0.01)
        cell.mkdir(parents=True)
        records = [record("obqa", f, m, str(i), acc) for f in ("a", "b") for m in ("speech", "text") for i in (0, 1)]
        (cell / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (cell / "measure.json").write_text(json.dumps({"M": gamma, "M_se": 0.0, "F": 0.5}))
        results = {"obqa": {f: {m: {"accuracy": acc, "n": 2, "chance": 0.25} for m in ("speech", "text")}
                            for f in ("a", "b")}}
        (cell / "evaluate.json").write_text(json.dumps({"results": results}))
    table = stage2_results(params, tmp_path, tmp_path / "stage1.jsonl", tmp_path / "stage2")
    assert list(table.stage) == ["I", "II", "II"] and list(table.gamma[1:]) == [0.0, 5.0]
    assert table.speech_accuracy[0] == 0.5  # Stage I on the cells' items 0 and 1 (format a): one right
    assert list(table.speech_accuracy[1:]) == [0.0, 1.0] and table.active_documents[1] == 3
    assert table.speech_accuracy_se[0] == pytest.approx(np.sqrt(0.25 / 2)) and list(table.chance) == [0.25] * 3
    per_task = stage2_per_task(params, tmp_path / "stage1.jsonl", tmp_path / "stage2", [(5.0, 0.01)])
    assert list(per_task.columns) == ["task", "Stage I", "5.0-0.01"]
    with pytest.raises(ValueError, match="not in active.gammas"):
        stage2_per_task(params, tmp_path / "stage1.jsonl", tmp_path / "stage2", [(10.0, 0.01)])


def grid_params(**grid) -> Params:
    values = {"tokens": 1000, "budgets": [250, 500], "warmup_steps": 2, "eval_items": 3, **grid}
    return params_from_dict({"alpha": 0.5, "grid": values})


def write_cell(root: Path, data: str, alpha: float, values: dict):
    """Metric files of one cell: budgets 250, 500 and the main run 1000, with given M and per-format accuracies."""
    cell = root / "grid" / grid_cell_name(data, alpha)
    cell.mkdir(parents=True)
    train = {"positions": 1010, "budgets": {"250": {"positions": 260}, "500": {"positions": 505}}}
    measure = {"models": {b: {"M": v["M"], "M_se": 0.01, "F": v["F"]} for b, v in values.items()}}
    evaluate = {"models": {b: v["results"] for b, v in values.items()}}
    for name, obj in (("train", train), ("measure", measure), ("evaluate", evaluate)):
        (cell / f"{name}.json").write_text(json.dumps(obj))


def format_results(a, b, c):
    """Two tasks: one with two formats (the best of a and b counts; 10 items, 2 choices), one with one (c; 20 items,
    4 choices); text mode 1 − those."""
    def summary(x, n, chance):
        return {"accuracy": x, "n": n, "chance": chance}

    return {"obqa": {"f1": {"speech": summary(a, 10, 0.5), "text": summary(1 - a, 10, 0.5)},
                   "f2": {"speech": summary(b, 10, 0.5), "text": summary(1 - b, 10, 0.5)}},
            "piqa": {"f1": {"speech": summary(c, 20, 0.25), "text": summary(1 - c, 20, 0.25)}}}


def test_accuracy_columns_average_the_family_and_keep_the_benchmarks_beside():
    results = format_results(0.2, 0.3, 0.6)  # obqa (best 0.3 in speech) and piqa (0.6)
    results["world_qa"] = {"continuation": {"speech": {"accuracy": 0.9, "n": 100, "chance": 0.25},
                                              "text": {"accuracy": 1.0, "n": 100, "chance": 0.25}}}
    columns = accuracy_columns(results)
    assert columns["speech_accuracy"] == 0.9 and columns["text_accuracy"] == 1.0 and columns["chance"] == 0.25
    assert columns["speech_accuracy_se"] == pytest.approx(np.sqrt(0.9 * 0.1 / 100))
    assert columns["speech_accuracy_benchmarks"] == pytest.approx((0.3 + 0.6) / 2)
    assert columns["chance_benchmarks"] == pytest.approx((0.5 + 0.25) / 2)
    del results["obqa"], results["piqa"]
    assert np.isnan(accuracy_columns(results)["speech_accuracy_benchmarks"])


def test_grid_results_one_row_per_model_with_best_format_averages(tmp_path):
    params = grid_params(alphas=[0.0, 1.0], data=["speech"])
    for alpha in (0.0, 1.0):
        write_cell(tmp_path, "speech", alpha, {
            b: {"M": alpha + i, "F": 10 * alpha + i, "results": format_results(0.2 + i / 10, 0.3, 0.6)}
            for i, b in enumerate(("250", "500", "1000"))})
    table = grid_results(params, tmp_path)
    assert len(table) == 6
    row = table[(table.alpha == 1.0) & (table.budget == 500)].iloc[0]
    assert (row.positions, row.M, row.F) == (505, 2.0, 11.0)
    assert row.speech_accuracy == pytest.approx((0.3 + 0.6) / 2)        # best of 0.3 and 0.3 for obqa
    assert row.text_accuracy == pytest.approx((0.7 + 0.4) / 2)          # best of 0.7 and 0.7 for obqa
    # binomial standard errors of the two tasks' best formats, averaged as independent; the mean chance level
    assert row.speech_accuracy_se == pytest.approx(np.sqrt(0.3 * 0.7 / 10 + 0.6 * 0.4 / 20) / 2)
    assert row.chance == pytest.approx((0.5 + 0.25) / 2)
    row = table[(table.alpha == 0.0) & (table.budget == 1000)].iloc[0]
    assert row.positions == 1010 and row.speech_accuracy == pytest.approx((0.4 + 0.6) / 2)
    assert list(table.budget[:3]) == [250, 500, 1000]

    with pytest.raises(FileNotFoundError, match="broad-0.0"):
        grid_results(grid_params(alphas=[0.0], data=["broad"]), tmp_path)
