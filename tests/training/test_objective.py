"""The objective of docs/design.md §4 against direct dense formulas."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from salad.training.objective import distillation_objective, distillation_sums, kl_per_row, kl_rows, objective


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
    from salad.stages.train import load_teacher, loss_sums, masked_hidden

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
