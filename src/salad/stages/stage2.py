"""Stage II of SALAD (paper Section 4, Appendix A.3; docs/design.md §6): continue Stage I on the actively selected speech.

Stage II resumes from Stage I's last checkpoint before its learning-rate decay (`pre_decay.pt` in the Stage I
model directory: model, optimizer with each group's peak rate, RNG) and trains on three sources with equal
probability, one source per optimizer step: D_speech (interleaved, as in Stage I), D_active (the synthesized
documents that active selection chose, interleaved the same way) and the text-only corpus. The loss is L_DIST alone
(α = 1: "minimize L_DIST(D_speech ∪ D_active)"), and the learning rate decays linearly from the resumed peak to
zero over Stage II's budget, so Stage II is the decay phase Stage I did not take.

The optimizer step, its normalisation, micro-batches and ranks are Stage I's (salad.stages.train.train_step); so are the
checkpoints: `last.pt` every `train.checkpoint_every` steps, and a killed run resumes bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers import AutoTokenizer

from salad.storage.atomic import atomic_dir, read_jsonl, write_json, write_jsonl
from salad.training.checkpoint import read_checkpoint, restore_checkpoint, resume, tail_mean
from salad.training.fsdp import shard_for_training
from salad.config import Params
from salad.data.documents import load_aligned
from salad.data.interleave import AlignedDoc, draw_layout, interleave, text_only
from salad.training.live import live_logger
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.training.schedule import wsd_factor
from salad.random_streams import stream
from salad.stages.train import (EpochSampler, PlannedBatch, TextDocs, build_optimizer, init_distributed, load_teacher,
                         run_fingerprint, save_checkpoint, save_model, snapshot, text_mix_file, train_step)

SOURCES = ("speech", "active", "text")
"""Stage II's sources, drawn with equal probability for each optimizer step (paper Section 4)."""
ALPHA = 1.0
"""Stage II trains with the distillation loss alone."""


def plan_stage2(cfg, seed: int, tokens: int, speech_docs: list[AlignedDoc], active_docs: list[AlignedDoc],
                text_docs) -> tuple[list[PlannedBatch], list[str]]:
    """The steps of Stage II until `tokens` positions (the last step may overshoot) and each step's source.

    Speech and active steps are interleaved sequences whose `doc_index` points into `speech_docs + active_docs`
    (so that Stage I's batch assembly serves both); the draws come from their own stream of the seed.
    """
    if not speech_docs or not active_docs:
        raise ValueError(f"Stage II needs D_speech and D_active documents, got {len(speech_docs)} and "
                         f"{len(active_docs)}")
    if len(text_docs) == 0:
        raise ValueError("Stage II needs text-only documents to mix in")
    rng = stream(seed, "stage2-plan")
    pools = {"speech": (speech_docs, 0), "active": (active_docs, len(speech_docs))}
    samplers = {name: EpochSampler(n, rng) for name, n in
                (("speech", len(speech_docs)), ("active", len(active_docs)), ("text", len(text_docs)))}
    plan, sources, seen = [], [], 0
    while seen < tokens:
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        idx = samplers[source].take(cfg.batch_size)
        if source == "text":
            planned = PlannedBatch("text", [text_only(text_docs[i], cfg.max_len) for i in idx], idx)
        else:
            docs, offset = pools[source]
            seqs = [interleave(docs[i], draw_layout(docs[i].cut_points(), docs[i].n_words, rng, cfg.text_span_words,
                                                     cfg.speech_span_words), cfg.max_len) for i in idx]
            planned = PlannedBatch("speech", seqs, [offset + i for i in idx])
        plan.append(planned)
        sources.append(source)
        seen += planned.positions
    return plan, sources


_stop_after: int | None = None
"""Test hook: raise after this many optimizer steps, as a killed run would stop (after its checkpoints)."""


def linear_decay(step: int, steps: int) -> float:
    """Multiplier of the resumed peak rate at Stage II step `step`: no warmup, then Stage I's linear decay over
    the whole of Stage II ((steps − step)/(steps + 1): zero one step after the last)."""
    return wsd_factor(step, steps, warmup_steps=0, decay_fraction=1.0)


def train_stage2(params: Params, tokens: int, teacher_dir: Path, stage1_dir: Path, prepared: Path, speech: Path,
                 features: Path, active_speech: Path, active_features: Path, out: Path, live_dir: Path,
                 metrics_path: Path, checkpoints: Path, active_ids: list[str] | None = None) -> dict:
    """Stage II for `tokens` positions from `stage1_dir/pre_decay.pt`; the model is written to `out`.
    `active_ids`: the documents of the active store that form D_active (all of them when None), in draw order."""
    cfg = params.train
    place = init_distributed()
    torch.manual_seed(params.seed)
    t0 = time.time()
    resume_from = Path(stage1_dir) / "pre_decay.pt"
    if not resume_from.exists():
        raise FileNotFoundError(f"{resume_from} is missing: Stage II resumes from Stage I's last pre-decay "
                                f"checkpoint, which `salad train` keeps in its model directory")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
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

    docs = (speech_docs + active_docs, text_docs)
    model.train()
    logger = live_logger(live_dir, resume=start > 0) if place.main else contextlib.nullcontext()
    with logger as live:
        for step in tqdm(range(start, steps), desc="Stage II", unit="step", mininterval=5, initial=start,
                         total=steps, disable=not place.main):
            factor = linear_decay(step, steps)
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * factor
            loss, kl, nll = train_step(model, teacher, optimizer, plan[step], docs, feature_dim, cfg, ALPHA, place)
            positions += plan[step].positions
            losses.append(loss)
            if place.main and (step % cfg.log_every == 0 or step == steps - 1):
                live.step = step
                live.log_metric("stage2/kl", kl)   # the loss: alpha = 1
                live.log_metric("stage2/nll", nll)
                live.log_metric("stage2/lr_adapter", optimizer.param_groups[0]["lr"])
                live.log_metric("stage2/positions", positions)
                live.log_metric("stage2/source", SOURCES.index(sources[step]))
                live.make_summary()
            done = step + 1 == steps
            if done or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
                save_checkpoint(ckpt_path, place, model, optimizer, fingerprint, step + 1, positions, losses)
            if _stop_after is not None and step + 1 == _stop_after:
                raise KeyboardInterrupt(f"stopped after step {step + 1} (test hook)")

    metrics = {"steps": steps, "positions": positions, "final_loss": tail_mean(losses),
               "batches": {name: sources.count(name) for name in SOURCES},
               "active_documents": len(active_docs)}
    weights = snapshot(model, place)  # under FSDP every rank gathers, rank 0 keeps the full tensors
    if place.main:
        print(f"Stage II trained in {time.time() - t0:.1f} s", file=sys.stderr)
        with atomic_dir(out) as tmp:
            save_model(model, weights, tmp)
            tokenizer.save_pretrained(tmp / "lm")
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
    from salad.stages.active import active_ids

    _check_cell(params, gamma, budget)
    ids = active_ids(select_dir, budget)
    metrics = train_stage2(params, params.active.tokens, teacher_dir, stage1_dir, prepared, speech, features,
                           Path(select_dir) / "speech", Path(select_dir) / "features", out, live_dir, metrics_path,
                           checkpoints, active_ids=ids)
    if init_distributed().main:
        metrics = {"gamma": gamma, "budget": budget, **metrics}
        write_json(metrics_path, metrics)
    return metrics


def _check_cell(params: Params, gamma: float, budget: float) -> None:
    if gamma not in params.active.gammas or budget not in params.active.budgets:
        raise ValueError(f"cell gamma={gamma}, budget={budget} is not in active.gammas {list(params.active.gammas)} "
                         f"x active.budgets {list(params.active.budgets)}")


def measure_cell(params: Params, gamma: float, budget: float, teacher_dir: Path, model_dir: Path, speech: Path,
                 features: Path, metrics_path: Path) -> dict:
    """M and F of a Stage II model on the `measure` stage's test documents and layouts (without its controls)."""
    from salad.stages.measure import measure_model

    _check_cell(params, gamma, budget)
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    docs = load_aligned(Path(speech) / "test", Path(features) / "test", tokenizer)
    metrics = {"gamma": gamma, "budget": budget,
               **measure_model(params, load_teacher(teacher_dir), SpeechAdaptedLM.load(model_dir).eval(), docs,
                               controls=False)}
    write_json(metrics_path, metrics)
    return metrics


@torch.no_grad()
def evaluate_cell(params: Params, gamma: float, budget: float, teacher_dir: Path, model_dir: Path, root: Path,
                  features: Path, out: Path, metrics_path: Path) -> dict:
    """A Stage II model in text and speech mode on the first active.eval_items items of every task and format."""
    from salad.data.documents import FeatureReader
    from salad.stages.evaluate import HEADLINE, eval_items, first_items, score_items, summarize

    _check_cell(params, gamma, budget)
    torch.manual_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    items = first_items(eval_items(params, root), params.active.eval_items)
    model = SpeechAdaptedLM.load(model_dir).eval()
    records = score_items(items, tokenizer, [("student", "text", model.lm), ("student", "speech", model)],
                          FeatureReader(Path(features) / "eval"), desc=f"evaluate Stage II γ={gamma} {budget}")
    write_jsonl(out, records["student"])
    metrics = {"gamma": gamma, "budget": budget, "headline": HEADLINE, "results": summarize(records["student"])}
    write_json(metrics_path, metrics)
    return metrics


def cell_name(gamma: float, budget: float) -> str:
    """The name of a cell's outputs, as dvc.yaml renders it: <gamma>-<budget>."""
    return f"{float(gamma)}-{float(budget)}"


def stage2_results(params: Params, metrics_root: Path, stage1_records: Path, stage2_root: Path) -> pd.DataFrame:
    """One row per Stage II cell (gamma, budget, D_active documents and seconds, M ± se, F, the average over tasks of
    the best-format headline accuracy in speech and text) and a first row for Stage I (stage "I"), scored on the
    same items: the main `evaluate` stage's per-item records `stage1_records` restricted to the items of the cells'
    records (stage2_root/<cell>/eval.jsonl), with the main `measure` stage's M and F."""
    from salad.stages.evaluate import HEADLINE, summarize

    root = Path(metrics_root)

    def average_best(results: dict, mode: str) -> float:
        return float(np.mean([max(f[mode][HEADLINE] for f in formats.values() if mode in f)
                              for formats in results.values()]))

    rows, items = [], set()
    for gamma in params.active.gammas:
        select = json.loads((root / "active" / "select" / f"{gamma}.json").read_text())
        for budget in params.active.budgets:
            cell = cell_name(gamma, budget)
            try:
                measured, evaluated = (json.loads((root / "stage2" / cell / f"{n}.json").read_text())
                                       for n in ("measure", "evaluate"))
                items |= {(r["task"], r["format"], r["mode"], r["id"])
                          for r in read_jsonl(Path(stage2_root) / cell / "eval.jsonl")}
            except FileNotFoundError as e:
                raise FileNotFoundError(f"Stage II cell {cell}: {e.filename} is missing; run `dvc repro`") from None
            spent = select["budgets"][str(budget)]
            rows.append({"stage": "II", "gamma": gamma, "budget": budget, "active_documents": spent["documents"],
                         "active_seconds": spent["seconds"], "M": measured["M"], "M_se": measured["M_se"],
                         "F": measured["F"], **{f"{m}_accuracy": average_best(evaluated["results"], m)
                                                for m in ("speech", "text")}})
    stage1_measure = json.loads((root / "measure.json").read_text())
    stage1 = summarize([r for r in read_jsonl(stage1_records) if (r["task"], r["format"], r["mode"], r["id"]) in items])
    rows.insert(0, {"stage": "I", "gamma": float("nan"), "budget": 0.0, "active_documents": 0, "active_seconds": 0.0,
                    "M": stage1_measure["M"], "M_se": stage1_measure["M_se"], "F": stage1_measure["F"],
                    **{f"{m}_accuracy": average_best(stage1, m) for m in ("speech", "text")}})
    return pd.DataFrame(rows)
