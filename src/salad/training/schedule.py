"""Warmup-stable-decay learning-rate schedule (Hägele et al., 2024), as in the paper's Appendix A.2.

Linear warmup to the peak, constant, then linear decay to exactly zero over the final `decay_fraction` of the steps.
The stable phase is what makes budgets cheap: a decay can be branched from any stable-phase checkpoint. Stage II is
the decay Stage I did not take: `linear_decay` from the resumed peak over the whole of Stage II.
"""

from __future__ import annotations

import math


def decay_start(total_steps: int, decay_fraction: float) -> int:
    """First step of the decay phase: the last `ceil(decay_fraction * total)` steps decay."""
    return total_steps - math.ceil(decay_fraction * total_steps)


def wsd_factor(step: int, total_steps: int, warmup_steps: int, decay_fraction: float) -> float:
    """Multiplier of the peak learning rate used for optimizer step `step` (0-based)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    start = decay_start(total_steps, decay_fraction)
    warmup = min(warmup_steps, start)
    if step < warmup:
        return (step + 1) / warmup
    if step < start:
        return 1.0
    # The last step trains at a small positive rate; the rate reaches zero one step after the last.
    n_decay = total_steps - start
    return (total_steps - step) / (n_decay + 1)


def linear_decay(step: int, steps: int) -> float:
    """Multiplier of the resumed peak rate at Stage II step `step`: no warmup, then Stage I's linear decay over
    the whole of Stage II ((steps − step)/(steps + 1): zero one step after the last)."""
    return wsd_factor(step, steps, warmup_steps=0, decay_fraction=1.0)
