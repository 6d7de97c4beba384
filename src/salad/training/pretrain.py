"""Pretraining the tiny teacher LM: next-token prediction on random windows of the pretraining token stream.

The stage `teacher` (salad.stages.teacher) builds the tokenizer and the model (salad.model.teacher) and calls this;
at paper scale the teacher is a pretrained LM and nothing here runs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from salad.config import TeacherConfig
from salad.training.schedule import wsd_factor


def pretrain_teacher(model, stream: np.ndarray, cfg: TeacherConfig, seed: int, live) -> tuple[int, float]:
    """Next-token pretraining of the tiny teacher on `stream` (the token stream of the pretraining text).

    Each step is `cfg.batch_size` windows of `cfg.context` tokens at uniformly random starts (numpy's generator of
    `seed`), cross-entropy over every next token; AdamW (no weight decay on biases and norms), the WSD schedule
    (docs/design.md §5) over `cfg.tokens // (batch_size · context)` steps, gradients clipped to norm 1. Loss, learning
    rate and tokens go to the DVCLive logger `live` every 10 steps and at the last. Returns (steps, the last loss).
    """
    vocab = model.config.vocab_size
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    steps = max(1, cfg.tokens // (cfg.batch_size * cfg.context))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: wsd_factor(min(s, steps - 1), steps, cfg.warmup_steps, cfg.decay_fraction))
    rng = np.random.default_rng(seed)

    model.train()
    for step in tqdm(range(steps), desc="teacher", unit="step", mininterval=5):
        starts = rng.integers(0, len(stream) - cfg.context, size=cfg.batch_size)
        x = torch.from_numpy(np.stack([stream[s:s + cfg.context] for s in starts]))
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 10 == 0 or step == steps - 1:
            live.log_metric("train/loss", loss.item())
            live.log_metric("train/lr", schedule.get_last_lr()[0])
            live.log_metric("train/tokens", (step + 1) * cfg.batch_size * cfg.context)
            live.next_step()
    return steps, loss.item()
