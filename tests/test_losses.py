"""The objective of DESIGN §4 against direct dense formulas."""

import pytest
import torch
import torch.nn.functional as F

from salad.losses import distillation_sums, kl_per_row, kl_rows, objective


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
