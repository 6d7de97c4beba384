"""The objective and measures of docs/design.md §4, computed only at masked positions and in chunks.

For a masked position (the next element is the text token w_k) the student P sees c_≤i and the teacher Q sees w_≤k-1.

    L_DIST = D(Q, P)                                          the distillation divergence, teacher first
    L_NLL  = −log P(w_k)
    L      = α·L_DIST + (1−α)·L_NLL

The divergence D is a parameter (`DIVERGENCES`); the paper's, and the default, is the forward KL:

    forward_kl   KL(Q ‖ P) = Σ_v Q(v) (log Q(v) − log P(v))            mass-covering, with Q's entropy term
    reverse_kl   KL(P ‖ Q) = Σ_v P(v) (log P(v) − log Q(v))            mode-seeking
    jsd          JSD_β = β·KL(Q ‖ M) + (1−β)·KL(P ‖ M),  M = β·Q + (1−β)·P,  0 < β < 1
                 (the generalized Jensen-Shannon divergence of GKD, Agarwal et al. 2024, as in TRL's GKDTrainer)

Each is a true divergence: zero iff P = Q, so its value is comparable across models. The measures M (the student
against itself, text vs speech context), F (teacher vs student) and M(c) are NOT parameterised: they are always the
forward KL (`kl_rows`, `kl_per_row`), whatever the training objective, so that they stay comparable across runs.

Memory: logits exist only for the gathered masked rows and only `chunk` rows at a time, so peak memory is
O(chunk × vocab) rather than O(batch × time × vocab). Training uses `distillation_objective`, which computes the
gradient of L with respect to each chunk's logits in the forward pass and keeps only the gradients of the hidden
states and the head (no recomputation); `distillation_sums` keeps the divergence and the NLL as separate
differentiable sums and recomputes each chunk in the backward pass (activation checkpointing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from salad.config import DIVERGENCES

def check_divergence(divergence: str, beta: float) -> None:
    """Reject an unknown divergence, and a JSD β outside (0, 1): at β = 0 or 1 the mixture M is P or Q and JSD_β is
    identically zero; its normalised limits are the forward KL (JSD_β/β, β → 0) and the reverse KL
    (JSD_β/(1−β), β → 1), which are asked for by name. (TRL's GKD switches to those two at the endpoints instead.)"""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}; got {divergence!r}")
    if divergence == "jsd" and not 0.0 < beta < 1.0:
        raise ValueError(f"the JSD's beta must be in (0, 1), got {beta!r}: for its limits use forward_kl (beta -> 0) "
                         "or reverse_kl (beta -> 1)")


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


# ---------------------------------------------------------------------------------------------------------------
# The divergences on rows of log-probabilities, teacher first: shapes [N, V], [N, V] -> [N]


def forward_kl_rows(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """KL(Q ‖ P) per row, entropy term included: the paper's distillation divergence and the measures' kernel."""
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def reverse_kl_rows(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) per row: the student's expectation of its log-ratio to the teacher (mode-seeking)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def jsd_rows(log_q: torch.Tensor, log_p: torch.Tensor, beta: float) -> torch.Tensor:
    """JSD_β = β·KL(Q ‖ M) + (1−β)·KL(P ‖ M) per row, M = β·Q + (1−β)·P, for 0 < β < 1 (log M in log space)."""
    log_m = torch.logaddexp(log_p + math.log1p(-beta), log_q + math.log(beta))
    return beta * forward_kl_rows(log_q, log_m) + (1.0 - beta) * forward_kl_rows(log_p, log_m)


def divergence_rows(log_q: torch.Tensor, log_p: torch.Tensor, divergence: str = "forward_kl",
                    beta: float = 0.5) -> torch.Tensor:
    """D(Q, P) per row for the named divergence (`DIVERGENCES`); `beta` is used by the JSD only."""
    check_divergence(divergence, beta)
    if divergence == "forward_kl":
        return forward_kl_rows(log_q, log_p)
    if divergence == "reverse_kl":
        return reverse_kl_rows(log_q, log_p)
    return jsd_rows(log_q, log_p, beta)


def kl_rows(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) for each row, in fp32. Shapes [N, V] -> [N].

    The fixed forward-KL kernel of the measures M, F and M(c): it does not follow the training divergence."""
    _check_vocabularies(student_logits.shape[-1], teacher_logits.shape[-1])
    log_q = F.log_softmax(teacher_logits.float(), dim=-1)
    log_p = F.log_softmax(student_logits.float(), dim=-1)
    return forward_kl_rows(log_q, log_p)


# ---------------------------------------------------------------------------------------------------------------
# Differentiable sums, recomputed chunk by chunk in the backward pass


@dataclass
class LossSums:
    """Sums over masked positions; divide by the global count of masked positions to get means.

    `kl` is the sum of the training divergence D(Q, P): KL(Q ‖ P) under the default forward KL."""

    kl: torch.Tensor
    nll: torch.Tensor
    count: int


def _chunk_sums(student_h, teacher_h, targets, student_w, teacher_w, student_b, teacher_b, divergence, beta):
    student_logits = F.linear(student_h, student_w, student_b)
    with torch.no_grad():
        teacher_logits = F.linear(teacher_h, teacher_w, teacher_b)
    log_q = F.log_softmax(teacher_logits.float(), dim=-1)
    log_p = F.log_softmax(student_logits.float(), dim=-1)
    div = divergence_rows(log_q, log_p, divergence, beta).sum()
    nll = F.cross_entropy(student_logits.float(), targets, reduction="sum")
    return div, nll


def distillation_sums(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    targets: torch.Tensor,
    student_head: torch.nn.Linear,
    teacher_head: torch.nn.Linear,
    chunk: int = 1024,
    divergence: str = "forward_kl",
    beta: float = 0.5,
) -> LossSums:
    """Sums of D(Q, P) (`divergence`, `beta` for the JSD) and −log P(target) over N gathered masked rows.

    student_hidden, teacher_hidden: [N, d] final hidden states at the masked positions (teacher at teacher_pos).
    targets: [N] token ids w_k. Heads map hidden states to logits (they may be the tied embedding matrices).
    """
    check_divergence(divergence, beta)
    n = student_hidden.shape[0]
    _check_rows(n, teacher_hidden, targets)
    _check_vocabularies(student_head.weight.shape[0], teacher_head.weight.shape[0])
    teacher_hidden = teacher_hidden.detach()
    kl = student_hidden.new_zeros((), dtype=torch.float32)
    nll = student_hidden.new_zeros((), dtype=torch.float32)
    sw, sb = student_head.weight, student_head.bias
    tw, tb = teacher_head.weight.detach(), None if teacher_head.bias is None else teacher_head.bias.detach()
    for lo in range(0, n, chunk):
        args = (student_hidden[lo:lo + chunk], teacher_hidden[lo:lo + chunk], targets[lo:lo + chunk], sw, tw, sb, tb,
                divergence, beta)
        if torch.is_grad_enabled() and student_hidden.requires_grad:
            k, l = checkpoint(_chunk_sums, *args, use_reentrant=False)
        else:
            k, l = _chunk_sums(*args)
        kl = kl + k
        nll = nll + l
    return LossSums(kl=kl, nll=nll, count=n)


# ---------------------------------------------------------------------------------------------------------------
# The fused objective: each chunk's logits formed once, with their gradient


def _logits_into(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if bias is None:
        torch.mm(hidden, weight.T, out=out)
    else:
        torch.addmm(bias, hidden, weight.T, out=out)


def _row_dots(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_v x[i, v]·y[i, v] for each row i, without a [rows, vocab] product."""
    return torch.bmm(x.unsqueeze(1), y.unsqueeze(2)).view(-1)


# The chunk kernels of the divergences. Each takes the chunk's log P and log Q ([rows, vocab], in the accumulation
# dtype) and consumes them in place, with spare [rows, vocab] buffers of that dtype, and returns
# (Σ_rows D, dz) where dz = (1−α)·P + α·dD/dz_s is the gradient of α·ΣD + (1−α)·ΣNLL with respect to the student
# logits short of the NLL's −(1−α)·onehot(y); dz is None when no gradient is needed.


def _forward_kl_chunk(log_p, log_q, spare, alpha, beta, need_grad):
    # dD/dz = P − Q, so dz = P − α·Q (the op order of the committed runs: keep it)
    q = torch.exp(log_q, out=spare[0])
    diff = log_q.sub_(log_p)
    div = torch.dot(q.view(-1), diff.view(-1))  # Σ Q (log Q − log P), entropy term included
    if not need_grad:
        return div, None
    dz = log_p.exp_()  # P
    if alpha != 0.0:
        dz.sub_(q, alpha=alpha)
    return div, dz


def _reverse_kl_chunk(log_p, log_q, spare, alpha, beta, need_grad):
    # a = log P − log Q, D = Σ P·a, dD/dz = P ⊙ (a − D): dz = P ⊙ ((1−α) + α·(a − D))
    a = torch.sub(log_p, log_q, out=log_q)
    p = log_p.exp_()
    div_rows = _row_dots(p, a)
    if not need_grad:
        return div_rows.sum(), None
    a.sub_(div_rows[:, None]).mul_(alpha).add_(1.0 - alpha)
    return div_rows.sum(), p.mul_(a)


def _jsd_chunk(log_p, log_q, spare, alpha, beta, need_grad):
    # a = log P − log M, D = β·KL(Q‖M) + (1−β)·Σ P·a, dD/dz = (1−β)·P ⊙ (a − KL(P‖M)):
    # dz = P ⊙ ((1−α) + α·(1−β)·(a − KL(P‖M)))
    shifted_q, log_m = spare
    torch.add(log_q, math.log(beta), out=shifted_q)
    torch.add(log_p, math.log1p(-beta), out=log_m)
    torch.logaddexp(log_m, shifted_q, out=log_m)  # log M = log((1−β)·P + β·Q)
    q = torch.exp(log_q, out=shifted_q)
    kl_q_m = _row_dots(q, log_q.sub_(log_m))
    a = torch.sub(log_p, log_m, out=log_m)
    p = log_p.exp_()
    kl_p_m = _row_dots(p, a)
    div = (beta * kl_q_m + (1.0 - beta) * kl_p_m).sum()
    if not need_grad:
        return div, None
    a.sub_(kl_p_m[:, None]).mul_(alpha * (1.0 - beta)).add_(1.0 - alpha)
    return div, p.mul_(a)


_CHUNK_KERNELS = {"forward_kl": (_forward_kl_chunk, 1), "reverse_kl": (_reverse_kl_chunk, 0),
                  "jsd": (_jsd_chunk, 2)}  # kernel, spare buffers it needs


def _fused_chunks(student_hidden, teacher_hidden, targets, student_w, student_b, teacher_w, teacher_b,
                  alpha: float, chunk: int, need_hidden: bool, need_weight: bool, need_bias: bool,
                  divergence: str = "forward_kl", beta: float = 0.5):
    """Sums of D(Q, P) and −log P(target) over the rows and, if asked, the gradients of the UNNORMALISED objective
    S = α·ΣD + (1−α)·ΣNLL with respect to the student hidden states, head weight and head bias.

    Per chunk of rows: z = logits (in the weights' dtype), log P = log_softmax(z_s), log Q = log_softmax(z_t) in fp32
    (fp64 for double inputs); the divergence's kernel gives ΣD and (1−α)·P + α·dD/dz_s, from which
    dS/dz_s = that − (1−α)·onehot(y); then grad_hidden[chunk] = dz @ W_s, grad_W += dzᵀ @ h, grad_b += Σ_rows dz.
    The weight and bias gradients accumulate in at least fp32. The [chunk, vocab] buffers (three for the KLs in
    fp32, four for the JSD) are allocated once and reused by every chunk, in place. Returns
    (divergence sum, nll, grad_hidden, grad_weight, grad_bias), None where not asked.
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
    kernel, spares = _CHUNK_KERNELS[divergence]

    rows = min(chunk, n)
    buf_s = torch.empty(rows, vocab, dtype=student_w.dtype, device=device)  # student logits, later a spare
    buf_t = buf_s if teacher_w.dtype == student_w.dtype else torch.empty_like(buf_s, dtype=teacher_w.dtype)
    buf_spare = [buf_s if i == 0 and student_w.dtype == acc else torch.empty_like(buf_s, dtype=acc)
                 for i in range(spares)]  # the first may reuse the logits' buffer: they are spent by then
    buf_log_p = torch.empty_like(buf_s, dtype=acc)  # log P, then P, then dS/dz
    buf_log_q = torch.empty_like(buf_s, dtype=acc)  # log Q, then the divergence's work
    for lo in range(0, n, chunk):
        h, y = student_hidden[lo:lo + chunk], targets[lo:lo + chunk]
        r = h.shape[0]
        _logits_into(buf_s[:r], h, student_w, student_b)
        log_p = torch.log_softmax(buf_s[:r], -1, dtype=acc, out=buf_log_p[:r])
        _logits_into(buf_t[:r], teacher_hidden[lo:lo + chunk], teacher_w, teacher_b)
        log_q = torch.log_softmax(buf_t[:r], -1, dtype=acc, out=buf_log_q[:r])
        nll -= log_p.gather(1, y[:, None]).sum()
        div, dz = kernel(log_p, log_q, [b[:r] for b in buf_spare], alpha, beta, need_any)
        kl += div
        if not need_any:
            continue
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
    """L = (α·ΣD + (1−α)·ΣNLL) / normaliser with its gradients computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(ctx, student_hidden, student_w, student_b, teacher_hidden, teacher_w, teacher_b, targets,
                alpha, normaliser, chunk, divergence, beta):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        kl, nll, grad_h, grad_w, grad_b = _fused_chunks(
            student_hidden, teacher_hidden, targets, student_w, student_b, teacher_w, teacher_b, alpha, chunk,
            need_h, need_w, need_b and student_b is not None, divergence, beta)
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
        return (*grads, None, None, None, None, None, None, None, None, None)


def distillation_objective(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    targets: torch.Tensor,
    student_head: torch.nn.Linear,
    teacher_head: torch.nn.Linear,
    alpha: float,
    normaliser: int | float,
    chunk: int = 256,
    divergence: str = "forward_kl",
    beta: float = 0.5,
) -> tuple[torch.Tensor, LossSums]:
    """The training objective L = (α·ΣD(Q, P) + (1−α)·Σ −log P(target)) / normaliser over N gathered masked rows,
    and its sums (detached, for logging).

    Same inputs as `distillation_sums`; `normaliser` is the global masked count of the optimizer step, so that
    micro-batches each divided by it add up to the step's mean (docs/design.md §4). `divergence` is one of
    `DIVERGENCES` (default the paper's forward KL); `beta` is the JSD's β in (0, 1), unused by the KLs. Equal to
    (α·sums.kl + (1−α)·sums.nll) / normaliser of `distillation_sums(...)` in value and gradients, but faster: it is
    a fused linear-loss function that never recomputes logits.

    Gradient. Per row, with z the student logits, P = softmax(z), Q the teacher distribution and y the target
    (dP(v)/dz_j = P(v)·(δ_vj − P(j)); the teacher is a constant):
        forward KL   d/dz Σ_v Q(v) (log Q(v) − log P(v)) = P − Q   (Σ_v Q(v) = 1; the teacher entropy term has no
                                                                    gradient)
        reverse KL   with a = log P − log Q and D = Σ_v P(v) a(v): ∂D/∂P(v) = a(v) + 1, so
                     dD/dz = P ⊙ (a + 1 − Σ_v P(v)(a(v) + 1)) = P ⊙ (a − D)
        JSD_β        with M = β·Q + (1−β)·P and a = log P − log M: ∂D/∂P(v) = (1−β)·(a(v) + 1 − (β·Q(v) +
                     (1−β)·P(v))/M(v)) = (1−β)·a(v), so dD/dz = (1−β)·P ⊙ (a − KL(P ‖ M))
        d/dz −log P(y) = P − onehot(y)
        dL/dz = (α·dD/dz + (1−α)·(P − onehot(y))) / normaliser   (= (P − α·Q − (1−α)·onehot(y)) / normaliser for
                the forward KL).
    With z = h Wᵀ + b: dL/dh = dL/dz · W, dL/dW = (dL/dz)ᵀ · h, dL/db = Σ_rows dL/dz.

    Forward goes over the rows `chunk` at a time: it forms that chunk's student and teacher logits only (in the
    hidden's dtype, then fp32 for the softmax), adds its divergence and NLL sums, turns P into dS/dz in place and
    accumulates the gradients of the hidden states, head weight and bias (weight and bias in at least fp32). Memory
    is O(chunk × vocab): three [chunk, vocab] buffers (four for the JSD) reused by every chunk, plus the gradient
    buffers (N × d, and vocab × d: the size of the head weight's own gradient). There is no recomputation: backward
    only scales the saved gradients by grad_output / normaliser. Gradients are computed only for the inputs that
    need them: a frozen head weight gets None; a tied head (the input embedding matrix) receives its head gradient
    as that Parameter's gradient, which autograd adds to the embedding's. The teacher is never differentiated. The
    graph may be back-propagated more than once (retain_graph) but not differentiated twice (once_differentiable).

    Without autograd (no_grad, or nothing requiring grad) only the sums are computed. With no row the loss is a zero
    that requires no grad: there is nothing to back-propagate.
    """
    if normaliser <= 0:
        raise ValueError("the optimizer step has no masked position: nothing to learn from")
    check_divergence(divergence, beta)
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
                                                 float(alpha), normaliser, int(chunk), divergence, float(beta))
    else:
        with torch.no_grad():
            kl, nll, *_ = _fused_chunks(student_hidden, teacher_hidden, targets, sw, sb, tw, tb, float(alpha), chunk,
                                        False, False, False, divergence, float(beta))
            loss = (alpha * kl + (1.0 - alpha) * nll) / normaliser
    return loss, LossSums(kl=kl.detach(), nll=nll.detach(), count=n)


@torch.no_grad()
def kl_per_row(
    p_hidden: torch.Tensor, q_hidden: torch.Tensor, p_head: torch.nn.Linear, q_head: torch.nn.Linear, chunk: int = 1024,
) -> torch.Tensor:
    """KL(softmax(q_head(q_hidden)) ‖ softmax(p_head(p_hidden))) for each of N rows, chunked: the measures M and F.

    Always the forward KL (`kl_rows`), whatever divergence the training objective uses."""
    out = []
    for lo in range(0, p_hidden.shape[0], chunk):
        q_logits = F.linear(q_hidden[lo:lo + chunk], q_head.weight, q_head.bias)
        p_logits = F.linear(p_hidden[lo:lo + chunk], p_head.weight, p_head.bias)
        out.append(kl_rows(q_logits, p_logits))
    return torch.cat(out) if out else p_hidden.new_zeros(0)
