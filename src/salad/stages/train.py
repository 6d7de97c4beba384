"""The `train` stage: Stage I of the speech-adapted LM (docs/design.md §4–5), straight-line.

Every optimizer step is, with probability `speech_probability`, interleaved speech from D_speech, else text-only
broad text (the corpus mixing of the paper's Stage I). The loss is α·L_DIST + (1−α)·L_NLL over the masked positions
of the step. The whole plan is drawn up front from the seed (salad.training.plan), so the number of optimizer steps
for a budget of sequence positions is known before training, which the WSD schedule needs. The steps, on one or many
processes, with or without FSDP, are salad.training.loop's.

Several budgets from one run (WSD, Hägele et al. 2024). The plan for a smaller budget B is a prefix of the plan for
`tokens` (drawn from the same generator in the same order), and up to its decay start, B's schedule equals the main
run's (same warmup, constant peak). So the state before step decay_start(S_B) is saved while the main run passes it
(`stable-<B>.pt`), and after the main run each budget branches its own decay from there: the result equals a run
trained with `tokens = B` from scratch. The main run's own pre-decay state is kept in the output as
`pre_decay.pt`: Stage II resumes from it.

Checkpoints (`last.pt` every `checkpoint_every` steps) hold the model, optimizer (with each group's peak rate),
schedule position, data position, losses and RNG state; a killed run resumes bit for bit on CPU.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from salad.config import Params
from salad.data.documents import TextDocs, load_aligned, text_mix_file
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.model.teacher import load_teacher, load_tokenizer
from salad.storage.atomic import atomic_dir, write_json
from salad.training.checkpoint import read_checkpoint, restore_checkpoint, resume, tail_mean
from salad.training.fsdp import shard_for_training
from salad.training.loop import (StepStats, build_optimizer, init_distributed, run_fingerprint, run_steps,
                                 save_model, snapshot)
from salad.training.plan import plan_batches, steps_for_budget
from salad.training.schedule import decay_start, wsd_factor


def train(params: Params, teacher_dir: Path, prepared: Path, speech: Path, features: Path,
          out: Path, live_dir: Path, metrics_path: Path, checkpoints: Path, corpus: str = "speech",
          stop_after: int | None = None) -> dict:
    """Train Stage I (and branch the decay of each extra budget); resume exactly from `checkpoints/last.pt`.

    `corpus` names the speech store trained on (under `speech` and `features`): "speech" is D_speech, the narrow
    natural side; "broad" is D_broad, the grid's broad synthetic side. `stop_after`: test hook, raise after this many
    optimizer steps of the main run, as a killed run would stop (after its checkpoints).
    """
    cfg = params.train
    place = init_distributed()
    torch.manual_seed(params.seed)
    t0 = time.time()
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir, place.device)
    speech_docs = load_aligned(speech / corpus, features / corpus, tokenizer)
    text_docs = TextDocs(text_mix_file(params, prepared), tokenizer, cfg.max_len)
    feature_dim = speech_docs[0].features.shape[1]

    emb_std = float(teacher.get_input_embeddings().weight.std())
    adapter_cfg = AdapterConfig(
        feature_dim=feature_dim, lm_hidden=teacher.config.hidden_size, layers=cfg.adapter_layers,
        width=cfg.adapter_width, heads=cfg.adapter_heads, kv_heads=cfg.adapter_kv_heads, mlp=cfg.adapter_mlp,
        max_frames=max(cfg.max_len, 64), output_std=emb_std,
    )
    model = SpeechAdaptedLM.from_teacher(teacher_dir, adapter_cfg).to(place.device)
    if cfg.fsdp:
        shard_for_training(model, teacher, cfg, place)  # before the optimizer: it holds the shards
    optimizer = build_optimizer(model, cfg)

    plan = plan_batches(cfg, params.seed, speech_docs, text_docs)
    steps = len(plan)
    if cfg.batch_size < place.world_size:
        raise ValueError(f"train.batch_size {cfg.batch_size} < {place.world_size} processes: a rank would idle")
    branches = {b: steps_for_budget(plan, b) for b in cfg.budgets}
    for budget, n in branches.items():
        if decay_start(n, cfg.decay_fraction) < cfg.warmup_steps:
            raise ValueError(f"train.budgets: budget {budget} has {n} steps, too few to finish the warmup of "
                             f"{cfg.warmup_steps} steps before its decay; its schedule would not share the main run's")
    branch_at = {decay_start(n, cfg.decay_fraction): b for b, n in branches.items()}
    save_at = {step: [checkpoints / f"stable-{budget}.pt"] for step, budget in branch_at.items()}
    save_at.setdefault(decay_start(steps, cfg.decay_fraction), []).append(checkpoints / "pre_decay.pt")

    fingerprint = run_fingerprint(params, [teacher_dir / "model.safetensors", features / corpus / "index.jsonl",
                                           *sorted((features / corpus / "shards").glob("*.done.json")),
                                           text_mix_file(params, prepared)])
    ckpt_path = checkpoints / "last.pt"
    start, positions, losses = resume(ckpt_path, fingerprint, model, optimizer, place.device, steps)

    def logged(s: StepStats) -> dict:
        return {"train/loss": s.loss, "train/kl": s.kl, "train/nll": s.nll, "train/lr_adapter": s.lrs[0],
                "train/lr_lm": s.lrs[2], "train/positions": s.positions,
                "train/speech_batch": int(plan[s.step].kind == "speech")}

    docs = (speech_docs, text_docs)
    model.train()
    positions, losses = run_steps(
        model, teacher, optimizer, plan, docs, feature_dim, cfg, params.alpha, place, start=start, steps=steps,
        positions=positions, losses=losses, desc=f"train α={params.alpha}",
        lr_factor=lambda step: wsd_factor(step, steps, cfg.warmup_steps, cfg.decay_fraction),
        fingerprint=fingerprint, ckpt_path=ckpt_path, save_at=save_at, live_dir=live_dir, metrics=logged,
        stop_after=stop_after)

    metrics = {
        "alpha": params.alpha, "corpus": corpus, "steps": steps, "positions": positions,
        "speech_batches": sum(p.kind == "speech" for p in plan),
        "adapter_parameters": sum(p.numel() for p in model.adapter.parameters()),
        "final_loss": tail_mean(losses),
    }
    main_state = snapshot(model, place)

    # Each extra budget: its decay, branched from the stable state saved when the main run passed its decay start.
    budget_models = {}
    for budget, n in sorted(branches.items()):
        state = read_checkpoint(checkpoints / f"stable-{budget}.pt", model, place.device)
        if state["fingerprint"] != fingerprint:
            raise RuntimeError(f"{checkpoints}/stable-{budget}.pt belongs to other params or inputs; remove it")
        _, b_positions, b_losses = restore_checkpoint(state, model, optimizer)
        b_positions, b_losses = run_steps(
            model, teacher, optimizer, plan, docs, feature_dim, cfg, params.alpha, place,
            start=decay_start(n, cfg.decay_fraction), steps=n, positions=b_positions, losses=b_losses,
            desc=f"decay of budget {budget}",
            lr_factor=lambda step, n=n: wsd_factor(step, n, cfg.warmup_steps, cfg.decay_fraction))
        metrics.setdefault("budgets", {})[str(budget)] = {"steps": n, "positions": b_positions,
                                                          "final_loss": tail_mean(b_losses)}
        budget_models[budget] = snapshot(model, place)

    if place.main:
        print(f"trained in {time.time() - t0:.1f} s", file=sys.stderr)
        with atomic_dir(out) as tmp:
            save_model(model, main_state, tmp, teacher_dir)
            for budget, weights in budget_models.items():
                save_model(model, weights, tmp / "budgets" / str(budget), teacher_dir)
            # Stage II resumes from here: the main run's state before its decay (model, optimizer, data position).
            os.replace(checkpoints / "pre_decay.pt", tmp / "pre_decay.pt")
        write_json(metrics_path, metrics)
        for path in [ckpt_path, *(checkpoints / f"stable-{b}.pt" for b in branches)]:
            path.unlink(missing_ok=True)  # the finished models supersede them
    if place.world_size > 1:
        dist.barrier()
    return metrics
