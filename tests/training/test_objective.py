"""The objective of docs/design.md §4 against direct dense formulas."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from salad.config import ConfigError, TrainConfig, params_from_dict
from salad.training.objective import (DIVERGENCES, LossSums, distillation_objective, distillation_sums,
                                      divergence_rows, jsd_rows, kl_per_row, kl_rows)


def objective(sums: LossSums, alpha: float, normaliser: int | float) -> torch.Tensor:
    """L = α·L_DIST + (1−α)·L_NLL, each averaged by `normaliser` (the global masked count of the optimizer step):
    the checkpointed sums combined as the fused objective combines them, the reference of its tests."""
    if normaliser <= 0:
        raise ValueError("the optimizer step has no masked position: nothing to learn from")
    return (alpha * sums.kl + (1.0 - alpha) * sums.nll) / normaliser


def heads(d=8, v=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.nn.Linear(d, v, bias=False)
    t = torch.nn.Linear(d, v, bias=False)
    with torch.no_grad():
        s.weight.copy_(torch.randn(v, d, generator=g))
        t.weight.copy_(torch.randn(v, d, generator=g))
    return s, t


def test_kl_is_zero_for_identical_distributions():
    x = torch.randn(5, 30)
    assert kl_rows(x, x).abs().max() < 1e-6
    assert kl_rows(x, x + 3.0).abs().max() < 1e-5  # softmax is shift invariant


def test_kl_includes_teacher_entropy_term():
    t, s = torch.randn(4, 20), torch.randn(4, 20)
    q, p = t.softmax(-1), s.softmax(-1)
    cross_entropy = -(q * p.log()).sum(-1)
    entropy = -(q * q.log()).sum(-1)
    assert torch.allclose(kl_rows(t, s), cross_entropy - entropy, atol=1e-5)
    assert (kl_rows(t, s) >= 0).all()


def test_vocabulary_mismatch_is_an_error():
    with pytest.raises(ValueError, match="vocabularies differ"):
        kl_rows(torch.randn(2, 10), torch.randn(2, 11))


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunked_sums_equal_dense_formula_with_gradients(chunk):
    s_head, t_head = heads()
    hs = torch.randn(7, 8, requires_grad=True)
    ht = torch.randn(7, 8)
    y = torch.randint(0, 50, (7,))
    sums = distillation_sums(hs, ht, y, s_head, t_head, chunk=chunk)
    loss = objective(sums, 0.3, sums.count)
    loss.backward()
    g_chunked = hs.grad.clone(), s_head.weight.grad.clone()
    assert t_head.weight.grad is None  # the teacher is never trained

    hs.grad = None
    s_head.weight.grad = None
    logits_s, logits_t = s_head(hs), t_head(ht)
    kl = F.kl_div(F.log_softmax(logits_s, -1), F.log_softmax(logits_t, -1), log_target=True, reduction="sum")
    nll = F.cross_entropy(logits_s, y, reduction="sum")
    dense = (0.3 * kl + 0.7 * nll) / 7
    dense.backward()
    assert loss.item() == pytest.approx(dense.item(), rel=1e-5)
    assert torch.allclose(g_chunked[0], hs.grad, atol=1e-5)
    assert torch.allclose(g_chunked[1], s_head.weight.grad, atol=1e-5)


def test_alpha_endpoints_select_one_term():
    s_head, t_head = heads()
    hs, ht, y = torch.randn(6, 8), torch.randn(6, 8), torch.randint(0, 50, (6,))
    sums = distillation_sums(hs, ht, y, s_head, t_head)
    assert objective(sums, 1.0, 6).item() == pytest.approx(sums.kl.item() / 6)
    assert objective(sums, 0.0, 6).item() == pytest.approx(sums.nll.item() / 6)


def test_global_normaliser_makes_accumulation_exact():
    """Two micro-batches each divided by the global count sum to the loss of the whole step."""
    s_head, t_head = heads()
    hs, ht, y = torch.randn(10, 8), torch.randn(10, 8), torch.randint(0, 50, (10,))
    whole = objective(distillation_sums(hs, ht, y, s_head, t_head), 0.5, 10)
    parts = sum(objective(distillation_sums(hs[a:b], ht[a:b], y[a:b], s_head, t_head), 0.5, 10)
                for a, b in ((0, 3), (3, 10)))
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)


def test_identical_student_and_teacher_give_zero_kl():
    s_head, _ = heads()
    h = torch.randn(5, 8)
    sums = distillation_sums(h, h, torch.zeros(5, dtype=torch.long), s_head, s_head)
    assert abs(sums.kl.item()) < 1e-5


def test_kl_per_row_matches_direction():
    s_head, t_head = heads()
    p, q = torch.randn(4, 8), torch.randn(4, 8)
    expected = kl_rows(t_head(q), s_head(p))
    assert torch.allclose(kl_per_row(p, q, s_head, t_head, chunk=3), expected, atol=1e-6)


def test_step_without_masked_positions_is_an_error():
    s_head, t_head = heads()
    sums = distillation_sums(torch.zeros(0, 8), torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), s_head, t_head)
    with pytest.raises(ValueError, match="no masked position"):
        objective(sums, 0.5, 0)


# ---------------------------------------------------------------------------------------------------------------
# The fused objective used in training: value and gradients computed chunk by chunk in the forward pass


def dense_objective(hs, ht, y, s_head, t_head, alpha, normaliser):
    """L by autograd on full logits: the reference."""
    log_p = F.log_softmax(s_head(hs).double(), -1)
    with torch.no_grad():
        log_q = F.log_softmax(t_head(ht).double(), -1)
    kl = (log_q.exp() * (log_q - log_p)).sum()
    nll = F.nll_loss(log_p, y, reduction="sum")
    return (alpha * kl + (1 - alpha) * nll) / normaliser, kl.detach(), nll.detach()


def grads_of(loss, tensors):
    for t in tensors:
        t.grad = None
    loss.backward()
    out = [None if t.grad is None else t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return out


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_fused_objective_equals_dense_formula_with_gradients(chunk, alpha, bias):
    torch.manual_seed(chunk)
    s_head, t_head = torch.nn.Linear(8, 50, bias=bias), torch.nn.Linear(8, 50, bias=bias)
    hs = torch.randn(7, 8, requires_grad=True)
    ht, y = torch.randn(7, 8), torch.randint(0, 50, (7,))
    wrt = [hs, s_head.weight] + ([s_head.bias] if bias else [])
    loss, sums = distillation_objective(hs, ht, y, s_head, t_head, alpha, 11, chunk=chunk)
    fused = grads_of(loss, wrt)
    dense, kl, nll = dense_objective(hs, ht, y, s_head, t_head, alpha, 11)
    reference = grads_of(dense, wrt)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-5, abs=1e-7)
    assert sums.count == 7 and not sums.kl.requires_grad and not sums.nll.requires_grad
    assert sums.kl.item() == pytest.approx(kl.item(), rel=1e-5, abs=1e-6)
    assert sums.nll.item() == pytest.approx(nll.item(), rel=1e-5)
    for f, r in zip(fused, reference):
        assert f.dtype == torch.float32 and torch.allclose(f, r.float(), atol=1e-6)
    assert t_head.weight.grad is None  # the teacher is never trained


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_fused_objective_equals_checkpointed_sums(alpha):
    s_head, t_head = heads()
    hs = torch.randn(9, 8, requires_grad=True)
    ht, y = torch.randn(9, 8), torch.randint(0, 50, (9,))
    loss, sums = distillation_objective(hs, ht, y, s_head, t_head, alpha, 9, chunk=4)
    fused = grads_of(loss, [hs, s_head.weight])
    reference_sums = distillation_sums(hs, ht, y, s_head, t_head, chunk=4)
    reference = objective(reference_sums, alpha, 9)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert sums.kl.item() == pytest.approx(reference_sums.kl.item(), rel=1e-5, abs=1e-6)
    assert sums.nll.item() == pytest.approx(reference_sums.nll.item(), rel=1e-5)
    for f, r in zip(fused, grads_of(reference, [hs, s_head.weight])):
        assert torch.allclose(f, r, atol=1e-6)


def test_fused_objective_with_tied_head_accumulates_into_the_embedding():
    """The student head is the input embedding: head and embedding gradients add up in the one Parameter."""
    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 8)
    s_head = torch.nn.Linear(8, 50, bias=False)
    s_head.weight = embed.weight
    _, t_head = heads()
    mix = torch.nn.Linear(8, 8)
    ids, y, ht = torch.randint(0, 50, (6,)), torch.randint(0, 50, (6,)), torch.randn(6, 8)
    wrt = [embed.weight, mix.weight, mix.bias]
    loss, _ = distillation_objective(torch.tanh(mix(embed(ids))), ht, y, s_head, t_head, 0.3, 6, chunk=4)
    fused = grads_of(loss, wrt)
    dense, _, _ = dense_objective(torch.tanh(mix(embed(ids))), ht, y, s_head, t_head, 0.3, 6)
    for f, r in zip(fused, grads_of(dense, wrt)):
        assert torch.allclose(f, r.float(), atol=1e-6)
    # the head's own part is there: the rows of tokens never used as inputs get a gradient too
    unused = torch.ones(50, dtype=torch.bool)
    unused[ids] = False
    assert fused[0][unused].abs().sum() > 0


def test_fused_objective_with_frozen_head_trains_only_the_hidden_states():
    s_head, t_head = heads()
    s_head.weight.requires_grad_(False)
    hs = torch.randn(5, 8, requires_grad=True)
    ht, y = torch.randn(5, 8), torch.randint(0, 50, (5,))
    loss, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.5, 5, chunk=2)
    (g,) = grads_of(loss, [hs])
    assert s_head.weight.grad is None
    dense, _, _ = dense_objective(hs, ht, y, s_head, t_head, 0.5, 5)
    (r,) = grads_of(dense, [hs])
    assert torch.allclose(g, r.float(), atol=1e-6)


def test_fused_objective_ignores_positions_that_are_not_passed():
    s_head, t_head = heads()
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    t_hidden = torch.randn(2, 6, 8)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1], mask[0, 4], mask[1, 2] = True, True, True
    y = torch.randint(0, 50, (3,))
    loss, sums = distillation_objective(hidden[mask], t_hidden[mask], y, s_head, t_head, 0.3, 3, chunk=2)
    loss.backward()
    assert sums.count == 3
    assert hidden.grad[~mask].abs().max() == 0 and hidden.grad[mask].abs().min() > 0
    with torch.no_grad():
        other = hidden.clone()
        other[~mask] += 10.0
        t_other = t_hidden.clone()
        t_other[~mask] -= 10.0
        again, _ = distillation_objective(other[mask], t_other[mask], y, s_head, t_head, 0.3, 3, chunk=2)
    assert again.item() == loss.item()


def test_fused_objective_is_zero_for_identical_student_and_teacher():
    s_head, _ = heads()
    hs = torch.randn(5, 8, requires_grad=True)
    loss, sums = distillation_objective(hs, hs.detach(), torch.zeros(5, dtype=torch.long), s_head, s_head, 1.0, 5)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and abs(sums.kl.item()) < 1e-5
    assert hs.grad.abs().max() < 1e-6 and s_head.weight.grad.abs().max() < 1e-6


def test_fused_objective_accumulates_exactly_over_micro_batches():
    """Two micro-batches, each divided by the step's global count, give the loss and gradients of the whole step."""
    s_head, t_head = heads()
    hs = torch.randn(10, 8, requires_grad=True)
    ht, y = torch.randn(10, 8), torch.randint(0, 50, (10,))
    whole, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.5, 10, chunk=3)
    g_whole = grads_of(whole, [hs, s_head.weight])
    total = 0.0
    for a, b in ((0, 3), (3, 10)):
        part, _ = distillation_objective(hs[a:b], ht[a:b], y[a:b], s_head, t_head, 0.5, 10, chunk=3)
        part.backward()  # gradients accumulate, as in train_step
        total += part.item()
    assert total == pytest.approx(whole.item(), rel=1e-6)
    assert torch.allclose(hs.grad, g_whole[0], atol=1e-7)
    assert torch.allclose(s_head.weight.grad, g_whole[1], atol=1e-7)


def test_fused_objective_passes_gradcheck_in_double():
    alpha = 0.3
    g = torch.Generator().manual_seed(0)
    hs = torch.randn(5, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    w = torch.randn(9, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    b = torch.randn(9, dtype=torch.float64, generator=g).requires_grad_(True)
    ht, y = torch.randn(5, 4, dtype=torch.float64, generator=g), torch.randint(0, 9, (5,), generator=g)
    teacher = SimpleNamespace(weight=torch.randn(9, 4, dtype=torch.float64, generator=g), bias=None)

    def loss_of(h, weight, bias):  # the head's weight and bias as inputs: anything with .weight and .bias will do
        return distillation_objective(h, ht, y, SimpleNamespace(weight=weight, bias=bias), teacher, alpha, 7,
                                      chunk=2)[0]

    assert loss_of(hs, w, b).dtype == torch.float64
    assert torch.autograd.gradcheck(loss_of, (hs, w, b))


def test_fused_objective_without_autograd_gives_the_sums_only():
    s_head, t_head = heads()
    hs = torch.randn(6, 8, requires_grad=True)
    ht, y = torch.randn(6, 8), torch.randint(0, 50, (6,))
    with torch.no_grad():
        loss, sums = distillation_objective(hs, ht, y, s_head, t_head, 0.3, 6, chunk=4)
    assert not loss.requires_grad
    reference = distillation_sums(hs.detach(), ht, y, s_head, t_head)
    assert sums.kl.item() == pytest.approx(reference.kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(objective(reference, 0.3, 6).item(), rel=1e-5)


def test_fused_objective_of_no_rows_and_of_an_empty_step():
    s_head, t_head = heads()
    empty = torch.zeros(0, 8, requires_grad=True)
    loss, sums = distillation_objective(empty, torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), s_head, t_head,
                                        0.5, 4)
    assert loss.item() == 0.0 and sums.count == 0
    assert not loss.requires_grad  # nothing to back-propagate: train_step skips it, the parameters' grads stay None
    with pytest.raises(ValueError, match="no masked position"):
        distillation_objective(empty, torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), s_head, t_head, 0.5, 0)


def test_fused_objective_checks_vocabularies_and_row_counts():
    s_head, _ = heads(v=50)
    t_head = torch.nn.Linear(8, 51, bias=False)
    hs, y = torch.randn(3, 8), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="vocabularies differ"):
        distillation_objective(hs, hs, y, s_head, t_head, 0.5, 3)
    with pytest.raises(ValueError, match="row counts differ"):
        distillation_objective(hs, hs[:2], y, s_head, s_head, 0.5, 3)


def test_fused_objective_in_bfloat16_computes_the_softmax_in_fp32():
    s_head, t_head = heads()
    hs = torch.randn(6, 8, requires_grad=True)
    ht, y = torch.randn(6, 8), torch.randint(0, 50, (6,))
    loss32, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.3, 6, chunk=4)
    g32 = grads_of(loss32, [hs, s_head.weight])
    s16, t16 = heads()
    s16.to(torch.bfloat16), t16.to(torch.bfloat16)
    h16 = hs.detach().bfloat16().requires_grad_(True)
    loss16, sums16 = distillation_objective(h16, ht.bfloat16(), y, s16, t16, 0.3, 6, chunk=4)
    g16 = grads_of(loss16, [h16, s16.weight])
    assert loss16.dtype == torch.float32 and sums16.kl.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=3e-2)
    for a, b in zip(g16, g32):
        assert a.dtype == torch.bfloat16
        assert torch.allclose(a.float(), b, rtol=5e-2, atol=5e-2 * b.abs().max().item())


def test_training_path_of_loss_sums_equals_the_separate_sums(teacher_dir, tokenizer):
    """The fused objective on train.masked_hidden (as train_step calls it) against objective(loss_sums(...)) on
    a tiny Qwen2 whose head is tied to its input embedding: same loss, sums and gradients of every parameter."""
    import numpy as np

    from conftest import make_doc
    from salad.data.batch import collate
    from salad.data.interleave import draw_layout, interleave
    from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
    from salad.model.teacher import load_teacher
    from salad.training.loop import loss_sums, masked_hidden

    torch.manual_seed(0)
    config = AdapterConfig(feature_dim=3, lm_hidden=32, layers=1, width=16, heads=2, kv_heads=1, mlp=32)
    model = SpeechAdaptedLM.from_teacher(teacher_dir, config)
    assert model.lm.lm_head.weight is model.lm.model.embed_tokens.weight
    with torch.no_grad():
        for p in model.lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    teacher = load_teacher(teacher_dir)
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(2)]
    seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, np.random.default_rng(s)), 200)
            for s, d in enumerate(docs)]
    batch = collate(seqs, [d.token_ids for d in docs], [d.features for d in docs], 3)
    params = [p for p in model.parameters() if p.requires_grad]

    loss, sums = distillation_objective(*masked_hidden(model, teacher, batch), batch.target_ids, model.lm.lm_head,
                                        teacher.lm_head, 0.3, 50, chunk=16)
    fused = grads_of(loss, params)
    reference_sums = loss_sums(model, teacher, batch, chunk=16)
    reference = objective(reference_sums, 0.3, 50)
    assert sums.count == reference_sums.count > 0
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert sums.kl.item() == pytest.approx(reference_sums.kl.item(), rel=1e-4, abs=1e-5)
    assert sums.nll.item() == pytest.approx(reference_sums.nll.item(), rel=1e-5)
    for f, r in zip(fused, grads_of(reference, params)):
        assert (f is None) == (r is None)
        if f is not None:
            assert torch.allclose(f, r, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# The divergence as a parameter: forward KL (the paper's), reverse KL and the generalized JSD of GKD

DIVERGENCE_CASES = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9)]
CASE_IDS = [f"{d}-{b}" if d == "jsd" else d for d, b in DIVERGENCE_CASES]


def dense_divergence(log_q, log_p, divergence, beta=0.5):
    """D(Q, P) per row straight from its definition, in probability space: the reference."""
    q, p = log_q.exp(), log_p.exp()
    if divergence == "forward_kl":
        return (q * (q.log() - p.log())).sum(-1)
    if divergence == "reverse_kl":
        return (p * (p.log() - q.log())).sum(-1)
    m = beta * q + (1 - beta) * p
    return beta * (q * (q.log() - m.log())).sum(-1) + (1 - beta) * (p * (p.log() - m.log())).sum(-1)


def dense_divergence_objective(hs, ht, y, s_head, t_head, alpha, normaliser, divergence, beta):
    """L by autograd on full logits, in float64: the reference of the fused path's value and gradients."""
    log_p = F.log_softmax(s_head(hs).double(), -1)
    with torch.no_grad():
        log_q = F.log_softmax(t_head(ht).double(), -1)
    div = dense_divergence(log_q, log_p, divergence, beta).sum()
    nll = F.nll_loss(log_p, y, reduction="sum")
    return (alpha * div + (1 - alpha) * nll) / normaliser, div.detach(), nll.detach()


def problem(bias=False, dtype=torch.float64, n=7, seed=0):
    """Student and teacher heads and rows with spread-out logits, so that the divergences differ."""
    torch.manual_seed(seed)
    s_head = torch.nn.Linear(8, 50, bias=bias, dtype=dtype)
    t_head = torch.nn.Linear(8, 50, bias=bias, dtype=dtype)
    hs = (3 * torch.randn(n, 8, dtype=dtype)).requires_grad_(True)
    ht, y = 3 * torch.randn(n, 8, dtype=dtype), torch.randint(0, 50, (n,))
    return s_head, t_head, hs, ht, y


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("chunk", [1, 3, 100])
@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES, ids=CASE_IDS)
def test_fused_divergence_equals_dense_autograd_in_double(divergence, beta, chunk, alpha, bias):
    """The hand-written gradient of each divergence (distillation_objective's docstring) against autograd."""
    s_head, t_head, hs, ht, y = problem(bias, seed=chunk)
    wrt = [hs, s_head.weight] + ([s_head.bias] if bias else [])
    loss, sums = distillation_objective(hs, ht, y, s_head, t_head, alpha, 11, chunk=chunk, divergence=divergence,
                                        beta=beta)
    fused = grads_of(loss, wrt)
    dense, div, nll = dense_divergence_objective(hs, ht, y, s_head, t_head, alpha, 11, divergence, beta)
    reference = grads_of(dense, wrt)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(dense.item(), rel=1e-12, abs=1e-14)
    assert sums.kl.item() == pytest.approx(div.item(), rel=1e-12, abs=1e-14)
    assert sums.nll.item() == pytest.approx(nll.item(), rel=1e-12)
    for f, r in zip(fused, reference):
        assert torch.allclose(f, r, rtol=1e-10, atol=1e-13)
    assert t_head.weight.grad is None  # the teacher is never trained


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES, ids=CASE_IDS)
def test_fused_divergence_in_fp32_equals_dense_double(divergence, beta):
    """The training precision: fp32 logits and softmax, against the float64 reference at the KL tests' tolerance."""
    s_head, t_head, hs, ht, y = problem(bias=True, dtype=torch.float32, n=9)
    wrt = [hs, s_head.weight, s_head.bias]
    loss, sums = distillation_objective(hs, ht, y, s_head, t_head, 0.3, 9, chunk=4, divergence=divergence, beta=beta)
    fused = grads_of(loss, wrt)
    dense, div, _ = dense_divergence_objective(hs, ht, y, s_head, t_head, 0.3, 9, divergence, beta)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-5)
    assert sums.kl.item() == pytest.approx(div.item(), rel=1e-5, abs=1e-6)
    for f, r in zip(fused, grads_of(dense, wrt)):
        assert f.dtype == torch.float32 and torch.allclose(f, r.float(), atol=1e-6)


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES, ids=CASE_IDS)
def test_chunk_size_does_not_change_the_divergence(divergence, beta):
    s_head, t_head, hs, ht, y = problem(n=10)
    results = []
    for chunk in (1, 4, 10, 1000):
        loss, sums = distillation_objective(hs, ht, y, s_head, t_head, 0.3, 10, chunk=chunk, divergence=divergence,
                                            beta=beta)
        results.append((loss.detach(), sums.kl, *grads_of(loss, [hs, s_head.weight])))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES, ids=CASE_IDS)
def test_checkpointed_sums_of_each_divergence_equal_dense_autograd(divergence, beta):
    s_head, t_head, hs, ht, y = problem(bias=True)
    wrt = [hs, s_head.weight, s_head.bias]
    sums = distillation_sums(hs, ht, y, s_head, t_head, chunk=3, divergence=divergence, beta=beta)
    loss = objective(sums, 0.3, 7)
    checkpointed = grads_of(loss, wrt)
    dense, div, _ = dense_divergence_objective(hs, ht, y, s_head, t_head, 0.3, 7, divergence, beta)
    # the checkpointed path computes in fp32 whatever the inputs: the fp32 tolerances
    assert sums.kl.item() == pytest.approx(div.item(), rel=1e-5, abs=1e-6)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-5)
    for c, r in zip(checkpointed, grads_of(dense, wrt)):
        assert torch.allclose(c.double(), r, atol=1e-5)


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES[1:3], ids=CASE_IDS[1:3])  # forward KL: above
def test_fused_divergence_passes_gradcheck_in_double(divergence, beta):
    g = torch.Generator().manual_seed(1)
    hs = torch.randn(5, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    w = torch.randn(9, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    b = torch.randn(9, dtype=torch.float64, generator=g).requires_grad_(True)
    ht, y = torch.randn(5, 4, dtype=torch.float64, generator=g), torch.randint(0, 9, (5,), generator=g)
    teacher = SimpleNamespace(weight=torch.randn(9, 4, dtype=torch.float64, generator=g), bias=None)

    def loss_of(h, weight, bias):
        return distillation_objective(h, ht, y, SimpleNamespace(weight=weight, bias=bias), teacher, 0.7, 7, chunk=2,
                                      divergence=divergence, beta=beta)[0]

    assert torch.autograd.gradcheck(loss_of, (hs, w, b))


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES, ids=CASE_IDS)
def test_divergences_are_nonnegative_and_zero_only_for_equal_distributions(divergence, beta):
    g = torch.Generator().manual_seed(2)
    t, s = 4 * torch.randn(64, 30, generator=g, dtype=torch.float64), 4 * torch.randn(64, 30, generator=g,
                                                                                        dtype=torch.float64)
    log_q, log_p = F.log_softmax(t, -1), F.log_softmax(s, -1)
    rows = divergence_rows(log_q, log_p, divergence, beta)
    assert torch.allclose(rows, dense_divergence(log_q, log_p, divergence, beta), rtol=1e-12, atol=1e-14)
    assert (rows > 0).all()
    assert divergence_rows(log_q, log_q, divergence, beta).abs().max() < 1e-14
    # through the fused path: a student equal to its teacher has a zero loss and zero gradients
    s_head, _, hs, _, y = problem()
    loss, sums = distillation_objective(hs, hs.detach(), y, s_head, s_head, 1.0, 7, chunk=3, divergence=divergence,
                                        beta=beta)
    g_h, g_w = grads_of(loss, [hs, s_head.weight])
    assert abs(loss.item()) < 1e-14 and abs(sums.kl.item()) < 1e-13
    assert g_h.abs().max() < 1e-14 and g_w.abs().max() < 1e-14


def test_reverse_kl_differs_from_forward_kl_on_an_asymmetric_pair():
    """Q = (0.9, 0.1), P = (0.5, 0.5): forward KL 0.9 ln 1.8 + 0.1 ln 0.2 ≈ 0.368, reverse KL 0.5 ln(5/9) + 0.5 ln 5
    ≈ 0.511."""
    log_q = torch.tensor([[0.9, 0.1]], dtype=torch.float64).log()
    log_p = torch.tensor([[0.5, 0.5]], dtype=torch.float64).log()
    forward = divergence_rows(log_q, log_p, "forward_kl").item()
    reverse = divergence_rows(log_q, log_p, "reverse_kl").item()
    assert forward == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), rel=1e-14)
    assert reverse == pytest.approx(0.5 * math.log(5 / 9) + 0.5 * math.log(5), rel=1e-14)
    assert reverse - forward > 0.1
    assert divergence_rows(log_p, log_q, "forward_kl").item() == pytest.approx(reverse, rel=1e-14)  # roles swapped


def test_jsd_swaps_roles_with_beta_and_is_symmetric_at_one_half():
    g = torch.Generator().manual_seed(3)
    log_q = F.log_softmax(3 * torch.randn(8, 20, generator=g, dtype=torch.float64), -1)
    log_p = F.log_softmax(3 * torch.randn(8, 20, generator=g, dtype=torch.float64), -1)
    assert torch.allclose(jsd_rows(log_q, log_p, 0.2), jsd_rows(log_p, log_q, 0.8), rtol=1e-12)
    assert torch.allclose(jsd_rows(log_q, log_p, 0.5), jsd_rows(log_p, log_q, 0.5), rtol=1e-12)


def test_jsd_is_bounded_by_the_binary_entropy_of_beta_reached_on_disjoint_supports():
    beta = 0.3
    binary_entropy = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)
    g = torch.Generator().manual_seed(4)
    log_q = F.log_softmax(5 * torch.randn(32, 20, generator=g, dtype=torch.float64), -1)
    log_p = F.log_softmax(5 * torch.randn(32, 20, generator=g, dtype=torch.float64), -1)
    assert (jsd_rows(log_q, log_p, beta) < binary_entropy).all()
    far = torch.tensor([[60.0, -60.0]], dtype=torch.float64)
    disjoint = jsd_rows(F.log_softmax(far, -1), F.log_softmax(-far, -1), beta).item()
    assert disjoint == pytest.approx(binary_entropy, rel=1e-12)


@pytest.mark.parametrize("limit", ["forward_kl", "reverse_kl"])
def test_jsd_tends_to_the_kls_at_the_ends_of_beta(limit):
    """JSD_β/β → KL(Q‖P) as β → 0 and JSD_β/(1−β) → KL(P‖Q) as β → 1, in value and gradient, with an error of
    order β (resp. 1−β). TRL's GKD uses these two KLs at β = 0 and 1; here they are named divergences."""
    s_head, t_head, hs, ht, y = problem(n=6)
    loss, _ = distillation_objective(hs, ht, y, s_head, t_head, 1.0, 6, chunk=4, divergence=limit)
    kl = [loss.detach(), *grads_of(loss, [hs, s_head.weight])]

    def relative_errors(distance):
        beta = distance if limit == "forward_kl" else 1.0 - distance
        scale = beta if limit == "forward_kl" else 1.0 - beta
        loss, _ = distillation_objective(hs, ht, y, s_head, t_head, 1.0, 6, chunk=4, divergence="jsd", beta=beta)
        jsd = [loss.detach() / scale, *[g / scale for g in grads_of(loss, [hs, s_head.weight])]]
        return torch.tensor([((a - b).abs().max() / b.abs().max()).item() for a, b in zip(jsd, kl)])

    near, nearer = relative_errors(1e-6), relative_errors(1e-9)
    assert (nearer < 1e-5).all() and (nearer < near / 100).all()


@pytest.mark.parametrize("divergence,beta", DIVERGENCE_CASES[1:3], ids=CASE_IDS[1:3])
def test_fused_divergence_in_bfloat16_computes_the_softmax_in_fp32(divergence, beta):
    s_head, t_head = heads()
    hs = torch.randn(6, 8, requires_grad=True)
    ht, y = torch.randn(6, 8), torch.randint(0, 50, (6,))
    loss32, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.3, 6, chunk=4, divergence=divergence, beta=beta)
    g32 = grads_of(loss32, [hs, s_head.weight])
    s16, t16 = heads()
    s16.to(torch.bfloat16), t16.to(torch.bfloat16)
    h16 = hs.detach().bfloat16().requires_grad_(True)
    loss16, sums16 = distillation_objective(h16, ht.bfloat16(), y, s16, t16, 0.3, 6, chunk=4, divergence=divergence,
                                            beta=beta)
    g16 = grads_of(loss16, [h16, s16.weight])
    assert loss16.dtype == torch.float32 and sums16.kl.dtype == torch.float32
    assert loss16.item() == pytest.approx(loss32.item(), rel=3e-2)
    for a, b in zip(g16, g32):
        assert a.dtype == torch.bfloat16
        assert torch.allclose(a.float(), b, rtol=5e-2, atol=5e-2 * b.abs().max().item())


@pytest.mark.parametrize("divergence,beta,match", [("kl", 0.5, "divergence must be one of"),
                                                   ("Forward_KL", 0.5, "divergence must be one of"),
                                                   ("jsd", 0.0, "beta must be in"), ("jsd", 1.0, "beta must be in"),
                                                   ("jsd", 1.5, "beta must be in"),
                                                   ("jsd", float("nan"), "beta must be in")])
def test_invalid_divergence_or_beta_is_a_clear_error(divergence, beta, match):
    s_head, t_head, hs, ht, y = problem()
    with pytest.raises(ValueError, match=match):
        distillation_objective(hs, ht, y, s_head, t_head, 0.5, 7, divergence=divergence, beta=beta)
    with pytest.raises(ValueError, match=match):
        distillation_sums(hs, ht, y, s_head, t_head, divergence=divergence, beta=beta)
    with pytest.raises(ValueError, match=match):
        divergence_rows(hs, ht, divergence, beta)


def test_the_kls_ignore_beta():
    s_head, t_head, hs, ht, y = problem()
    for divergence in ("forward_kl", "reverse_kl"):
        a, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.5, 7, divergence=divergence, beta=0.0)
        b, _ = distillation_objective(hs, ht, y, s_head, t_head, 0.5, 7, divergence=divergence, beta=0.7)
        assert a.item() == b.item()


# TrainConfig.divergence and TrainConfig.jsd_beta (the config's own tests live in tests/test_config.py)


def test_config_divergence_defaults_to_the_papers_forward_kl_and_accepts_every_divergence():
    assert TrainConfig().divergence == "forward_kl" and TrainConfig().jsd_beta == 0.5
    for divergence in DIVERGENCES:
        assert params_from_dict({"train": {"divergence": divergence}}).train.divergence == divergence
    assert params_from_dict({"train": {"divergence": "jsd", "jsd_beta": 0.25}}).train.jsd_beta == 0.25
    # the endpoints are only refused for the JSD, which is the only divergence that reads beta
    assert params_from_dict({"train": {"divergence": "reverse_kl", "jsd_beta": 1}}).train.jsd_beta == 1.0


@pytest.mark.parametrize("train,match", [
    ({"divergence": "kl"}, r"train\.divergence: must be 'forward_kl'"),
    ({"jsd_beta": 1.5}, r"train\.jsd_beta: must be in \[0, 1\]"),
    ({"jsd_beta": -0.1}, r"train\.jsd_beta: must be in \[0, 1\]"),
    ({"divergence": "jsd", "jsd_beta": 0}, r"train\.jsd_beta: must be in \(0, 1\)"),
    ({"divergence": "jsd", "jsd_beta": 1}, r"train\.jsd_beta: must be in \(0, 1\)"),
    ({"jsd_beta": "half"}, r"train\.jsd_beta: expected a number"),
])
def test_config_rejects_an_unknown_divergence_or_beta_naming_the_key(train, match):
    with pytest.raises(ConfigError, match=match):
        params_from_dict({"train": train})
