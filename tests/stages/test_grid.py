"""The analysis grid: cell params, the models of a cell, and the DVC matrix stages."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from salad.config import ConfigError, GridConfig, Params, TrainConfig, params_from_dict
from salad.speech.synthesis import broad_sample
from salad.stages.grid import cell_models, cell_params

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
