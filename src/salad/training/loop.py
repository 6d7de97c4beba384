"""The training loop of Stage I and Stage II (docs/design.md §4–5): processes, the optimizer step, checkpoints.

One step, many processes. A step holds `batch_size` sequences (salad.training.plan). Under `torchrun`
(WORLD_SIZE > 1) rank r takes sequences r, r+W, r+2W, ... of every step; each rank runs its share in micro-batches
of `micro_batch_size` sequences, accumulating gradients. Every micro-batch's loss is divided by the step's GLOBAL
count of masked positions (known to every rank from the plan, no communication needed), and the gradients are summed
over ranks, so the update equals the one-process, one-micro-batch update up to floating-point summation order
(docs/design.md §4). The gradient all-reduce is written out (one flattened SUM over all parameters) rather than
delegated to DistributedDataParallel: text-only steps leave the adapter without gradients, which DDP would reject
unless it searched the graph for unused parameters every step.

Paper scale (3B/7B): `train.fsdp` shards the student (parameters, gradients, AdamW states) and the frozen teacher
over the ranks with FSDP2 (salad.training.fsdp), optionally with activation checkpointing and bf16 compute. The step
is the same (same plan, micro-batches and normalisation by the global masked count); FSDP sums the gradients with
its reduce-scatter instead of the all-reduce, and every rank joins every backward (FSDP's collectives), a micro-batch
without masked positions with zero gradients. Checkpoints and models are gathered to full tensors on rank 0, in the
format of the unsharded path.

`run_steps` is the loop both stages run: per step, the checkpoints scheduled at it, the learning rate, the
optimizer step, DVCLive logging every `log_every` steps and at the last, and `last.pt` every `checkpoint_every`
steps and at the last (salad.training.checkpoint: a killed run resumes bit for bit on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from salad.config import Params, TrainConfig
from salad.data.batch import Batch
from salad.model.speech_lm import SpeechAdaptedLM
from salad.model.teacher import copy_tokenizer, record_teacher
from salad.storage.atomic import save_torch
from salad.training.checkpoint import checkpoint_state
from salad.training.fsdp import full_state, is_sharded, settle_gradients, unsharded_copy
from salad.training.live import live_logger
from salad.training.objective import LossSums, distillation_objective, distillation_sums
from salad.training.plan import PlannedBatch, batch_for, micro_batches

# ---------------------------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun) and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1: NCCL on GPUs, gloo on CPUs."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in one flattened buffer.

    A parameter no rank has a gradient for (the adapter on a text-only step) keeps `grad = None`, exactly as in one
    process, so that AdamW skips it (no decay, no moment update); a gradient missing on some ranks counts as zero.
    """
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g, used in zip(params, grads, has.tolist()):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone() if used else None
        offset += g.numel()


def _to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(**{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(Batch)})


# ---------------------------------------------------------------------------------------------------------------
# The optimizer step


def masked_hidden(model: SpeechAdaptedLM, teacher, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states at the masked positions: the student's on c (position i), the teacher's on w (k−1)."""
    hidden = model.hidden_states(batch)[batch.masked_rows, batch.masked_pos]
    with torch.no_grad():
        t_hidden = teacher.model(input_ids=batch.text_ids, attention_mask=batch.text_mask).last_hidden_state
        t_hidden = t_hidden[batch.masked_rows, batch.teacher_pos]
    return hidden, t_hidden


def loss_sums(model: SpeechAdaptedLM, teacher, batch: Batch, chunk: int) -> LossSums:
    """Forward KL(Q‖P) and NLL summed over the masked positions of a batch, differentiable: the unfused reference
    that tests hold the fused step (train_step) against."""
    return distillation_sums(*masked_hidden(model, teacher, batch), batch.target_ids, model.lm.lm_head,
                             teacher.lm_head, chunk)


def build_optimizer(model: SpeechAdaptedLM, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with separate peak rates for adapter and LM; no weight decay on biases and norms."""
    groups = []
    for module, lr in ((model.adapter, cfg.lr_adapter), (model.lm, cfg.lr_lm)):
        params_2d = [p for p in module.parameters() if p.ndim >= 2]
        params_1d = [p for p in module.parameters() if p.ndim < 2]
        groups += [{"params": params_2d, "lr": lr, "peak_lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": params_1d, "lr": lr, "peak_lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, betas=(0.9, 0.95))


def set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group's rate: its peak rate times the schedule's `factor`."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor


def train_step(model: SpeechAdaptedLM, teacher, optimizer, planned: PlannedBatch, docs: tuple, feature_dim: int,
               cfg: TrainConfig, alpha: float, place: Dist) -> tuple[float, float, float]:
    """One optimizer step over this rank's micro-batches; returns the step's (loss, mean KL, mean NLL), global."""
    count = planned.n_masked
    sharded = is_sharded(model)
    optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(2, dtype=torch.float64)
    for which in micro_batches(planned, place.rank, place.world_size, cfg.micro_batch_size):
        batch = _to(batch_for(planned, *docs, feature_dim, which), place.device)
        hidden, t_hidden = masked_hidden(model, teacher, batch)
        # fused: each chunk's logits are formed once, with their gradient, and never recomputed in backward
        loss, part = distillation_objective(hidden, t_hidden, batch.target_ids, model.lm.lm_head, teacher.lm_head,
                                            alpha, count, cfg.kl_chunk, divergence=cfg.divergence,
                                            beta=cfg.jsd_beta)
        if loss.requires_grad:
            loss.backward()
        elif sharded:
            # no masked position here: still join the backward, whose reduce-scatters are collectives
            (hidden.sum() * 0.0).backward()
        sums += torch.tensor([part.kl.item(), part.nll.item()], dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    if sharded:
        settle_gradients(model, step_has_speech=any(s.speech_spans for s in planned.seqs))
        if place.world_size > 1:
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    elif place.world_size > 1:
        all_reduce_gradients(params)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    kl, nll = (sums / count).tolist()
    return alpha * kl + (1.0 - alpha) * nll, kl, nll


def run_fingerprint(params: Params, inputs: list[Path]) -> str:
    """What a checkpoint must match to be resumed: the training params and the bytes of the training inputs.

    How the step is computed (ranks, micro-batches, FSDP sharding, activation checkpointing) is left out: it changes
    only the floating-point summation order, so a run may resume on another number of processes, with or without FSDP.
    """
    cfg = dataclasses.asdict(params.train)
    for how in ("micro_batch_size", "fsdp", "activation_checkpointing"):
        cfg.pop(how)
    if cfg["precision"] == "fp32":  # the default leaves the fingerprints of runs from before the key existed as they were
        cfg.pop("precision")
    if cfg["divergence"] != "jsd":  # jsd_beta is read by 'jsd' alone
        cfg.pop("jsd_beta")
    if cfg["divergence"] == "forward_kl":  # likewise the paper's divergence, the only one before the key existed
        cfg.pop("divergence")
    h = hashlib.sha256(json.dumps([params.seed, params.alpha, cfg], sort_keys=True, default=list).encode())
    for path in inputs:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Saving: rank 0 writes; a sharded model's full state is gathered by every rank


def save_checkpoint(path: Path, place: Dist, model, optimizer, *state) -> None:
    """Rank 0 writes `checkpoint_state(model, optimizer, *state)` to `path`; under FSDP every rank gathers it."""
    if place.main or is_sharded(model):
        checkpoint = checkpoint_state(model, optimizer, *state)
        if place.main:
            save_torch(path, checkpoint)


def snapshot(model, place: Dist) -> dict | None:
    """A copy of the model's weights (under FSDP: full tensors, on rank 0 only; every rank must call it)."""
    if is_sharded(model):
        return full_state(model.state_dict(), keep=place.main)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_model(model, weights: dict, out_dir: Path, teacher_dir: Path) -> None:
    """`model` with `weights` (a snapshot) saved to `out_dir` (a sharded model through an unsharded copy), with the
    teacher's tokenizer files copied byte for byte into its lm/ and the teacher's identity recorded."""
    if is_sharded(model):
        model = unsharded_copy(model, weights)
    else:
        model.load_state_dict(weights)
    model.save(out_dir)
    copy_tokenizer(teacher_dir, out_dir / "lm")
    record_teacher(teacher_dir, out_dir)


# ---------------------------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class StepStats:
    """What a step reports to the log: its (global) loss, mean KL and NLL, the positions trained so far including
    it, and each optimizer group's learning rate during it."""

    step: int
    loss: float
    kl: float
    nll: float
    positions: int
    lrs: list[float]


def run_steps(model, teacher, optimizer, plan: list[PlannedBatch], docs: tuple, feature_dim: int, cfg: TrainConfig,
              alpha: float, place: Dist, *, start: int, steps: int, positions: int, losses: list[float],
              lr_factor: Callable[[int], float], desc: str, fingerprint: str | None = None,
              ckpt_path: Path | None = None, save_at: dict[int, list[Path]] | None = None,
              live_dir: Path | None = None, metrics: Callable[[StepStats], dict[str, float]] | None = None,
              stop_after: int | None = None) -> tuple[int, list[float]]:
    """Train steps `start`..`steps − 1` of `plan`; returns the positions and losses so far (`positions` and `losses`
    are those before `start`; `losses` is extended in place).

    lr_factor: the schedule, step → multiplier of each group's peak rate.
    save_at: checkpoints to write when the loop reaches a step, before training it (Stage I's stable-<B>.pt and
    pre_decay.pt); ckpt_path: the resumable `last.pt`, every `checkpoint_every` steps and after the last step.
    live_dir, metrics: the DVCLive folder and what a logged step writes there, in order (rank 0 only).
    stop_after: test hook, raise after this many steps, as a killed run would stop (after its checkpoints).
    """
    logging = place.main and live_dir is not None
    logger = live_logger(live_dir, resume=start > 0) if logging else contextlib.nullcontext()
    with logger as live:
        for step in tqdm(range(start, steps), desc=desc, unit="step", mininterval=5, initial=start, total=steps,
                         disable=not place.main):
            for path in (save_at or {}).get(step, []):
                save_checkpoint(path, place, model, optimizer, fingerprint, step, positions, losses)
            set_learning_rate(optimizer, lr_factor(step))
            lrs = [g["lr"] for g in optimizer.param_groups]
            loss, kl, nll = train_step(model, teacher, optimizer, plan[step], docs, feature_dim, cfg, alpha, place)
            positions += plan[step].positions
            losses.append(loss)
            if logging and (step % cfg.log_every == 0 or step == steps - 1):
                live.step = step
                for name, value in metrics(StepStats(step, loss, kl, nll, positions, lrs)).items():
                    live.log_metric(name, value)
                live.make_summary()
            done = step + 1 == steps
            if ckpt_path is not None and (done or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0)):
                save_checkpoint(ckpt_path, place, model, optimizer, fingerprint, step + 1, positions, losses)
            if stop_after is not None and step + 1 == stop_after:
                raise KeyboardInterrupt(f"stopped after step {step + 1} (test hook)")
    return positions, losses
