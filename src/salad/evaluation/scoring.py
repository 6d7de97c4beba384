"""Log-likelihood scoring of multiple-choice continuations, following lm-evaluation-harness (docs/design.md §7).

Conventions (so that text-mode numbers are comparable with lm-eval):

- A request is (context, " " + choice). Trailing whitespace of the context moves to the front of the
  continuation. Context and continuation are tokenized together, without special tokens, and split at the token
  length of the context tokenized alone: ``context_ids = tok(context)``,
  ``continuation_ids = tok(context + continuation)[len(context_ids):]`` -- lm-eval's ``_encode_pair``.
- Score = sum over continuation tokens of log P(token | everything before it); the first continuation token is
  predicted from the last context position.
- acc: argmax of the scores. acc_norm: argmax of score / len(choice) in characters; acc_bytes: argmax of
  score / len(choice.encode("utf-8")). The lengths are those of the choice string itself, without the " "
  delimiter, as lm-eval's ``completion_len = [len(c) for c in doc_to_choice(doc)]``. Ties go to the first index
  (np.argmax).
- accuracy: the one of acc, acc_norm, acc_bytes that the item's task states as its scoring convention
  (`salad.evaluation.tasks.Task.metric`), the headline every summary and table reads.
- Instead of lm-eval's left truncation, a request that does not fit the model's positions raises
  `ContextTooLong`, so the caller skips and counts it rather than scoring a truncated context.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch


class ContextTooLong(ValueError):
    """Context plus the longest continuation needs more positions than the model has."""

    def __init__(self, length: int, limit: int):
        self.length, self.limit = length, limit
        super().__init__(f"context + longest continuation needs {length} positions, the model has {limit} "
                         f"(max_position_embeddings)")


def text_requests(tokenizer, context: str, choices: list[str],
                  prefix_ids: list[int]) -> tuple[list[int], list[list[int]]]:
    """(context ids, continuation ids per choice) for text-mode scoring, lm-eval's `_encode_pair`.

    The context ids do not depend on the choice: lm-eval feeds ``tok(context) + whole[len(tok(context)):]``, not
    the joint tokenization itself. For tokenizers whose pre-tokenizer splits before a space (GPT-2/Qwen byte-level
    BPE, which is what this project uses) the two agree, because the continuation always starts with whitespace.
    Where they do not (a token merging across the boundary), we keep lm-eval's behaviour for parity: the context is
    its own tokenization and the continuation is the joint tokenization minus as many leading tokens as the context
    has, so the scored sequence is ``context_ids + continuation_ids`` even though it may differ from the joint
    tokenization. A continuation that comes out empty raises ValueError.

    `prefix_ids` (e.g. the document-start token) are prepended to the context ids, playing the role of lm-eval's
    BOS option; they are not part of the split. An empty context (after moving trailing whitespace) gives context
    ids = `prefix_ids` and the continuation tokenized alone, as lm-eval does for "" contexts.
    """
    if not choices:
        raise ValueError("no choices to score")
    n_spaces = len(context) - len(context.rstrip())
    moved, context = context[len(context) - n_spaces:], context[:len(context) - n_spaces]

    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    context_enc = encode(context) if context else []
    if not prefix_ids and not context_enc:
        raise ValueError("empty context and no prefix_ids: nothing to predict the first continuation token from")
    continuations = []
    for choice in choices:
        continuation = moved + " " + choice
        cont = encode(context + continuation)[len(context_enc):]
        if not cont:
            raise ValueError(f"continuation {continuation!r} tokenizes to nothing after context {context[-40:]!r}")
        continuations.append(cont)
    return list(prefix_ids) + context_enc, continuations


def max_positions(config) -> int | None:
    """The number of positions a model config allows (the first of the names transformers' configs use for it),
    or None when the config states no limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@torch.no_grad()
def score_continuations(model, context_embeds: torch.Tensor, continuations: list[list[int]]) -> list[float]:
    """Sum of log P(continuation tokens | context) for each continuation, in float32.

    `context_embeds` [T, d] are input embeddings (text embeddings or adapter outputs); they are cast to the dtype
    and device of the model's input embeddings. The context runs once with a KV cache; its last position gives the
    first token of every continuation, and the remaining tokens of all continuations run as one right-padded batch
    on the cache repeated per choice. Right padding never changes the real positions (attention is causal and the
    padding comes after them); the padding is also masked out of attention and of the sums. Position ids continue
    from T. This equals one full forward per choice up to float rounding (tested to 1e-4).

    The sequence fed to the model is the context plus all but the last continuation token, so a request needs
    ``T + len(longest continuation) - 1`` positions (lm-eval's ``max_length + 1`` rule); more than
    ``config.max_position_embeddings`` raises `ContextTooLong`. Call `model.eval()` first; dropout is not switched
    off here.
    """
    if not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    if context_embeds.dim() != 2 or context_embeds.shape[0] == 0:
        raise ValueError(f"context_embeds must be [T>0, d], got {tuple(context_embeds.shape)}")
    n_ctx = context_embeds.shape[0]
    longest = max(len(c) for c in continuations)
    limit = max_positions(model.config)
    if limit is not None and n_ctx + longest - 1 > limit:
        raise ContextTooLong(n_ctx + longest - 1, limit)

    weight = model.get_input_embeddings().weight
    device = weight.device
    embeds = context_embeds.to(device=device, dtype=weight.dtype)[None]
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(inputs_embeds=embeds, use_cache=True, **keep_last)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores = [float(first[c[0]]) for c in continuations]
    if longest == 1:
        return scores

    n = len(continuations)
    width = longest - 1
    inputs = torch.zeros(n, width, dtype=torch.long, device=device)
    targets = torch.zeros(n, width, dtype=torch.long, device=device)
    real = torch.zeros(n, width, dtype=torch.bool, device=device)
    for i, c in enumerate(continuations):
        k = len(c) - 1
        if k:
            inputs[i, :k] = torch.tensor(c[:-1], device=device)
            targets[i, :k] = torch.tensor(c[1:], device=device)
            real[i, :k] = True
    cache = out.past_key_values
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return score_continuations_without_cache(model, embeds[0], continuations)
    cache.batch_repeat_interleave(n)
    attention = torch.cat([torch.ones(n, n_ctx, dtype=torch.long, device=device), real.long()], dim=1)
    positions = torch.arange(n_ctx, n_ctx + width, device=device)[None].expand(n, -1)
    logits = model(input_ids=inputs, attention_mask=attention, position_ids=positions, past_key_values=cache,
                   use_cache=True).logits
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    rest = (logp * real).sum(dim=1).tolist()
    return [s + r for s, r in zip(scores, rest)]


def score_continuations_without_cache(model, embeds: torch.Tensor, continuations: list[list[int]]) -> list[float]:
    """`score_continuations` as one full forward of context + continuation per choice: the path for models that
    return no repeatable KV cache, and the naive baseline the shared-context scorer is checked and timed against."""
    table = model.get_input_embeddings()
    scores = []
    for c in continuations:
        ids = torch.tensor(c, device=embeds.device)
        seq = torch.cat([embeds, table(ids[:-1]).to(embeds.dtype)])[None]
        logits = model(inputs_embeds=seq, use_cache=False).logits[0, embeds.shape[0] - 1:]
        scores.append(float(torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, None]).sum()))
    return scores


ACCURACIES = ("acc", "acc_norm", "acc_bytes")
"""The accuracies every scored item carries; a task's `metric` names one of them."""


def accuracy_metrics(scores: list[float], choices: list[str], label: int, metric: str = "acc_norm") -> dict:
    """acc, acc_norm (score / characters of the choice) and acc_bytes (score / UTF-8 bytes of the choice), each
    with its predicted index (lengths exclude the " " delimiter, as lm-eval's acc_norm), and "accuracy": the one
    named by `metric`, the item's task's scoring convention."""
    if metric not in ACCURACIES:
        raise ValueError(f"metric must be one of {ACCURACIES}, got {metric!r}")
    if len(scores) != len(choices) or not choices:
        raise ValueError(f"{len(scores)} scores for {len(choices)} choices")
    if not 0 <= label < len(choices):
        raise ValueError(f"label {label} out of range for {len(choices)} choices")
    s = np.asarray(scores, dtype=np.float64)
    chars = np.array([len(c) for c in choices], dtype=np.float64)
    nbytes = np.array([len(c.encode("utf-8")) for c in choices], dtype=np.float64)
    if (chars == 0).any():
        raise ValueError("empty choice: acc_norm is undefined")
    pred, pred_norm, pred_bytes = int(np.argmax(s)), int(np.argmax(s / chars)), int(np.argmax(s / nbytes))
    out = {"acc": float(pred == label), "acc_norm": float(pred_norm == label),
           "acc_bytes": float(pred_bytes == label), "pred": pred, "pred_norm": pred_norm,
           "pred_bytes": pred_bytes}
    out["accuracy"] = out[metric]
    return out
