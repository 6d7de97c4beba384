"""Training checkpoints shared by Stage I (salad.train) and Stage II (salad.stage2).

A checkpoint holds everything a killed run needs to continue bit for bit on CPU: the model, the optimizer (with each
group's peak rate, so the schedule can be recomputed from the step), the next step (the data position: the plan is a
pure function of the seed), the positions trained so far, the losses so far, and torch's RNG state. A fingerprint of
the params and inputs guards against resuming a run that belongs to other params or data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch


def checkpoint_state(model, optimizer, fingerprint: str, next_step: int, positions: int,
                     losses: list[float]) -> dict:
    return {"fingerprint": fingerprint, "next_step": next_step, "positions": positions, "losses": list(losses),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}


def restore_checkpoint(state: dict, model, optimizer) -> tuple[int, int, list[float]]:
    """Load `state` into model and optimizer; returns (next step, positions, losses)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return state["next_step"], state["positions"], list(state["losses"])


def resume(path: Path, fingerprint: str, model, optimizer, device, steps: int,
           what: str = "") -> tuple[int, int, list[float]]:
    """Continue from `path` when it exists and belongs to this run (of `steps` steps); else start fresh: (0, 0, [])."""
    if not path.exists():
        return 0, 0, []
    state = torch.load(path, weights_only=False, map_location=device)
    if state["fingerprint"] != fingerprint:
        print(f"ignoring {path}: it belongs to other params or inputs", file=sys.stderr)
        return 0, 0, []
    start, positions, losses = restore_checkpoint(state, model, optimizer)
    print(f"resuming {what}from {path} at step {start} of {steps}", file=sys.stderr)
    return start, positions, losses


def tail_mean(losses: list[float]) -> float:
    """Mean loss over the last tenth of the steps (at least one)."""
    return float(np.mean(losses[-max(1, len(losses) // 10):]))
