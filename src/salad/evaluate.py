"""The `evaluate` stage: benchmarks in text mode (teacher and student) and speech mode (student), DESIGN §7.

Text mode follows lm-evaluation-harness conventions (see salad.scoring). In speech mode the whole context
(demonstrations and question) is audio in the pipeline's one TTS voice, synthesized once per item by the
`synthesize` stage and encoded by `encode`; the scored continuation is text, " " + choice, its first token predicted
from the last speech frame. Every sequence opens with the document-start token, as in training.

Headline metric: acc_norm (the paper scores "the normalized log probability of each answer", Appendix A.4);
acc and acc_bytes are saved beside it for every item. An item whose context does not fit the model's window is
skipped and counted, never scored on a truncated context.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from salad.atomic import write_json, write_jsonl
from salad.config import Params
from salad.corpus import FeatureReader, doc_start_id
from salad.model import SpeechAdaptedLM
from salad.scoring import ContextTooLong, accuracy_metrics, score_continuations, text_requests
from salad.tasks import Item, fewshot_prefix, get_task, load_items
from salad.train import load_teacher

HEADLINE = "acc_norm"


def eval_items(params: Params, root: Path) -> list[tuple[str, Item, str]]:
    """(format, item, few-shot prefix) for every evaluated item; the same demonstrations for every item of a task
    and format, drawn with the seed from the task's few-shot pool and never containing an evaluated item."""
    cfg = params.evaluate
    out = []
    for name in cfg.tasks:
        task = get_task(name)
        for fmt in task.formats:
            items = load_items(name, fmt, root, n=cfg.items, seed=params.seed)
            prefix = fewshot_prefix(name, fmt, root, cfg.shots, params.seed, exclude_ids={i.id for i in items})
            out += [(fmt, item, prefix) for item in items]
    return out


def context_id(fmt: str, item: Item) -> str:
    return f"{item.id}|{fmt}"


def eval_contexts(params: Params, root: Path) -> list[dict]:
    """The spoken contexts to synthesize: one per evaluated item and format."""
    return [{"id": context_id(fmt, item), "text": (prefix + item.context).strip()}
            for fmt, item, prefix in eval_items(params, root)]


def score_text(lm, tokenizer, context: str, choices: list[str]) -> list[float]:
    ctx_ids, conts = text_requests(tokenizer, context, choices, prefix_ids=[doc_start_id(tokenizer)])
    embeds = lm.get_input_embeddings()(torch.tensor(ctx_ids))
    return score_continuations(lm, embeds, conts)


def score_speech(model: SpeechAdaptedLM, tokenizer, features: np.ndarray, choices: list[str]) -> list[float]:
    frames = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
    speech = model.adapter(frames, torch.ones(frames.shape[:2], dtype=torch.long))[0]
    start = model.lm.get_input_embeddings()(torch.tensor([doc_start_id(tokenizer)]))
    conts = [tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in choices]
    return score_continuations(model.lm, torch.cat([start, speech]), conts)


@torch.no_grad()
def evaluate(params: Params, teacher_dir: Path, model_dir: Path, root: Path, features: Path, out: Path,
             metrics_path: Path) -> dict:
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_teacher(teacher_dir)
    student = SpeechAdaptedLM.load(model_dir).eval()
    feat_by_id = FeatureReader(features / "eval")

    runs = [("teacher", "text"), ("student", "text"), ("student", "speech")]
    records: dict[str, list[dict]] = defaultdict(list)
    items = eval_items(params, root)
    for fmt, item, prefix in tqdm(items, desc="evaluate", unit="item", mininterval=5):
        for model_name, mode in runs:
            try:
                if mode == "text":
                    lm = teacher if model_name == "teacher" else student.lm
                    scores = score_text(lm, tokenizer, prefix + item.context, item.choices)
                else:
                    cid = context_id(fmt, item)
                    if cid not in feat_by_id:
                        raise ValueError(f"no speech features for {cid!r}; rerun `salad synthesize` and `salad encode`")
                    scores = score_speech(student, tokenizer, feat_by_id[cid], item.choices)
            except ContextTooLong as e:
                records[model_name].append({"task": item.task, "format": fmt, "mode": mode, "id": item.id,
                                            "skipped": str(e)})
                continue
            records[model_name].append({
                "task": item.task, "format": fmt, "mode": mode, "id": item.id, "label": item.label,
                "n_choices": len(item.choices), "scores": [round(s, 5) for s in scores],
                **accuracy_metrics(scores, item.choices, item.label),
            })

    results: dict = {}
    for model_name, recs in records.items():
        write_jsonl(out / f"{model_name}.jsonl", recs)
        groups = defaultdict(list)
        for r in recs:
            groups[(r["task"], r["format"], r["mode"])].append(r)
        for (task, fmt, mode), rs in sorted(groups.items()):
            scored = [r for r in rs if "skipped" not in r]
            summary = {"n": len(scored), "skipped": len(rs) - len(scored)}
            for key in ("acc", "acc_norm", "acc_bytes"):
                summary[key] = round(float(np.mean([r[key] for r in scored])), 4) if scored else float("nan")
            summary["chance"] = round(float(np.mean([1 / r["n_choices"] for r in scored])), 4) if scored else float("nan")
            results.setdefault(model_name, {}).setdefault(task, {}).setdefault(fmt, {})[mode] = summary
    metrics = {"headline": HEADLINE, "shots": params.evaluate.shots, "results": results}
    write_json(metrics_path, metrics)
    return metrics
