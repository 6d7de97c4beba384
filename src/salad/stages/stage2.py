"""Stage II of SALAD (paper Section 4, Appendix A.3; docs/design.md §6): continue Stage I on the actively selected speech.

Stage II resumes from Stage I's last checkpoint before its learning-rate decay (`pre_decay.pt` in the Stage I
model directory: model, optimizer with each group's peak rate, RNG) and trains on three sources with equal
probability, one source per optimizer step: D_speech (interleaved, as in Stage I), D_active (the synthesized
documents that active selection chose, interleaved the same way) and the text-only corpus (salad.training.plan's
`plan_stage2`). The loss is L_DIST alone (α = 1: "minimize L_DIST(D_speech ∪ D_active)"), and the learning rate
decays linearly from the resumed peak to zero over Stage II's budget, so Stage II is the decay phase Stage I did not
take.

The training loop, its optimizer step, normalisation, micro-batches and ranks are Stage I's (salad.training.loop);
so are the checkpoints: `last.pt` every `train.checkpoint_every` steps, and a killed run resumes bit for bit on CPU.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from salad.config import Params, checked_stage2_cell_name, stage2_cell_name
from salad.data.documents import FeatureReader, TextDocs, load_aligned, text_mix_file
from salad.evaluation.benchmarks import HEADLINE, category_tasks, eval_items, first_items, score_items, summarize
from salad.evaluation.measures import measure_model
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM, load_student
from salad.model.teacher import load_teacher, load_tokenizer
from salad.selection.budget import active_ids
from salad.storage.atomic import atomic_dir, write_json, write_jsonl
from salad.training.checkpoint import read_checkpoint, restore_checkpoint, resume, tail_mean
from salad.training.fsdp import shard_for_training
from salad.training.loop import (StepStats, build_optimizer, init_distributed, run_fingerprint, run_steps,
                                 save_model, snapshot)
from salad.training.plan import SOURCES, plan_stage2
from salad.training.schedule import linear_decay

ALPHA = 1.0
"""Stage II trains with the distillation loss alone."""


def train_stage2(params: Params, tokens: int, teacher_dir: Path, stage1_dir: Path, prepared: Path, speech: Path,
                 features: Path, active_speech: Path, active_features: Path, out: Path, live_dir: Path,
                 metrics_path: Path, checkpoints: Path, active_ids: list[str] | None = None,
                 stop_after: int | None = None) -> dict:
    """Stage II for `tokens` positions from `stage1_dir/pre_decay.pt`; the model is written to `out`.
    `active_ids`: the documents of the active store that form D_active (all of them when None), in draw order.
    `stop_after`: test hook, raise after this many optimizer steps, as a killed run would stop (after its
    checkpoints)."""
    cfg = params.train
    place = init_distributed()
    torch.manual_seed(params.seed)
    t0 = time.time()
    resume_from = Path(stage1_dir) / "pre_decay.pt"
    if not resume_from.exists():
        raise FileNotFoundError(f"{resume_from} is missing: Stage II resumes from Stage I's last pre-decay "
                                f"checkpoint, which `salad train` keeps in its model directory")
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir, place.device)
    speech_docs = load_aligned(speech / "speech", features / "speech", tokenizer)
    active_docs = load_aligned(active_speech, active_features, tokenizer)
    if active_ids is not None:
        by_id = {d.id: d for d in active_docs}
        absent = [i for i in active_ids if i not in by_id]
        if absent:
            raise ValueError(f"{active_speech}: D_active names {len(absent)} documents it does not hold, e.g. "
                             f"{absent[0]!r}")
        active_docs = [by_id[i] for i in active_ids]
    text_docs = TextDocs(text_mix_file(params, prepared), tokenizer, cfg.max_len)
    feature_dim = speech_docs[0].features.shape[1]

    adapter_cfg = AdapterConfig(**json.loads((Path(stage1_dir) / "adapter_config.json").read_text()))
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_cfg).to(place.device)
    if cfg.fsdp:
        shard_for_training(model, teacher, cfg, place)  # before the optimizer: it holds the shards
    optimizer = build_optimizer(model, cfg)
    restore_checkpoint(read_checkpoint(resume_from, model, place.device), model, optimizer)

    plan, sources = plan_stage2(cfg, params.seed, tokens, speech_docs, active_docs, text_docs)
    steps = len(plan)
    fingerprint = run_fingerprint(params, [resume_from, Path(active_features) / "index.jsonl",
                                           *sorted((Path(active_features) / "shards").glob("*.done.json")),
                                           features / "speech" / "index.jsonl", text_mix_file(params, prepared)])
    active_digest = hashlib.sha256(json.dumps([d.id for d in active_docs]).encode()).hexdigest()
    fingerprint = f"stage2:{tokens}:{active_digest}:{fingerprint}"
    ckpt_path = checkpoints / "last.pt"
    start, positions, losses = resume(ckpt_path, fingerprint, model, optimizer, place.device, steps, "Stage II ")

    def logged(s: StepStats) -> dict:
        return {"stage2/kl": s.kl,  # the loss: alpha = 1
                "stage2/nll": s.nll, "stage2/lr_adapter": s.lrs[0], "stage2/positions": s.positions,
                "stage2/source": SOURCES.index(sources[s.step])}

    model.train()
    positions, losses = run_steps(
        model, teacher, optimizer, plan, (speech_docs + active_docs, text_docs), feature_dim, cfg, ALPHA, place,
        start=start, steps=steps, positions=positions, losses=losses, desc="Stage II",
        lr_factor=lambda step: linear_decay(step, steps), fingerprint=fingerprint, ckpt_path=ckpt_path,
        live_dir=live_dir, metrics=logged, stop_after=stop_after)

    metrics = {"steps": steps, "positions": positions, "final_loss": tail_mean(losses),
               "batches": {name: sources.count(name) for name in SOURCES},
               "active_documents": len(active_docs)}
    weights = snapshot(model, place)  # under FSDP every rank gathers, rank 0 keeps the full tensors
    if place.main:
        print(f"Stage II trained in {time.time() - t0:.1f} s", file=sys.stderr)
        with atomic_dir(out) as tmp:
            save_model(model, weights, tmp, teacher_dir)
        write_json(metrics_path, metrics)
        ckpt_path.unlink(missing_ok=True)
    if place.world_size > 1:
        dist.barrier()
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# The ablation cells (DVC matrix stages stage2-train, stage2-measure, stage2-evaluate): one per gamma x budget
# ---------------------------------------------------------------------------------------------------------------


def train_cell(params: Params, gamma: float, budget: float, teacher_dir: Path, stage1_dir: Path, prepared: Path,
               speech: Path, features: Path, select_dir: Path, out: Path, live_dir: Path, metrics_path: Path,
               checkpoints: Path) -> dict:
    """Stage II on the D_active that active-select drew with `gamma` for `budget` (a fraction of D_speech)."""
    checked_stage2_cell_name(params, gamma, budget)
    ids = active_ids(select_dir, budget)
    metrics = train_stage2(params, params.active.tokens, teacher_dir, stage1_dir, prepared, speech, features,
                           Path(select_dir) / "speech", Path(select_dir) / "features", out, live_dir, metrics_path,
                           checkpoints, active_ids=ids)
    if init_distributed().main:
        metrics = {"gamma": gamma, "budget": budget, **metrics}
        write_json(metrics_path, metrics)
    return metrics


def measure_cell(params: Params, gamma: float, budget: float, teacher_dir: Path, model_dir: Path, speech: Path,
                 features: Path, metrics_path: Path) -> dict:
    """M and F of a Stage II model on the `measure` stage's test documents and layouts (without its controls)."""
    checked_stage2_cell_name(params, gamma, budget)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    docs = load_aligned(Path(speech) / "test", Path(features) / "test", tokenizer)
    metrics = {"gamma": gamma, "budget": budget,
               **measure_model(params, load_teacher(teacher_dir), load_student(model_dir, teacher_dir).eval(), docs,
                               controls=False)}
    write_json(metrics_path, metrics)
    return metrics


@torch.no_grad()
def evaluate_cell(params: Params, gamma: float, budget: float, teacher_dir: Path, model_dir: Path, root: Path,
                  features: Path, out: Path, metrics_path: Path) -> dict:
    """A Stage II model in text and speech mode on the first active.eval_items items of every task and format."""
    checked_stage2_cell_name(params, gamma, budget)
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    items = first_items(eval_items(params, root), params.active.eval_items, params.active.family_items)
    model = load_student(model_dir, teacher_dir).eval()
    records = score_items(items, tokenizer, [("student", "text", model.lm), ("student", "speech", model)],
                          FeatureReader(Path(features) / "eval"), desc=f"evaluate Stage II γ={gamma} {budget}")
    write_jsonl(out, records["student"])
    metrics = {"gamma": gamma, "budget": budget, "headline": HEADLINE, "results": summarize(records["student"])}
    write_json(metrics_path, metrics)
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# stage2-categories: Figure 7's paired test needs the active model on every item of its tasks
# (salad.analysis.category_gains)


@torch.no_grad()
def category_stage(params: Params, teacher_dir: Path, model_dir: Path, root: Path, features: Path, out: Path,
                   metrics_path: Path) -> dict:
    """The active Stage II model on every item `evaluate` scores of `active.category_tasks`, in speech mode and every
    format."""
    expected = stage2_cell_name(params.active.gamma, params.active.budget)
    if Path(model_dir).parent.name != expected:
        raise ValueError(f"{model_dir} is not the Stage II model of γ = active.gamma, budget = active.budget "
                         f"(expected data/stage2/{expected}/model)")
    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(teacher_dir)
    tasks = category_tasks(params)  # params validation made sure evaluate scores them
    items = [it for it in eval_items(params, root) if it[1].task in tasks]
    model = load_student(model_dir, teacher_dir).eval()
    records = score_items(items, tokenizer, [("student", "speech", model)], FeatureReader(Path(features) / "eval"),
                          desc=f"Figure 7 tasks, Stage II γ={params.active.gamma} {params.active.budget}")["student"]
    write_jsonl(out, records)
    metrics = {"gamma": params.active.gamma, "budget": params.active.budget, "headline": HEADLINE,
               "results": summarize(records)}
    write_json(metrics_path, metrics)
    return metrics
