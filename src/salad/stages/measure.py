"""The `measure` stage (docs/design.md §4): misalignment M and forgetting F of the main run's model on the held-out
broad-domain test documents, with the shuffled-speech controls and first-tokens diagnostics of
salad.evaluation.measures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from salad.config import Params
from salad.data.documents import load_aligned
from salad.evaluation.measures import measure_model
from salad.model.speech_lm import load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.storage.atomic import write_json


def measure(params: Params, teacher_dir: Path, model_dir: Path, speech: Path, features: Path, metrics_path: Path) -> dict:
    """The `measure` stage: M and F of the model in `model_dir` on the test documents, written to `metrics_path`."""
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir)
    docs = load_aligned(speech / "test", features / "test", tokenizer)
    student = load_student(model_dir, teacher_dir).eval()
    metrics = {"alpha": params.alpha, **measure_model(params, teacher, student, docs)}
    write_json(metrics_path, metrics)
    return metrics
