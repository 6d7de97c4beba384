"""The `teacher` stage: the teacher LM (salad.model.teacher), trained on the pretraining text or adopted pretrained.

At the tiny scale the stage trains a byte-level BPE tokenizer and a tiny Qwen2-architecture causal LM on
prepared/pretrain.jsonl (WSD schedule, random windows of the token stream); at paper scale (`teacher.pretrained`)
it saves a pretrained LM (e.g. Qwen2.5-3B) from local files as the pipeline's teacher. Either way the output is a
`save_pretrained` folder, with its test perplexity in the metrics.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from salad.config import Params
from salad.model.teacher import (build_model, load_pretrained, perplexity, token_stream, train_tokenizer,
                                 unigram_perplexity)
from salad.storage.atomic import atomic_dir, read_jsonl, write_json
from salad.training.live import live_logger
from salad.training.schedule import wsd_factor


def adopt_pretrained(params: Params, prepared: Path, out: Path, live_dir: Path, metrics_path: Path) -> dict:
    """The teacher stage at paper scale: the pretrained LM, saved as the pipeline's teacher, with its perplexity."""
    cfg = params.teacher
    tokenizer, model = load_pretrained(cfg.pretrained)
    test = [r["text"] for r in read_jsonl(prepared / "test.jsonl")]
    context = min(cfg.context, getattr(model.config, "max_position_embeddings", cfg.context))
    metrics = {
        "pretrained": cfg.pretrained,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_perplexity": round(perplexity(model, tokenizer, test, context), 2),
        "vocab_size": len(tokenizer),
    }
    with live_logger(live_dir) as live:  # no training curve: the declared output still exists
        live.log_metric("test/perplexity", metrics["test_perplexity"])
    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
    write_json(metrics_path, metrics)
    return metrics


def train_teacher(params: Params, prepared: Path, out: Path, live_dir: Path, metrics_path: Path) -> dict:
    """The teacher stage: train the tiny teacher on prepared/pretrain.jsonl, or adopt `teacher.pretrained`."""
    cfg = params.teacher
    if cfg.pretrained is not None:
        return adopt_pretrained(params, prepared, out, live_dir, metrics_path)
    torch.manual_seed(params.seed)
    pretrain = [r["text"] for r in read_jsonl(prepared / "pretrain.jsonl")][:cfg.max_documents]
    test = [r["text"] for r in read_jsonl(prepared / "test.jsonl")]

    t0 = time.time()
    tokenizer = train_tokenizer(pretrain, cfg.vocab_size)
    stream = token_stream(tokenizer, pretrain)
    vocab = len(tokenizer)
    model = build_model(cfg, vocab)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    steps = max(1, cfg.tokens // (cfg.batch_size * cfg.context))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: wsd_factor(min(s, steps - 1), steps, cfg.warmup_steps, cfg.decay_fraction))
    rng = np.random.default_rng(params.seed)
    if len(stream) <= cfg.context + 1:
        raise ValueError(f"pretraining text has {len(stream)} tokens, fewer than one window of {cfg.context}")

    model.train()
    with live_logger(live_dir) as live:
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

    metrics = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": steps * cfg.batch_size * cfg.context,
        "steps": steps,
        "final_train_loss": round(loss.item(), 4),
        "test_perplexity": round(perplexity(model, tokenizer, test, cfg.context), 2),
        "test_unigram_perplexity": round(unigram_perplexity(stream, tokenizer, test, vocab), 2),
        "vocab_size": vocab,
    }
    print(f"teacher trained in {time.time() - t0:.1f} s", file=sys.stderr)
    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
    write_json(metrics_path, metrics)
    return metrics
