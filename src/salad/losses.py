"""The objective and measures of DESIGN §4, computed only at masked positions and in chunks.

For a masked position (the next element is the text token w_k) the student P sees c_≤i and the teacher Q sees w_≤k-1.

    L_DIST = KL(Q ‖ P) = Σ_v Q(v) (log Q(v) − log P(v))     forward KL, teacher first, with Q's entropy term
    L_NLL  = −log P(w_k)
    L      = α·L_DIST + (1−α)·L_NLL

The entropy term −H(Q) does not change gradients but makes L_DIST a true divergence: zero iff P = Q, so the value is
comparable across models and equals the misalignment and forgetting measures when the roles are swapped.

Memory: logits exist only for the gathered masked rows and only `chunk` rows at a time; each chunk is recomputed in
the backward pass (activation checkpointing), so peak memory is O(chunk × vocab) rather than O(batch × time × vocab).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def kl_rows(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) for each row, in fp32. Shapes [N, V] -> [N]."""
    if teacher_logits.shape[-1] != student_logits.shape[-1]:
        raise ValueError(
            f"teacher and student vocabularies differ ({teacher_logits.shape[-1]} vs {student_logits.shape[-1]}): "
            "distillation needs the same tokenizer on both sides"
        )
    log_q = F.log_softmax(teacher_logits.float(), dim=-1)
    log_p = F.log_softmax(student_logits.float(), dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


@dataclass
class LossSums:
    """Sums over masked positions; divide by the global count of masked positions to get means."""

    kl: torch.Tensor
    nll: torch.Tensor
    count: int


def _chunk_sums(student_h, teacher_h, targets, student_w, teacher_w, student_b, teacher_b):
    student_logits = F.linear(student_h, student_w, student_b)
    with torch.no_grad():
        teacher_logits = F.linear(teacher_h, teacher_w, teacher_b)
    kl = kl_rows(teacher_logits, student_logits).sum()
    nll = F.cross_entropy(student_logits.float(), targets, reduction="sum")
    return kl, nll


def distillation_sums(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    targets: torch.Tensor,
    student_head: torch.nn.Linear,
    teacher_head: torch.nn.Linear,
    chunk: int = 1024,
) -> LossSums:
    """Sums of KL(Q‖P) and −log P(target) over N gathered masked rows.

    student_hidden, teacher_hidden: [N, d] final hidden states at the masked positions (teacher at teacher_pos).
    targets: [N] token ids w_k. Heads map hidden states to logits (they may be the tied embedding matrices).
    """
    n = student_hidden.shape[0]
    if teacher_hidden.shape[0] != n or targets.shape[0] != n:
        raise ValueError(f"row counts differ: student {n}, teacher {teacher_hidden.shape[0]}, targets {targets.shape[0]}")
    teacher_hidden = teacher_hidden.detach()
    kl = student_hidden.new_zeros((), dtype=torch.float32)
    nll = student_hidden.new_zeros((), dtype=torch.float32)
    sw, sb = student_head.weight, student_head.bias
    tw, tb = teacher_head.weight.detach(), None if teacher_head.bias is None else teacher_head.bias.detach()
    for lo in range(0, n, chunk):
        args = (student_hidden[lo:lo + chunk], teacher_hidden[lo:lo + chunk], targets[lo:lo + chunk], sw, tw, sb, tb)
        if torch.is_grad_enabled() and student_hidden.requires_grad:
            k, l = checkpoint(_chunk_sums, *args, use_reentrant=False)
        else:
            k, l = _chunk_sums(*args)
        kl = kl + k
        nll = nll + l
    return LossSums(kl=kl, nll=nll, count=n)


def objective(sums: LossSums, alpha: float, normaliser: int | float) -> torch.Tensor:
    """L = α·L_DIST + (1−α)·L_NLL, each averaged by `normaliser` (the global masked count of the optimizer step)."""
    if normaliser <= 0:
        raise ValueError("the optimizer step has no masked position: nothing to learn from")
    return (alpha * sums.kl + (1.0 - alpha) * sums.nll) / normaliser


@torch.no_grad()
def kl_per_row(
    p_hidden: torch.Tensor, q_hidden: torch.Tensor, p_head: torch.nn.Linear, q_head: torch.nn.Linear, chunk: int = 1024,
) -> torch.Tensor:
    """KL(softmax(q_head(q_hidden)) ‖ softmax(p_head(p_hidden))) for each of N rows, chunked: the measures M and F."""
    out = []
    for lo in range(0, p_hidden.shape[0], chunk):
        q_logits = F.linear(q_hidden[lo:lo + chunk], q_head.weight, q_head.bias)
        p_logits = F.linear(p_hidden[lo:lo + chunk], p_head.weight, p_head.bias)
        out.append(kl_rows(q_logits, p_logits))
    return torch.cat(out) if out else p_hidden.new_zeros(0)
