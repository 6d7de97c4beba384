"""Training checkpoints of the training loop (salad.training.loop) that Stage I and Stage II share.

A checkpoint holds everything a killed run needs to continue bit for bit on CPU: the model, the optimizer (with each
group's peak rate, so the schedule can be recomputed from the step), the next step (the data position: the plan is a
pure function of the seed), the positions trained so far, the losses so far, and torch's RNG state. A fingerprint of
the params and inputs guards against resuming a run that belongs to other params or data.

A model sharded with FSDP (salad.training.fsdp) is checkpointed in the same format: its state is gathered to full tensors
(every rank takes part; rank 0, which writes the file, holds them) and a checkpoint is loaded into it shard by shard,
so a checkpoint resumes with or without FSDP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from salad.training.fsdp import full_state, is_sharded, load_full_state


def checkpoint_state(model, optimizer, fingerprint: str, next_step: int, positions: int,
                     losses: list[float]) -> dict:
    """What a checkpoint holds. For a sharded model a collective: every rank calls it, only rank 0's is complete."""
    if is_sharded(model):
        keep = dist.get_rank() == 0
        model_state, optimizer_state = full_state(model.state_dict(), keep), full_state(optimizer.state_dict(), keep)
    else:
        model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
    return {"fingerprint": fingerprint, "next_step": next_step, "positions": positions, "losses": list(losses),
            "model": model_state, "optimizer": optimizer_state, "torch_rng": torch.get_rng_state()}


def read_checkpoint(path: Path, model, device) -> dict:
    """torch.load of a checkpoint onto `device`; for a sharded model memory-mapped on the CPU instead, so that each
    rank copies only its shards to the device (a full 7B state with AdamW is 84 GB)."""
    if is_sharded(model):
        return torch.load(path, weights_only=False, map_location="cpu", mmap=True)
    return torch.load(path, weights_only=False, map_location=device)


def restore_checkpoint(state: dict, model, optimizer) -> tuple[int, int, list[float]]:
    """Load `state` into model and optimizer; returns (next step, positions, losses)."""
    if is_sharded(model):
        load_full_state(model, optimizer, state["model"], state["optimizer"])
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return state["next_step"], state["positions"], list(state["losses"])


def resume(path: Path, fingerprint: str, model, optimizer, device, steps: int,
           what: str = "") -> tuple[int, int, list[float]]:
    """Continue from `path` when it exists and belongs to this run (of `steps` steps); else start fresh: (0, 0, [])."""
    if not path.exists():
        return 0, 0, []
    state = read_checkpoint(path, model, device)
    if state["fingerprint"] != fingerprint:
        print(f"ignoring {path}: it belongs to other params or inputs", file=sys.stderr)
        return 0, 0, []
    start, positions, losses = restore_checkpoint(state, model, optimizer)
    print(f"resuming {what}from {path} at step {start} of {steps}", file=sys.stderr)
    return start, positions, losses


def tail_mean(losses: list[float]) -> float:
    """Mean loss over the last tenth of the steps (at least one)."""
    return float(np.mean(losses[-max(1, len(losses) // 10):]))
