"""The `evaluate` stage (docs/design.md §7): the benchmarks of salad.evaluation.benchmarks on the teacher in text
mode, the student in text and speech mode, the cascaded topline (ASR transcript -> teacher) and the student in a
second voice; every item is saved, and the metrics hold each run's results, the best format per task and the gaps.

Outputs: <out>/<run>.jsonl (per-item records of each run: teacher, student, cascade, student_voice2),
<out>/cascade_transcripts.jsonl, and the metrics JSON.
"""

from __future__ import annotations

from pathlib import Path

import torch

from salad.config import Params
from salad.data.documents import FeatureReader
from salad.evaluation.benchmarks import (HEADLINE, VOICE2, benchmark_gaps, best_formats, contexts_of, eval_plan,
                                         measured_frames_per_char, score_items, speech_window, summarize)
from salad.evaluation.cascade import Cascade, make_transcriber
from salad.model.speech_lm import load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.storage.atomic import write_json, write_jsonl


@torch.no_grad()
def evaluate(params: Params, teacher_dir: Path, model_dir: Path, root: Path, features: Path, out: Path,
             metrics_path: Path, speech: Path | None = None) -> dict:
    """The `evaluate` stage: the teacher in text mode, the student in text and speech mode, the cascade, and the
    student in the second voice; every item saved, with the best formats and the gaps in the metrics.

    `speech` is the synthesize stage's output (the cascade's ASR reads the audio of `speech/eval`); None: the folder
    `speech` beside `features` (data/speech beside data/features, the pipeline's layout).
    """
    cfg = params.evaluate
    torch.manual_seed(params.seed)
    features, out = Path(features), Path(out)
    speech = Path(speech) if speech is not None else features.parent / "speech"
    items, shots = eval_plan(params, root)
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir)
    student = load_student(model_dir, teacher_dir).eval()
    cascade = Cascade(teacher, make_transcriber(cfg.asr_model), speech / "eval")
    runs = [("teacher", "text", teacher), ("student", "text", student.lm), ("student", "speech", student),
            ("cascade", "speech", cascade)]
    records = score_items(items, tokenizer, runs, FeatureReader(features / "eval"))
    if cfg.second_voice is not None:
        records.update(score_items(items, tokenizer, [("student_voice2", "speech", student)],
                                   FeatureReader(features / VOICE2), desc="evaluate second voice"))
    results = {}
    for model_name, recs in records.items():
        write_jsonl(out / f"{model_name}.jsonl", recs)
        results[model_name] = summarize(recs)
    write_jsonl(out / "cascade_transcripts.jsonl", [{"id": k, "transcript": v} for k, v in cascade.transcripts.items()])
    best = best_formats(results)
    contexts = contexts_of(items)
    ratio = {"assumed": cfg.speech_frames_per_char, **measured_frames_per_char(contexts, features / "eval")}
    if cfg.second_voice is not None:
        ratio["second_voice"] = measured_frames_per_char(contexts, features / VOICE2)
    metrics = {"headline": HEADLINE, "shots": shots, "shots_cap": cfg.shots, "speech_window": speech_window(params),
               "speech_frames_per_char": ratio, "second_voice": cfg.second_voice,
               "asr": repr(cascade.transcriber), "results": results, "best": best, "gaps": benchmark_gaps(best)}
    write_json(metrics_path, metrics)
    return metrics
