"""The objective and measures of docs/design.md §4, computed only at masked positions and in chunks.

For a masked position (the next element is the text token w_k) the student P sees c_≤i and the teacher Q sees w_≤k-1.

    L_DIST = KL(Q ‖ P) = Σ_v Q(v) (log Q(v) − log P(v))     forward KL, teacher first, with Q's entropy term
    L_NLL  = −log P(w_k)
    L      = α·L_DIST + (1−α)·L_NLL

The entropy term −H(Q) does not change gradients but makes L_DIST a true divergence: zero iff P = Q, so the value is
comparable across models and equals the misalignment and forgetting measures when the roles are swapped.

Memory: logits exist only for the gathered masked rows and only `chunk` rows at a time, so peak memory is
O(chunk × vocab) rather than O(batch × time × vocab). Training uses `distillation_objective`, which computes the
gradient of L with respect to each chunk's logits in the forward pass and keeps only the gradients of the hidden
states and the head (no recomputation); `distillation_sums` keeps KL and NLL as separate differentiable sums and
recomputes each chunk in the backward pass (activation checkpointing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _check_vocabularies(student_vocab: int, teacher_vocab: int) -> None:
    if student_vocab != teacher_vocab:
        raise ValueError(
            f"teacher and student vocabularies differ ({teacher_vocab} vs {student_vocab}): "
            "distillation needs the same tokenizer on both sides"
        )


def _check_rows(n: int, teacher_hidden: torch.Tensor, targets: torch.Tensor) -> None:
    if teacher_hidden.shape[0] != n or targets.shape[0] != n:
        raise ValueError(
            f"row counts differ: student {n}, teacher {teacher_hidden.shape[0]}, targets {targets.shape[0]}")


def kl_rows(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) for each row, in fp32. Shapes [N, V] -> [N]."""
    _check_vocabularies(student_logits.shape[-1], teacher_logits.shape[-1])
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
    _check_rows(n, teacher_hidden, targets)
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


def _logits_into(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if bias is None:
        torch.mm(hidden, weight.T, out=out)
    else:
        torch.addmm(bias, hidden, weight.T, out=out)


def _fused_chunks(student_hidden, teacher_hidden, targets, student_w, student_b, teacher_w, teacher_b,
                  alpha: float, chunk: int, need_hidden: bool, need_weight: bool, need_bias: bool):
    """Sums of KL(Q‖P) and −log P(target) over the rows and, if asked, the gradients of the UNNORMALISED objective
    S = α·ΣKL + (1−α)·ΣNLL with respect to the student hidden states, head weight and head bias.

    Per chunk of rows: z = logits (in the weights' dtype), log P = log_softmax(z_s), log Q = log_softmax(z_t) in fp32
    (fp64 for double inputs); dS/dz_s = P − α·Q − (1−α)·onehot(y); then grad_hidden[chunk] = dz @ W_s,
    grad_W += dzᵀ @ h, grad_b += Σ_rows dz. The weight and bias gradients accumulate in at least fp32. Three
    [chunk, vocab] buffers are allocated once and reused by every chunk, in place. Returns
    (kl, nll, grad_hidden, grad_weight, grad_bias), None where not asked.
    """
    n, vocab = student_hidden.shape[0], student_w.shape[0]
    device = student_hidden.device
    acc = torch.promote_types(student_hidden.dtype, torch.float32)
    kl = torch.zeros((), dtype=acc, device=device)
    nll = torch.zeros((), dtype=acc, device=device)
    grad_h = torch.empty(student_hidden.shape, dtype=student_hidden.dtype, device=device) if need_hidden else None
    acc_w = torch.promote_types(student_w.dtype, torch.float32)
    grad_w = torch.zeros(student_w.shape, dtype=acc_w, device=device) if need_weight else None
    grad_b = None
    if need_bias:
        grad_b = torch.zeros(student_b.shape, dtype=torch.promote_types(student_b.dtype, torch.float32), device=device)
    need_any = need_hidden or need_weight or need_bias

    rows = min(chunk, n)
    buf_s = torch.empty(rows, vocab, dtype=student_w.dtype, device=device)  # student logits, later Q
    buf_t = buf_s if teacher_w.dtype == student_w.dtype else torch.empty_like(buf_s, dtype=teacher_w.dtype)
    buf_q = buf_s if student_w.dtype == acc else torch.empty_like(buf_s, dtype=acc)
    buf_log_p = torch.empty_like(buf_s, dtype=acc)  # log P, then P, then dS/dz
    buf_log_q = torch.empty_like(buf_s, dtype=acc)  # log Q, then log Q − log P
    for lo in range(0, n, chunk):
        h, y = student_hidden[lo:lo + chunk], targets[lo:lo + chunk]
        r = h.shape[0]
        _logits_into(buf_s[:r], h, student_w, student_b)
        log_p = torch.log_softmax(buf_s[:r], -1, dtype=acc, out=buf_log_p[:r])
        _logits_into(buf_t[:r], teacher_hidden[lo:lo + chunk], teacher_w, teacher_b)
        log_q = torch.log_softmax(buf_t[:r], -1, dtype=acc, out=buf_log_q[:r])
        nll -= log_p.gather(1, y[:, None]).sum()
        q = torch.exp(log_q, out=buf_q[:r])
        diff = log_q.sub_(log_p)
        kl += torch.dot(q.view(-1), diff.view(-1))  # Σ Q (log Q − log P), entropy term included
        if not need_any:
            continue
        dz = log_p.exp_()  # P
        if alpha != 0.0:
            dz.sub_(q, alpha=alpha)
        if alpha != 1.0:
            dz[torch.arange(r, device=device), y] -= 1.0 - alpha
        dz_mm = dz.to(student_w.dtype)
        if need_hidden:
            torch.mm(dz_mm, student_w, out=grad_h[lo:lo + chunk])
        if need_weight:
            if acc_w == student_w.dtype:
                grad_w.addmm_(dz_mm.T, h)
            else:
                grad_w += dz_mm.T @ h
        if need_bias:
            grad_b += dz.sum(0)
    return kl, nll, grad_h, grad_w, grad_b


class _FusedDistillation(torch.autograd.Function):
    """L = (α·ΣKL + (1−α)·ΣNLL) / normaliser with its gradients computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(ctx, student_hidden, student_w, student_b, teacher_hidden, teacher_w, teacher_b, targets,
                alpha, normaliser, chunk):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        kl, nll, grad_h, grad_w, grad_b = _fused_chunks(
            student_hidden, teacher_hidden, targets, student_w, student_b, teacher_w, teacher_b, alpha, chunk,
            need_h, need_w, need_b and student_b is not None)
        ctx.grads = (grad_h, grad_w, grad_b)
        ctx.dtypes = (student_hidden.dtype, student_w.dtype, None if student_b is None else student_b.dtype)
        ctx.normaliser = normaliser
        ctx.mark_non_differentiable(kl, nll)
        loss = (alpha * kl + (1.0 - alpha) * nll) / normaliser
        return loss, kl, nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_kl, _grad_nll):
        # The saved gradients are those of the unnormalised sum S; the chain rule only scales them. They are left
        # intact (no in-place scaling), so that a retained graph can be back-propagated again.
        scale = grad_loss / ctx.normaliser
        grads = [None if g is None else (g * scale.to(g.dtype)).to(dtype) for g, dtype in zip(ctx.grads, ctx.dtypes)]
        return (*grads, None, None, None, None, None, None, None)


def distillation_objective(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    targets: torch.Tensor,
    student_head: torch.nn.Linear,
    teacher_head: torch.nn.Linear,
    alpha: float,
    normaliser: int | float,
    chunk: int = 256,
) -> tuple[torch.Tensor, LossSums]:
    """The training objective L = (α·ΣKL(Q‖P) + (1−α)·Σ −log P(target)) / normaliser over N gathered masked rows,
    and its sums (detached, for logging).

    Same inputs as `distillation_sums`; `normaliser` is the global masked count of the optimizer step, so that
    micro-batches each divided by it add up to the step's mean (docs/design.md §4). Equal to
    `objective(distillation_sums(...), alpha, normaliser)` in value and gradients, but faster: it is a fused
    linear-loss function that never recomputes logits.

    Gradient. Per row, with z the student logits, P = softmax(z), Q the teacher distribution and y the target:
        d/dz KL(Q‖P)   = d/dz [Σ_v Q(v) log Q(v) − Σ_v Q(v) log P(v)] = P − Q   (Σ_v Q(v) = 1; the teacher
                          entropy term Σ Q log Q does not depend on z, so it has no gradient)
        d/dz −log P(y) = P − onehot(y)
        dL/dz = (α·(P − Q) + (1−α)·(P − onehot(y))) / normaliser = (P − α·Q − (1−α)·onehot(y)) / normaliser.
    With z = h Wᵀ + b: dL/dh = dL/dz · W, dL/dW = (dL/dz)ᵀ · h, dL/db = Σ_rows dL/dz.

    Forward goes over the rows `chunk` at a time: it forms that chunk's student and teacher logits only (in the
    hidden's dtype, then fp32 for the softmax), adds its KL and NLL sums, turns P into dS/dz in place and
    accumulates the gradients of the hidden states, head weight and bias (weight and bias in at least fp32). Memory
    is O(chunk × vocab): three [chunk, vocab] buffers reused by every chunk, plus the gradient buffers (N × d, and
    vocab × d: the size of the head weight's own gradient). There is no recomputation: backward only scales the
    saved gradients by grad_output / normaliser. Gradients are computed only for the inputs that need them: a frozen
    head weight gets None; a tied head (the input embedding matrix) receives its head gradient as that Parameter's
    gradient, which autograd adds to the embedding's. The teacher is never differentiated. The graph may be
    back-propagated more than once (retain_graph) but not differentiated twice (once_differentiable).

    Without autograd (no_grad, or nothing requiring grad) only the sums are computed. With no row the loss is a zero
    that requires no grad (as `objective` gives for empty sums): there is nothing to back-propagate.
    """
    if normaliser <= 0:
        raise ValueError("the optimizer step has no masked position: nothing to learn from")
    n = student_hidden.shape[0]
    _check_rows(n, teacher_hidden, targets)
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    _check_vocabularies(student_head.weight.shape[0], teacher_head.weight.shape[0])
    sw, sb = student_head.weight, student_head.bias
    tw, tb = teacher_head.weight.detach(), None if teacher_head.bias is None else teacher_head.bias.detach()
    teacher_hidden = teacher_hidden.detach()
    differentiable = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (student_hidden, sw, sb))
    if n > 0 and differentiable:
        loss, kl, nll = _FusedDistillation.apply(student_hidden, sw, sb, teacher_hidden, tw, tb, targets,
                                                 float(alpha), normaliser, int(chunk))
    else:
        with torch.no_grad():
            kl, nll, *_ = _fused_chunks(student_hidden, teacher_hidden, targets, sw, sb, tw, tb, float(alpha), chunk,
                                        False, False, False)
            loss = (alpha * kl + (1.0 - alpha) * nll) / normaliser
    return loss, LossSums(kl=kl.detach(), nll=nll.detach(), count=n)


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
