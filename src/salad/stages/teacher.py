"""The teacher: a byte-level BPE tokenizer and a tiny Qwen2-architecture causal LM trained on the pretraining text.

It is saved with `save_pretrained` and loaded everywhere else with `from_pretrained`, exactly the path Qwen2.5 takes
at paper scale, so nothing downstream knows whether the teacher is 5 M or 3 B parameters.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from salad.storage.atomic import atomic_dir, read_jsonl, write_json
from salad.config import Params, TeacherConfig
from salad.data.documents import DOC_START, doc_start_id, tokenize
from salad.training.live import live_logger
from salad.training.schedule import wsd_factor


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string is encodable, as with Qwen's tokenizer) with the document-start token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[DOC_START], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=DOC_START, eos_token=DOC_START,
                                   pad_token=DOC_START, unk_token=None)


def build_model(cfg: TeacherConfig, vocab_size: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.context, tie_word_embeddings=True, rope_theta=10000.0,
    )
    return Qwen2ForCausalLM(config)


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """All documents as one stream, each opened by the document-start token."""
    return np.concatenate([tokenize(tokenizer, t)[0] for t in texts]).astype(np.int64)


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], max_len: int) -> float:
    """Per-token perplexity of whole documents (each from its document-start token, cut to max_len)."""
    model.eval()
    nll, n = 0.0, 0
    for text in texts:
        ids = torch.from_numpy(tokenize(tokenizer, text)[0][:max_len])[None]
        logits = model(input_ids=ids).logits[0, :-1]
        nll += F.cross_entropy(logits.float(), ids[0, 1:], reduction="sum").item()
        n += ids.shape[1] - 1
    return math.exp(nll / n)


def unigram_perplexity(train_stream: np.ndarray, tokenizer, texts: list[str], vocab_size: int) -> float:
    """Perplexity of an add-one unigram model: the floor any LM must beat."""
    counts = np.bincount(train_stream, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    ids = np.concatenate([tokenize(tokenizer, t)[0][1:] for t in texts])
    return float(math.exp(-logp[ids].mean()))


def load_pretrained(name_or_path: str):
    """(tokenizer, model) of a pretrained causal LM from local files only (a folder, or a name in the local HF cache).

    Nothing is downloaded: a model that is not on this machine is an error that says how to get it here.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=True, dtype=torch.float32)
    except OSError as e:
        raise FileNotFoundError(
            f"teacher.pretrained {name_or_path!r} is not available locally ({e.__class__.__name__}). Download it on a "
            f"machine with hub access (`huggingface-cli download {name_or_path}`) and copy the HF cache here, or set "
            f"teacher.pretrained to the folder that holds config.json, the weights and the tokenizer.") from None
    doc_start_id(tokenizer)  # the document-start token must exist
    return tokenizer, model


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
