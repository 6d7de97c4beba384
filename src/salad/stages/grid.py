"""The analysis grid (paper Section 3, Appendix A.3; docs/design.md §8): Stage I for every α × data side × budget, with M,
F and the benchmarks measured on every model.

A cell is one (data, α) pair and one training run to `grid.tokens` positions. Its smaller budgets `grid.budgets`
branch their own WSD decays from the run's stable phase (salad.stages.train), so a cell yields len(budgets) + 1 models
along the token axis for the price of one run plus the decays, each equal to a run trained to that budget alone.
A cell's params are the main params with the cell's α and the grid's budgets and warmup; everything else
(architecture, learning rates, batch, spans, text mixing) is `train`'s, so the grid differs from the main run only
in what it varies. The data sides:

- speech: D_speech, book text read by several espeak-ng voices and rates, the narrow side (the paper's natural
  speech, LibriHeavy and Emilia, narrow in domain);
- broad: D_broad, D_web documents read in the fixed voice (the paper's synthetic FineWeb-Edu, broad in domain).
  The test documents of M and F are broad documents in that same voice, so in the miniature world (as in the
  paper, whose benchmarks are in its synthetic voice too) the broad side is closer to the test set in voice as
  well as in domain.

Outputs of a cell `<data>-<alpha>` (salad.config.grid_cell_name; the DVC matrix stages grid-train, grid-measure and
grid-evaluate), read back by salad.analysis.results.grid_results:

    data/grid/<cell>/model/               the model at grid.tokens; model/budgets/<B>/ the smaller budgets
    data/grid/<cell>/eval/<B>.jsonl       per-item benchmark records of each model
    metrics/grid/<cell>/train.json        steps and positions of the run and of each budget
    metrics/grid/<cell>/measure.json      {"alpha", "data", "models": {"<B>": {M, F, ...}}}
    metrics/grid/<cell>/evaluate.json     {"alpha", "data", "headline", "models": {"<B>": {task: {format: {mode}}}}}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from salad.config import Params
from salad.data.documents import FeatureReader, load_aligned
from salad.evaluation.benchmarks import HEADLINE, eval_items, first_items, score_items, summarize
from salad.evaluation.measures import measure_model
from salad.model.speech_lm import load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.stages.train import train
from salad.storage.atomic import write_json, write_jsonl

__all__ = ["cell_params", "cell_models", "train_cell", "measure_cell", "evaluate_cell"]


def cell_params(params: Params, alpha: float) -> Params:
    """The params of a grid cell's run: the main params with α and the grid's budget, budgets and warmup."""
    grid = params.grid
    cell_train = dataclasses.replace(params.train, tokens=grid.tokens, budgets=grid.budgets,
                                     warmup_steps=grid.warmup_steps)
    return dataclasses.replace(params, alpha=float(alpha), train=cell_train)


def cell_models(params: Params, model_dir: Path) -> dict[int, Path]:
    """The cell's models by budget (positions), smallest first: budgets/<B>/ and the main run at grid.tokens."""
    models = {b: Path(model_dir) / "budgets" / str(b) for b in sorted(params.grid.budgets)}
    models[params.grid.tokens] = Path(model_dir)
    for budget, path in models.items():
        if not (path / "adapter.pt").exists():
            raise FileNotFoundError(f"{path}: no model for budget {budget} (grid.tokens/budgets changed since "
                                    f"`salad grid-train` made {model_dir}? rerun it)")
    return models


def _check_data(params: Params, data: str) -> str:
    """The cell's data side, which names its speech store."""
    if data not in params.grid.data:
        raise ValueError(f"data side {data!r} is not in grid.data {list(params.grid.data)}")
    return data


def train_cell(params: Params, alpha: float, data: str, teacher_dir: Path, prepared: Path, speech: Path,
               features: Path, out: Path, live_dir: Path, metrics_path: Path, checkpoints: Path) -> dict:
    """Train the cell (data, α): one run to grid.tokens with a branched decay for each of grid.budgets."""
    corpus = _check_data(params, data)
    metrics = train(cell_params(params, alpha), teacher_dir, prepared, speech, features, out, live_dir,
                    metrics_path, checkpoints, corpus=corpus)
    return {"data": data, **metrics}


@torch.no_grad()
def measure_cell(params: Params, alpha: float, data: str, teacher_dir: Path, model_dir: Path, speech: Path,
                 features: Path, metrics_path: Path) -> dict:
    """M and F of every model of the cell, on the same test documents and layouts as the `measure` stage (without
    its shuffled-speech controls)."""
    _check_data(params, data)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir)
    docs = load_aligned(speech / "test", features / "test", tokenizer)
    models = {}
    for budget, path in cell_models(params, model_dir).items():
        # M and F are the grid's quantities; the shuffled-speech controls (twice the cost) are the main run's
        student = load_student(path, teacher_dir).eval()
        models[str(budget)] = measure_model(params, teacher, student, docs, controls=False)
    metrics = {"alpha": float(alpha), "data": data, "models": models}
    write_json(metrics_path, metrics)
    return metrics


@torch.no_grad()
def evaluate_cell(params: Params, alpha: float, data: str, teacher_dir: Path, model_dir: Path, root: Path,
                  features: Path, out: Path, metrics_path: Path) -> dict:
    """Every model of the cell in text and speech mode on the first grid.eval_items items of each task and format
    (the teacher's text accuracy, the reference of the gaps, is the `evaluate` stage's)."""
    _check_data(params, data)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    items = first_items(eval_items(params, root), params.grid.eval_items, params.grid.family_items)
    feat_by_id = FeatureReader(features / "eval")
    results, records = {}, {}
    for budget, path in cell_models(params, model_dir).items():
        model = load_student(path, teacher_dir).eval()
        runs = [("student", "text", model.lm), ("student", "speech", model)]
        recs = score_items(items, tokenizer, runs, feat_by_id, desc=f"evaluate {data} α={alpha} {budget}")["student"]
        records[budget] = recs
        results[str(budget)] = summarize(recs)
    for budget, recs in records.items():
        write_jsonl(Path(out) / f"{budget}.jsonl", recs)
    metrics = {"alpha": float(alpha), "data": data, "headline": HEADLINE, "models": results}
    write_json(metrics_path, metrics)
    return metrics

