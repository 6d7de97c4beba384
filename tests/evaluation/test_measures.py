"""The measures of docs/design.md §4 (salad.evaluation.measures), against direct dense formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_doc
from salad.data.interleave import draw_layout, interleave
from salad.evaluation.measures import (forgetting_rows, measure_model, misalignment_rows, shuffled,
                                      text_hidden_states, tokens_after_speech)
from salad.model.speech_lm import AdapterConfig, SpeechAdaptedLM
from salad.model.teacher import load_teacher


@pytest.fixture(scope="module")
def models(teacher_dir):
    torch.manual_seed(1)
    config = AdapterConfig(feature_dim=3, lm_hidden=32, layers=1, width=16, heads=2, kv_heads=1, mlp=32)
    return load_teacher(teacher_dir), SpeechAdaptedLM.from_teacher(teacher_dir, config).eval()


def dense_kl(q_logits, p_logits):
    q = torch.softmax(q_logits.double(), -1)
    return (q * (q.log() - torch.log_softmax(p_logits.double(), -1))).sum(-1)


def test_forgetting_is_zero_for_an_untouched_student_and_matches_the_dense_formula(models, tokenizer):
    teacher, student = models
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(2)]
    kl, nll_p, nll_q = forgetting_rows(student, teacher, docs, 120, chunk=7)
    assert kl.shape[0] == 2 * 119 and torch.all(kl.abs() < 1e-5) and torch.allclose(nll_p, nll_q, atol=1e-5)

    with torch.no_grad():
        for p in student.lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kl, nll_p, nll_q = forgetting_rows(student, teacher, docs, 120, chunk=7)
    ids = torch.tensor(np.stack([d.token_ids[:120] for d in docs]))
    with torch.no_grad():
        p_logits = student.lm(input_ids=ids).logits[:, :-1].reshape(-1, student.lm.config.vocab_size)
        q_logits = teacher(input_ids=ids).logits[:, :-1].reshape(-1, teacher.config.vocab_size)
    targets = ids[:, 1:].reshape(-1)
    assert torch.allclose(kl.double(), dense_kl(q_logits, p_logits), atol=1e-5) and kl.min() > 0
    assert torch.allclose(nll_p, F.cross_entropy(p_logits, targets, reduction="none"), atol=1e-5)
    assert torch.allclose(nll_q, F.cross_entropy(q_logits, targets, reduction="none"), atol=1e-5)


def test_misalignment_rows_are_text_vs_speech_kl_of_the_student(models, tokenizer):
    _, student = models
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(2)]
    seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, np.random.default_rng(s)), 200)
            for s, d in enumerate(docs)]
    rows = misalignment_rows(student, docs, seqs, chunk=5)
    assert rows.shape[0] == sum(int((s.target >= 0).sum()) for s in seqs)
    assert torch.all(rows >= -1e-6)
    # positions before the first speech span see the same text prefix in both views: KL 0 there
    dist = np.concatenate([tokens_after_speech(s) for s in seqs])
    assert torch.all(rows[torch.tensor(np.isinf(dist))].abs() < 1e-5)
    assert rows[torch.tensor(~np.isinf(dist))].mean() > 1e-4


def test_tokens_after_speech_counts_from_the_last_frame(tokenizer):
    doc = make_doc(tokenizer)[0]
    seq = interleave(doc, draw_layout(doc.cut_points(), doc.n_words, np.random.default_rng(0)), 200)
    dist = tokens_after_speech(seq)
    is_speech = seq.input_ids < 0
    masked = np.flatnonzero(seq.target >= 0)
    for d, i in zip(dist, masked):
        before = np.flatnonzero(is_speech[:i + 1])
        assert d == (np.inf if len(before) == 0 else i - before[-1])


def test_shuffled_speech_gives_each_document_the_next_ones_frames_at_its_own_count(tokenizer):
    docs = []
    for s, n in enumerate((40, 10, 25)):
        d = make_doc(tokenizer, seed=s)[0]
        docs.append(type(d)(d.id, d.token_ids, d.token_word, d.word_times, d.features[:n] + 1000.0 * s))
    out = shuffled(docs)
    for j, (d, o) in enumerate(zip(docs, out)):
        nxt = docs[(j + 1) % 3].features
        assert o.features.shape == d.features.shape and o.token_ids is d.token_ids
        flat, src = o.features.reshape(-1), nxt.reshape(-1)
        assert np.array_equal(flat, np.resize(src, flat.shape))  # tiled or cut
        assert np.all(flat // 1000 == (j + 1) % 3)


def test_a_shared_text_pass_gives_the_same_rows_as_one_per_batch(models, tokenizer):
    _, student = models
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(3)]
    seqs = [interleave(d, draw_layout(d.cut_points(), d.n_words, np.random.default_rng(10 + s)), 150)
            for s, d in enumerate(docs)]
    shared = text_hidden_states(student.lm, docs, max(len(d.token_ids) for d in docs))
    assert torch.allclose(misalignment_rows(student, docs, seqs, 5, shared), misalignment_rows(student, docs, seqs, 5),
                          atol=1e-5)


def test_measure_model_without_controls_gives_the_same_m_and_f(models, tokenizer):
    from salad.config import params_from_dict

    teacher, student = models
    docs = [make_doc(tokenizer, seed=s)[0] for s in range(3)]
    params = params_from_dict({"measure": {"layouts": 2, "batch_size": 2}, "train": {"max_len": 150}})
    full, lean = (measure_model(params, teacher, student, docs, controls=c) for c in (True, False))
    assert {k: v for k, v in full.items() if "shuffled" not in k} == lean
    assert "M_shuffled" in full and not any("shuffled" in k for k in lean)
    assert full["M"] > 0 and full["M_se"] >= 0
