"""salad.analysis.paper_tables (Tables 3, 4, 5, 8 beside the paper), salad.analysis.results and salad.analysis.category_gains on small inputs."""

import json
import math

import pandas as pd
import pytest

from salad.analysis import paper_tables
from salad.analysis.category_gains import mmsu_category_gains
from salad.analysis.results import best_accuracy, on_items
from salad.analysis.statistics import mcnemar_exact

TASKS = ["arc_challenge", "hellaswag", "mmsu", "obqa", "piqa", "storycloze"]


@pytest.fixture
def evaluate():
    """An evaluate.json-shaped dict: teacher text 0.5 everywhere, the student 0.1 lower in speech."""
    def best(acc):
        tasks = {t: {"format": "continuation", "acc_norm": acc(t), "n": 10} for t in TASKS}
        return {"tasks": tasks, "average": sum(v["acc_norm"] for v in tasks.values()) / len(TASKS)}

    teacher = best(lambda t: 0.5)
    systems = {"speech": ("student", "speech", lambda t: 0.4), "text": ("student", "text", lambda t: 0.45),
               "cascade": ("cascade", "speech", lambda t: 0.5), "speech_voice2": ("student_voice2", "speech",
                                                                                 lambda t: 0.3 + 0.01 * TASKS.index(t))}
    out = {"headline": "acc_norm", "best": {"teacher": {"text": teacher}}, "gaps": {}}
    for name, (model, mode, acc) in systems.items():
        b = best(acc)
        out["best"].setdefault(model, {})[mode] = b
        gaps = {t: 0.5 - b["tasks"][t]["acc_norm"] for t in TASKS}
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
    return {"task": task, "format": fmt, "mode": mode, "id": id, "acc_norm": acc, "acc": acc, "acc_bytes": acc,
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


def test_mmsu_category_gains_pairs_items_and_tests_each_category(tmp_path):
    cats = {str(i): ("law" if i < 10 else "health") for i in range(20)}
    (tmp_path / "mmsu.jsonl").write_text("".join(json.dumps({"id": f"mmsu/{i}", "category": c}) + "\n"
                                                 for i, c in cats.items()))
    before = [record("mmsu", "f", "speech", f"mmsu/mmsu/{i}", 0.0) for i in range(20)]
    after = [record("mmsu", "f", "speech", f"mmsu/mmsu/{i}", 1.0 if i < 10 else 0.0) for i in range(20)]
    other = [record("mmsu", "g", "speech", "mmsu/mmsu/0", 1.0), record("mmsu", "f", "text", "mmsu/mmsu/0", 1.0)]
    for name, rows in (("s1", before + other), ("s2", after)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = mmsu_category_gains(tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", tmp_path / "mmsu.jsonl", "f")
    t = t.set_index("category")
    assert t.loc["law", "gain"] == 100.0 and t.loc["law", "gained"] == 10 and t.loc["law", "n"] == 10
    assert t.loc["law", "p"] == pytest.approx(mcnemar_exact([0] * 10, [1] * 10).pvalue)  # 2·0.5¹⁰
    assert t.loc["health", "p"] == 1.0 and not t.loc["health", "significant"]
    assert t.loc["law", "improved"]
    with pytest.raises(ValueError, match="format 'zz'"):
        mmsu_category_gains(tmp_path / "s1.jsonl", tmp_path / "s2.jsonl", tmp_path / "mmsu.jsonl", "zz")
