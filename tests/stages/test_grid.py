"""The analysis grid: cell params, the models of a cell, the results table, and the DVC matrix stages."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from salad.config import ConfigError, GridConfig, Params, TrainConfig, params_from_dict
from salad.stages.evaluate import first_items
from salad.stages.grid import cell_models, cell_params, grid_results
from salad.stages.synthesize import broad_sample
from salad.evaluation.tasks import Item

REPO = Path(__file__).resolve().parents[2]
REPLACED = {"tokens", "budgets", "warmup_steps"}


def small_params(**grid) -> Params:
    values = {"tokens": 1000, "budgets": [250, 500], "warmup_steps": 2, "eval_items": 3, **grid}
    return params_from_dict({"alpha": 0.5, "grid": values})


def test_cell_params_replace_alpha_and_the_grid_keys_only():
    params = small_params()
    cell = cell_params(params, 0.25)
    assert cell.alpha == 0.25
    assert (cell.train.tokens, cell.train.budgets, cell.train.warmup_steps) == (1000, (250, 500), 2)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in REPLACED:
            assert getattr(cell.train, f.name) == getattr(params.train, f.name), f.name
    assert dataclasses.replace(cell, alpha=params.alpha, train=params.train) == params


def test_cell_models_are_the_budgets_then_the_main_run(tmp_path):
    params = small_params()
    for sub in ("budgets/250", "budgets/500", ""):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / "adapter.pt").write_bytes(b"")
    models = cell_models(params, tmp_path)
    assert list(models.items()) == [(250, tmp_path / "budgets" / "250"), (500, tmp_path / "budgets" / "500"),
                                    (1000, tmp_path)]
    (tmp_path / "budgets" / "500" / "adapter.pt").unlink()
    with pytest.raises(FileNotFoundError, match="budget 500"):
        cell_models(params, tmp_path)


def test_grid_config_rejects_bad_cells():
    with pytest.raises(ConfigError, match="grid.budgets"):
        GridConfig(tokens=100, budgets=(100,))
    with pytest.raises(ConfigError, match="grid.data"):
        GridConfig(data=("speech", "narrow"))
    with pytest.raises(ConfigError, match="grid.alphas"):
        GridConfig(alphas=(0.5, 1.5))
    with pytest.raises(ConfigError, match="broad_docs is 0"):
        params_from_dict({"synthesize": {"broad_docs": 0}})
    assert params_from_dict({"synthesize": {"broad_docs": 0}, "grid": {"data": ["speech"]}}).grid.data == ("speech",)


def write_cell(root: Path, data: str, alpha: float, values: dict):
    """Metric files of one cell: budgets 250, 500 and the main run 1000, with given M and per-format accuracies."""
    cell = root / "grid" / f"{data}-{alpha}"
    cell.mkdir(parents=True)
    train = {"positions": 1010, "budgets": {"250": {"positions": 260}, "500": {"positions": 505}}}
    measure = {"models": {b: {"M": v["M"], "M_se": 0.01, "F": v["F"]} for b, v in values.items()}}
    evaluate = {"models": {b: v["results"] for b, v in values.items()}}
    for name, obj in (("train", train), ("measure", measure), ("evaluate", evaluate)):
        (cell / f"{name}.json").write_text(json.dumps(obj))


def results(a, b, c):
    """Two tasks: one with two formats (the best of a and b counts), one with one (c); text mode 1 − those."""
    return {"t1": {"f1": {"speech": {"acc_norm": a}, "text": {"acc_norm": 1 - a}},
                   "f2": {"speech": {"acc_norm": b}, "text": {"acc_norm": 1 - b}}},
            "t2": {"f1": {"speech": {"acc_norm": c}, "text": {"acc_norm": 1 - c}}}}


def test_grid_results_one_row_per_model_with_best_format_averages(tmp_path):
    params = small_params(alphas=[0.0, 1.0], data=["speech"])
    for alpha in (0.0, 1.0):
        write_cell(tmp_path, "speech", alpha, {
            b: {"M": alpha + i, "F": 10 * alpha + i, "results": results(0.2 + i / 10, 0.3, 0.6)}
            for i, b in enumerate(("250", "500", "1000"))})
    table = grid_results(params, tmp_path)
    assert len(table) == 6
    row = table[(table.alpha == 1.0) & (table.budget == 500)].iloc[0]
    assert (row.positions, row.M, row.F) == (505, 2.0, 11.0)
    assert row.speech_accuracy == pytest.approx((0.3 + 0.6) / 2)        # best of 0.3 and 0.3 for t1
    assert row.text_accuracy == pytest.approx((0.7 + 0.4) / 2)          # best of 0.7 and 0.7 for t1
    row = table[(table.alpha == 0.0) & (table.budget == 1000)].iloc[0]
    assert row.positions == 1010 and row.speech_accuracy == pytest.approx((0.4 + 0.6) / 2)
    assert list(table.budget[:3]) == [250, 500, 1000]

    with pytest.raises(FileNotFoundError, match="broad-0.0"):
        grid_results(small_params(alphas=[0.0], data=["broad"]), tmp_path)


def test_first_items_keeps_the_first_n_of_every_task_and_format():
    def item(task, fmt, i):
        return Item(task=task, format=fmt, id=f"{task}/{i}", context="c", choices=["a", "b"], label=0)

    items = [(fmt, item(task, fmt, i), "") for task in ("x", "y") for fmt in ("f", "g") for i in range(4)]
    kept = first_items(items, 2)
    assert [(f, it.id) for f, it, _ in kept] == [(f, f"{t}/{i}") for t in ("x", "y") for f in ("f", "g")
                                                 for i in range(2)]
    assert first_items(items, 10) == items


def test_broad_sample_is_a_seeded_subset_in_web_order():
    web = [{"id": f"w{i}", "text": f"text {i}", "genre": "x"} for i in range(50)]
    a = broad_sample(web, 10, seed=3)
    assert a == broad_sample(web, 10, seed=3) and a != broad_sample(web, 10, seed=4)
    ids = [int(r["id"][1:]) for r in a]
    assert len(set(ids)) == 10 and ids == sorted(ids) and set(a[0]) == {"id", "text"}
    with pytest.raises(ValueError, match="only 50"):
        broad_sample(web, 51, seed=0)


def test_dvc_grid_stages_track_every_train_key_the_grid_does_not_replace():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = {p.split(".", 1)[1] for p in stages["grid-train"]["params"] if isinstance(p, str) and p.startswith("train.")}
    assert listed == {f.name for f in dataclasses.fields(TrainConfig)} - REPLACED
    for name in ("grid-train", "grid-measure", "grid-evaluate"):
        assert stages[name]["matrix"] == {"data": "${grid.data}", "alpha": "${grid.alphas}"}, name
