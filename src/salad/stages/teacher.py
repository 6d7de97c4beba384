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

import torch

from salad.config import Params
from salad.model.teacher import (build_model, load_pretrained, perplexity, save_tokenizer, token_stream,
                                 train_tokenizer, unigram_perplexity)
from salad.storage.atomic import atomic_dir, read_jsonl, write_json
from salad.training.live import live_logger
from salad.training.pretrain import pretrain_teacher


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
        save_tokenizer(tokenizer, tmp)
        model.save_pretrained(tmp)
    write_json(metrics_path, metrics)
    return metrics


def train_teacher(params: Params, prepared: Path, out: Path, live_dir: Path, metrics_path: Path) -> dict:
    """The teacher stage: train the tiny teacher on prepared/pretrain.jsonl, or adopt `teacher.pretrained`."""
    cfg = params.teacher
    if cfg.pretrained is not None:
        return adopt_pretrained(params, prepared, out, live_dir, metrics_path)
    torch.manual_seed(params.seed)
    texts = [r["text"] for r in read_jsonl(prepared / "pretrain.jsonl")][:cfg.max_documents]
    test = [r["text"] for r in read_jsonl(prepared / "test.jsonl")]

    t0 = time.time()
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    stream = token_stream(tokenizer, texts)
    vocab = len(tokenizer)
    model = build_model(cfg, vocab)
    if len(stream) <= cfg.context + 1:
        raise ValueError(f"pretraining text has {len(stream)} tokens, fewer than one window of {cfg.context}")
    with live_logger(live_dir) as live:
        steps, final_loss = pretrain_teacher(model, stream, cfg, params.seed, live)

    metrics = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": steps * cfg.batch_size * cfg.context,
        "steps": steps,
        "final_train_loss": round(final_loss, 4),
        "test_perplexity": round(perplexity(model, tokenizer, test, cfg.context), 2),
        "test_unigram_perplexity": round(unigram_perplexity(stream, tokenizer, test, vocab), 2),
        "vocab_size": vocab,
    }
    print(f"teacher trained in {time.time() - t0:.1f} s", file=sys.stderr)
    with atomic_dir(out) as tmp:
        save_tokenizer(tokenizer, tmp)
        model.save_pretrained(tmp)
    write_json(metrics_path, metrics)
    return metrics
